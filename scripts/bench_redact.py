"""What redaction costs: building the redactor of an environment with seven secrets, redacting
big texts (time grows linearly with the size), and one event line of a passing test.

    python scripts/bench_redact.py [--mb 16] [--rounds 3]

Prints a Markdown table of CPU time (process time: what a busy shared machine adds by making
us wait is left out), the best of *rounds*."""

from __future__ import annotations

import argparse
import json
import random
import string
import time
from collections.abc import Callable

from tiergate.protocol.redact import Redactor, _char_forms, _redactor, current

TOKEN = "ghp_" + "FAKEfake0123456789abcdefghijKLMNOPqrst"
ENV = {
    "GITHUB_TOKEN": TOKEN,
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY",
    "MY_API_KEY": "sk-live-4f3c2b1a09876543210fedcb",
    "DATABASE_URL": "postgres://app:s3cretPassw0rd@127.0.0.1/db",
    "SENTRY_DSN": "https://0123456789abcdef0123456789abcdef@o0.ingest.sentry.invalid/42",
    "WEBHOOK_SECRET": 'whsec_a&b<c>d"e-Zq8Lm2Np',
    "POSTGRES_PASSWORD": "postgres",
}


def best(rounds: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(rounds):
        started = time.process_time()
        work()
        times.append(time.process_time() - started)
    return min(times)


def texts(size: int) -> dict[str, str]:
    rnd = random.Random(16)
    words = ["".join(rnd.choice(string.ascii_lowercase) for _ in range(rnd.randint(2, 9)))
             for _ in range(5000)]
    prose = " ".join(rnd.choice(words) for _ in range(20000))
    failure = (f"\nE       AssertionError: assert '{TOKEN[:12]}...{TOKEN[-12:]}' == 'x'\n"
               "POSTGRES_PASSWORD=postgres tests/test_postgres_db.py::test_postgres_pool ....\n")
    output = ((prose + failure) * (size // len(prose) + 1))[:size]
    line = json.dumps({"event": "test-finish", "nodeid": "tests/test_a.py::test_b", "stdout":
                       prose[:300] + TOKEN}) + "\n"
    return {
        "test output (prose, a secret and an elision every ~130 KB)": output,
        "the same, no secret in it": ((prose + "\n") * (size // len(prose) + 1))[:size],
        "event lines (JSON, a secret in each)": (line * (size // len(line) + 1))[:size],
        "16 MB of progress dots": "." * size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    size = args.mb * 2**20

    def build() -> Redactor:
        _redactor.cache_clear()
        _char_forms.cache_clear()
        built = current(ENV)
        built.text("x")  # and its text regex, compiled on first use
        return built

    built = best(args.rounds, build)
    red = current(ENV)
    print(f"Redaction, seven secrets in the environment ({len(red.values)} values masked "
          f"everywhere, {len(red.weak)} only as a value); best of {args.rounds}\n")
    print("| what | size | time | per MB |")
    print("|---|---:|---:|---:|")
    print(f"| building the redactor (once per process; both regexes) | | {built * 1e3:.1f} ms | |")
    for label, text in texts(size).items():
        seconds = best(args.rounds, lambda text=text: red.text(text))
        label = label.replace("16 MB of", f"{args.mb} MB of")
        print(f"| {label} | {len(text) / 2**20:.0f} MB | {seconds:.3f} s | "
              f"{seconds / (len(text) / 2**20) * 1e3:.1f} ms |")
    passed = ('{"event":"test-finish","t":1712345678.123,"pid":4242,"nodeid":"tests/unit/'
              'test_orders.py::test_total[3-items]","path":"tests/unit/test_orders.py","line":'
              '42,"outcome":"passed","duration":0.00123,"timeout":60.0}\n')
    count = 100_000
    seconds = best(args.rounds, lambda: [red.line(passed) for _ in range(count)])
    print(f"| one `test-finish` line of a passing test (no secret in it) | {len(passed)} B | "
          f"{seconds / count * 1e6:.2f} µs | |")


if __name__ == "__main__":
    main()
