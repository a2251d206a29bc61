"""A stored run against its history: which past runs compare, their verdicts, their trends.

The store says what ran; labctl.results.regress says what is comparable and what changed. A run's
history is the last N finished runs of the same experiment whose fingerprint matches (and,
for a nightly, of the same suite entry), each with at least one valid trial, from whichever
lab wrote them into the store: the note names each one's lab when they are not all this run's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from labctl.errors import InputError
from labctl.metrics import Direction, ExperimentSpec
from labctl.results.fingerprint import (
    Fingerprint,
    fingerprint,
    fingerprint_changes,
    provenance_changes,
)
from labctl.results.ratios import with_ratios
from labctl.results.regress import MetricVerdict, Rule, compare, config_key
from labctl.results.store import ResultsStore, RunSummary, TrialRecord
from labctl.stats import summarize

TREND_RUNS = 20  # points on a trend plot


@dataclass(frozen=True)
class HistoryPoint:
    run_id: int
    started: float
    median: float | None  # None: the run had no valid trial of that configuration


@dataclass(frozen=True)
class RunComparison:
    run: RunSummary
    trials: tuple[TrialRecord, ...]
    hosts: Mapping[str, tuple[str, Mapping[str, Any]]]
    fingerprint: Fingerprint
    history: tuple[int, ...]  # the run ids compared with, newest first
    history_note: str
    verdicts: tuple[MetricVerdict, ...]
    changes: tuple[str, ...]  # what differs from the newest compared run: possible causes
    trends: Mapping[tuple[str, str], tuple[HistoryPoint, ...]]
    spec: ExperimentSpec | None = None

    @property
    def judged(self) -> list[TrialRecord]:
        """Tonight's trials as the verdicts judged them: with the within-run ratios."""
        return with_ratios(self.trials, self.spec)


def run_fingerprint(
    store: ResultsStore, run: RunSummary, spec: ExperimentSpec | None
) -> Fingerprint:
    """The run's fingerprint, stored the first time it is worked out."""
    return _fingerprint(store, run, store.hosts(run.id), spec)


def _fingerprint(
    store: ResultsStore,
    run: RunSummary,
    hosts: Mapping[str, tuple[str, Mapping[str, Any]]],
    spec: ExperimentSpec | None,
) -> Fingerprint:
    fp = fingerprint(run.experiment, run.params, hosts, spec)
    if run.fingerprint != fp.digest:
        store.set_run_identity(run.id, fp.digest)
    return fp


def _median_of(
    trials: Sequence[TrialRecord], metric: str, config: str, spec: ExperimentSpec | None
) -> float | None:
    values = [
        t.metrics[metric]
        for t in trials
        if t.valid and not t.warmup and metric in t.metrics and config_key(t, spec) == config
    ]
    return summarize(values).median if values else None


