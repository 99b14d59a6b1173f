"""Secrets never leave the run (issue 16): redaction at the source, the forms a secret takes on its
way to a report, short and common values, pytest's own output under the supervisor."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from supervised import make_project, results, tiergate_argv

from tiergate.errors import ConfigError
from tiergate.protocol import events as ev
from tiergate.protocol import redact
from tiergate.protocol.redact import Redactor, current, redact_secrets, weak_secret_warnings
from tiergate.settings.config import load_config
from tiergate.supervisor import outpump

TOKEN = "ghp_" + "FAKEfake0123456789abcdefghijKLMNOPqrst"  # 4 + 36
AWS = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"
API_KEY = "sk-live-4f3c2b1a09876543210fedcb"
DB_PASSWORD = "s3cretPassw0rd"
SENTRY_KEY = "0123456789abcdef0123456789abcdef"
SENTRY = f"https://{SENTRY_KEY}@o0.ingest.sentry.invalid/42"
WEBHOOK = 'whsec_a&b<c>d"e-Zq8Lm2Np'
SECRETS = {
    "GITHUB_TOKEN": TOKEN,
    "AWS_SECRET_ACCESS_KEY": AWS,
    "MY_API_KEY": API_KEY,
    "DATABASE_URL": f"postgres://app:{DB_PASSWORD}@127.0.0.1/db",
    "SENTRY_DSN": SENTRY,
    "WEBHOOK_SECRET": WEBHOOK,
    "POSTGRES_PASSWORD": "postgres",
}
STRONG = (TOKEN, AWS, API_KEY, DB_PASSWORD, SENTRY_KEY, WEBHOOK)
INTERNAL = "internal-thing-7Hq2Kx9Lm4"  # a variable no name rule knows


def _env(**extra: str) -> dict[str, str]:
    return {**SECRETS, "PWD": "/home/app", "OLDPWD": "/home", **extra}


def _red(**extra: str) -> Redactor:
    return current(_env(**extra))


def _leaks(text: str, secret: str) -> list[str]:
    """The forms and 8-character pieces of *secret* found in *text*."""
    forms = {secret, json.dumps(secret)[1:-1], json.dumps(json.dumps(secret))[1:-1],
             quote(secret), quote(secret, safe=""), quote_plus(secret)}
    pieces = {secret[i: i + 8] for i in range(len(secret) - 7)}
    return sorted(f for f in forms | pieces if f in text)


# -- what counts as a secret -------------------------------------------------------------------


def test_names_urls_and_github_values_are_secrets_but_working_directories_are_not() -> None:
    red = _red(DB_PASS="hunter2-db-pass", MYSQL_PWD="mysql-pwd-value", SESSION_ID="sess-0a9b8c7d",
               APP_COOKIE="cookie-a1b2c3d4", OAUTH_CLIENT="oauth-z9y8x7w6",
               SOME_PRIVATE="private-q1w2e3r4", XDG_SESSION_TYPE="wayland-session",
               SSH_AUTH_SOCK="/tmp/ssh-agent.sock", ACTIONS_RUNTIME_TOKEN="runtime-token-123")
    assert set(red.values) >= {*STRONG, SENTRY, "hunter2-db-pass", "mysql-pwd-value",
                               "sess-0a9b8c7d", "cookie-a1b2c3d4", "oauth-z9y8x7w6",
                               "private-q1w2e3r4", "runtime-token-123"}
    assert not {"/home/app", "/home", "wayland-session", "/tmp/ssh-agent.sock",
                f"postgres://app:{DB_PASSWORD}@127.0.0.1/db"} & set(red.values)
    assert red.weak == ("postgres",)


def test_the_user_names_more_variables_in_the_env_and_in_the_config(tmp_path: Path) -> None:
    env = {"DEPLOY_THING": "deploy-thing-value", "OTHER_THING": "other-thing-value"}
    assert current(env).values == ()
    assert set(current({**env, "TIERGATE_REDACT": "DEPLOY_THING, OTHER_THING"}).values) == {
        "deploy-thing-value", "other-thing-value"}
    (tmp_path / "pyproject.toml").write_text('[tool.tiergate]\nredact = ["DEPLOY_THING"]\n')
    try:
        assert load_config(tmp_path).redact == ("DEPLOY_THING",)
        assert current(env).values == ("deploy-thing-value",)
        assert redact.export_names({})["TIERGATE_REDACT"] == "DEPLOY_THING"
    finally:
        redact.use_names(())


@pytest.mark.parametrize("value", ['"MY_VAR"', '["my-var"]', "[1]"])
def test_a_bad_redact_list_is_one_line_that_does_not_echo_it(tmp_path: Path, value: str) -> None:
    (tmp_path / "pyproject.toml").write_text(f"[tool.tiergate]\nredact = {value}\n")
    with pytest.raises(ConfigError, match=r"\[tool.tiergate\] redact is not valid") as caught:
        load_config(tmp_path)
    assert value not in str(caught.value)


# -- the forms a secret takes ------------------------------------------------------------------


@pytest.mark.parametrize("form", [
    WEBHOOK, json.dumps(WEBHOOK), json.dumps({"k": WEBHOOK}), repr(WEBHOOK),
    repr(json.dumps(WEBHOOK)), json.dumps(repr(WEBHOOK)), quote(WEBHOOK), quote(WEBHOOK, safe=""),
    quote_plus(WEBHOOK), "&amp;".join(WEBHOOK.split("&")).replace("<", "&lt;").replace(">", "&gt;")
    .replace('"', "&quot;"), repr("it's " + AWS), json.dumps(json.dumps({"k": TOKEN})),
])
def test_every_form_on_the_way_to_a_report_is_masked(form: str) -> None:
    text = _red().text(f"before {form} after")
    assert text.startswith("before ") and text.endswith(" after")
    assert "***" in text
    for secret in STRONG:
        assert not _leaks(text, secret), text


def test_pieces_next_to_pytest_elision_or_at_a_cut_are_masked() -> None:
    red = _red()
    elided = f"assert '{TOKEN[:12]}...{TOKEN[-13:]}' == 'x'"
    assert red.text(elided) == "assert '***...***' == 'x'"
    assert red.text(TOKEN[17:] + " and more") == "*** and more"  # a tail cut
    assert red.text("the start " + TOKEN[:20]) == "the start ***"  # a head cut
    assert red.text(f"...{TOKEN[10:30]}...") == "...***..."
    # Shorter than 8, or not at an elision or an edge: a piece is only a piece.
    assert red.text(f"'{TOKEN[:7]}...'") == f"'{TOKEN[:7]}...'"
    assert red.text(f"x {TOKEN[:12]} y") == f"x {TOKEN[:12]} y"


def test_short_and_common_values_are_masked_only_where_they_are_clearly_values() -> None:
    red = _red(SECRET_KEY="test")
    text = ("POSTGRES_PASSWORD=postgres password: 'postgres' {\"SECRET_KEY\": \"test\"} "
            "postgres://postgres:postgres@127.0.0.1/db ::error file=tests/test_postgres_db.py "
            "tests/test_postgres_db.py::test_postgres_pool[test] postgres test_db")
    assert red.text(text) == (
        "POSTGRES_PASSWORD=*** password: '***' {\"SECRET_KEY\": \"***\"} "
        "postgres://***:***@127.0.0.1/db ::error file=tests/test_postgres_db.py "
        "tests/test_postgres_db.py::test_postgres_pool[test] postgres test_db")
    assert red.text("DATABASE_URL=postgres://app@db") == "DATABASE_URL=postgres://app@db"


def test_secrets_written_inline_are_masked_in_any_text() -> None:
    """A report's inline secrets (key=value, --option value) are masked in text with icons and
    accents too, and where the key word is spelled with a letter that IGNORECASE matches to an
    ASCII one; text that holds no key word comes back as it was."""
    assert redact.redact("✗ deploy --token abc123 · done") == "✗ deploy --token *** · done"
    for word in ("to\u212aen", "\u017fecret", "ap\u0130_key", "credent\u0131al"):
        assert redact.redact(f"🚀 {word}=hunter2 é") == f"🚀 {word}=*** é"
    heading = "### ✅ tiergate · tier fast: passed — 12 tests, naïve café"
    assert redact.redact(heading) == heading


def test_the_letters_that_ignorecase_matches_to_ascii_are_the_four_known() -> None:
    letter = re.compile("[a-z]", re.IGNORECASE)
    found = {chr(c) for c in range(128, 0x110000) if letter.fullmatch(chr(c))}
    assert found == set(redact._FOLDS_TO_ASCII)


def test_weak_values_are_named_once_each_never_shown() -> None:
    warnings = weak_secret_warnings(_env(SECRET_KEY="test", APP_URL="https://u:admin@h/x"))
    assert len(warnings) == 3
    assert [w.split(" is too short")[0].split()[-1] for w in warnings] == [
        "APP_URL", "POSTGRES_PASSWORD", "SECRET_KEY"]
    assert all("test" not in w and "admin" not in w and "postgres" not in w.lower().replace(
        "postgres_password", "") for w in warnings)
    assert weak_secret_warnings({"PWD": "/x", "AUTH_ENABLED": "true", "XDG_SESSION_ID": "2"}) == []


def test_a_value_with_newlines_is_masked_line_by_line_too() -> None:
    key = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n-----END"
    red = current({"DEPLOY_PRIVATE_KEY": key})
    assert red.text("line MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n") == "line ***\n"
    assert red.text(json.dumps(key)) == '"***"'


def test_no_secrets_no_change_same_object() -> None:
    red = current({"HOME": "/root", "PWD": "/x"})
    assert not red.active
    text = "nothing " * 100
    assert red.text(text) is text and red.line(text) is text
    assert _red().text(text) is text


def test_redaction_of_a_big_text_masks_every_copy() -> None:
    chunk = "word " * 2000 + f"E   assert '{TOKEN[:12]}...{TOKEN[-12:]}'\n" + "." * 500 + "\n"
    text = (chunk * 200)[: 2**21]
    out = _red().text(text)
    assert not _leaks(out, TOKEN) and out.count("***") >= 2 * text.count(TOKEN[:12]) - 2


# -- the event log -----------------------------------------------------------------------------


def test_event_lines_carry_no_secret_and_stay_json(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in _env(NPM_TOKEN="npm_0a1b2c3d4e5f6a7b8c9d").items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "events.jsonl"
    writer = ev.EventWriter(path)
    writer.emit_passed(f"tests/test_x.py::test_y[{API_KEY}]", "tests/test_postgres_db.py", 3,
                       0.1, 60.0, None)
    writer.emit(ev.TEST_FINISH, nodeid="tests/test_postgres_db.py::test_postgres_pool",
                outcome="failed", longrepr=(TOKEN + "y" * 65520)[-65536:],  # a tail cut
                message=f"E   {json.dumps({'k': WEBHOOK})}"[:12 + 10],  # a head cut
                stdout=f"line\n{TOKEN}\nPOSTGRES_PASSWORD=postgres\n\\{API_KEY}",
                stderr="\nnpm_0a1b2c3d4e5f6a7b8c9d \npm_0a1b2c3d4e5f6a7b8c9d")
    writer.emit(ev.FINDING, finding={"kind": "leak-process", "message": f"cmd {SENTRY}",
                                     "details": {"argv": [DB_PASSWORD, AWS]}})
    writer.close()
    data = path.read_text()
    records = [json.loads(line) for line in data.splitlines()]  # every line still JSON
    assert len(records) == 3
    for secret in STRONG:
        assert not _leaks(data, secret), secret
    assert "POSTGRES_PASSWORD=***" in data and "test_postgres_db.py::test_postgres_pool" in data
    assert records[0]["nodeid"] == "tests/test_x.py::test_y[***]"
    assert records[1]["longrepr"].startswith("***yyy")
    assert records[1]["stderr"] == "\n*** \npm_0a1b2c3d4e5f6a7b8c9d"  # a newline and "pm_"


def test_without_secrets_the_writer_does_not_look(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if redact.is_secret_name(name) or "://" in os.environ[name]:
            monkeypatch.delenv(name)
    writer = ev.EventWriter(tmp_path / "events.jsonl")
    assert writer._redact is None
    writer.close()


# -- pytest's output under the supervisor ------------------------------------------------------


def _pump_child(code: str, env: dict[str, str]) -> tuple[bytes, list[float]]:
    """Run *code* with its stdout through a pump into a pipe we read: what came out, and when
    (seconds after the start) each piece arrived."""
    read_end, write_end = os.pipe()
    pump = outpump.OutputPump(stdout=write_end, stderr=write_end)
    out, err = pump.open()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=out, stderr=err, env=env)
    pump.started()
    os.set_blocking(read_end, False)
    started, got, times = time.monotonic(), b"", []
    try:
        while proc.poll() is None:
            pump.wait(0.05)
            try:
                piece = os.read(read_end, 1 << 16)
            except BlockingIOError:
                continue
            got += piece
            times.append(time.monotonic() - started)
        pump.close()
        try:
            got += os.read(read_end, 1 << 20)
        except BlockingIOError:
            pass
    finally:
        proc.kill()
        proc.wait()
        os.close(read_end)
        os.close(write_end)
    return got, times


def test_the_pump_masks_streams_and_lets_a_growing_line_through(monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    for name, value in _env().items():
        monkeypatch.setenv(name, value)
    code = ("import sys, time\n"
            f"print('token', {TOKEN!r}, flush=True)\n"
            f"sys.stderr.write('half ' + {TOKEN[:20]!r}); sys.stderr.flush(); time.sleep(0.6)\n"
            f"sys.stderr.write({TOKEN[20:]!r} + ' end\\n'); sys.stderr.flush()\n"
            "sys.stdout.write('dots...'); sys.stdout.flush(); time.sleep(0.6)\n"
            "print('done', flush=True)\n")
    got, times = _pump_child(code, dict(os.environ))
    text = got.decode()
    assert not _leaks(text, TOKEN), text
    assert "token ***\n" in text and "half ***" in text and "*** end\n" in text
    assert "dots...done\n" in text
    assert len(times) >= 3  # the incomplete lines came out while the child still ran


def test_closing_the_pump_does_not_wait_for_a_child_that_holds_the_pipe() -> None:
    code = ("import os, subprocess, sys\n"
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])\n"
            "print('bye')\n")
    started = time.monotonic()
    got, _ = _pump_child(code, {**os.environ, "TIERGATE_REDACT": ""})
    assert b"bye\n" in got and time.monotonic() - started < 10


@pytest.mark.parametrize("holder", [True, False], ids=["pipe-held-by-a-child", "pipe-closed"])
def test_the_pump_wait_ends_when_the_child_ends(holder: bool) -> None:
    # The supervisor's pause between two looks ends when pytest does (its pidfd), not at the
    # end of the pause: with a child of pytest's still holding the pipes, or with none.
    keep = ("import subprocess, sys\n"
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            if holder else "")
    pump = outpump.OutputPump(stdout=os.open(os.devnull, os.O_WRONLY),
                              stderr=os.open(os.devnull, os.O_WRONLY))
    out, err = pump.open()
    proc = subprocess.Popen([sys.executable, "-c", keep + "print('bye')"], stdout=out,
                            stderr=err, start_new_session=True)
    pump.started()
    exit_fd = os.pidfd_open(proc.pid)
    try:
        started = time.monotonic()
        while proc.poll() is None and time.monotonic() - started < 60:
            pump.wait(60, until=exit_fd)
        assert proc.returncode == 0
        assert time.monotonic() - started < 30  # not one whole pause of 60 s
    finally:
        os.close(exit_fd)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the holder, in the child's session
        proc.wait()
        pump.close()


def test_the_switch_off() -> None:
    assert outpump.enabled({})
    assert not outpump.enabled({"TIERGATE_REDACT_OUTPUT": "0"})


# -- end to end --------------------------------------------------------------------------------

SUITE = """
import json, os, subprocess, sys, time, urllib.parse
import pytest

