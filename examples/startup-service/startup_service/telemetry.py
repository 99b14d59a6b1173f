"""Telemetry: counters and timings, aggregated by a background flusher.

Importing this module starts the flusher thread (bottom of the file). Anything that imports the
service gets a running thread without asking for one — a test collector included. That import side
effect is one of the failure modes this example exists to show; the fix would be to start the
flusher from ``Service.start()``.
"""

from __future__ import annotations

import queue
import threading

# How often the flusher wakes up when nothing was recorded (a real one would ship to a backend).
FLUSH_INTERVAL = 0.5

_queue: queue.Queue[tuple[str, float] | threading.Event] = queue.Queue()
_totals: dict[str, float] = {}
_lock = threading.Lock()


def record(name: str, value: float = 1.0) -> None:
    """Add *value* to the metric *name*; returns at once, the flusher does the work."""
    _queue.put((name, value))


def flush(timeout: float = 2.0) -> bool:
    """Wait until everything recorded so far is aggregated. False if the flusher did not answer."""
    marker = threading.Event()
    _queue.put(marker)
    return marker.wait(timeout)


def totals() -> dict[str, float]:
    with _lock:
        return dict(_totals)


def _flush_forever() -> None:
    while True:
        try:
            item = _queue.get(timeout=FLUSH_INTERVAL)
        except queue.Empty:
            continue
        if isinstance(item, threading.Event):
            item.set()
            continue
        name, value = item
        with _lock:
            _totals[name] = _totals.get(name, 0.0) + value


_flusher = threading.Thread(target=_flush_forever, name="metrics-flusher", daemon=True)
_flusher.start()
