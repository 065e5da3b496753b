"""The soak's samples: whether each series is flat after warm-up, and a chart of them."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path

WARMUP_SHARE = 0.2  # the first fifth of the samples (at least one) is warm-up
FLAT_PCT = 5.0  # flat: the last third's mean within 5% of the first third's, after warm-up
SERIES = (
    ("rss_mib", "RSS (MiB)"),
    ("fds", "open file descriptors"),
    ("sockets_metric", "sio_push_sockets (/metrics)"),
    ("tasks", "asyncio tasks (/metrics)"),
)


def flatness(values: Sequence[float]) -> tuple[float, float]:
    """(growth %, spread %) after warm-up: last third's mean vs the first third's, and (max - min) / median."""
    finite = [v for v in values if math.isfinite(v)]
    kept = finite[max(1, round(len(finite) * WARMUP_SHARE)) :]
    if len(kept) < 3:
        return math.nan, math.nan
    third = max(1, len(kept) // 3)
    first, last = statistics.fmean(kept[:third]), statistics.fmean(kept[-third:])
    middle = statistics.median(kept)
    growth = 100.0 * (last - first) / first if first else math.nan
    spread = 100.0 * (max(kept) - min(kept)) / middle if middle else math.nan
    return growth, spread


def verdicts(figures: dict[str, float]) -> dict[str, bool | None]:
    """Each series: flat (True), growing or shrinking by more than FLAT_PCT (False), or not known (None)."""
    found: dict[str, bool | None] = {}
    for name, _title in SERIES:
        growth = figures.get(f"{name}_growth_pct", math.nan)
        found[name] = None if not math.isfinite(growth) else abs(growth) <= FLAT_PCT
    return found


def chart(
    path: Path, samples: Sequence[dict[str, float]], title: str, marked: tuple[float, float] | None = None
) -> None:
    """One panel per series against time, the warm-up shaded, and `marked` (from, to: seconds) in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = [row["t_s"] for row in samples]
    warm = times[max(1, round(len(times) * WARMUP_SHARE)) - 1] if times else 0.0
    fig, axes = plt.subplots(1, len(SERIES), figsize=(4.2 * len(SERIES), 3.4), squeeze=False)
    for ax, (name, label) in zip(axes[0], SERIES, strict=True):
        values = [row.get(name, math.nan) for row in samples]
        ax.plot(times, values, marker=".", color="#2f6db5")
        ax.axvspan(0, warm, color="#dddddd", label="warm-up")
        if marked is not None:
            ax.axvspan(*marked, color="#f4b6b6", label="red-team inputs")
        growth, _spread = flatness(values)
        verdict = "—" if not math.isfinite(growth) else f"{growth:+.1f}% after warm-up"
        ax.set_title(f"{label}\n{verdict}", fontsize=9)
        ax.set_xlabel("s", fontsize=8)
        ax.tick_params(labelsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
