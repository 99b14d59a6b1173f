"""The worker helper: a child process that does the CPU-heavy part of the service's work.

One line per message on stdin/stdout: it says ``ready`` once, answers ``job <n>`` with
``done <n> <primes below n>``, and exits on ``quit`` — or when stdin closes, so it never outlives
a parent that dies.
"""

from __future__ import annotations

import sys


def count_primes(limit: int) -> int:
    sieve = bytearray([1]) * max(limit, 2)
    sieve[0:2] = b"\x00\x00"
    for n in range(2, int(limit**0.5) + 1):
        if sieve[n]:
            sieve[n * n :: n] = bytes(len(range(n * n, limit, n)))
    return sum(sieve[:limit])


def main() -> int:
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if words == ["quit"]:
            break
        if len(words) == 2 and words[0] == "job" and words[1].isdigit():
            print(f"done {words[1]} {count_primes(int(words[1]))}", flush=True)
        else:
            print(f"error unknown request {line.strip()!r}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
