"""Issue 16, done when, tried as a new user would: a CI environment full of secrets, a suite that
prints them, asserts on them, raises with them, uses one as a parametrize id, puts them on child
command lines and hangs once; then `tiergate run`, `tiergate report` and `tiergate post` (to the
local GitHub API stand-in) as the action calls them. No secret, no 8-character piece of one, and
no escaped form of either may reach any file of the results dir, any request GitHub gets, the step
summary, the step outputs or the step log (every byte the three commands printed)."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

from ghapi import GhApi
from supervised import make_project, results, tiergate_argv

TOKEN = "ghp_" + "R8mK2xW9qL4vN7pT3yB6cH1jF5gD0sAzXeUo"  # 4 + 36, as GitHub makes them
AWS = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"
API_KEY = "sk-live-Qm8Rv2Tx6Wz0Yb4Nc7Hd"
DB_PASSWORD = "pa55w0rdXYZ"
SENTRY_KEY = "Zq7wK2mX9pL4vN8rT3yB6cH1jF5gD0sA"
WEBHOOK = 'whsec_Kp9&Lm2<Nq4>Rs6"Tv8Xz'
SECRETS = {
    "GITHUB_TOKEN": TOKEN,
    "AWS_SECRET_ACCESS_KEY": AWS,
    "MY_API_KEY": API_KEY,
    "DATABASE_URL": f"postgres://u:{DB_PASSWORD}@127.0.0.1/db",
    "SENTRY_DSN": f"https://{SENTRY_KEY}@o1.ingest.sentry.invalid/7",
    "WEBHOOK_SECRET": WEBHOOK,
    "POSTGRES_PASSWORD": "postgres",  # too common to mask inside words: never in ids or paths
}
STRONG = (TOKEN, AWS, API_KEY, DB_PASSWORD, SENTRY_KEY, WEBHOOK)
HEAD = "d" * 40

CONFTEST = """
import os

def pytest_configure(config):
    # Straight to the terminal, past pytest's capture: the step log.
    print("configured for", os.environ["MY_API_KEY"], repr(os.environ["WEBHOOK_SECRET"]))
"""

SUITE = """
import json, os, subprocess, sys, time, urllib.parse
import pytest

NAMES = ("GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "MY_API_KEY", "DATABASE_URL", "SENTRY_DSN",
         "WEBHOOK_SECRET", "POSTGRES_PASSWORD")


def test_postgres_pool():
    for name in NAMES:
        value = os.environ[name]
        print(f"{name}={value}", json.dumps({name: value}), repr(value), ascii(value))
        print(urllib.parse.quote(value), urllib.parse.quote_plus(value))
        sys.stderr.write(f"{name}: {value}\\n")
    print(json.dumps(dict(os.environ)))
    assert os.environ["GITHUB_TOKEN"] == "ghp_" + "x" * 36  # pytest's elided repr


def test_raises():
    raise RuntimeError(f"cannot connect to {os.environ['DATABASE_URL']} as "
                       f"{os.environ['WEBHOOK_SECRET']!r} with {os.environ['SENTRY_DSN']}")


@pytest.mark.parametrize("key", [os.environ["MY_API_KEY"]])
def test_param(key):
    assert key == os.environ["AWS_SECRET_ACCESS_KEY"]


def test_leaks_a_child():
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                      "--token", os.environ["GITHUB_TOKEN"], os.environ["SENTRY_DSN"]])
    time.sleep(0.2)


def test_hangs_once_on_a_child():
    # The dump shows the whole process tree, command lines included.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                              "--aws", os.environ["AWS_SECRET_ACCESS_KEY"],
                              "--hook", os.environ["WEBHOOK_SECRET"]])
    try:
        child.wait()
    finally:
        child.kill()
        child.wait()