NAMES = ("GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "MY_API_KEY", "DATABASE_URL", "SENTRY_DSN",
         "WEBHOOK_SECRET", "POSTGRES_PASSWORD", "INTERNAL_THING")


def test_postgres_pool():
    for name in NAMES:
        value = os.environ[name]
        print(f"{name}={value}", json.dumps({name: value}), repr(value))
        print(urllib.parse.quote(value), urllib.parse.quote_plus(value))
        sys.stderr.write(f"{name}: {value}\\n")
    print(json.dumps(dict(os.environ)))
    assert os.environ["GITHUB_TOKEN"] == "ghp_" + "x" * 36


def test_raises():
    raise RuntimeError(f"cannot connect to {os.environ['DATABASE_URL']} as "
                       f"{os.environ['WEBHOOK_SECRET']!r} with {os.environ['SENTRY_DSN']}")


@pytest.mark.parametrize("key", [os.environ["MY_API_KEY"]])
def test_param(key):
    assert key == os.environ["AWS_SECRET_ACCESS_KEY"]


def test_cut():
    print(os.environ["GITHUB_TOKEN"] + "y" * (65536 - 20))
    assert False


def test_leaks_a_child():
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                      "--token", os.environ["GITHUB_TOKEN"], os.environ["SENTRY_DSN"]])
    time.sleep(0.2)
