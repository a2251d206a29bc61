"""The results store: runs → trials → metrics, with provenance, in a sqlite file (WAL, the
embedded default) or a PostgreSQL database a team shares (labctl.results.backend).

Each trial is written in one transaction, so a run killed mid-way keeps every trial that
finished and never half of one. Host facts are stored with the run they describe. Several
labctl may write one store at once: run ids come from the database, each run has a uid of
its own, and a run whose labctl died is marked crashed by the next labctl that looks, on
its own machine at once, from another machine once its heartbeat has gone silent.

Why one module: every query of the store's tables is here, written once for both backends,
so a schema change (a new revision in migrations/) is checked against all of them in one
place; the records, the backends and the liveness rules live beside it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from labctl import __version__
from labctl.errors import InputError
from labctl.procs import controller_id
from labctl.results import schema as t
from labctl.results.backend import (
    StoreLocation,
    db_now,
    insert_ignoring,
    insert_replacing,
    locate,
    make_engine,
)
from labctl.results.liveness import Heartbeat, find_dead
from labctl.results.migrate import SchemaError, ensure_schema
from labctl.results.records import (
    NightlyRecord,
    RunSummary,
    StoreError,
    TrialRecord,
    lab_of,
    loads,
)

__all__ = ["NightlyRecord", "ResultsStore", "RunSummary", "StoreError", "TrialRecord", "lab_of"]


def _brief(exc: sa.exc.SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class ResultsStore:
    """`create=False` (the read commands): the store must already exist; a mistyped
    `--store` is an error, not a new empty database. `lab`: the lab this labctl's runs are
    stored for (empty: each run's inventory file's name)."""

    def __init__(self, store: str | Path, create: bool = True, lab: str = "") -> None:
        self.where: StoreLocation = locate(store)
        self.lab = lab
        path = self.where.path
        if path is not None:
            if not create and not path.is_file():
                raise InputError(
                    f"{path}: no results store here (run an experiment first, or give --store)"
                )
            if create:
                path.parent.mkdir(parents=True, exist_ok=True)
        self._engine = make_engine(self.where)
        self._dialect = self._engine.dialect.name
        self._heartbeat = Heartbeat(self.beat)
        try:
            ensure_schema(self._engine, str(self.where), create)
        except (InputError, SchemaError):
            self._engine.dispose()
            raise
        except sa.exc.SQLAlchemyError as exc:
            self._engine.dispose()
            raise StoreError(f"{self.where}: not a usable results store: {_brief(exc)}") from exc

    @property
    def path(self) -> str:
        """The store as messages name it: the file, or the URL without its password."""
        return str(self.where)

    @property
    def backend(self) -> str:
        return self.where.backend

    def close(self) -> None:
        self._heartbeat.close()
        self._engine.dispose()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def dialect(self) -> str:
        return self._dialect

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """One transaction that holds the write lock from its start (sqlite)."""
        try:
            with (
                self._engine.connect().execution_options(labctl_write=True) as conn,
                conn.begin(),
            ):
                yield conn
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"results store: {_brief(exc)} ({self.where})") from exc

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        try:
            with self._engine.connect() as conn:
                yield conn
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"results store: {_brief(exc)} ({self.where})") from exc

    # -- writing
    def start_run(
        self,
        experiment: str,
        params: Mapping[str, Any],
        inventory: str,
        seed: int | None,
        lab: str | None = None,
    ) -> int:
        with self.writing() as db:
            run_id = db.execute(
                t.runs.insert()
                .values(
                    experiment=experiment,
                    started=db_now(self._dialect),
                    heartbeat=db_now(self._dialect),
                    status="running",
                    labctl_version=__version__,
                    params=json.dumps(params),
                    inventory=inventory,
                    seed=seed,
                    controller=controller_id(),
                    uid=uuid.uuid4().hex,
                    lab=lab or self.lab or lab_of(inventory),
                )
                .returning(t.runs.c.id)
            ).scalar_one()
        self._heartbeat.add("runs", run_id)
        return int(run_id)

    def add_hosts(self, run_id: int, hosts: Mapping[str, tuple[str, Mapping[str, Any]]]) -> None:
        """hosts: name → (role, facts)."""
        if not hosts:
            return
        with self.writing() as db:
            db.execute(
                insert_replacing(t.run_hosts, self._dialect, ("run_id", "host")),
                [
                    {"run_id": run_id, "host": h, "role": role, "facts": json.dumps(facts)}
                    for h, (role, facts) in hosts.items()
                ],
            )

    def add_trial(self, run_id: int, trial: TrialRecord) -> int:
        """One transaction: the trial, its metrics and outputs land together or not at all."""
        with self.writing() as db:
            trial_id = db.execute(
                t.trials.insert()
                .values(
                    run_id=run_id,
                    seq=trial.seq,
                    kind=trial.kind,
                    warmup=int(trial.warmup),
                    params=json.dumps(trial.params),
                    started=trial.started,
                    duration=trial.duration,
                    valid=int(trial.valid),
                    reason=trial.reason,
                    state=json.dumps(trial.state),
                )
                .returning(t.trials.c.id)
            ).scalar_one()
            if trial.metrics:
                db.execute(
                    t.metrics.insert(),
                    [
                        {"trial_id": trial_id, "name": k, "value": float(v)}
                        for k, v in trial.metrics.items()
                    ],
                )
            if trial.outputs:
                db.execute(
                    t.outputs.insert(),
                    [
                        {"trial_id": trial_id, "host": h, "role": r, "stream": s, "text": x}
                        for h, r, s, x in trial.outputs
                    ],
                )
            return int(trial_id)

    def finish_run(self, run_id: int, status: str, note: str = "") -> None:
        self._heartbeat.remove("runs", run_id)
        with self.writing() as db:
            db.execute(
                t.runs.update()
                .where(t.runs.c.id == run_id)
                .values(finished=db_now(self._dialect), status=status, note=note)
            )

    def set_run_identity(
        self, run_id: int, fingerprint: str | None = None, label: str | None = None
    ) -> None:
        values: dict[str, Any] = {}
        if fingerprint is not None:
            values["fingerprint"] = fingerprint
        if label is not None:
            values["label"] = label
        if not values:
            return
        with self.writing() as db:
            db.execute(t.runs.update().where(t.runs.c.id == run_id).values(**values))

    def beat(self, live: Mapping[str, Sequence[int]]) -> None:
        """A sign of life for these running runs and nightlies ({"runs": [...], ...})."""
        if not any(live.values()):
            return
        with self.writing() as db:
            for name, ids in live.items():
                if ids:
                    table = t.runs if name == "runs" else t.nightly
                    db.execute(
                        table.update()
                        .where(table.c.id.in_(ids), table.c.status == "running")
                        .values(heartbeat=db_now(self._dialect))
                    )

    def mark_crashed_runs(self) -> list[int]:
        """Runs still 'running' whose labctl is gone (SIGKILL, a power cut): 'crashed'.

        Their finished trials stay. A labctl on this machine is judged by its process; one
        on another machine (a shared store) by its heartbeat: silent for SILENT_AFTER."""
        with self.reading() as db:
            dead = find_dead(db, t.runs, self._dialect)
            dead_nightly = find_dead(db, t.nightly, self._dialect)
        if dead or dead_nightly:
            with self.writing() as db:
                for run_id, why in dead:
                    db.execute(
                        t.runs.update()
                        .where(t.runs.c.id == run_id, t.runs.c.status == "running")
                        .values(status="crashed", note=why)
                    )
                for nid, _ in dead_nightly:
                    db.execute(
                        t.nightly.update()
                        .where(t.nightly.c.id == nid, t.nightly.c.status == "running")
                        .values(status="crashed")
                    )
        return [run_id for run_id, _ in dead]

    def start_nightly(
        self, suite: str, suite_file: str, inventory: str, lab: str | None = None
    ) -> int:
        with self.writing() as db:
            nid = db.execute(
                t.nightly.insert()
                .values(
                    suite=suite,
                    suite_file=suite_file,
                    inventory=inventory,
                    started=db_now(self._dialect),
                    heartbeat=db_now(self._dialect),
                    status="running",
                    controller=controller_id(),
                    uid=uuid.uuid4().hex,
                    lab=lab or self.lab or lab_of(inventory),
                )
                .returning(t.nightly.c.id)
            ).scalar_one()
        self._heartbeat.add("nightly", nid)
        return int(nid)

    def update_nightly(
        self,
        nightly_id: int,
        *,
        runs: Mapping[str, int] | None = None,
        status: str | None = None,
        summary: Mapping[str, Any] | None = None,
    ) -> None:
        values: dict[str, Any] = {}
        if runs is not None:
            values["runs"] = json.dumps(runs)
        if summary is not None:
            values["summary"] = json.dumps(summary)
        if status is not None:
            values.update(status=status, finished=db_now(self._dialect))
            self._heartbeat.remove("nightly", nightly_id)
        if not values:
            return
        with self.writing() as db:
            db.execute(t.nightly.update().where(t.nightly.c.id == nightly_id).values(**values))

    def add_undo(self, run_id: int, host: str, entries: Sequence[Mapping[str, Any]]) -> None:
        """Keep what puts back a change (entries: target, action, args). Of several changes
        to one target in a run only the first is kept: it holds the state before the run."""
        if not entries:
            return
        with self.writing() as db:
            seq = db.execute(
                sa.select(sa.func.coalesce(sa.func.max(t.undo.c.seq), 0)).where(
                    t.undo.c.run_id == run_id
                )
            ).scalar_one()
            db.execute(
                insert_ignoring(t.undo, self._dialect),
                [
                    {
                        "run_id": run_id,
                        "host": host,
                        "target": e["target"],
                        "seq": seq + i,
                        "action": e["action"],
                        "args": json.dumps(e["args"]),
                    }
                    for i, e in enumerate(entries, 1)
                ],
            )

    def undo_entries(self, run_id: int) -> list[tuple[str, dict[str, Any]]]:
        """(host, {target, action, args}) of a run, last change first: the order to undo in."""
        u = t.undo.c
        with self.reading() as db:
            rows = db.execute(
                sa.select(u.host, u.target, u.action, u.args)
                .where(u.run_id == run_id)
                .order_by(u.seq.desc())
            ).all()
        return [
            (
                r.host,
                {
                    "target": r.target,
                    "action": r.action,
                    "args": loads(r.args, f"run {run_id}'s undo of {r.target}"),
                },
            )
            for r in rows
        ]

    # -- reading
    def _summaries(self, where: Any, limit: int) -> list[RunSummary]:
        r, tr = t.runs.c, t.trials.c
        counted = (
            sa.select(
                tr.run_id,
                sa.func.count().label("n"),
                sa.func.sum(sa.case(((tr.valid == 1) & (tr.warmup == 0), 1), else_=0)).label("v"),
            )
            .group_by(tr.run_id)
            .subquery()
        )
        query = (
            sa.select(t.runs, counted.c.n, counted.c.v)
            .select_from(t.runs.outerjoin(counted, counted.c.run_id == r.id))
            .order_by(r.id.desc())
            .limit(limit)
        )
        if where is not None:
            query = query.where(where)
        with self.reading() as db:
            rows = db.execute(query).all()
        return [
            RunSummary(
                row.id,
                row.experiment,
                row.started,
                row.finished,
                row.status,
                int(row.n or 0),
                int(row.v or 0),
                loads(row.params, f"run {row.id}'s params"),
                row.note or "",
                row.fingerprint,
                row.label,
                row.labctl_version,
                row.inventory,
                row.seed,
                row.lab or lab_of(row.inventory),
            )
            for row in rows
        ]

    def runs(self, limit: int = 20) -> list[RunSummary]:
        return self._summaries(None, limit)

    def run(self, run_id: int) -> RunSummary:
        found = self._summaries(t.runs.c.id == run_id, 1)
        if not found:
            raise InputError(f"{self.where}: no run {run_id}")
        return found[0]

    def history(self, experiment: str, before: int, limit: int = 50) -> list[RunSummary]:
        """Finished runs of an experiment older than run `before`, newest first, from every
        lab writing this store (the fingerprint decides what compares)."""
        r = t.runs.c
        return self._summaries(
            (r.experiment == experiment) & (r.id < before) & (r.status == "finished"), limit
        )

    def accept_run(self, run_id: int, note: str = "") -> bool:
        """Start a new history at `run_id` on purpose (after an intended change): runs of its
        experiment and suite entry before it no longer count. False if already accepted."""
        run = self.run(run_id)
        if run.status != "finished":
            raise InputError(f"run {run_id} is {run.status}: only a finished run starts a history")
        with self.writing() as db:
            added = db.execute(
                insert_ignoring(t.accepted, self._dialect)
                .values(run_id=run_id, at=db_now(self._dialect), note=note)
                .returning(t.accepted.c.run_id)
            ).first()
        return added is not None

    def accepted_since(self, experiment: str, label: str | None, before: int) -> int | None:
        """The newest accepted run of `experiment` (and suite entry `label`) before run
        `before`, or that run itself; None when none was accepted."""
        r = t.runs.c
        query = (
            sa.select(sa.func.max(t.accepted.c.run_id))
            .select_from(t.accepted.join(t.runs, r.id == t.accepted.c.run_id))
            .where(r.experiment == experiment, r.id <= before)
        )
        if label is not None:
            query = query.where(r.label == label)
        with self.reading() as db:
            found = db.execute(query).scalar()
        return int(found) if found is not None else None

    def nightly_runs(self, limit: int = 20) -> list[NightlyRecord]:
        with self.reading() as db:
            rows = db.execute(
                sa.select(t.nightly).order_by(t.nightly.c.id.desc()).limit(limit)
            ).all()
        return [
            NightlyRecord(
                r.id,
                r.suite,
                r.started,
                r.finished,
                r.status,
                loads(r.runs, f"nightly {r.id}'s runs"),
                loads(r.summary, f"nightly {r.id}'s summary"),
                r.lab or lab_of(r.inventory),
            )
            for r in rows
        ]

    def trials(self, run_id: int) -> list[TrialRecord]:
        tr, m = t.trials.c, t.metrics.c
        with self.reading() as db:
            rows = db.execute(sa.select(t.trials).where(tr.run_id == run_id).order_by(tr.seq)).all()
            values = db.execute(
                sa.select(m.trial_id, m.name, m.value)
                .select_from(t.metrics.join(t.trials, tr.id == m.trial_id))
                .where(tr.run_id == run_id)
            ).all()
        by_trial: dict[int, dict[str, Any]] = {}
        for trial_id, name, value in values:
            by_trial.setdefault(trial_id, {})[name] = value
        out = []
        for r in rows:
            metrics = by_trial.get(r.id, {})
            bad = next((k for k, v in metrics.items() if not isinstance(v, int | float)), None)
            if bad is not None:
                raise StoreError(
                    f"damaged results store: run {run_id} trial {r.seq}: metric {bad!r} "
                    f"is {metrics[bad]!r}, not a number"
                )
            out.append(
                TrialRecord(
                    r.seq,
                    r.kind,
                    bool(r.warmup),
                    loads(r.params, f"run {run_id} trial {r.seq}'s params"),
                    r.started,
                    r.duration,
                    bool(r.valid),
                    r.reason,
                    metrics,
                    loads(r.state, f"run {run_id} trial {r.seq}'s state"),
                )
            )
        return out

    def hosts(self, run_id: int) -> dict[str, tuple[str, dict[str, Any]]]:
        h = t.run_hosts.c
        with self.reading() as db:
            rows = db.execute(sa.select(h.host, h.role, h.facts).where(h.run_id == run_id)).all()
        return {
            r.host: (r.role, loads(r.facts, f"run {run_id} host {r.host}'s facts")) for r in rows
        }
