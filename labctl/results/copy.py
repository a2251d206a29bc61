"""`labctl results.copy`: a history moved from one store into another (a lab's sqlite file
into the team's PostgreSQL), without losing a trial and without copying anything twice.

A run is known in every store by its uid, so a run the target has is skipped: copying again,
or copying two labs' files into one server, adds only what is new. Each run goes over in one
transaction with all it owns (hosts, trials, metrics, outputs, undo, acceptance): a copy
stopped midway leaves whole runs only, and the next copy goes on from there. A run still
running is left for a later copy. Ids are the target's own; a nightly's map of runs is
rewritten to them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from labctl.results import schema as t
from labctl.results.records import lab_of
from labctl.results.store import ResultsStore


@dataclass(frozen=True)
class CopyOutcome:
    runs: int  # runs copied
    trials: int  # their trials
    nightly: int  # nightly runs copied
    present: int  # runs the target already had
    running: int  # runs left behind: still running in the source


def _row(row: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    return {k: v for k, v in row._mapping.items() if k not in skip}


def _target_ids(dst: Connection, table: sa.Table, uids: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for start in range(0, len(uids), 500):
        chunk = uids[start : start + 500]
        for uid, row_id in dst.execute(
            sa.select(table.c.uid, table.c.id).where(table.c.uid.in_(chunk))
        ):
            found[uid] = row_id
    return found


def _copy_run(src: Connection, dst: Connection, run: Any) -> int:
    """The run and all it owns into `dst`; its number of trials."""
    values = _row(run, skip=("id",))
    values["lab"] = run.lab or lab_of(run.inventory)
    new_id = dst.execute(t.runs.insert().values(**values).returning(t.runs.c.id)).scalar_one()
    for table in (t.run_hosts, t.undo, t.accepted):
        rows = [
            _row(r) | {"run_id": new_id}
            for r in src.execute(sa.select(table).where(table.c.run_id == run.id))
        ]
        if rows:
            dst.execute(table.insert(), rows)
    trials = src.execute(
        sa.select(t.trials).where(t.trials.c.run_id == run.id).order_by(t.trials.c.id)
    ).all()
    for trial in trials:
        trial_id = dst.execute(
            t.trials.insert()
            .values(**_row(trial, skip=("id",)) | {"run_id": new_id})
            .returning(t.trials.c.id)
        ).scalar_one()
        for table in (t.metrics, t.outputs):
            rows = [
                _row(r) | {"trial_id": trial_id}
                for r in src.execute(sa.select(table).where(table.c.trial_id == trial.id))
            ]
            if rows:
                dst.execute(table.insert(), rows)
    return len(trials)


def copy_store(
    source: ResultsStore,
    target: ResultsStore,
    progress: Callable[[int, int], None] | None = None,
) -> CopyOutcome:
    """Every finished run and nightly of `source` that `target` lacks. `progress(done,
    total)` after each run considered."""
    with source.reading() as src:
        runs = src.execute(sa.select(t.runs).order_by(t.runs.c.id)).all()
    with target.reading() as dst:
        present = _target_ids(dst, t.runs, [r.uid for r in runs])
    copied = trials = running = 0
    for done, run in enumerate(runs, 1):
        if run.uid in present:
            pass
        elif run.status == "running":
            running += 1
        else:
            with source.reading() as src, target.writing() as dst:
                trials += _copy_run(src, dst, run)
            copied += 1
        if progress is not None:
            progress(done, len(runs))
    nightly = _copy_nightly(source, target)
    already = sum(1 for r in runs if r.uid in present)
    return CopyOutcome(copied, trials, nightly, already, running)


def _copy_nightly(source: ResultsStore, target: ResultsStore) -> int:
    import json

    with source.reading() as src:
        rows = src.execute(sa.select(t.nightly).order_by(t.nightly.c.id)).all()
        run_uids = dict(src.execute(sa.select(t.runs.c.id, t.runs.c.uid)).all())
    copied = 0
    with target.writing() as dst:
        have = _target_ids(dst, t.nightly, [r.uid for r in rows])
        ids = _target_ids(dst, t.runs, list(run_uids.values()))
        for row in rows:
            if row.uid in have or row.status == "running":
                continue
            entries = json.loads(row.runs or "{}")
            mapped = {
                name: ids[run_uids[rid]]
                for name, rid in entries.items()
                if rid in run_uids and run_uids[rid] in ids
            }
            values = _row(row, skip=("id",)) | {
                "runs": json.dumps(mapped),
                "lab": row.lab or lab_of(row.inventory),
            }
            dst.execute(t.nightly.insert().values(**values))
            copied += 1
    return copied
