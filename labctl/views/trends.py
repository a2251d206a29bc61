"""The report's history: one plot per metric, its median run after run against the date, one
line per configuration, tonight's point in its verdict's colour, and a vertical line where the
kernel release or the labctl version changes between two points (what a reader looks for
first when a line steps). A line needs `MIN_POINTS` runs: one or two dots are not a trend."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from labctl.results.history import HistoryPoint
from labctl.results.regress import MetricVerdict
from labctl.results.stamps import RunStamp
from labctl.views.plots import (
    PALETTE,
    POINT_COLORS,
    figure,
    finite,
    from_zero,
    mpl_text,
    png_data_uri,
    shorten,
)

MIN_POINTS = 3  # runs with a median before a configuration's line is drawn
MAX_LINES = len(PALETTE)  # more would repeat colours: the rest are named under the plot


@dataclass(frozen=True)
class TrendLine:
    config: str
    label: str  # the configuration without the words every line shares
    points: tuple[HistoryPoint, ...]  # oldest first, tonight last
    verdict: str  # tonight's


@dataclass(frozen=True)
class Mark:
    """A change between two consecutive runs of a plot, drawn at the later one."""

    started: float
    run_id: int
    label: str  # "kernel 6.5.0-1", "labctl 0.9.1"


@dataclass(frozen=True)
class TrendChart:
    metric: str
    lines: tuple[TrendLine, ...]  # the ones with MIN_POINTS medians or more
    marks: tuple[Mark, ...]
    short: tuple[str, ...]  # configurations left out: fewer than MIN_POINTS medians


def _medians(points: Sequence[HistoryPoint]) -> int:
    return sum(1 for p in points if finite(p.median))


def trend_charts(
    trends: Mapping[tuple[str, str], Sequence[HistoryPoint]],
    verdicts: Sequence[MetricVerdict],
    stamps: Mapping[int, RunStamp],
    labels: Mapping[str, str],
) -> list[TrendChart]:
    """One chart per metric (in the verdicts' order), only if one of its lines is long enough."""
    verdict_of = {(v.metric, v.config): v.verdict for v in verdicts}
    by_metric: dict[str, list[tuple[str, Sequence[HistoryPoint]]]] = {}
    for (metric, config), points in trends.items():
        by_metric.setdefault(metric, []).append((config, points))
    charts = []
    for metric, series in by_metric.items():
        lines = [
            TrendLine(
                config, labels.get(config, config), tuple(pts), verdict_of.get((metric, config), "")
            )
            for config, pts in series
            if _medians(pts) >= MIN_POINTS
        ]
        if not lines:
            continue
        drawn = [p for line in lines for p in line.points if finite(p.median)]
        charts.append(
            TrendChart(
                metric,
                tuple(lines[:MAX_LINES]),
                tuple(stamp_marks(drawn, stamps)),
                tuple(c for c, pts in series if _medians(pts) < MIN_POINTS)
                + tuple(line.config for line in lines[MAX_LINES:]),
            )
        )
    return charts


def stamp_marks(points: Sequence[HistoryPoint], stamps: Mapping[int, RunStamp]) -> list[Mark]:
    """Where the lab, kernel or labctl version differs from the last run (by date) that
    recorded one; a run that recorded none (an older labctl) is no change."""
    runs = sorted({(p.started, p.run_id) for p in points})
    marks: list[Mark] = []
    kernel = labctl = lab = ""  # the last recorded values
    for started, run_id in runs:
        stamp = stamps.get(run_id)
        if stamp is None:
            continue
        if stamp.lab:
            if lab and stamp.lab != lab:
                marks.append(Mark(started, run_id, f"lab {stamp.lab}"))
            lab = stamp.lab
        if stamp.kernel:
            if kernel and stamp.kernel != kernel:
                marks.append(Mark(started, run_id, f"kernel {stamp.kernel}"))
            kernel = stamp.kernel
        if stamp.labctl_version:
            if labctl and stamp.labctl_version != labctl:
                marks.append(Mark(started, run_id, f"labctl {stamp.labctl_version}"))
            labctl = stamp.labctl_version
    return marks


def _date(t: float) -> float:
    """matplotlib's date number of a moment in local time, as the page's other times."""
    from matplotlib.dates import date2num

    return float(date2num(datetime.datetime.fromtimestamp(t)))


def trend_plot(chart: TrendChart, unit: str, run_id: int) -> str:
    """The chart as a PNG data URI."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    with figure(6.0, 3.0) as fig:
        ax = fig.subplots()
        values: list[float] = []
        for i, line in enumerate(chart.lines):
            color = PALETTE[i % len(PALETTE)]
            pts = [p for p in line.points if finite(p.median)]
            xs = [_date(p.started) for p in pts]
            ys = [p.median for p in pts if finite(p.median)]
            values += ys
            label = mpl_text(shorten(line.label, 40))
            ax.plot(xs, ys, color=color, linewidth=1.6, marker="o", markersize=3, label=label)
            tonight = [(x, y) for x, y, p in zip(xs, ys, pts, strict=True) if p.run_id == run_id]
            if tonight:
                ax.scatter(
                    [tonight[0][0]],
                    [tonight[0][1]],
                    s=55,
                    color=POINT_COLORS.get(line.verdict, color),
                    edgecolors="black",
                    zorder=4,
                )
        from_zero(ax, values)
        top = ax.get_ylim()[1]
        for mark in chart.marks:
            x = _date(mark.started)
            ax.axvline(x, color="#555555", linestyle=":", linewidth=1.2)
            ax.text(
                x, top * 0.98, mpl_text(mark.label), rotation=90, va="top", ha="right",
                fontsize=6.5, color="#333333",
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1},
            )  # fmt: skip
        locator = AutoDateLocator(minticks=2, maxticks=5)  # a tick a day, more for long ones
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
        ax.set_ylabel(mpl_text(f"median ({unit})" if unit else "median"))
        ax.set_title(mpl_text(chart.metric))
        ax.grid(alpha=0.3)
        # Beside the axes, not on them: it would hide the newest points, tonight's.
        ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        fig.tight_layout()
        return png_data_uri(fig)
