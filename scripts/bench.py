"""Every figure tiergate claims, measured side by side on this machine; one Markdown table.

    python scripts/bench [--quick] [--output docs/benchmarks.md]

Figures (issue 7): plugin overhead on a generated suite of trivial tests against bare pytest and
the single-purpose plugins; time from a hanging test's start to its finding, and whether the run
went on and kept its JUnit, against pytest-timeout and pytest's faulthandler_timeout; process-tree
dump time; report time and memory on big JUnit files; budget overshoot; the supervisor's fixed cost.

Method: configurations are interleaved in rounds (the order rotates every round) and each figure is
the median; ratios are taken within a round. CPU time (getrusage of the children) sits next to wall
time because CPU time is the steadier figure on a shared machine. Before measuring, the package is
byte-compiled and every child runs without PYTHONDONTWRITEBYTECODE, so an editable install pays
the same import cost as an installed one. Every process started here is stopped by its pid.

A full run writes the table to docs/benchmarks.md; ``--quick`` (fewer tests and repetitions, a
smoke test) only prints unless ``--output`` is given. Not a test: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent
PACKAGE = REPO / "src" / "tiergate"
DEFAULT_OUTPUT = REPO / "docs" / "benchmarks.md"
PY = sys.executable
TAG_ENV = "TIERGATE_BENCH_TAG"  # marks every process this script starts, to find leftovers
TAG = uuid.uuid4().hex

# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------

HEADER = ("area", "what", "wall", "CPU", "details", "goal")


@dataclass
class Row:
    area: str
    what: str
    wall: str = ""
    cpu: str = ""
    details: str = ""
    goal: str = ""

    def cells(self) -> tuple[str, ...]:
        return (self.area, self.what, self.wall, self.cpu, self.details, self.goal)


def md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_table(rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|---|---|--:|--:|---|---|"]
    lines += ["| " + " | ".join(md_cell(c) for c in row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def verdict(value: float | None, limit: float, goal: str) -> str:
    """``goal`` with ✅ when *value* is within *limit*, ❌ when not, ❔ when there is no value."""
    if value is None:
        return f"❔ {goal}"
    return f"{'✅' if value <= limit else '❌'} {goal}"


def seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} s"


def median(values: Iterable[float]) -> float | None:
    values = list(values)
    return statistics.median(values) if values else None


# --------------------------------------------------------------------------------------------
# Processes: run with a deadline, stop by pid, never leave one behind
# --------------------------------------------------------------------------------------------


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update({TAG_ENV: TAG, "PYTHONUNBUFFERED": "1"}, **extra)
    return env


def kill_leftovers() -> list[int]:
    """Kill, by pid, every process still carrying this run's tag (started here or by a child)."""
    import psutil

    killed = []
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == os.getpid():
            continue
        try:
            if proc.environ().get(TAG_ENV) == TAG:
                proc.kill()
                killed.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return killed


@dataclass
class Ran:
    code: int | None  # None: killed at the outer deadline
    wall: float
    cpu: float
    started: float  # time.time() at start
    lines: list[tuple[float, str]] = field(default_factory=list)  # (time.time(), line)

    @property
    def output(self) -> str:
        return "\n".join(line for _, line in self.lines)


def run(argv: Sequence[str], *, cwd: Path, deadline: float, env: dict[str, str] | None = None,
        keep_output: bool = False) -> Ran:
    """Run *argv* in a new session; kill its group (and tagged leftovers) at *deadline* seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started, began = time.time(), time.perf_counter()
    proc = subprocess.Popen(list(argv), cwd=cwd, env=env or child_env(),
                            stdout=subprocess.PIPE if keep_output else subprocess.DEVNULL,
                            stderr=subprocess.STDOUT if keep_output else subprocess.DEVNULL,
                            text=True, errors="replace", start_new_session=True)
    lines: list[tuple[float, str]] = []
    reader = None
    if keep_output:
        assert proc.stdout is not None
        stream = proc.stdout

        def read() -> None:
            for line in stream:
                lines.append((time.time(), line.rstrip("\n")))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
    code: int | None
    try:
        code = proc.wait(timeout=deadline)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the session we started, by its leader's pid
        proc.wait()
        code = None
    wall = time.perf_counter() - began
    kill_leftovers()
    if reader is not None:
        reader.join(5)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Ran(code, wall, cpu, started, lines)


def load_script(name: str) -> ModuleType:
    """One of the other benchmark scripts in scripts/, imported to reuse its functions."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", SCRIPTS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------------------------
