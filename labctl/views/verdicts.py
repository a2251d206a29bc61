"""Verdicts in the terminal: a title, then one small table per configuration (80 columns):
tonight's median, the history's median (of its runs' medians), the ratio, tonight
against the run-to-run spread (z / limit), Mann-Whitney's p on the trials, the smallest change
the comparison can flag, the verdict; then any warning that it cannot resolve the threshold."""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.console import Group
from rich.markup import escape
from rich.table import Table

from labctl.results.regress import MetricVerdict
from labctl.stats import Summary, figure

COLORS = {"regression": "red", "improvement": "green", "ok": "green", "new": "cyan"}


def _median(summary: Summary | None) -> str:
    if summary is None:
        return "-"
    return figure(summary.median)


def verdict_table(title: str, verdicts: Sequence[MetricVerdict]) -> Group:
    by_config: dict[str, list[MetricVerdict]] = {}
    for v in verdicts:
        by_config.setdefault(v.config, []).append(v)
    parts: list[str | Table] = [f"[bold]{escape(title)}[/]"]
    for config, group in sorted(by_config.items()):
        table = Table(
            title=escape(config or group[0].experiment),
            title_justify="left",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
            collapse_padding=True,
        )
        for col in ("metric", "tonight", "history", "ratio", "z/limit", "p", "min", "verdict"):
            left = col in ("metric", "verdict")
            # the metric's name wraps first when 80 columns are short; the numbers never do
            table.add_column(
                col,
                justify="left" if left else "right",
                no_wrap=col != "metric",
                overflow="fold",
            )
        warnings = []
        for v in sorted(group, key=lambda v: v.metric):
            color = COLORS.get(v.verdict, "yellow")
            table.add_row(
                v.metric,
                _median(v.current),
                figure(v.center) if v.center is not None else "-",
                f"x{v.ratio:.2f}" if v.ratio is not None else "-",
                f"{v.noise.z:+.1f}/{v.noise.limit:.1f}" if v.noise else "-",
                _p(v.p_value),
                resolves(v),
                f"[{color}]{v.verdict}[/]",
            )
            if v.warning:
                warnings.append(f"  [yellow]![/] {escape(v.metric)}: {escape(v.warning)}")
        parts.append(table)
        parts += warnings
    return Group(*parts)


def _p(p: float | None) -> str:
    if p is None:
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.2g}"


def resolves(v: MetricVerdict) -> str:
    """The smallest change in the bad direction the comparison could flag: "-12%", "+30%"."""
    if v.resolution is None:
        return "never" if v.warning else "-"
    return f"{'-' if v.direction == 'higher' else '+'}{v.resolution * 100:.0f}%"


def regression_line(v: MetricVerdict) -> str:
    return f"[red]REGRESSION[/] {v.experiment} {v.metric} {escape(f'[{v.config}]')}: {v.reason}"
