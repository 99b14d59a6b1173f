"""Tiers from pyproject.toml: defaults, merging, and one-line errors for every bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiergate.config import (
    DEFAULT_TIERS,
    load_config,
    parse_duration,
    parse_size,
    resolve_tier,
)
from tiergate.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "pyproject.toml").write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (90, 90.0),
        ("90", 90.0),
        ("90s", 90.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        ("250ms", 0.25),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5x", "", "m", "-3", True, None, [1]])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_sizes() -> None:
    assert parse_size("2GB") == 2 * 10**9
    assert parse_size("512MiB") == 512 * 2**20
    assert parse_size("85%", total=1000) == 850
    with pytest.raises(ValueError):
        parse_size("85%")


def test_no_config_gives_three_default_tiers(tmp_path: Path) -> None:
    config = load_config(tmp_path)
    assert set(config.tiers) == {"fast", "nightly", "staging"}
    assert config.tiers["fast"].markers == "not (integration or e2e or staging or slow)"
    assert config.tiers["nightly"].markers == "integration or slow"
    assert config.tiers["staging"].markers == "e2e or staging"
    assert config.tiers["fast"].network == "loopback"


def test_project_tier_merges_over_default(tmp_path: Path) -> None:
    write(
        tmp_path,
        '[tool.tiergate.tiers.fast]\ntest-timeout = "5s"\nworkers = "auto"\n'
        '[tool.tiergate.tiers.smoke]\nmarkers = "smoke"\npaths = ["tests/smoke"]\n',
    )
    config = load_config(tmp_path)
    fast = config.tiers["fast"]
    assert fast.test_timeout == 5.0 and fast.workers == "auto"
    assert fast.markers == DEFAULT_TIERS["fast"].markers  # untouched keys keep the default
    assert config.tiers["smoke"].paths == ("tests/smoke",)


def test_config_found_from_a_subdirectory(tmp_path: Path) -> None:
    write(tmp_path, '[tool.tiergate.tiers.fast]\nbudget = "2m"\n')
    (tmp_path / "tests").mkdir()
    assert load_config(tmp_path / "tests").tiers["fast"].budget == 120.0


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            '[tool.tiergate.tiers.fast]\ntest-timeout = "5x"\n',
            "[tool.tiergate.tiers.fast] test-timeout = '5x' is not valid: use a duration",
        ),
        ('[tool.tiergate.tiers.fast]\nmarkrs = "x"\n', "unknown key 'markrs': allowed keys are"),
        ('[tool.tiergate.tiers.fast]\nmarkers = "not (a or"\n', "not a pytest -m expression"),
        ('[tool.tiergate.tiers.fast]\nnetwork = "sometimes"\n', '"any", "loopback", "none"'),
        ('[tool.tiergate.tiers.fast]\nleaks = "maybe"\n', "use one of fail, warn, off"),
        ("[tool.tiergate.tiers.fast]\nworkers = 0\n", 'or "auto"'),
        ("[tool.tiergate.tiers.fast]\nbudget = 0\n", "more than zero"),
        ("[tool.tiergate]\ntier = {}\n", "unknown key 'tier': allowed keys are tiers"),
        ("[tool.tiergate\n", "cannot read it as TOML"),
    ],
)
def test_every_bad_value_is_one_line_naming_file_and_key(
    tmp_path: Path, body: str, expected: str
) -> None:
    write(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    message = str(info.value)
    assert expected in message
    assert str(tmp_path / "pyproject.toml") in message
    assert "\n" not in message


def test_unknown_tier_names_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown tier 'nope'.*fast, nightly, staging"):
        load_config(tmp_path).tier("nope")


def test_command_line_overrides_are_validated(tmp_path: Path) -> None:
    config = load_config(tmp_path)
    tier = resolve_tier(config, "fast", {"test-timeout": "3s", "budget": None, "workers": "2"})
    assert tier.test_timeout == 3.0 and tier.workers == 2 and tier.budget == 900.0
    with pytest.raises(ConfigError, match="--grace '-1' is not valid"):
        resolve_tier(config, "fast", {"grace": "-1"})


def test_network_allow_list(tmp_path: Path) -> None:
    write(
        tmp_path, '[tool.tiergate.tiers.fast]\nnetwork = ["127.0.0.2", "db:5432", "10.0.0.0/8"]\n'
    )
    assert load_config(tmp_path).tiers["fast"].network == ("127.0.0.2", "db:5432", "10.0.0.0/8")