# The machine
# --------------------------------------------------------------------------------------------

PLUGINS = {  # pytest11 entry-point name -> distribution
    "tiergate": "tiergate",
    "timeout": "pytest-timeout",
    "xdist": "pytest-xdist",
    "socket": "pytest-socket",
    "threadleak": "pytest-threadleak",
    "memray": "pytest-memray",
    "rerunfailures": "pytest-rerunfailures",  # in the test extra: in no row
}


def version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    cores = len(os.sched_getaffinity(0))
    versions = ", ".join(f"{dist} {version(dist) or 'not installed'}"
                         for dist in ("pytest", *PLUGINS.values(), "py-spy", "psutil"))
    return (f"{cpu}, {cores} cores usable (of {os.cpu_count()}), {memory} RAM; "
            f"{platform.system()} {platform.release()}; Python {platform.python_version()} "
            f"({sys.executable}); {versions}")


def prepare() -> None:
    """Byte-compile tiergate and let children write bytecode: an editable install otherwise
    recompiles the package in every process when PYTHONDONTWRITEBYTECODE is set."""
    subprocess.run([PY, "-m", "compileall", "-q", str(PACKAGE)], check=True,
                   env=child_env())
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # for the scripts reused in-process too


# --------------------------------------------------------------------------------------------
# 1. Overhead on a suite of trivial tests
# --------------------------------------------------------------------------------------------


def without_plugins(*keep: str) -> list[str]:
    """``-p no:X`` for every optional plugin not in *keep*, so each row loads only its own."""
    out = []
    for name in (*PLUGINS, "xdist.looponfail"):
        if name not in keep and not (name == "xdist.looponfail" and "xdist" in keep):
            out += ["-p", f"no:{name}"]
    return out


