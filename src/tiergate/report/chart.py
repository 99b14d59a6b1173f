"""A small Mermaid chart of the process tree's memory over the run, from "sample" events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

MAX_POINTS = 40
LINE_COLOUR = "#0969da"  # GitHub's own link blue: visible on the light and the dark theme
_THEME = "%%{init: {'themeVariables': {'xyChart': {'plotColorPalette': '" + LINE_COLOUR + "'}}}}%%"


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
    labels = ", ".join(f'"{label}"' for label in distinct_labels([t - start for t, _ in points]))
    top = max(mib)
    y_max = max(1, int(top * 1.1) + 1)
    values = ", ".join(f"{v:.1f}" for v in mib)
    return (
        "```mermaid\n"
        # The default line colour is a pale one that barely shows on GitHub's light theme.
        f"{_THEME}\n"
        "xychart-beta\n"
        f'    title "Process tree memory (peak {top:.0f} MiB)"\n'
        f"    x-axis [{labels}]\n"
        f'    y-axis "MiB" 0 --> {y_max}\n'
        f"    line [{values}]\n"
        "```"
    )


def distinct_labels(offsets: Sequence[float]) -> list[str]:
    """Labels for sorted offsets in seconds, with as many decimals as it takes for no two to be
    equal: mermaid merges equal labels into one step."""
    minutes = offsets[-1] >= 120 if offsets else False
    values = [t / 60 for t in offsets] if minutes else list(offsets)
    unit = "m" if minutes else "s"
    for decimals in range(4):
        labels = [f"{v:.{decimals}f}{unit}" for v in values]
        if len(set(labels)) == len(labels):
            return labels
    return [f"{v:.3f}{unit}#{i}" for i, v in enumerate(values)]  # equal times: number them
