"""A small Mermaid chart of the process tree's memory over the run, from "sample" events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

MAX_POINTS = 40


def memory_chart(samples: Sequence[Mapping[str, Any]], max_points: int = MAX_POINTS) -> str | None:
    """A ```mermaid xychart``` block, or None when there are too few usable samples. Only numbers
    we format reach the chart, so nothing from the run can inject Mermaid syntax."""
    points: list[tuple[float, float]] = []
    for sample in samples:
        t, rss = sample.get("t"), sample.get("rss")
        if isinstance(t, int | float) and isinstance(rss, int | float) and rss >= 0:
            points.append((float(t), float(rss)))
    if len(points) < 2:
        return None
    points.sort()
    start = points[0][0]
    if len(points) > max_points:  # keep the peak of each bucket: a spike must not vanish
        size = len(points) / max_points
        buckets = [points[int(i * size): int((i + 1) * size)] for i in range(max_points)]
        points = [max(b, key=lambda p: p[1]) for b in buckets if b]
    mib = [rss / 2**20 for _, rss in points]
    labels = ", ".join(_seconds(t - start) for t, _ in points)
    top = max(mib)
    y_max = max(1, int(top * 1.1) + 1)
    values = ", ".join(f"{v:.1f}" for v in mib)
    return (
        "```mermaid\n"
        "xychart-beta\n"
        f'    title "Process tree memory (peak {top:.0f} MiB)"\n'
        f"    x-axis [{labels}]\n"
        f'    y-axis "MiB" 0 --> {y_max}\n'
        f"    line [{values}]\n"
        "```"
    )


def _seconds(t: float) -> str:
    return f'"{t:.0f}s"' if t < 120 else f'"{t / 60:.1f}m"'
