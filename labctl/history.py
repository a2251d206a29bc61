"""A stored run against its history: which past runs compare, their verdicts, their trends.

The store says what ran; labctl.regress says what is comparable and what changed. A run's
history is the last N finished runs of the same experiment whose fingerprint matches (and,
for a nightly, of the same suite entry), each with at least one valid trial.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from labctl.htmlreport import ExperimentSection, HistoryPoint
from labctl.regress import (
    WATCHED,
    Direction,
    Fingerprint,
    MetricVerdict,
    compare,
    config_key,
    fingerprint,
    fingerprint_changes,
    provenance_changes,
)
from labctl.results import ResultsStore, RunSummary, TrialRecord
from labctl.stats import summarize

TREND_RUNS = 20  # points on a trend plot


@dataclass(frozen=True)
class RunComparison:
    run: RunSummary
    fingerprint: Fingerprint
    history: tuple[int, ...]  # the run ids compared with, newest first
    history_note: str
    verdicts: tuple[MetricVerdict, ...]
    changes: tuple[str, ...]  # what differs from the newest compared run: possible causes
    trends: Mapping[tuple[str, str], tuple[HistoryPoint, ...]]

    def section(self, store: ResultsStore) -> ExperimentSection:
        return ExperimentSection(
            run=self.run,
            trials=store.trials(self.run.id),
            hosts=store.hosts(self.run.id),
            fingerprint=self.fingerprint,
            history_note=self.history_note,
            verdicts=self.verdicts,
            trends=self.trends,
            changes=self.changes,
        )


def run_fingerprint(store: ResultsStore, run: RunSummary) -> Fingerprint:
    """The run's fingerprint, stored the first time it is worked out."""
    fp = fingerprint(run.experiment, run.params, store.hosts(run.id))
    if run.fingerprint != fp.digest:
        store.set_run_identity(run.id, fp.digest)
    return fp


def _median_of(trials: Sequence[TrialRecord], metric: str, config: str) -> float | None:
    values = [
        t.metrics[metric]
        for t in trials
        if t.valid and not t.warmup and metric in t.metrics and config_key(t) == config
    ]
    return summarize(values).median if values else None


def compare_run(
    store: ResultsStore,
    run_id: int,
    *,
    label: str | None = None,
    metrics: Mapping[str, Direction] | None = None,
    history: int = 5,
    threshold: float = 0.10,
    alpha: float = 0.05,
) -> RunComparison:
    run = store.run(run_id)
    fp = run_fingerprint(store, run)
    watched = dict(metrics or WATCHED.get(run.experiment, {}))
    label = label if label is not None else run.label
    candidates = [
        r
        for r in store.history(run.experiment, before=run.id, limit=500)
        if (label is None or r.label == label) and r.valid > 0
    ]
    same: list[RunSummary] = []
    other: RunSummary | None = None
    for r in candidates:
        digest = r.fingerprint or run_fingerprint(store, r).digest
        if digest == fp.digest:
            same.append(r)
        elif other is None and not same:
            other = r  # the newest run of an older history
    base = same[:history]
    if base:
        note = f"compared with run{'s' if len(base) > 1 else ''} " + ", ".join(
            str(r.id) for r in base
        )
    elif other is not None:
        old = fingerprint(other.experiment, other.params, store.hosts(other.id))
        why = "; ".join(fingerprint_changes(old.parts, fp.parts)) or "its fingerprint changed"
        note = f"new history (run {other.id} and before no longer compare): {why}"
    else:
        note = "no earlier run to compare with: this run starts the history"
    current = store.trials(run.id)
    base_trials = [(r.id, store.trials(r.id)) for r in base]
    verdicts = compare(run.experiment, current, base_trials, watched, threshold, alpha)
    changes: list[str] = []
    if base:
        newest = base[0]
        changes = provenance_changes(
            newest.params, run.params, store.hosts(newest.id), store.hosts(run.id)
        )
    elif other is not None:
        changes = provenance_changes(
            other.params, run.params, store.hosts(other.id), store.hosts(run.id)
        )
    trend_runs = list(reversed(same[:TREND_RUNS]))
    trend_trials = {r.id: store.trials(r.id) for r in trend_runs}
    for r_id, trials in base_trials:
        trend_trials[r_id] = trials
    trends: dict[tuple[str, str], tuple[HistoryPoint, ...]] = {}
    for v in verdicts:
        points = [
            HistoryPoint(r.id, r.started, _median_of(trend_trials[r.id], v.metric, v.config))
            for r in trend_runs
        ]
        points.append(HistoryPoint(run.id, run.started, v.current.median if v.current else None))
        trends[(v.metric, v.config)] = tuple(points)
    return RunComparison(
        run, fp, tuple(r.id for r in base), note, tuple(verdicts), tuple(changes), trends
    )