def overhead_configs(root: Path, results: Path) -> dict[str, tuple[list[str], str | None]]:
    """row name -> (argv, distribution it needs, or None)."""
    pytest = [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    return {
        "bare pytest": (pytest + without_plugins(), None),
        "`pytest --tier fast` (all probes)": (
            pytest + without_plugins("tiergate", "timeout")
            + ["--tier", "fast", "--tiergate-results-dir", str(results / "plugin")], "tiergate"),
        "`tiergate run --tier fast`": (
            [PY, "-m", "tiergate", "run", "--tier", "fast", "--project", str(root),
             "--results-dir", str(results / "run"), "--", "-q", "-p", "no:cacheprovider",
             *without_plugins("tiergate", "timeout")], "tiergate"),
        "pytest-timeout, signal": (
            pytest + without_plugins("timeout") + ["--timeout", "60", "--timeout-method",
                                                   "signal"], "pytest-timeout"),
        "pytest-timeout, thread": (
            pytest + without_plugins("timeout") + ["--timeout", "60", "--timeout-method",
                                                   "thread"], "pytest-timeout"),
        "pytest-socket (`--disable-socket`)": (
            pytest + without_plugins("socket") + ["--disable-socket"], "pytest-socket"),
        "pytest-threadleak (`--threadleak`)": (
            pytest + without_plugins("threadleak") + ["--threadleak"], "pytest-threadleak"),
        "pytest-memray (`--memray`)": (
            pytest + without_plugins("memray") + ["--memray"], "pytest-memray"),
    }


@dataclass
class Overhead:
    tests: int
    rounds: int
    # row -> list of (wall, cpu) per round, aligned with "bare pytest"; None: not installed
    samples: dict[str, list[tuple[float, float]] | None]
    failures: dict[str, str] = field(default_factory=dict)


def bench_overhead(tests: int, rounds: int, slow_rounds: int) -> Overhead:
    with tempfile.TemporaryDirectory(prefix="tiergate-bench-overhead-") as tmp:
        root = Path(tmp) / "suite"
        root.mkdir()
        load_script("bench_overhead").generate(root, tests, probes_conftest=False)
        configs = overhead_configs(root, Path(tmp) / "results")
        samples: dict[str, list[tuple[float, float]] | None] = {}
        failures: dict[str, str] = {}
        active = []
        for name, (_, dist) in configs.items():
            if dist is not None and version(dist) is None:
                samples[name] = None
            else:
                samples[name] = []
                active.append(name)
        for name in active:  # warm-up: file cache, bytecode, pytest's rewritten test modules
            ran = run(configs[name][0], cwd=root, deadline=600)
            if ran.code != 0:
                failures[name] = f"exit {ran.code}"
        for index in range(rounds):
            shift = index % len(active)
            for name in active[shift:] + active[:shift]:
                slow = "memray" in name
                if name in failures or (slow and index >= slow_rounds):
                    continue
                ran = run(configs[name][0], cwd=root, deadline=600)
                series = samples[name]
                assert series is not None
                series.append((ran.wall, ran.cpu))
        return Overhead(tests, rounds, samples, failures)


def overhead_rows(result: Overhead) -> list[Row]:
    area = f"overhead, {result.tests:,} trivial tests"
    bare = result.samples.get("bare pytest") or []
    rows = []
    for name, series in result.samples.items():
        if series is None:
            rows.append(Row(area, name, details="not installed"))
            continue
        if name in result.failures:
            rows.append(Row(area, name, details=f"did not pass cleanly ({result.failures[name]})"))
            continue
        pairs = list(zip(bare, series, strict=False))
        wall_ratio = median(s[0] / b[0] for b, s in pairs)
        cpu_ratio = median(s[1] / b[1] for b, s in pairs)
        wall = median(s[0] for s in series)
        cpu = median(s[1] for s in series)
        ratio = "" if name == "bare pytest" or wall_ratio is None else \
            f"{wall_ratio:.3f}x wall, {cpu_ratio:.3f}x CPU; "
        goal = ""
        if name.startswith("`pytest --tier"):
            goal = verdict(wall_ratio, 1.05, "≤ 1.05x bare (wall)")
        rows.append(Row(area, name, seconds(wall), seconds(cpu),
                        f"{ratio}median of {len(series)} rounds", goal))
    return rows


# --------------------------------------------------------------------------------------------
# 2. Hangs: time from the test's start to its finding, and what is left afterwards
# --------------------------------------------------------------------------------------------

SCENARIOS = {
    # name -> (test body, the function that is stuck: a dump that names it explains the hang)
    "recv on a silent loopback peer": ('''
import socket

def wait_for_reply(sock):
    return sock.recv(1)

def test_hangs():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    client = socket.create_connection(server.getsockname())
    try:
        wait_for_reply(client)
    finally:
        client.close()
        server.close()
''', "wait_for_reply"),
    "lock-order deadlock (2 threads)": ('''
import threading
import time

A, B = threading.Lock(), threading.Lock()

def take_both(first, second):
    with first:
        time.sleep(0.2)
        with second:
            pass

def test_hangs():
    one = threading.Thread(target=take_both, args=(A, B), daemon=True)
    two = threading.Thread(target=take_both, args=(B, A), daemon=True)
    one.start(); two.start()
    one.join(); two.join()
''', "take_both"),
    "child process deadlocked on its own lock": ('''
import subprocess
import sys

CHILD = """
import threading

def child_takes_its_lock_twice():
    lock = threading.Lock()
    lock.acquire()
    lock.acquire()

child_takes_its_lock_twice()
"""

def test_hangs():
    child = subprocess.Popen([sys.executable, "-c", CHILD])
    try:
        child.wait()
    finally:
        child.kill()
        child.wait()
''', "child_takes_its_lock_twice"),
    "GIL held in C: `sum(range(10**13))`": ('''
def add_up_forever():
    return sum(range(10**13))

def test_hangs():
    add_up_forever()
''', "add_up_forever"),
    "asyncio: awaits a future nobody completes": ('''
import asyncio

async def wait_for_reply():
    return await asyncio.get_running_loop().create_future()

def test_hangs():
    asyncio.run(wait_for_reply())
''', "wait_for_reply"),
    "spawn child blocked in `Queue.get`": ('''
import multiprocessing

def consume(queue):
    return queue.get()

def test_hangs():
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()  # kept: the child opens its semaphore after start() returns
    child = ctx.Process(target=consume, args=(queue,))
    child.start()
    try:
        child.join()
    finally:
        child.kill()
''', "consume"),
    "import deadlock (2 threads, 2 modules)": ('''
from pathlib import Path

# dl_a's import waits for a thread whose import of dl_b waits for dl_a's import lock
DL_A = """
import threading

def warm_up():
    import dl_b

warmer = threading.Thread(target=warm_up, daemon=True)
warmer.start()
warmer.join()
CONFIG = {}
"""

def test_hangs():
    here = Path(__file__).parent
    (here / "dl_a.py").write_text(DL_A)
    (here / "dl_b.py").write_text("from dl_a import CONFIG\\n")
    import dl_a  # noqa: F401
''', "import deadlock"),  # named: the cycle, in words; every tool shows both stacks
}

PASSING = "\n\ndef test_passes():\n    assert True\n"

# Records, for the tools that write no event log, when each test starts and how it ended.
MARKS_CONFTEST = '''
import os
import time

import pytest

def _mark(*words):
    with open(os.environ["BENCH_MARKS"], "a") as out:
        out.write(" ".join(map(str, words)) + "\\n")

@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    _mark("start", item.nodeid, time.time())

def pytest_runtest_logreport(report):
    if report.failed or report.when == "call":
        _mark("report", report.nodeid, report.when, report.outcome, time.time())
'''

HANG_TOOLS = ("tiergate", "pytest-timeout, signal", "pytest-timeout, thread",
              "faulthandler_timeout")
HANG_NODE = "test_hang.py::test_hangs"
PASS_NODE = "test_hang.py::test_passes"


@dataclass
class Hang:
    to_finding: float | None  # seconds from the hanging test's start to the tool saying so
    continued: bool  # the passing test after it ran and passed
    junit: bool  # a JUnit file exists, parses, and holds both tests
    named: bool  # the output or dump names the stuck function
    total: float  # wall time of the whole run
    killed: bool  # the benchmark had to kill it at its outer deadline


def hang_argv(tool: str, project: Path, results: Path, timeout: float, grace: float) -> list[str]:
    junit = ["--junitxml", str(results / "junit.xml"), "-p", "no:cacheprovider"]
    if tool == "tiergate":
        return [PY, "-m", "tiergate", "run", "--tier", "fast", "--project", str(project),
                "--results-dir", str(results), "--test-timeout", f"{timeout:g}s",
                "--grace", f"{grace:g}s", "--budget", "10m"]
    if tool.startswith("pytest-timeout"):
        method = tool.split(", ")[1]
        return [PY, "-m", "pytest", "-p", "no:tiergate", *junit, "--timeout", f"{timeout:g}",
                "--timeout-method", method]
    return [PY, "-m", "pytest", "-p", "no:tiergate", "-p", "no:timeout", *junit,
            "-o", f"faulthandler_timeout={timeout:g}"]


def junit_outcomes(path: Path) -> dict[str, str] | None:
    try:
        tree = ET.parse(path)
    except (OSError, ET.ParseError):
        return None
    out = {}
    for case in tree.iter("testcase"):
        kinds = {child.tag for child in case}
        outcome = next((k for k in ("failure", "error", "skipped") if k in kinds), "passed")
        out[case.get("name", "")] = outcome
    return out


def read_hang(tool: str, ran: Ran, results: Path, marks: Path, stuck: str) -> Hang:
    outcomes = junit_outcomes(results / "junit.xml")
    junit = outcomes is not None and {"test_hangs", "test_passes"} <= set(outcomes)
    if tool == "tiergate":
        events = [json.loads(line) for line in (results / "events.jsonl").read_text().splitlines()
                  if line.endswith("}")] if (results / "events.jsonl").exists() else []
        start = next((e["t"] for e in events if e["event"] == "test-start"
                      and e.get("nodeid") == HANG_NODE), None)
        found = next((e["t"] for e in events if e["event"] == "finding"
                      and e["finding"].get("test") == HANG_NODE
                      and e["finding"].get("kind") == "timeout"), None)
        continued = bool(outcomes and outcomes.get("test_passes") == "passed")
        dumps = "".join(p.read_text(errors="replace") for p in (results / "dumps").glob("*.txt")) \
            if (results / "dumps").is_dir() else ""
        findings = (results / "findings.json").read_text() if junit else ""
        named = stuck in dumps or stuck in findings
    else:
        marked = marks.read_text().splitlines() if marks.exists() else []
        start = next((float(m.split()[2]) for m in marked if m.startswith(f"start {HANG_NODE}")),
                     None)
        reported = [float(m.split()[-1]) for m in marked
                    if m.startswith(f"report {HANG_NODE}") and " failed " in m]
        banner = [t for t, line in ran.lines if "Timeout" in line and start and t >= start]
        found = min(reported + banner) if reported or banner else None
        continued = any(m.startswith(f"report {PASS_NODE} call passed") for m in marked)
        named = stuck in ran.output
    to_finding = found - start if found is not None and start is not None else None
    return Hang(to_finding, continued, junit, named, ran.wall, ran.code is None)


def bench_hangs(repeat: int, timeout: float, grace: float, outer: float) -> dict[
        tuple[str, str], list[Hang]]:
    out: dict[tuple[str, str], list[Hang]] = {}
    with tempfile.TemporaryDirectory(prefix="tiergate-bench-hang-") as tmp:
        for scenario, (body, stuck) in SCENARIOS.items():
            for tool in HANG_TOOLS:
                if tool != "faulthandler_timeout" and version(
                        "tiergate" if tool == "tiergate" else "pytest-timeout") is None:
                    continue
                cell: list[Hang] = []
                for attempt in range(repeat):
                    work = Path(tmp) / f"{len(out)}-{attempt}"
                    project, results = work / "project", work / "results"
                    project.mkdir(parents=True)
                    results.mkdir()
                    (project / "pyproject.toml").write_text("")
                    (project / "conftest.py").write_text(MARKS_CONFTEST)
                    (project / "test_hang.py").write_text(body + PASSING)
                    marks = work / "marks.txt"
                    ran = run(hang_argv(tool, project, results, timeout, grace), cwd=project,
                              deadline=outer, env=child_env(BENCH_MARKS=str(marks)),
                              keep_output=True)
                    cell.append(read_hang(tool, ran, results, marks, stuck))
                    if cell[-1].killed:
                        break  # it hangs: once is enough to show it
                out[(scenario, tool)] = cell
    return out


def hang_rows(result: dict[tuple[str, str], list[Hang]], timeout: float, grace: float,
              outer: float) -> list[Row]:
    rows = []
    for (scenario, tool), cell in result.items():
        found = [h.to_finding for h in cell if h.to_finding is not None]
        to_finding = median(found)
        last = cell[-1]
        yes = {True: "yes", False: "**no**"}
        if last.killed:
            ending = f"**hung: killed by the benchmark after {outer:g} s**"
        else:
            ending = f"run ended after {median(h.total for h in cell):.1f} s"
        details = (f"{ending}; run went on: {yes[last.continued]}; JUnit kept: {yes[last.junit]}; "
                   f"stuck function named: {yes[last.named]}; {len(cell)} run(s)")
        gil = scenario.startswith("GIL")
        limit = timeout + grace + 1.5 if gil else timeout + 1.0
        goal = ""
        if tool == "tiergate":
            goal = verdict(to_finding, limit, f"≤ {limit:g} s to the finding")
        what = f"{scenario} · {tool}"
        rows.append(Row(f"hang, timeout {timeout:g} s" + (f", grace {grace:g} s" if tool ==
                                                           "tiergate" else ""),
                        what, seconds(to_finding) + (" to finding" if to_finding else ""),
                        "", details if found else f"no finding; {details}", goal))
    return rows


# --------------------------------------------------------------------------------------------
# 3. Process-tree dumps, 4. reports, 5. budget overshoot, 6. supervisor fixed cost
# --------------------------------------------------------------------------------------------


def bench_dumps(repeat: int) -> dict[int, dict[str, float | None]]:
    """size -> {"py-spy": median seconds, "no py-spy": median seconds}."""
    from unittest import mock

    from tiergate.diagnose.dump import take_tree_dump

    tool = load_script("bench_dump")
    out: dict[int, dict[str, float | None]] = {}
    for size in (1, 10, 30):
        with tempfile.TemporaryDirectory(prefix="tiergate-bench-dump-") as tmp:
            run_dir = Path(tmp)
            root = tool.start_tree(size, run_dir)
            try:
                tool.wait_registered(root.pid, size, run_dir)
                figures: dict[str, float | None] = {}
                for label in ("py-spy", "no py-spy"):
                    times = []
                    for _ in range(repeat):
                        patch = mock.patch("tiergate.diagnose.dump._py_spy", lambda: None) \
                            if label == "no py-spy" else contextlib.nullcontext()
                        with patch:
                            dump = take_tree_dump(root.pid, run_dir=run_dir,
                                                  project_root=run_dir, reason="benchmark")
                        if dump.processes == size:
                            times.append(dump.seconds)
                    figures[label] = median(times)
                out[size] = figures
            finally:
                tool.kill_tree(root)
    return out


def dump_rows(result: dict[int, dict[str, float | None]], repeat: int) -> list[Row]:
    spy = "installed" if version("py-spy") else "not installed"
    rows = []
    for size, figures in result.items():
        goal = verdict(figures["py-spy"], 1.5, "≤ 1.5 s for 10") if size == 10 else ""
        rows.append(Row("process-tree dump", f"{size} Python process{'es' if size > 1 else ''}",
                        seconds(figures["py-spy"]), "",
                        f"with py-spy ({spy}); without py-spy {seconds(figures['no py-spy'])}; "
                        f"median of {repeat}", goal))
    return rows


def bench_reports(sizes: Sequence[int], repeat: int) -> dict[int, tuple[float, float, float]]:
    """size -> (median seconds, median peak RSS MiB, JUnit MiB) of ``tiergate report --junit``."""
    tool = load_script("bench_report")
    out = {}
    with tempfile.TemporaryDirectory(prefix="tiergate-bench-report-") as tmp:
        for size in sizes:
            junit = Path(tmp) / f"junit-{size}.xml"
            tool.write_junit(junit, size)
            runs = []
            for attempt in range(repeat):
                argv = [PY, "-m", "tiergate", "report", "--junit", str(junit), "--output-dir",
                        f"{tmp}/out-{size}-{attempt}"]
                wall, rss, code = tool.measure(argv)
                if code in (0, 1):
                    runs.append((wall, rss))
            if runs:
                out[size] = (statistics.median(r[0] for r in runs),
                             statistics.median(r[1] for r in runs), junit.stat().st_size / 2**20)
    return out


def report_rows(result: dict[int, tuple[float, float, float]], repeat: int) -> list[Row]:
    rows = []
    for size, (wall, rss, mib) in result.items():
        goal = verdict(wall, 5.0, "≤ 5 s for 100k") if size == 100_000 else ""
        rows.append(Row("report", f"`tiergate report --junit`, {size:,} testcases", seconds(wall),
                        "", f"peak RSS {rss:.0f} MiB; JUnit {mib:.1f} MiB; median of {repeat}",
                        goal))
    return rows


IGNORES_SIGTERM = '''
import signal
import time

def test_ignores_sigterm():
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(600)
'''


def bench_overshoot(repeat: int, budget: float, grace: float) -> list[tuple[float, int | None]]:
    """(seconds past budget + grace, exit code) per run of a SIGTERM-ignoring test."""
    out = []
    with tempfile.TemporaryDirectory(prefix="tiergate-bench-budget-") as tmp:
        project = Path(tmp)
        (project / "pyproject.toml").write_text("")
        (project / "test_stuck.py").write_text(IGNORES_SIGTERM)
        for attempt in range(repeat):
            ran = run([PY, "-m", "tiergate", "run", "--tier", "fast", "--project", str(project),
                       "--results-dir", str(project / f"results-{attempt}"), "--budget",
                       f"{budget:g}s", "--grace", f"{grace:g}s", "--test-timeout", "10m"],
                      cwd=project, deadline=budget + grace + 60)
            out.append((ran.wall - budget - grace, ran.code))
    return out


def overshoot_rows(result: list[tuple[float, int | None]], budget: float, grace: float) -> list[
        Row]:
    over = median(r[0] for r in result)
    codes = ", ".join(str(r[1]) for r in result)
    return [Row("budget", f"SIGTERM-ignoring test, `--budget {budget:g}s --grace {grace:g}s`",
                seconds(over) + " past budget + grace" if over is not None else "—", "",
                f"from starting `tiergate run` to its exit; exit codes {codes}; median of "
                f"{len(result)}", verdict(over, 3.0, "≤ 3 s past budget + grace"))]


def bench_supervisor(repeat: int, events: int) -> tuple[dict[str, float], float]:
    tool = load_script("bench_supervisor")
    return tool.fixed_cost(repeat), tool.event_cost(events)


def supervisor_rows(result: tuple[dict[str, float], float], repeat: int) -> list[Row]:
    medians, per_event = result
    base = medians.get("pytest --tier fast")
    rows = []
    for name, value in medians.items():
        rows.append(Row("supervisor", f"one-test project: `{name}`", seconds(value), "",
                        f"median of {repeat}", ""))
    fixed = medians.get("tiergate run --tier fast")
    cost = fixed - base if fixed is not None and base is not None else None
    rows.append(Row("supervisor", "fixed cost (`tiergate run` minus `pytest --tier fast`)",
                    seconds(cost), "", "", verdict(cost, 0.5, "< 0.5 s")))
    rows.append(Row("supervisor", "one event written and flushed", f"{per_event * 1e6:.1f} µs",
                    "", "", "microseconds"))
    return rows


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    tests: int
    rounds: int
    slow_rounds: int  # pytest-memray is ~10x: fewer rounds
    hang_repeat: int
    dump_repeat: int
    report_repeat: int
    budget_repeat: int
    supervisor_repeat: int
    outer: float  # seconds before the benchmark kills a hanging run


FULL = Plan(2000, 5, 2, 3, 5, 3, 3, 7, 20.0)
QUICK = Plan(500, 2, 1, 1, 2, 1, 1, 3, 12.0)
HANG_TIMEOUT, HANG_GRACE = 2.0, 2.0
BUDGET, BUDGET_GRACE = 4.0, 2.0


def document(table: str, about: str, plan: Plan, elapsed: float, quick: bool) -> str:
    return f"""# Benchmarks

Measured with `python scripts/bench{' --quick' if quick else ''}` in {elapsed / 60:.0f} minutes.

**Machine:** {about}

**Method:** configurations are interleaved in rounds whose order rotates; every figure is a median,
ratios are taken within a round against bare pytest, and CPU time (children's user + system) is
shown next to wall time because it is the steadier figure on a shared machine. Before measuring,
`python -m compileall -q src/tiergate` is run and every child runs **without**
`PYTHONDONTWRITEBYTECODE`, so the editable tiergate pays the same import cost as an installed
package. Overhead: {plan.tests:,} generated trivial tests, {plan.rounds} rounds
({plan.slow_rounds} for pytest-memray); every row disables the optional plugins it is not about
with `-p no:NAME`. Hangs: a file with one hanging test, then one passing test; per-test limit
{HANG_TIMEOUT:g} s (tiergate's grace {HANG_GRACE:g} s); tiergate's time is from the `test-start`
to the `finding` event in `events.jsonl`, the others' from a conftest hook at the test's setup to
their first `Timeout` line or failed report; a run still going after {plan.outer:g} s is killed.

Wall time on a shared machine moves by several percent from round to round, as much as a change
to the per-test path saves. `python scripts/bench_instructions.py` counts instructions instead
(valgrind; the same to a fraction of a percent on every run), fixed and per test, for each part of
the plugin: the tier itself (selection, timer, events, reports), the marker expression, the network
guard and the leak probes. Changes to the per-test path are judged by it; this table by wall time.

{table}

Goals come from the issues: plugin ≤ 1.05x bare pytest; hang to finding ≤ timeout + 1 s (soft) and
≤ timeout + grace + 1.5 s (GIL held in C); tree dump ≤ 1.5 s for 10 processes; 100k testcases
reported in ≤ 5 s; budget overshoot ≤ 3 s; supervisor fixed cost < 0.5 s.
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer tests and repetitions")
    parser.add_argument("--output", type=Path, default=None,
                        help=f"where the page goes (default {DEFAULT_OUTPUT.relative_to(REPO)}; "
                        "--quick writes nowhere unless given)")
    parser.add_argument("--only", nargs="+", choices=("overhead", "hangs", "dumps", "reports",
                                                      "budget", "supervisor"),
                        help="run only these parts")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    output = args.output or (None if args.quick else DEFAULT_OUTPUT)
    parts = set(args.only or ("overhead", "hangs", "dumps", "reports", "budget", "supervisor"))
    prepare()
    about = machine()
    print(f"machine: {about}", file=sys.stderr)
    print("compiled src/tiergate; children run without PYTHONDONTWRITEBYTECODE", file=sys.stderr)
    began = time.perf_counter()
    steps: list[tuple[str, Callable[[], list[Row]]]] = [
        ("overhead", lambda: overhead_rows(bench_overhead(plan.tests, plan.rounds,
                                                          plan.slow_rounds))),
        ("hangs", lambda: hang_rows(bench_hangs(plan.hang_repeat, HANG_TIMEOUT, HANG_GRACE,
                                                plan.outer), HANG_TIMEOUT, HANG_GRACE,
                                    plan.outer)),
        ("dumps", lambda: dump_rows(bench_dumps(plan.dump_repeat), plan.dump_repeat)),
        ("reports", lambda: report_rows(bench_reports((10_000, 100_000), plan.report_repeat),
                                        plan.report_repeat)),
        ("budget", lambda: overshoot_rows(bench_overshoot(plan.budget_repeat, BUDGET,
                                                          BUDGET_GRACE), BUDGET, BUDGET_GRACE)),
        ("supervisor", lambda: supervisor_rows(bench_supervisor(plan.supervisor_repeat, 50_000),
                                               plan.supervisor_repeat)),
    ]
    rows: list[Row] = []
    try:
        for name, step in steps:
            if name in parts:
                print(f"benchmark: {name} …", file=sys.stderr, flush=True)
                started = time.perf_counter()
                rows += step()
                print(f"benchmark: {name} took {time.perf_counter() - started:.0f} s",
                      file=sys.stderr, flush=True)
    finally:
        kill_leftovers()
    table = render_table(rows)
    page = document(table, about, plan, time.perf_counter() - began, args.quick)
    print(page)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(page, encoding="utf-8")
        print(f"written to {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
