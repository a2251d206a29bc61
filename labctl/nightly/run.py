"""One nightly run of a suite: lock the lab, clean up after any crashed run, provision if
asked, run each experiment, store everything, compare with history, report, unlock.

Exit status for cron: 0 all well, 1 a regression, 2 the run itself failed (a refused lock,
a failed provision, an experiment that could not run, an interruption). The lock is
released on every way out but SIGKILL, which the next run handles: the lock is stale (its
labctl is gone, or it expired), runs left 'running' are marked crashed, and processes left
on the hosts are stopped by PID before anything is measured.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl.errors import InputError, LabctlError
from labctl.experiments.base import (
    Interrupted,
    RunContext,
    SweepOutcome,
    interrupts_as_exception,
)
from labctl.inventory import Inventory
from labctl.nightly.leftovers import clean_leftovers, mark_crashed
from labctl.nightly.lock import DEFAULT_TTL, LabLock
from labctl.nightly.suite import Suite, SuiteExperiment
from labctl.paths import NIGHTLY_FAILED, NIGHTLY_OK, NIGHTLY_REGRESSION, PROVISION_PLAYBOOK
from labctl.remote import Connections
from labctl.results.history import RunComparison, compare_run
from labctl.results.regress import MetricVerdict, overall
from labctl.results.store import ResultsStore

Say = Callable[[str], None]


@dataclass
class NightlyOutcome:
    nightly_id: int | None
    status: str = "running"  # ok, regression, failed, interrupted
    comparisons: list[tuple[str, RunComparison]] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (what, why)
    notes: list[str] = field(default_factory=list)
    html: Path | None = None
    junit: Path | None = None
    started: float = field(default_factory=time.time)

    @property
    def verdicts(self) -> list[MetricVerdict]:
        return [v for _, c in self.comparisons for v in c.verdicts]

    @property
    def exit_code(self) -> int:
        if self.status in ("failed", "interrupted"):
            return NIGHTLY_FAILED
        return NIGHTLY_REGRESSION if self.status == "regression" else NIGHTLY_OK


def run_experiment(
    entry: SuiteExperiment,
    inventory: Inventory,
    store: ResultsStore,
    project_dir: Path,
    on_trial: Any = None,
) -> SweepOutcome:
    """One suite entry, as `labctl experiment` would run it."""
    experiment = entry.experiment_type()()
    ctx = RunContext(
        inventory,
        store,
        server=entry.server,
        clients=entry.clients,
        seed=entry.seed,
        on_trial=on_trial,
        project_dir=project_dir,
    )
    return experiment.run(ctx, entry.options())


def _provision(suite: Suite, inventory: Inventory, hosts: str, say: Say) -> list[str]:
    """Run playbooks/provision.yml with the suite's tags; the failures, one line each."""
    from labctl.play.load import load_playbook
    from labctl.play.run import QuietReporter, RunOptions, run_playbook

    book = load_playbook(PROVISION_PLAYBOOK)
    options = RunOptions(limit=hosts, tags=frozenset(suite.provision_tags))
    say(f"provision ({', '.join(suite.provision_tags) or 'all steps'}) ...")
    run = run_playbook(book, inventory, options, QuietReporter())
    failures = [
        f"{r.host}: {r.task}: {'; '.join(r.msg.splitlines()) if r.msg else r.status}"
        for r in run.results
        if r.status in ("failed", "unreachable") and not r.ignored
    ]
    changed = sum(1 for r in run.results if r.status == "changed")
    say(f"provision: {len(run.results)} task results, {changed} changed, {len(failures)} failed")
    return failures


def pinned_baselines(suite: Suite, store: ResultsStore, run_ids: Sequence[int]) -> dict[str, int]:
    """`--baseline RUN,...`: each run pins the suite entry it was run for (its label), or the
    one entry of its experiment for a run made by hand."""
    out: dict[str, int] = {}
    for run_id in run_ids:
        run = store.run(run_id)
        entries = [e for e in suite.experiments if e.name == run.label] or [
            e for e in suite.experiments if e.experiment == run.experiment
        ]
        if len(entries) != 1:
            raise InputError(
                f"baseline run {run_id} ({run.experiment}"
                + (f", entry {run.label}" if run.label else "")
                + ") matches "
                + (
                    "no entry of suite " + suite.name
                    if not entries
                    else "entries " + ", ".join(e.name for e in entries) + ": name one"
                )
            )
        if entries[0].name in out:
            raise InputError(f"two baselines for entry {entries[0].name}")
        out[entries[0].name] = run_id
    return out


