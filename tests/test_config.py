"""Tiers from pyproject.toml: defaults, merging, and one-line errors for every bad value."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tiergate.errors import ConfigError
from tiergate.settings.config import (
    DEFAULT_TIERS,
    load_config,
    parse_duration,
    parse_size,
    resolve_tier,
)


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


# -- issue 14: every value is checked for range and type once, at the edge -------------------

TOO_LONG = "a duration must be finite and at most 168h (7 days)"
BAD_PORT = "has a bad port: a port is a number from 1 to 65535"
WORKERS = 'use 1 (no xdist), a number of workers up to 512, or "auto"'
SIZE = 'use a size such as "2GB", "512MiB" or a share of the machine, "85%"'


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("test-timeout = nan", f"test-timeout = nan is not valid: {TOO_LONG}"),
        ("test-timeout = inf", f"test-timeout = inf is not valid: {TOO_LONG}"),
        ("budget = 1e300", f"budget = 1e+300 is not valid: {TOO_LONG}"),
        ("grace = inf", f"grace = inf is not valid: {TOO_LONG}"),
        ("sample-interval = nan", f"sample-interval = nan is not valid: {TOO_LONG}"),
        ('budget = "169h"', f"budget = '169h' is not valid: {TOO_LONG}"),
        ('collect-timeout = "soon"', "collect-timeout = 'soon' is not valid: use a duration"),
        ("collect-timeout = inf", f"collect-timeout = inf is not valid: {TOO_LONG}"),
        ("allow-no-tests = 1", "allow-no-tests = 1 is not valid: use true or false"),
        ('allow-no-tests = "yes"', "allow-no-tests = 'yes' is not valid: use true or false"),
        ("network = []", 'network = [] is not valid: an empty list allows nothing: write "none"'),
        ('network = ["10.0.0.0/99"]', "'10.0.0.0/99' is not a valid IP network: write a CIDR"),
        ('network = ["db:99999"]', f"network = ['db:99999'] is not valid: 'db:99999' {BAD_PORT}"),
        ('network = ["db:0"]', f"'db:0' {BAD_PORT}"),
        ('network = ["host:abc"]', f"'host:abc' {BAD_PORT}"),
        ('network = ["[::1]:70000"]', f"'[::1]:70000' {BAD_PORT}"),
        ('network = ["300.1.1.1"]', "'300.1.1.1' is not a valid IPv4 address"),
        ('network = ["*.example.com"]', "is not a host name, IP address or CIDR"),
        ('memory-limit = "0"', "memory-limit = '0' is not valid: it must be more than zero"),
        ("memory-limit = 0", "memory-limit = 0 is not valid: it must be more than zero"),
        ('memory-limit = "0.1b"', "it must be more than zero"),
        ("memory-limit = -1", f"memory-limit = -1 is not valid: {SIZE}"),
        ('memory-limit = "0%"', f"memory-limit = '0%' is not valid: {SIZE}"),
        ('memory-limit = "150%"', f"memory-limit = '150%' is not valid: {SIZE}"),
        (f'memory-limit = "{"9" * 400}GB"', SIZE),
        ("leak-thresholds = {threads = -1}", "threads needs a whole number of 0 or more"),
        ("leak-thresholds = {threads = inf}", "threads needs a whole number of 0 or more"),
        ("leak-thresholds = {threads = nan}", "threads needs a whole number of 0 or more"),
        ("leak-thresholds = {fds = true}", "fds needs a whole number of 0 or more"),
        ("leak-thresholds = {fds = 1.5}", "fds needs a whole number of 0 or more"),
        ('leak-thresholds = {sockets = "x"}', "sockets needs a whole number of 0 or more"),
        ("leak-thresholds = {tasks = [1]}", "tasks needs a whole number of 0 or more"),
        ("leak-thresholds = {memory = -5}", 'memory needs a size of 0 or more, such as "20MB"'),
        ('leak-thresholds = {memory = "lots"}', "memory needs a size of 0 or more"),
        ("leak-thresholds = {cpu = 1}", "unknown kind 'cpu': use memory, threads, processes"),
        ("leak-thresholds = 3", "use a table with keys among memory, threads"),
        ("workers = 100000", f"workers = 100000 is not valid: {WORKERS}"),
        ("workers = 513", WORKERS),
        ("workers = 0", WORKERS),
        ("workers = -3", WORKERS),
        ("workers = 2.5", WORKERS),
        (f'workers = "{"9" * 5000}"', WORKERS),
        ("max-processes = 0", "max-processes = 0 is not valid: use a whole number above zero"),
        ("max-processes = -1", "use a whole number above zero"),
        ('max-processes = "10"', "use a whole number above zero"),
        ("max-fds = 1.5", "max-fds = 1.5 is not valid: use a whole number above zero"),
        ("max-fds = true", "use a whole number above zero"),
        ("max-fds = -4096", "use a whole number above zero"),
    ],
)
def test_out_of_range_values_are_one_line(tmp_path: Path, line: str, expected: str) -> None:
    write(tmp_path, f"[tool.tiergate.tiers.fast]\n{line}\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    message = str(info.value)
    assert f"{tmp_path / 'pyproject.toml'}: [tool.tiergate.tiers.fast] " in message
    assert expected in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("test-timeout", "inf", f"--test-timeout 'inf' is not valid: {TOO_LONG}"),
        ("budget", "nan", f"--budget 'nan' is not valid: {TOO_LONG}"),
        ("grace", "-inf", f"--grace '-inf' is not valid: {TOO_LONG}"),
        ("sample-interval", "1" + "0" * 400, TOO_LONG),
        ("test-timeout", "1e300", "--test-timeout '1e300' is not valid: use a duration"),
        ("budget", "200h", TOO_LONG),
        ("collect-timeout", "inf", f"--collect-timeout 'inf' is not valid: {TOO_LONG}"),
        ("workers", "100000", f"--workers 100000 is not valid: {WORKERS}"),
        ("workers", "0", WORKERS),
        ("memory-limit", "0", "--memory-limit '0' is not valid: it must be more than zero"),
        ("memory-limit", "150%", SIZE),
    ],
)
def test_out_of_range_command_line_values(tmp_path: Path, key: str, value: str,
                                          expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_tier(load_config(tmp_path), "fast", {key: value})
    assert expected in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "Infinity", float("nan"), float("inf"),
                                  1e300, "169h", "99999999999h", 7 * 24 * 3600 + 1])
def test_durations_must_be_finite_and_at_most_a_week(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_the_longest_duration_is_a_week() -> None:
    assert parse_duration("168h") == parse_duration(604800) == 604800.0


def test_sizes_are_never_negative() -> None:
    with pytest.raises(ValueError):
        parse_size(-1)
    with pytest.raises(ValueError):
        parse_size("9" * 400 + "GB")
    assert parse_size(0) == 0


def test_edge_values_that_stay_allowed(tmp_path: Path) -> None:
    write(
        tmp_path,
        "[tool.tiergate.tiers.fast]\n"
        'grace = 0\nsample-interval = 0\nworkers = 512\nbudget = "168h"\nmemory-limit = "0.5%"\n'
        'max-processes = 1\nmax-fds = 1\nleak-thresholds = { threads = "3", memory = 0, fds = 0 }\n'
        'network = ["[::1]:5432", "::1", "fd00::/8", "10.0.0.0/8:5432", "db.internal.", "db:1",'
        ' "db:65535", "127.0.0.2", "my_host"]\n',
    )
    fast = load_config(tmp_path).tiers["fast"]
    assert (fast.grace, fast.sample_interval, fast.workers) == (0.0, 0.0, 512)
    assert fast.budget == 604800.0
    assert fast.memory_limit == "0.5%"
    assert fast.leak_thresholds == {"threads": 3.0, "memory": 0.0, "fds": 0.0}
    assert len(fast.network) == 9


def test_collect_timeout_defaults_to_the_tiers_test_timeout(tmp_path: Path) -> None:
    from tiergate.settings.config import Tier

    assert Tier(name="x", test_timeout=7.0).collect_timeout == 7.0
    assert DEFAULT_TIERS["nightly"].collect_timeout == DEFAULT_TIERS["nightly"].test_timeout
    write(
        tmp_path,
        '[tool.tiergate.tiers.fast]\ntest-timeout = "5s"\n'
        '[tool.tiergate.tiers.nightly]\ncollect-timeout = "2m"\n'
        "[tool.tiergate.tiers.staging]\ncollect-timeout = 0\n"
        '[tool.tiergate.tiers.smoke]\nmarkers = "smoke"\n',
    )
    config = load_config(tmp_path)
    assert config.tiers["fast"].collect_timeout == 5.0  # follows the overridden test-timeout
    assert config.tiers["nightly"].collect_timeout == 120.0
    assert config.tiers["nightly"].test_timeout == 600.0
    assert config.tiers["staging"].collect_timeout == 0.0  # no limit
    assert config.tiers["smoke"].collect_timeout == 60.0
    # on the command line: follows --test-timeout unless set itself
    assert resolve_tier(config, "fast", {"test-timeout": "3s"}).collect_timeout == 3.0
    assert resolve_tier(config, "nightly", {"test-timeout": "3s"}).collect_timeout == 120.0
    both = resolve_tier(config, "fast", {"test-timeout": "3s", "collect-timeout": "1s"})
    assert both.collect_timeout == 1.0
    assert isinstance(DEFAULT_TIERS["fast"].collect_timeout, float)


def test_allow_no_tests(tmp_path: Path) -> None:
    write(tmp_path, "[tool.tiergate.tiers.fast]\nallow-no-tests = true\n")
    config = load_config(tmp_path)
    assert config.tiers["fast"].allow_no_tests is True
    assert config.tiers["nightly"].allow_no_tests is False
    assert resolve_tier(config, "nightly", {"allow-no-tests": True}).allow_no_tests is True
    assert resolve_tier(config, "fast", {"allow-no-tests": None}).allow_no_tests is True


def test_new_keys_in_describe_and_json(tmp_path: Path) -> None:
    from tiergate.settings.config import Tier

    tier = resolve_tier(load_config(tmp_path), "fast",
                        {"collect-timeout": "90s", "allow-no-tests": True})
    assert tier.describe()["collect-timeout"] == "90s"
    assert tier.describe()["allow-no-tests"] is True
    assert Tier.from_json(tier.to_json()) == tier
    # a spec written before the keys existed still reads, with their defaults resolved
    old = tier.to_json()
    del old["collect_timeout"], old["allow_no_tests"]
    again = Tier.from_json(old)
    assert again.collect_timeout == again.test_timeout == 60.0
    assert again.allow_no_tests is False


def test_run_command_line_has_the_new_options(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from tiergate import cli
    from tiergate.cli import run as run_command

    seen = {}

    def fake_run_plan(plan: object) -> int:
        seen["tier"] = plan.tier  # type: ignore[attr-defined]
        return 0

    monkeypatch.setattr(run_command, "run_plan", fake_run_plan)
    write(tmp_path, "")
    assert cli.main(["run", "--tier", "fast", "--project", str(tmp_path),
                     "--collect-timeout", "45s", "--allow-no-tests"]) == 0
    assert seen["tier"].collect_timeout == 45.0 and seen["tier"].allow_no_tests is True
    assert cli.main(["run", "--tier", "fast", "--project", str(tmp_path)]) == 0
    assert seen["tier"].collect_timeout == 60.0 and seen["tier"].allow_no_tests is False


def test_a_config_error_leaves_the_previous_results_untouched(tmp_path: Path) -> None:
    """The config is read and checked before anything in the results dir is touched, by
    `tiergate run` and by `pytest --tier` alike."""
    import subprocess
    import sys

    from supervised import make_project, run_tiergate

    project = make_project(
        tmp_path / "p", {"tests/test_a.py": "def test_a(): pass\n"},
        "[tool.tiergate.tiers.fast]\ntest-timeout = inf\n",
    )
    previous = project / ".tiergate" / "fast"
    previous.mkdir(parents=True)
    files = {"events.jsonl": '{"event": "run-start", "t": 1.0}\n', "junit.xml": "<testsuites/>"}
    for name, text in files.items():
        (previous / name).write_text(text)

    def untouched() -> None:
        assert sorted(p.name for p in previous.iterdir()) == sorted(files)
        for name, text in files.items():
            assert (previous / name).read_text() == text

    proc = run_tiergate(project, "run", "--tier", "fast")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and f"test-timeout = inf is not valid: {TOO_LONG}" in (
        proc.stderr)
    untouched()
    (project / "pyproject.toml").write_text("")
    proc = run_tiergate(project, "run", "--tier", "fast", "--workers", "100000")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    untouched()
    proc = run_tiergate(project, "run", "--tier", "fast", "--shard", "1/1000000000000")
    assert proc.returncode == 2 and "N at most 1000" in proc.stderr
    untouched()
    (project / "pyproject.toml").write_text('[tool.tiergate.tiers.fast]\nnetwork = ["db:0"]\n')
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--tier", "fast", "-p", "no:cacheprovider"],
        cwd=project, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode != 0 and "'db:0' has a bad port" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr + proc.stdout
    untouched()


# -- issue 17: one table of keys; `description`, the key added through it --------------------

ONE_LINE = "use one line of printable text, at most 200 characters"
CONTRACT = "contract tests against the payment sandbox, weekly"


def test_a_description_is_read_and_shown_beside_the_tier(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tiergate import cli

    write(tmp_path, '[tool.tiergate.tiers.contract]\nmarkers = "contract"\n'
                    f'description = "  {CONTRACT} "\n'
                    '[tool.tiergate.tiers.fast]\nbudget = "5m"\n')
    config = load_config(tmp_path)
    assert config.tiers["contract"].description == CONTRACT
    assert config.tiers["fast"].description == DEFAULT_TIERS["fast"].description != ""
    assert cli.main(["tiers", "--no-collect", "--project", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"\ncontract — {CONTRACT}\n" in out
    assert f"\nfast — {DEFAULT_TIERS['fast'].description}\n" in out
    assert "  description" not in out  # beside the name, not again among the settings
    assert cli.main(["tiers", "--no-collect", "--json", "--project", str(tmp_path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["tiers"]["contract"]["description"] == CONTRACT


def test_a_tier_without_a_description_shows_just_its_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tiergate import cli

    write(tmp_path, '[tool.tiergate.tiers.smoke]\nmarkers = "smoke"\n')
    assert load_config(tmp_path).tiers["smoke"].description == ""
    assert cli.main(["tiers", "--no-collect", "--project", str(tmp_path)]) == 0
    assert "\nsmoke\n  markers        smoke\n" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        ('description = "runs\\nnightly"', "'runs\\nnightly'"),
        ('description = "red \\u001b[31m alert"', "'red \\x1b[31m alert'"),  # a terminal escape
        ('description = "tab\\there"', "'tab\\there'"),
        ("description = 42", "42"),
        ('description = ["a", "b"]', "['a', 'b']"),
        (f'description = "{"x" * 201}"', repr("x" * 201)),
    ],
)
def test_a_bad_description_is_one_line(tmp_path: Path, line: str, shown: str) -> None:
    write(tmp_path, f"[tool.tiergate.tiers.fast]\n{line}\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(info.value) == (f"{tmp_path / 'pyproject.toml'}: [tool.tiergate.tiers.fast] "
                               f"description = {shown} is not valid: {ONE_LINE}")


def test_the_longest_description_is_200_characters(tmp_path: Path) -> None:
    write(tmp_path, f'[tool.tiergate.tiers.fast]\ndescription = "{"é" * 200}"\n')
    assert load_config(tmp_path).tiers["fast"].description == "é" * 200


def test_an_unknown_key_lists_every_key_of_the_table(tmp_path: Path) -> None:
    from tiergate.settings.config import TIER_KEYS

    write(tmp_path, '[tool.tiergate.tiers.fast]\ntimeout = "30s"\n')
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(info.value).endswith(
        "unknown key 'timeout': allowed keys are markers, paths, test-timeout, budget, grace, "
        "network, leaks, workers, memory-limit, max-processes, max-fds, sample-interval, "
        "leak-thresholds, collect-timeout, allow-no-tests, slow-after, progress-interval, "
        "max-fail, order, retries, retry-delay, retry-on, retry-kinds, flaky, history, "
        "new-test-runs, comment, description")
    assert list(TIER_KEYS) == str(info.value).rsplit("allowed keys are ", 1)[1].split(", ")


def test_every_key_of_the_table_is_a_tier_field_that_rejects_its_bad_values() -> None:
    """The table is the Tier class: each key names its field, and the values the docs show
    as rejected are rejected with the one line that names the key."""
    import dataclasses

    from tiergate.settings.config import COMMAND_LINE, TIER_KEYS, Tier, apply_overrides

    fields = [f.name for f in dataclasses.fields(Tier)]
    assert fields == ["name", *(key.field for key in TIER_KEYS.values())]
    for name, key in TIER_KEYS.items():
        assert key.doc and key.rejects, name
        for bad in key.rejects:
            with pytest.raises(ConfigError, match=rf"^--{name} .* is not valid: [^\n]+$"):
                apply_overrides(Tier(name="x"), {name: bad}, COMMAND_LINE)


def test_tiergate_run_has_an_option_for_each_key_with_a_flag() -> None:
    import argparse

    from tiergate.cli import build_parser
    from tiergate.settings.config import TIER_KEYS

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    run = commands.choices["run"]
    options = {o for action in run._actions for o in action.option_strings}
    for name, key in TIER_KEYS.items():
        assert (f"--{name}" in options) == (key.flag is not None), name
    assert "--description" not in options  # a label of the config, not something to override


def _fresh_interpreter(script: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, timeout=60)
    return done.stdout.splitlines()


def test_the_supervisor_checks_a_marker_expression_with_pytests_grammar_without_pytest() -> None:
    # `tiergate run` validates the tier's markers before pytest starts; importing pytest for it
    # was a third of the supervisor's start-up. The answers are the ones pytest gives.
    from tiergate.settings.config import marker_expression_error

    lines = _fresh_interpreter(
        "import sys\nfrom tiergate.settings.config import marker_expression_error as check\n"
        "for text in ('not (', 'a and (b or c)', 'slow(reason=1)', 'a b'):\n"
        "    print(check(text))\n"
        "print('_pytest' in sys.modules, 'pytest' in sys.modules)\n")
    assert lines[:4] == [str(marker_expression_error(text)) for text in
                         ("not (", "a and (b or c)", "slow(reason=1)", "a b")]
    assert lines[0] != "None" and lines[1] == "None" and lines[3] != "None"
    assert lines[4] == "False False"


def test_one_command_imports_only_its_own_module() -> None:
    [line] = _fresh_interpreter(
        "import sys\nfrom tiergate.cli import build_parser\nbuild_parser('run')\n"
        "print(sorted(m for m in sys.modules if m.startswith(('tiergate.cli.', 'pytest', "
        "'_pytest', 'tiergate.github'))))\n")
    assert line == "['tiergate.cli.options', 'tiergate.cli.run']", line
