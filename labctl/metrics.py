"""What an experiment measures, as data: its trial kinds, the parameters that name a
configuration, its metrics (unit, which way is better, whether a nightly run judges it) and the
parameters that define a run's measurement. The results store, the regression check, the
summaries and the report read this; each experiment declares its own (docs/architecture.md,
"Adding an experiment").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Direction = Literal["higher", "lower"]
DIRECTIONS: tuple[Direction, ...] = ("higher", "lower")


@dataclass(frozen=True)
class Metric:
    name: str  # the key in a trial's metrics
    label: str  # for tables and plot axes: "connections/s"
    unit: str = ""  # "conn/s", "pkt/s", "Mbit/s", "us", "" for a ratio or a count
    better: Direction = "higher"
    watched: bool = False  # judged against the history by a nightly run
    shown: bool = True  # a column of the terminal summary (all are in --json and exports)


@dataclass(frozen=True)
class TrialKind:
    """One kind of trial an experiment stores (`TrialRecord.kind`)."""

    name: str
    config: tuple[str, ...]  # the trial params that say which configuration it measured
    metrics: tuple[Metric, ...]  # summarized per configuration, in this order
    baseline: tuple[str, Any] | None = None  # (param, value) others are compared with
    totals: tuple[str, ...] = ()  # counters summed per configuration (drops, ...)
    ratios: tuple[str, ...] = ()  # metrics also judged as a ratio to the baseline, per round

    @property
    def ratio_metrics(self) -> tuple[Metric, ...]:
        """The within-run ratios a nightly run watches: "conn_per_s_vs_shared" is each
        round's conn/s over the same round's mode=shared (labctl.results.ratios)."""
        if self.baseline is None:
            return ()
        param, value = self.baseline
        by_name = {m.name: m for m in self.metrics}
        return tuple(
            Metric(
                f"{name}_vs_{value}",
                f"{by_name[name].label} over {param}={value}",
                "x",
                by_name[name].better,
                watched=True,
                shown=False,
            )
            for name in self.ratios
        )


@dataclass(frozen=True)
class PlotSpec:
    """The experiment's main plot, as data (a suite's own experiment may declare one): each
    metric of `y` (a panel each) of `kind`'s trials against the param `x`, one line per value
    of the param `series`; `x_label` names the x axis with its unit ("packet size (bytes)"),
    `x` itself when empty. The report puts it first, under the headline."""

    kind: str
    x: str
    y: tuple[str, ...]
    series: str | None = None
    x_label: str = ""


@dataclass(frozen=True)
class ExperimentSpec:
    name: str
    identity: tuple[str, ...]  # run params that define what is measured (the fingerprint)
    kinds: tuple[TrialKind, ...]
    plot: PlotSpec | None = None

    def kind(self, name: str) -> TrialKind | None:
        return next((k for k in self.kinds if k.name == name), None)

    @property
    def watched(self) -> dict[str, Direction]:
        """Metric → direction, for every metric a nightly run judges."""
        return {
            m.name: m.better
            for k in self.kinds
            for m in (*k.metrics, *k.ratio_metrics)
            if m.watched
        }

    def metric(self, name: str) -> Metric | None:
        """A metric or within-run ratio of any kind, by name."""
        return next(
            (m for k in self.kinds for m in (*k.metrics, *k.ratio_metrics) if m.name == name),
            None,
        )