"""


def test_no_secret_leaves_a_run(tmp_path: Path) -> None:
    project = make_project(tmp_path / "app", {"test_postgres_db.py": SUITE},
                           '[tool.tiergate]\nredact = ["INTERNAL_THING"]\n')
    env = {k: v for k, v in os.environ.items() if not redact.is_secret_name(k)}
    proc = subprocess.run(tiergate_argv("run", "--tier", "fast"), cwd=project, capture_output=True,
                          text=True, timeout=240, check=False,
                          env={**env, **SECRETS, "INTERNAL_THING": INTERNAL})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    files = {p: p.read_text(errors="replace") for p in results(project).rglob("*")
             if p.is_file()}
    assert {"events.jsonl", "junit.xml", "findings.json", "summary.md"} <= {p.name for p in files}
    outputs = {"stdout": proc.stdout, "stderr": proc.stderr}
    for where, text in [*((str(p), t) for p, t in files.items()), *outputs.items()]:
        for secret in (*STRONG, INTERNAL):  # INTERNAL: named by the config's `redact`
            assert not _leaks(text, secret), (where, secret, _leaks(text, secret))
        assert "POSTGRES_PASSWORD=postgres" not in text, where
        assert '"POSTGRES_PASSWORD": "postgres"' not in text, where
    junit = files[results(project) / "junit.xml"]
    assert 'name="test_postgres_pool"' in junit and "test_postgres_db" in junit
    assert "test_postgres_db.py::test_postgres_pool" in proc.stdout
    assert "POSTGRES_PASSWORD=***" in proc.stdout  # the captured output pytest showed
    assert "GITHUB_TOKEN=***" in proc.stdout
    warnings = [line for line in proc.stdout.splitlines() if "too short or too common" in line]
    assert len(warnings) == 1 and "POSTGRES_PASSWORD" in warnings[0], proc.stdout
    findings = json.loads(files[results(project) / "findings.json"])
    leak = [f for f in findings["findings"] if f["kind"] == "leak-process"]
    assert leak and "--token ***" in leak[0]["message"], findings["findings"]
    assert "test_param[***]" in junit
    assert redact_secrets(TOKEN, SECRETS) == "***"


def test_on_a_terminal_pytest_keeps_its_colours_and_still_shows_no_secret(tmp_path: Path) -> None:
    import pty
    import select

    project = make_project(tmp_path / "app", {"test_one.py": """
        import os
        def test_prints_the_token():
            print(os.environ["GITHUB_TOKEN"])
            assert os.environ["GITHUB_TOKEN"] == "x"
    """})
    main, secondary = pty.openpty()
    proc = subprocess.Popen(tiergate_argv("run", "--tier", "fast"), cwd=project,
                            stdin=subprocess.DEVNULL, stdout=secondary, stderr=secondary,
                            env={**os.environ, **SECRETS})
    os.close(secondary)
    out, deadline = b"", time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if not select.select([main], [], [], 1.0)[0]:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(main, 1 << 16)
            except OSError:  # EIO: every holder of the terminal is gone
                break
            if not chunk:
                break
            out += chunk
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        os.close(main)
    text = out.decode(errors="replace")
    assert proc.returncode == 1, text
    assert "\x1b[" in text and "test_one.py" in text  # pytest's own colours
    assert not _leaks(text, TOKEN), text


def test_the_switch_leaves_pytest_output_alone_but_not_the_results(tmp_path: Path) -> None:
    project = make_project(tmp_path / "app", {"test_one.py": """
        import os
        def test_prints_the_token():
            print(os.environ["GITHUB_TOKEN"])
            assert False
    """})
    proc = subprocess.run(tiergate_argv("run", "--tier", "fast"), cwd=project, capture_output=True,
                          text=True, timeout=240, check=False,
                          env={**os.environ, **SECRETS, "TIERGATE_REDACT_OUTPUT": "0"})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert TOKEN in proc.stdout  # pytest's own output, as it was
    assert TOKEN not in (results(project) / "events.jsonl").read_text()
    assert TOKEN not in (results(project) / "junit.xml").read_text()


# -- a node id holding a secret --------------------------------------------------------------

KILLED_BEFORE_SECRET_IDS = """
import os, signal
import pytest

