"""A run's summary in the terminal: one table per trial kind, a row per configuration: each
metric's median and half its IQR over the valid trials, the first metric against the baseline
configuration, the totals the experiment's spec declares, the count of trials not counted;
then what a run like this one can resolve in the first metric."""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.markup import escape
from rich.table import Table

from labctl.experiments.summary import ConfigSummary
from labctl.metrics import ExperimentSpec
from labctl.results.power import repeats_per_side
from labctl.results.regress import Rule
from labctl.stats import Summary, figure


def _median_iqr(stats: Summary) -> str:
    """`224,447 ±5%`: the median, and half the IQR relative to it (the spread a reader
    compares between rows); absolute where the median is 0."""
    if stats.median:
        return f"{figure(stats.median)} ±{stats.iqr / 2 / abs(stats.median):.0%}"
    return f"{figure(stats.median)} ±{figure(stats.iqr / 2)}"


def _resolution_line(metric: str, rows: Sequence[ConfigSummary]) -> str:
    """What another run like this one could show in `metric`: its trials' resolution."""
    measured = [r for r in rows if r.stats is not None]
    steps = [r.resolution for r in measured if r.resolution is not None]
    alpha = Rule().alpha
    if measured and len(steps) < len(measured):
        n = min(r.stats.n for r in measured if r.stats is not None)
        return (
            f"  {metric}: {n} valid trials against another run's {n} can never reach "
            f"p < {alpha:g}: use --repeat {repeats_per_side(alpha)} or more to compare runs"
        )
    if not steps:
        return ""
    low, high = min(steps) * 100, max(steps) * 100
    span = f"{low:.0f}%" if round(low) == round(high) else f"{low:.0f}-{high:.0f}%"
    return (
        f"  {metric}: a run like this one tells changes of {span} or more from it (its trials' "
        f"spread, p < {alpha:g}); the lab's drift between runs adds to that (docs/nightly.md)"
    )


def summary_tables(
    spec: ExperimentSpec, rows: Sequence[ConfigSummary], title: str
) -> list[Table | str]:
    """Tables (and lines for kinds with nothing measured) to print, in the spec's order."""
    out: list[Table | str] = []
    for kind in spec.kinds:
        mine = [r for r in rows if r.kind == kind.name]
        if not mine:
            continue
        if all(r.stats is None for r in mine):
            reasons = dict.fromkeys(r.reason for r in mine if r.reason)
            out.append(f"{kind.name}: {escape('; '.join(reasons)) or 'no valid trial'}")
            continue
        present = [m for m in kind.metrics if m.shown and any(r.metric == m for r in mine)]
        if not present:
            continue
        head = present[0]
        table = Table(
            title=escape(
                f"{title}: {kind.name}, median ±IQR/2 of valid trials"
                + (
                    f"; {head.name} against {kind.baseline[0]}={kind.baseline[1]}"
                    if kind.baseline
                    else ""
                )
            ),
            box=box.SIMPLE_HEAD,
            pad_edge=False,
            collapse_padding=True,
        )
        for param in kind.config:  # the configuration is never cut: it names the row
            table.add_column(param, justify="left", no_wrap=True)
        table.add_column("n", justify="right", no_wrap=True)
        for m in present:
            table.add_column(escape(m.name), justify="right", no_wrap=True)
        if kind.baseline is not None:  # the first metric's ratio to the baseline's
            table.add_column(escape(f"vs {kind.baseline[1]}"), justify="right", no_wrap=True)
            table.add_column("p", justify="right", no_wrap=True)
        for name in kind.totals:
            table.add_column(name, justify="right")
        table.add_column("invalid", justify="right", no_wrap=True)
        configs = list(dict.fromkeys(tuple(r.config.items()) for r in mine))
        for config in configs:
            by_metric = {r.metric.name: r for r in mine if tuple(r.config.items()) == config}
            any_row = next(iter(by_metric.values()))
            cells = [escape(str(v)) for _, v in config]
            cells.append(str(max((r.stats.n for r in by_metric.values() if r.stats), default=0)))
            for m in present:
                r = by_metric.get(m.name)
                cells.append(_median_iqr(r.stats) if r and r.stats else "-")
            if kind.baseline is not None:
                first = by_metric.get(head.name)
                ratio = first.ratio_vs_baseline if first else None
                p = first.p_vs_baseline if first else None
                cells += [f"{ratio:.2f}x" if ratio else "-", f"{p:.3f}" if p is not None else "-"]
            cells += [figure((any_row.totals or {}).get(name, 0.0)) for name in kind.totals]
            cells.append(str(any_row.invalid))
            table.add_row(*cells)
        out.append(table)
        out.append(_resolution_line(head.name, [r for r in mine if r.metric == head]))
        units = [f"{m.name} in {m.unit}" for m in present if m.unit]
        if units:
            out.append(f"  units: {escape(', '.join(units))}")
        reasons = dict.fromkeys(r.reason for r in mine if r.reason and r.invalid)
        out += [f"  invalid or skipped: {escape(reason)}" for reason in reasons]
    return out
