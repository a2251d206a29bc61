"""What a sweep found: median and IQR per configuration, compared with a baseline, and a plot."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from labctl.results import TrialRecord
from labctl.stats import Summary, mann_whitney_p, summarize


@dataclass(frozen=True)
class ConfigRow:
    mode: str
    workers: int
    stats: Summary | None  # None when no valid trial
    invalid: int
    p_vs_baseline: float | None
    ratio_vs_baseline: float | None


def summarize_sweep(
    trials: Sequence[TrialRecord], metric: str = "conn_per_s", baseline: str = "shared"
) -> list[ConfigRow]:
    """Valid, non-warm-up accept trials grouped by (mode, workers)."""
    values: dict[tuple[str, int], list[float]] = defaultdict(list)
    invalid: dict[tuple[str, int], int] = defaultdict(int)
    for t in trials:
        if t.kind != "accept" or t.warmup:
            continue
        key = (str(t.params["mode"]), int(t.params["workers"]))
        if t.valid and metric in t.metrics:
            values[key].append(t.metrics[metric])
        else:
            invalid[key] += 1
    rows = []
    for key in sorted(set(values) | set(invalid), key=lambda k: (k[1], k[0])):
        mode, workers = key
        vals = values.get(key, [])
        base = values.get((baseline, workers), [])
        stats = summarize(vals) if vals else None
        p = ratio = None
        if mode != baseline and vals and base:
            p = mann_whitney_p(vals, base)
            ratio = summarize(vals).median / summarize(base).median
        rows.append(ConfigRow(mode, workers, stats, invalid.get(key, 0), p, ratio))
    return rows


def plot_sweep(rows: Sequence[ConfigRow], path: Path, title: str) -> Path:
    """conn/s against workers, one line per mode, IQR as error bars (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for mode in sorted({r.mode for r in rows}):
        pts = [r for r in rows if r.mode == mode and r.stats]
        if not pts:
            continue
        xs = [r.workers for r in pts]
        ys = [r.stats.median / 1000 for r in pts if r.stats]
        lo = [(r.stats.median - r.stats.q1) / 1000 for r in pts if r.stats]
        hi = [(r.stats.q3 - r.stats.median) / 1000 for r in pts if r.stats]
        ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=4, label=mode)
    ax.set_xlabel("server workers")
    ax.set_ylabel("connections/s (thousands), median and IQR")
    ax.set_xticks(sorted({r.workers for r in rows}))
    ax.set_ylim(bottom=0)  # differences shown at their true size
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