"""


def _encodings() -> list[Callable[[str], str]]:
    def json_text(s: str) -> str:
        return json.dumps(s)[1:-1]

    def json_utf8(s: str) -> str:
        return json.dumps(s, ensure_ascii=False)[1:-1]

    return [
        lambda s: s, json_text, json_utf8, lambda s: json_text(json_text(s)),
        lambda s: repr(s)[1:-1], lambda s: json_text(repr(s)[1:-1]),
        lambda s: quote(s), lambda s: quote(s, safe=""), lambda s: quote_plus(s),
        lambda s: html.escape(s), lambda s: html.escape(s, quote=False),
        lambda s: json_text(html.escape(s)),
    ]


ENCODINGS = _encodings()


def _pieces(secret: str) -> set[str]:
    """The secret and every 8-character piece of it, in every form it takes on its way out."""
    raw = {secret} | {secret[i: i + 8] for i in range(len(secret) - 7)}
    return {encode(piece) for piece in raw for encode in ENCODINGS}


FORBIDDEN = {secret: _pieces(secret) for secret in STRONG}


def _leaks(text: str) -> list[str]:
    return sorted({piece for pieces in FORBIDDEN.values() for piece in pieces if piece in text})


def _strings(value: Any) -> Iterator[str]:
    """Every string of a decoded JSON body, keys too."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _ci_env(tmp_path: Path, api: GhApi) -> dict[str, str]:
    """This machine's environment without our own run's CI variables, plus a pull request's."""
    own = ("GITHUB_", "TIERGATE_", "PYTEST_", "RUNNER_", "ACTIONS_")
    base = {k: v for k, v in os.environ.items() if not k.startswith(own)}
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {
        "number": 7, "head": {"sha": HEAD}, "base": {"sha": "e" * 40}}}))
    return {
        **base, **SECRETS,
        "GITHUB_ACTIONS": "true", "GITHUB_API_URL": api.url, "GITHUB_REPOSITORY": "octo/app",
        "GITHUB_SHA": HEAD, "GITHUB_EVENT_PATH": str(event), "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_SERVER_URL": "https://github.com", "GITHUB_RUN_ID": "42",
        "GITHUB_WORKSPACE": str(tmp_path / "app"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "step-summary.md"),
        "GITHUB_OUTPUT": str(tmp_path / "step-output.txt"),
    }


def _run(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(tiergate_argv(*args), cwd=project, capture_output=True, text=True,
                          timeout=120, check=False, env=env)


def test_no_secret_leaves_run_report_or_post(tmp_path: Path, ghapi: GhApi) -> None:
    project = make_project(tmp_path / "app", {"conftest.py": CONFTEST,
                                              "test_postgres_db.py": SUITE})
    env = _ci_env(tmp_path, ghapi)
    where = ("--tier", "fast", "--results-dir", str(results(project)))
    run = _run(project, env, "run", *where, "--test-timeout", "2s")
    report = _run(project, env, "report", *where)
    post = _run(project, env, "post", *where)
    assert run.returncode == 1, run.stdout + run.stderr
    assert report.returncode == 1, report.stdout + report.stderr
    assert post.returncode == 0, post.stdout + post.stderr

    texts = {str(p): p.read_text(errors="replace") for p in results(project).rglob("*")
             if p.is_file()}
    dumps = [p for p in texts if "/dumps/" in p]
    assert dumps, "the hang left a dump"
    writes = ghapi.writes()
    assert {"comments", "check-runs"} <= {r["path"].rsplit("/", 2)[-1] for r in writes} | {
        r["path"].rsplit("/", 1)[-1] for r in writes}, [r["path"] for r in writes]
    texts |= {f"{r['method']} {r['path']} #{n}": "\n".join(_strings(r["body"]))
              for n, r in enumerate(ghapi.requests)}
    for name in ("step-summary.md", "step-output.txt"):
        texts[name] = (tmp_path / name).read_text()
    for command, proc in (("run", run), ("report", report), ("post", post)):
        texts[f"{command} stdout"], texts[f"{command} stderr"] = proc.stdout, proc.stderr
    for place, text in texts.items():
        assert not _leaks(text), (place, _leaks(text))
        assert "POSTGRES_PASSWORD=postgres" not in text, place
        assert '"POSTGRES_PASSWORD": "postgres"' not in text, place

    # The common value masks no word: node ids, paths and annotations keep "postgres".
    res = results(project)
    assert "test_postgres_db.py::test_hangs_once_on_a_child" in texts[str(res / "findings.json")]
    assert 'classname="test_postgres_db"' in texts[str(res / "junit.xml")]
    assert "test_param[***]" in texts[str(res / "junit.xml")]
    assert re.search(r"^::error .*file=test_postgres_db\.py,line=\d+::", report.stdout, re.M), \
        report.stdout
    (check,) = ghapi.state.check_runs.values()
    paths = {a["path"] for a in check["output"].get("annotations") or []}
    assert "test_postgres_db.py" in paths and not any("***" in p for p in paths), paths
    # ...and the run names the variable once, never its value.
    warned = [line for line in run.stdout.splitlines() if "too short or too common" in line]
    assert len(warned) == 1 and "POSTGRES_PASSWORD" in warned[0], run.stdout