def test_a_kills_pytest_once():
    if not os.path.exists("killed-once"):
        open("killed-once", "w").close()
        os.kill(os.getpid(), signal.SIGKILL)

@pytest.mark.parametrize("key", [os.environ["MY_API_KEY"], os.environ["AWS_SECRET_ACCESS_KEY"],
                                 "plain"])
def test_b_param(key):
    pass
"""


def test_a_resume_runs_the_tests_whose_ids_hold_secrets(tmp_path: Path) -> None:
    # Their ids reach the log as test_b_param[***]: the attempt after the kill must still
    # select them, both of them, though the log cannot tell them apart.
    project = make_project(tmp_path / "app", {"test_resume.py": KILLED_BEFORE_SECRET_IDS})
    proc = subprocess.run(tiergate_argv("run", "--tier", "fast"), cwd=project, capture_output=True,
                          text=True, timeout=240, check=False, env={**os.environ, **SECRETS})
    assert "resuming with the" in proc.stdout, proc.stdout + proc.stderr
    finished = [e for e in _events(project) if e["event"] == ev.TEST_FINISH]
    ran = sorted(e["nodeid"] for e in finished if "test_b_param" in e["nodeid"])
    assert ran == ["test_resume.py::test_b_param[***]"] * 2 + [
        "test_resume.py::test_b_param[plain]"], proc.stdout
    data = json.loads((results(project) / "findings.json").read_text())
    assert data["counts"]["failed"] == 1 and not data["counts"].get("not_run"), data["counts"]
    assert not _leaks(proc.stdout + (results(project) / "events.jsonl").read_text(), API_KEY)


def _events(project: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (results(project) / "events.jsonl").read_text()
            .splitlines() if line.strip()]


# -- the supervisor's own findings -------------------------------------------------------------


def test_the_supervisors_own_findings_pass_the_same_redaction(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A finding the supervisor makes in memory (an internal error, here with a secret in its
    # text) goes into findings.json, junit.xml and its terminal line without the event writer.
    import io

    from tiergate.supervisor.supervise import RunPlan, Supervisor

    project = make_project(tmp_path / "app", {"test_one.py": "def test_a():\n    pass\n"})
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)

    def broken(self: Supervisor) -> None:
        raise RuntimeError(f"cannot reach {os.environ['DATABASE_URL']} with {TOKEN!r}")

    monkeypatch.setattr(Supervisor, "_note_slow_tests", broken)
    out = io.StringIO()
    tier = load_config(project).tier("fast")
    code = Supervisor(RunPlan(tier=tier, results_dir=results(project), root=project),
                      out=out).run()
    assert code == 1, out.getvalue()
    data = json.loads((results(project) / "findings.json").read_text())
    (error,) = [f for f in data["findings"] if f["kind"] == "run-error"]
    assert error["message"].startswith("the run was stopped: internal error: RuntimeError")
    texts = {p.name: p.read_text() for p in results(project).rglob("*") if p.is_file()}
    for where, text in {**texts, "stdout": out.getvalue()}.items():
        for secret in (TOKEN, DB_PASSWORD):
            assert not _leaks(text, secret), (where, _leaks(text, secret))


def test_the_pump_gathers_a_stream_of_dots_into_few_reads(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    # pytest writes a dot per test: a read (and a wake-up of the supervisor) per dot cost as much
    # per test as the plugin itself. 300 dots over ~0.3 s come out whole, in a few dozen reads.
    reads = []
    real_read = os.read

    def counting_read(fd: int, size: int) -> bytes:
        reads.append(fd)
        return real_read(fd, size)

    monkeypatch.setattr(outpump.os, "read", counting_read)
    code = ("import sys, time\n"
            "for _ in range(300):\n"
            "    sys.stdout.write('.'); sys.stdout.flush(); time.sleep(0.001)\n"
            "print(flush=True)\n")
    got, _ = _pump_child(code, {**os.environ, "TIERGATE_REDACT": ""})
    assert got.count(b".") == 300
    assert len(reads) < 100, len(reads)
