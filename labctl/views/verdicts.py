"""Verdicts in the terminal: a title, then one small table per configuration (80 columns)."""

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
        )
        for col in ("metric", "tonight", "n", "history", "n ", "ratio", "p", "verdict"):
            left = col in ("metric", "verdict")
            table.add_column(col, justify="left" if left else "right", no_wrap=True)
        for v in sorted(group, key=lambda v: v.metric):
            color = COLORS.get(v.verdict, "yellow")
            table.add_row(
                v.metric,
                _median(v.current),
                str(v.current.n) if v.current else "-",
                _median(v.baseline),
                str(v.baseline.n) if v.baseline else "-",
                f"x{v.ratio:.2f}" if v.ratio is not None else "-",
                f"{v.p_value:.3g}" if v.p_value is not None else "-",
                f"[{color}]{v.verdict}[/]",
            )
        parts.append(table)
    return Group(*parts)


def regression_line(v: MetricVerdict) -> str:
    return f"[red]REGRESSION[/] {v.experiment} {v.metric} {escape(f'[{v.config}]')}: {v.reason}"
