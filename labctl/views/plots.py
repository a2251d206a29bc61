"""An experiment's main plot (its spec's `plot`): each `y` metric against `x`, one line per
`series`, medians with IQR bars, axes from zero; a categorical `x` (qdisc names) gives bars."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from labctl.experiments.summary import ConfigSummary
from labctl.metrics import ExperimentSpec


def _numeric(values: Sequence[object]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def plot_run(
    spec: ExperimentSpec, rows: Sequence[ConfigSummary], path: Path, title: str
) -> Path | None:
    """The PNG at `path`, or None when there is nothing to draw (no valid trial)."""
    plot = spec.plot
    if plot is None:
        return None
    panels = [
        (metric, [r for r in rows if r.kind == plot.kind and r.metric.name == metric and r.stats])
        for metric in plot.y
    ]
    panels = [(m, rs) for m, rs in panels if rs]
    if not panels:
        return None
    from matplotlib.figure import Figure  # a bare Figure: no pyplot state, no backend choice

    fig = Figure(figsize=(5.6 * len(panels), 4.0), dpi=110)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (metric_name, pts) in zip(axes, panels, strict=True):
        metric = pts[0].metric
        series_of = (lambda r: str(r.config.get(plot.series))) if plot.series else (lambda r: "")
        xs_all = [r.config.get(plot.x) for r in pts]
        categorical = not _numeric(xs_all)
        names = sorted({series_of(r) for r in pts})
        cats = list(dict.fromkeys(str(x) for x in xs_all))
        width = 0.8 / max(1, len(names))
        for i, name in enumerate(names):
            mine = sorted(
                (r for r in pts if series_of(r) == name), key=lambda r: r.config.get(plot.x) or 0
            )
            ys = [r.stats.median for r in mine if r.stats]
            err = [
                [r.stats.median - r.stats.q1 for r in mine if r.stats],
                [r.stats.q3 - r.stats.median for r in mine if r.stats],
            ]
            label = f"{plot.series}={name}" if plot.series else None
            if categorical:
                pos = [cats.index(str(r.config.get(plot.x))) + i * width for r in mine]
                ax.bar(pos, ys, width=width, yerr=err, capsize=3, label=label)
            else:
                xs = [r.config.get(plot.x) for r in mine]
                ax.errorbar(xs, ys, yerr=err, marker="o", capsize=4, label=label)
        if categorical:
            ax.set_xticks([i + width * (len(names) - 1) / 2 for i in range(len(cats))], cats)
            ax.tick_params(axis="x", rotation=20)
        else:
            ax.set_xticks(sorted({x for x in xs_all if isinstance(x, int | float)}))
        unit = f" ({metric.unit})" if metric.unit else ""
        ax.set_xlabel(plot.x)
        ax.set_ylabel(f"{metric.label}{unit}, median and IQR")
        ax.set_ylim(bottom=0)  # differences shown at their true size
        ax.grid(alpha=0.3)
        if plot.series:
            ax.legend()
        ax.set_title(metric_name)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