def compare_run(
    store: ResultsStore,
    run_id: int,
    spec: ExperimentSpec | None,
    *,
    label: str | None = None,
    metrics: Mapping[str, Direction] | None = None,
    rule: Rule | None = None,
    baseline: int | None = None,
) -> RunComparison:
    """The run against its history: the last `rule.history` comparable runs before it, or,
    with a `baseline` run, that run and the comparable runs before it (a pinned reference).
    Runs older than the newest run accepted with `labctl results.accept` never count."""
    rule = rule or Rule()
    run = store.run(run_id)
    hosts = store.hosts(run.id)
    fp = _fingerprint(store, run, hosts, spec)
    watched = dict(metrics or (spec.watched if spec is not None else {}))
    label = label if label is not None else run.label
    if baseline is not None:
        pinned = store.run(baseline)
        if pinned.experiment != run.experiment or pinned.id >= run.id:
            raise InputError(
                f"baseline run {pinned.id} ({pinned.experiment}) is not an earlier run of "
                f"{run.experiment} than run {run.id}"
            )
    start = store.accepted_since(run.experiment, label, before=run.id)
    candidates = [
        r
        for r in store.history(run.experiment, before=run.id, limit=500)
        if (label is None or r.label == label)
        and r.valid > 0
        and (baseline is None or r.id <= baseline)
        and (start is None or r.id >= start)
    ]
    same: list[RunSummary] = []
    other: RunSummary | None = None  # the newest run of an older history
    for r in candidates:
        if (r.fingerprint or run_fingerprint(store, r, spec).digest) == fp.digest:
            same.append(r)
        elif other is None and not same:
            other = r
    base = same[: rule.history]
    if baseline is not None and (not base or base[0].id != baseline):
        raise InputError(
            f"baseline run {baseline} does not compare with run {run.id}: another fingerprint"
            + (f" or suite entry (run {run.id} is {label!r})" if label else "")
            + ", no valid trial, or before an accepted run"
        )
    if base:
        other_labs = any(r.lab != run.lab for r in base)  # a shared store: say where each ran
        note = f"compared with run{'s' if len(base) > 1 else ''} " + ", ".join(
            f"{r.id} ({r.lab})" if other_labs else str(r.id) for r in base
        )
        if baseline is not None:
            note += f" (pinned baseline: run {baseline})"
        if start is not None:
            note += f" (history accepted from run {start})"
    elif start is not None:
        note = f"no comparable run since run {start} was accepted: this run starts the history"
    elif other is not None:
        old = fingerprint(other.experiment, other.params, store.hosts(other.id), spec)
        why = "; ".join(fingerprint_changes(old.parts, fp.parts)) or "its fingerprint changed"
        note = f"new history (run {other.id} and before no longer compare): {why}"
    else:
        note = "no earlier run to compare with: this run starts the history"
    trend_runs = list(reversed(same[:TREND_RUNS]))  # oldest first; the baseline among them
    wanted = dict.fromkeys(r.id for r in [*trend_runs, *base])
    # Each run read once, with its within-run ratios (labctl.results.ratios).
    past = {run_id: with_ratios(store.trials(run_id), spec) for run_id in wanted}
    current = store.trials(run.id)
    verdicts = compare(
        run.experiment,
        with_ratios(current, spec),
        [(r.id, past[r.id]) for r in base],
        watched,
        rule,
        spec,
    )
    reference = base[0] if base else other  # what tonight is explained against
    changes = (
        provenance_changes(
            reference.params, run.params, store.hosts(reference.id), hosts, spec=spec
        )
        if reference is not None
        else []
    )
    trends: dict[tuple[str, str], tuple[HistoryPoint, ...]] = {}
    for v in verdicts:
        points = [
            HistoryPoint(r.id, r.started, _median_of(past[r.id], v.metric, v.config, spec))
            for r in trend_runs
        ]
        points.append(HistoryPoint(run.id, run.started, v.current.median if v.current else None))
        trends[(v.metric, v.config)] = tuple(points)
    return RunComparison(
        run,
        tuple(current),
        hosts,
        fp,
        tuple(r.id for r in base),
        note,
        tuple(verdicts),
        tuple(changes),
        trends,
        spec,
    )


@dataclass(frozen=True)
class PairComparison:
    """Run B against run A (`labctl results.compare A B`)."""

    a: RunSummary
    b: RunSummary
    same_fingerprint: bool
    fingerprint_changes: tuple[str, ...]  # why the fingerprints differ, if they do
    verdicts: tuple[MetricVerdict, ...]
    changes: tuple[str, ...]  # everything that differs between the runs: possible causes


def compare_pair(
    store: ResultsStore,
    run_a: int,
    run_b: int,
    spec: ExperimentSpec | None,
    rule: Rule | None = None,
) -> PairComparison:
    """B against A, metric by metric; refused (InputError) for runs of two experiments."""
    rule = rule or Rule()
    a, b = store.run(run_a), store.run(run_b)
    if a.experiment != b.experiment:
        raise InputError(
            f"run {a.id} is {a.experiment}, run {b.id} is {b.experiment}: not comparable"
        )
    hosts_a, hosts_b = store.hosts(a.id), store.hosts(b.id)
    fp_a, fp_b = _fingerprint(store, a, hosts_a, spec), _fingerprint(store, b, hosts_b, spec)
    verdicts = compare(
        b.experiment,
        with_ratios(store.trials(b.id), spec),
        [(a.id, with_ratios(store.trials(a.id), spec))],
        spec.watched if spec is not None else {},
        rule,
        spec,
        pair=True,
    )
    changes = provenance_changes(a.params, b.params, hosts_a, hosts_b)
    return PairComparison(
        a,
        b,
        fp_a.digest == fp_b.digest,
        tuple(fingerprint_changes(fp_a.parts, fp_b.parts)),
        tuple(verdicts),
        tuple(changes),
    )
