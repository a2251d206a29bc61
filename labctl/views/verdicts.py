"""Verdicts in the terminal: a title, then one small table per configuration (80 columns):
tonight's median, the history's median (of its runs' medians), the ratio, tonight
against the run-to-run spread (z / limit), Mann-Whitney's p on the trials, the smallest change
the comparison can flag, the verdict; then any warning that it cannot resolve the threshold.
When the trial test cannot reach alpha at the runs' sizes, that is said once, above the tables,
with the repeats that would (labctl.results.power). `comparison_json` is the same as data."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from rich import box
from rich.console import Group
from rich.markup import escape
from rich.table import Table

from labctl.results.history import PairComparison
from labctl.results.power import Power
from labctl.results.regress import MetricVerdict, Rule, overall, powers
from labctl.stats import Summary, figure

VERDICTS = ("regression", "improvement", "ok", "undecided", "new", "no-data")
COLORS = {
    "regression": "red",
    "improvement": "green",
    "ok": "green",
    "new": "cyan",
    "undecided": "yellow",
}


def _median(summary: Summary | None) -> str:
    if summary is None:
        return "-"
    return figure(summary.median)


def verdict_table(title: str, verdicts: Sequence[MetricVerdict]) -> Group:
    by_config: dict[str, list[MetricVerdict]] = {}
    for v in verdicts:
        by_config.setdefault(v.config, []).append(v)
    parts: list[str | Table] = [f"[bold]{escape(title)}[/]"]
    unreachable = [p.note() for p in powers(verdicts) if not p.reachable]
    parts += [f"  [yellow]![/] trials: {escape(note)}" for note in unreachable]
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
            if v.warning and v.warning not in unreachable:  # said once, above
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


# ---------------------------------------------------------------------------- JSON


def _plain(value: Any) -> Any:
    """JSON-able, strictly: a float that is not finite (a z of -inf) becomes null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def power_dict(power: Power) -> dict[str, Any]:
    return _plain({**dataclasses.asdict(power), "reachable": power.reachable, "note": power.note()})


def verdict_dict(v: MetricVerdict) -> dict[str, Any]:
    doc = dataclasses.asdict(v)
    doc["power"] = power_dict(v.power) if v.power is not None else None
    return _plain(doc)


def comparison_json(pair: PairComparison, rule: Rule) -> dict[str, Any]:
    """`labctl results.compare A B --json`: the verdict over all, what the trial test can
    reach at these sizes (once per pair of sizes), every verdict, what changed."""
    return {
        "a": pair.a.id,
        "b": pair.b.id,
        "experiment": pair.b.experiment,
        "result": overall(pair.verdicts),
        "counts": {k: sum(v.verdict == k for v in pair.verdicts) for k in VERDICTS},
        "rule": dataclasses.asdict(rule),
        "same_fingerprint": pair.same_fingerprint,
        "fingerprint_changes": list(pair.fingerprint_changes),
        "power": [power_dict(p) for p in powers(pair.verdicts)],
        "verdicts": [verdict_dict(v) for v in pair.verdicts],
        "changes": list(pair.changes),
    }
