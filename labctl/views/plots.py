"""Every plot labctl draws but the report's trends (labctl.views.trends). An experiment's
main plot (its spec's `plot`, data): each `y` metric against `x`, one line per `series`,
medians with IQR bars, axes from zero; a categorical `x` (qdisc names) gives bars. As a PNG
file for `labctl experiment` (`plot_run`) and, with the history's medians dashed, at the top
of the report (`main_plot`, docs/report.md). The report's strip plots: tonight's trials per
configuration against the baseline median. Bare matplotlib Figures throughout: no pyplot
state."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from labctl.experiments.summary import ConfigSummary
from labctl.metrics import ExperimentSpec, PlotSpec

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def _numeric(values: Sequence[object]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


# (metric, the configuration's values in its kind's `config` order) -> the history's median
HistoryMedians = Mapping[tuple[str, tuple[Any, ...]], float]


def sweep_panels(plot: PlotSpec, rows: Sequence[ConfigSummary]) -> list[list[ConfigSummary]]:
    """The main plot's panels, one per `y` metric with a valid trial: its rows."""
    panels = [
        [r for r in rows if r.kind == plot.kind and r.metric.name == metric and r.stats]
        for metric in plot.y
    ]
    return [rs for rs in panels if rs]


def plot_run(
    spec: ExperimentSpec, rows: Sequence[ConfigSummary], path: Path, title: str
) -> Path | None:
    """The PNG at `path`, or None when there is nothing to draw (no valid trial)."""
    plot = spec.plot
    panels = sweep_panels(plot, rows) if plot is not None else []
    if plot is None or not panels:
        return None
    from matplotlib.figure import Figure  # a bare Figure: no pyplot state, no backend choice

    fig = Figure(figsize=(5.6 * len(panels), 4.0), dpi=110)
    draw_sweep(fig, plot, panels, {})
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def main_plot(
    plot: PlotSpec, rows: Sequence[ConfigSummary], history: HistoryMedians, title: str
) -> str:
    """The report's main plot as a PNG data URI ("" when no valid trial): the sweep plot,
    with each configuration's history median dashed beside tonight's."""
    panels = sweep_panels(plot, rows)
    if not panels:
        return ""
    with figure(min(12.0, 7.2 * len(panels)), 3.8) as fig:
        draw_sweep(fig, plot, panels, history)
        fig.suptitle(mpl_text(title))
        fig.tight_layout()
        return png_data_uri(fig)


def draw_sweep(
    fig: Figure,
    plot: PlotSpec,
    panels: Sequence[Sequence[ConfigSummary]],
    history: HistoryMedians,
) -> None:
    """Each metric against `x`, one line per `series` (medians, IQR bars, axes from 0); a
    categorical `x` (qdisc names) gives bars. `history` medians, where given, dashed."""
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, pts in zip(axes, panels, strict=True):
        metric = pts[0].metric
        series_of = (lambda r: str(r.config.get(plot.series))) if plot.series else (lambda r: "")
        xs_all = [r.config.get(plot.x) for r in pts]
        categorical = not _numeric(xs_all)
        names = sorted({series_of(r) for r in pts})
        cats = list(dict.fromkeys(str(x) for x in xs_all))
        width = 0.8 / max(1, len(names))
        tops: list[float] = []
        for i, name in enumerate(names):
            color = PALETTE[i % len(PALETTE)]
            mine = sorted(
                (r for r in pts if series_of(r) == name), key=lambda r: r.config.get(plot.x) or 0
            )
            ys = [r.stats.median for r in mine if r.stats]
            err = [
                [r.stats.median - r.stats.q1 for r in mine if r.stats],
                [r.stats.q3 - r.stats.median for r in mine if r.stats],
            ]
            tops += [r.stats.q3 for r in mine if r.stats]
            past = [history.get((metric.name, tuple(r.config.values()))) for r in mine]
            tops += [p for p in past if finite(p)]
            label = f"{plot.series}={name}" if plot.series else None
            if categorical:
                pos = [cats.index(str(r.config.get(plot.x))) + i * width for r in mine]
                ax.bar(pos, ys, width=width, yerr=err, capsize=3, label=label, color=color)
                ticks = [(x, p) for x, p in zip(pos, past, strict=True) if finite(p)]
                if ticks:
                    ax.scatter(
                        [x for x, _ in ticks], [p for _, p in ticks], marker="_", s=600,
                        color="black", linewidths=2, zorder=4,
                    )  # fmt: skip
            else:
                xs = [r.config.get(plot.x) for r in mine]
                ax.errorbar(xs, ys, yerr=err, marker="o", capsize=4, label=label, color=color)
                marks: list[tuple[Any, float]] = [
                    (x, p) for x, p in zip(xs, past, strict=True) if finite(p)
                ]
                if marks:
                    ax.plot(
                        [x for x, _ in marks], [p for _, p in marks], linestyle="--",
                        marker="o", markerfacecolor="none", color=color, alpha=0.6,
                    )  # fmt: skip
        if categorical:
            ax.set_xticks([i + width * (len(names) - 1) / 2 for i in range(len(cats))], cats)
            ax.tick_params(axis="x", rotation=20)
        else:
            ax.set_xticks(sorted({x for x in xs_all if isinstance(x, int | float)}))
        unit = f" ({metric.unit})" if metric.unit else ""
        ax.set_xlabel(mpl_text(plot.x_label or plot.x))
        ax.set_ylabel(mpl_text(f"{metric.label}{unit}"))
        from_zero(ax, tops)  # differences shown at their true size
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        if history and any(finite(v) for v in history.values()):
            from matplotlib.lines import Line2D

            past_style = (
                {"marker": "_", "linestyle": "none", "markersize": 14, "color": "black"}
                if categorical
                else {"linestyle": "--", "marker": "o", "markerfacecolor": "none", "color": "#777"}
            )
            handles.append(Line2D([], [], **past_style))
            labels.append("history median")
        if handles:
            ax.legend(handles, labels, fontsize=7)
        ax.set_title(mpl_text(f"{metric.label}: median and IQR of valid trials"))