def run_nightly(
    suite: Suite,
    inventory: Inventory,
    store: ResultsStore,
    *,
    project_dir: Path,
    baselines: Mapping[str, int] | None = None,
    say: Say = lambda msg: None,
    on_trial: Callable[[SuiteExperiment], Any] | None = None,
    finish: Callable[[NightlyOutcome], None] | None = None,
    ttl: float = DEFAULT_TTL,
) -> NightlyOutcome:
    """The whole nightly; `finish` writes the reports before the lock is released."""
    selected = list(inventory.select(suite.hosts))
    hosts = [h.name for h in selected]
    if not hosts:
        raise LabctlError(f"suite {suite.name}: pattern {suite.hosts!r} selects no host")
    for entry in suite.experiments:  # never measure on a host the run has not locked
        entry.experiment_type()().preflight(inventory, entry.options())  # before any host
        outside = [
            h.name
            for h in entry.experiment_type()().hosts(inventory, entry.server, entry.clients)
            if h.name not in hosts
        ]
        if outside:
            raise InputError(
                f"experiment {entry.name} runs on {', '.join(outside)}, outside the suite's "
                f"hosts {suite.hosts!r}",
                suite.path,
                entry.line,
            )
    outcome = NightlyOutcome(None)
    for note in mark_crashed(store):
        outcome.notes.append(note)
        say(note)
    with Connections(selected) as conns, interrupts_as_exception():
        lock = LabLock(conns, hosts, f"nightly {suite.name}", ttl=ttl, on_message=say)
        lock.acquire()  # LockHeld: refused, nothing recorded
        try:
            outcome.notes.extend(lock.messages)
            outcome.nightly_id = store.start_nightly(suite.name, suite.path, inventory.path)
            _body(
                suite,
                inventory,
                store,
                conns,
                hosts,
                lock,
                outcome,
                project_dir,
                say,
                on_trial,
                baselines or {},
            )
        except Interrupted as exc:
            outcome.status = "interrupted"
            outcome.errors.append(("nightly", f"interrupted by {exc}"))
        except LabctlError as exc:
            outcome.status = "failed"
            outcome.errors.append(("nightly", str(exc)))
        finally:
            # The way out runs whole: a second Ctrl-C or SIGTERM waits until the reports are
            # written, the store updated and every host's lock released.
            blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
            try:
                if outcome.status == "running":
                    outcome.status = "failed"  # an unexpected error is on its way up
                if finish is not None and outcome.nightly_id is not None:
                    try:
                        finish(outcome)
                    except Exception as exc:  # the outcome is stored all the same
                        outcome.errors.append(("report", f"{type(exc).__name__}: {exc}"))
                        outcome.status = "failed"
                if outcome.nightly_id is not None:
                    store.update_nightly(
                        outcome.nightly_id,
                        status=outcome.status,
                        summary=_summary(outcome),
                    )
            finally:
                try:
                    lock.release()
                finally:
                    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    return outcome


def _body(
    suite: Suite,
    inventory: Inventory,
    store: ResultsStore,
    conns: Connections,
    hosts: list[str],
    lock: LabLock,
    outcome: NightlyOutcome,
    project_dir: Path,
    say: Say,
    on_trial: Callable[[SuiteExperiment], Any] | None,
    baselines: Mapping[str, int],
) -> None:
    assert outcome.nightly_id is not None
    for found in clean_leftovers(conns, hosts):
        outcome.notes.append(found.describe())
        say(found.describe())
    if suite.provision:
        failures = _provision(suite, inventory, suite.hosts, say)
        if failures:
            outcome.errors.extend(("provision", f) for f in failures)
            outcome.status = "failed"
            return
        lock.renew()
    run_ids: dict[str, int] = {}
    interrupted = False
    for entry in suite.experiments:
        say(f"experiment {entry.name} ({entry.experiment}) ...")
        progress = _RenewingProgress(lock, on_trial(entry) if on_trial else None)
        result = run_experiment(entry, inventory, store, project_dir, progress)
        run_ids[entry.name] = result.run_id
        store.update_nightly(outcome.nightly_id, runs=run_ids)
        store.set_run_identity(result.run_id, label=entry.name)
        if result.status != "finished":
            outcome.errors.append(
                (entry.name, f"run {result.run_id} {result.status}: {result.note}")
            )
            interrupted = result.status == "interrupted"
            if interrupted:
                break
            continue
        comparison = compare_run(
            store,
            result.run_id,
            entry.experiment_type().spec,
            label=entry.name,
            metrics=entry.metrics or None,
            rule=suite.rule,
            baseline=baselines.get(entry.name, entry.baseline),
        )
        outcome.comparisons.append((entry.name, comparison))
        lock.renew()
    if interrupted:
        outcome.status = "interrupted"
    elif outcome.errors:
        outcome.status = "failed"
    else:
        outcome.status = overall(outcome.verdicts)


class _RenewingProgress:
    """Passes each stored trial on, and keeps the lab lock from expiring under a long sweep."""

    def __init__(self, lock: LabLock, inner: Any) -> None:
        self.lock = lock
        self.inner = inner

    def start(self, total: int) -> None:
        if self.inner is not None:
            self.inner.start(total)

    def begin(self, spec: Any) -> None:
        if self.inner is not None:
            self.inner.begin(spec)

    def __call__(self, spec: Any, record: Any) -> None:
        self.lock.renew_if_due()
        if self.inner is not None:
            self.inner(spec, record)


def _summary(outcome: NightlyOutcome) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for v in outcome.verdicts:
        counts[v.verdict] = counts.get(v.verdict, 0) + 1
    return {
        "verdicts": counts,
        "regressions": [v.reason for v in outcome.verdicts if v.verdict == "regression"],
        "errors": [f"{what}: {why}" for what, why in outcome.errors],
        "notes": outcome.notes,
        "html": str(outcome.html) if outcome.html else None,
        "junit": str(outcome.junit) if outcome.junit else None,
        "exit": outcome.exit_code,
    }
