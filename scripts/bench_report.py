"""How long `tiergate report` takes, and how much memory, on big JUnit files from other runners.

    python scripts/bench_report.py [--sizes 10000 100000] [--huge-mb 500]

For each size it writes a JUnit file (1% failures, a few timeouts with dumps), then runs, each in
a fresh process (time and peak RSS from os.wait4):
  - `tiergate report --junit FILE` end to end (parse, summary.md, findings.json, terminal),
  - reading only, with tiergate's reader (streamed expat + junitparser per testcase),
  - reading only, with junitparser's whole-document JUnitXml.fromfile, for comparison.
Then it writes a JUnit file whose one failure holds a text of --huge-mb MB (an untrusted file:
the reader keeps 64 KiB of that text and reads at most 256 MiB of the file) and runs
`tiergate report` on it; the file is deleted right after. It prints a Markdown table."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

READ_TIERGATE = "from pathlib import Path; import sys; from tiergate.results.junit_in import " \
                "read_junit; r = read_junit(Path(sys.argv[1])); print(len(r.tests))"
READ_JUNITPARSER = "import sys; from junitparser import JUnitXml; x = JUnitXml.fromfile(" \
                   "sys.argv[1]); print(sum(1 for s in x for c in s for _ in c.result))"


def write_junit(path: Path, cases: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.write('<?xml version="1.0" encoding="utf-8"?>\n<testsuites>\n')
        per_suite = 1000
        for start in range(0, cases, per_suite):
            out.write(f'<testsuite name="suite{start}" tests="{per_suite}">\n')
            for i in range(start, min(cases, start + per_suite)):
                mod = f"pkg.sub{i % 97}.test_mod{i % 13}"
                out.write(f'<testcase classname="{mod}" name="test_case_{i}[param-{i % 7}]" '
                          f'time="{(i % 100) / 1000:.3f}" file="pkg/sub{i % 97}/test_mod.py" '
                          f'line="{i % 500}">')
                if i % 100 == 1:
                    out.write(f'<failure message="assert {i} == {i + 1}">Traceback (most recent '
                              f'call last):\n  File "x.py", line 3\nAssertionError</failure>')
                elif i % 10_000 == 5:
                    out.write('<failure message="timeout: ran past 30s">stuck</failure>'
                              "<system-err>Thread 0x1\n  File db.py, line 9, in recv\n"
                              "</system-err>")
                elif i % 50 == 3:
                    out.write('<skipped message="needs docker"/>')
                out.write("</testcase>\n")
            out.write("</testsuite>\n")
        out.write("</testsuites>\n")


def write_huge_failure(path: Path, megabytes: int) -> None:
    """One passing case, one failing case whose failure text is *megabytes* MB, one more case."""
    line = "E   " + "x" * 75 + "\n"
    block = (line * 13_000).encode()  # about 1 MB
    with path.open("wb") as out:
        out.write(b'<?xml version="1.0" encoding="utf-8"?>\n<testsuites><testsuite name="big">'
                  b'<testcase classname="pkg.mod" name="test_ok" time="0.1"/>'
                  b'<testcase classname="pkg.mod" name="test_huge" time="1.0">'
                  b'<failure message="AssertionError: huge">Traceback (most recent call last):\n')
        written = 0
        while written < megabytes * 10**6:
            out.write(block)
            written += len(block)
        out.write(b"AssertionError: huge</failure></testcase>"
                  b'<testcase classname="pkg.mod" name="test_after"/></testsuite></testsuites>\n')


def measure(argv: list[str]) -> tuple[float, float, int]:
    """Wall seconds, peak RSS in MiB, exit code of one fresh process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.stderr is not None:
        proc.stderr.close()
    return elapsed, usage.ru_maxrss / 1024, proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--huge-mb", type=int, default=500,
                        help="MB of the one huge failure text (0: skip that row)")
    args = parser.parse_args()
    py = sys.executable
    rows = ["| testcases | file | what | seconds | peak RSS |", "|--:|--:|---|--:|--:|"]
    with tempfile.TemporaryDirectory(prefix="tiergate-bench-") as tmp:
        for size in args.sizes:
            junit = Path(tmp) / f"junit-{size}.xml"
            write_junit(junit, size)
            mib = junit.stat().st_size / 2**20
            runs = {
                "`tiergate report` end to end": [py, "-m", "tiergate.cli", "report", "--junit",
                                                 str(junit), "--output-dir", f"{tmp}/out{size}"],
                "read: tiergate (expat + junitparser)": [py, "-c", READ_TIERGATE, str(junit)],
                "read: junitparser JUnitXml.fromfile": [py, "-c", READ_JUNITPARSER, str(junit)],
                "python startup + import (baseline)": [py, "-c", "import tiergate.report.summary"],
            }
            for what, argv in runs.items():
                seconds, rss, code = measure(argv)
                note = "" if code in (0, 1) else f" (exit {code})"
                rows.append(f"| {size:,} | {mib:.1f} MiB | {what}{note} | {seconds:.2f} "
                            f"| {rss:.0f} MiB |")
            summary = Path(tmp) / f"out{size}" / "summary.md"
            if summary.exists():
                rows.append(f"| {size:,} | | summary.md size | | "
                            f"{summary.stat().st_size / 1024:.0f} KiB |")
        if args.huge_mb:
            huge = Path(tmp) / "junit-huge.xml"
            try:
                write_huge_failure(huge, args.huge_mb)
                mib = huge.stat().st_size / 2**20
                for what, argv in {
                    f"`tiergate report`, one {args.huge_mb} MB failure text": [
                        py, "-m", "tiergate.cli", "report", "--junit", str(huge),
                        "--output-dir", f"{tmp}/out-huge"],
                    "read: tiergate, the same file": [py, "-c", READ_TIERGATE, str(huge)],
                }.items():
                    seconds, rss, code = measure(argv)
                    note = "" if code in (0, 1) else f" (exit {code})"
                    rows.append(f"| 3 | {mib:.0f} MiB | {what}{note} | {seconds:.2f} "
                                f"| {rss:.0f} MiB |")
            finally:
                huge.unlink(missing_ok=True)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