# ---------------------------------------------------------------------------- the report's plots

SERIES_COLOR = "#1f5fa8"  # tonight's trial values, the first line of a plot
# One colour per line (main plot series, trend configurations): SERIES_COLOR first, then
# colour-blind-safe picks (Okabe-Ito) that none of BASELINE_COLOR or POINT_COLORS repeats.
PALETTE = ("#1f5fa8", "#009e73", "#cc79a7", "#56b4e9", "#7a5195", "#e6b800", "#444444")
BASELINE_COLOR = "#ef8a00"  # the baseline median
POINT_COLORS = {"regression": "#c62828", "improvement": "#2e7d32"}  # tonight on a trend plot
DPI = 100  # ~10-20 kB per small PNG: ten trend plots and the main plots stay well under 1 MB


@contextmanager
def figure(width: float, height: float) -> Iterator[Figure]:
    # A bare Figure, not pyplot: nothing enters pyplot's global figure registry (so nothing to
    # leak or close) and the caller's backend is left alone.
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    with rc_context({"font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8}):
        yield Figure(figsize=(width, height), dpi=DPI)


def png_data_uri(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    fig.clear()
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


@dataclass(frozen=True)
class PlotGroup:
    label: str
    values: Sequence[float]  # tonight's counted trials
    baseline: float | None  # the baseline median
    verdict: str


def strip_plot(metric: str, direction: str, groups: Sequence[PlotGroup], common: str) -> str:
    """Tonight's valid trials per configuration (box + points) and the baseline median."""
    width = min(9.0, max(3.4, 1.0 + 1.1 * len(groups)))
    with figure(width, 2.6) as fig:
        ax = fig.subplots()
        xs = list(range(1, len(groups) + 1))
        boxed = [(x, list(g.values)) for x, g in zip(xs, groups, strict=True) if g.values]
        if boxed:
            ax.boxplot(
                [vals for _, vals in boxed],
                positions=[x for x, _ in boxed],
                widths=0.5,
                showfliers=False,  # the points themselves are drawn
                medianprops={"color": SERIES_COLOR, "linewidth": 2},
                boxprops={"color": "#888888"},
                whiskerprops={"color": "#888888"},
                capprops={"color": "#888888"},
            )
        for x, vals in boxed:
            # An even spread, not random jitter: the same data draws the same picture.
            offsets = [-0.18 + 0.36 * i / (len(vals) - 1) for i in range(len(vals))]
            ax.scatter(
                [x + o for o in offsets] if len(vals) > 1 else [x],
                vals,
                s=14,
                color=SERIES_COLOR,
                zorder=3,
            )
        base = [(x, g.baseline) for x, g in zip(xs, groups, strict=True) if finite(g.baseline)]
        if base:
            ax.scatter(
                [x for x, _ in base],
                [b for _, b in base],
                marker="D",
                s=40,
                color=BASELINE_COLOR,
                edgecolors="black",
                linewidths=0.6,
                zorder=4,
                label="baseline median",
            )
            ax.legend(loc="lower right", fontsize=7)
        labels = [mpl_text(g.label) for g in groups]
        long = max(map(len, labels)) > 60 / len(groups)
        ax.set_xticks(xs)
        ax.set_xticklabels(labels, rotation=15 if long else 0, ha="right" if long else "center")
        for tick, g in zip(ax.get_xticklabels(), groups, strict=True):
            if g.verdict in POINT_COLORS:
                tick.set_color(POINT_COLORS[g.verdict])
                tick.set_fontweight("bold")
        ax.set_xlim(0.4, len(groups) + 0.6)
        tops = [v for g in groups for v in g.values] + [b for _, b in base]
        from_zero(ax, tops)
        if common:
            ax.set_xlabel(mpl_text(common))
        ax.set_title(mpl_text(f"{metric} ({direction} is better)"))
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        return png_data_uri(fig)


def from_zero(ax: Axes, values: Sequence[float]) -> None:
    """From 0, as the sweep plot: differences at their true size; headroom for the markers."""
    if not values or min(values) < 0:
        return  # a metric that can be negative keeps matplotlib's own limits
    ax.set_ylim(0, max(values) * 1.12 or 1.0)


def mpl_text(text: str) -> str:
    return text.replace("$", r"\$")  # a lone $ would start mathtext and fail the whole plot


def finite(x: float | None) -> TypeGuard[float]:
    return x is not None and math.isfinite(x)


def shorten(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
