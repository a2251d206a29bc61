"""The results store: one sqlite file (WAL), runs → trials → metrics, with provenance.

Each trial is written in one transaction, so a run killed mid-way keeps every trial that
finished and never half of one. Host facts are stored with the run they describe.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl import __version__
from labctl.errors import InputError, LabctlError
from labctl.procs import controller_alive, controller_id
from labctl.results.schema import SCHEMA


@dataclass(frozen=True)
class TrialRecord:
    seq: int
    kind: str
    warmup: bool
    params: Mapping[str, Any]
    started: float
    duration: float
    valid: bool
    reason: str
    metrics: Mapping[str, float]
    state: Mapping[str, Any] = field(default_factory=dict)
    outputs: tuple[tuple[str, str, str, str], ...] = ()  # (host, role, stream, text)


@dataclass(frozen=True)
class RunSummary:
    id: int
    experiment: str
    started: float
    finished: float | None
    status: str
    trials: int
    valid: int
    params: Mapping[str, Any]
    note: str = ""
    fingerprint: str | None = None
    label: str | None = None
    labctl_version: str = ""
    inventory: str = ""
    seed: int | None = None


@dataclass(frozen=True)
class NightlyRecord:
    id: int
    suite: str
    started: float
    finished: float | None
    status: str
    runs: Mapping[str, int]
    summary: Mapping[str, Any]


class StoreError(LabctlError):
    """A results store that cannot be read: not a database, or a damaged row."""


def _loads(text: Any, what: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"damaged results store: {what} is not JSON ({exc})") from exc


class ResultsStore:
    """`create=False` (the read commands): the store must already exist; a mistyped
    `--store` is an error, not a new empty database."""

    def __init__(self, path: str | Path, create: bool = True) -> None:
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise InputError(
                f"{self.path}: no results store here (run an experiment first, or give --store)"
            )
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(SCHEMA)
            self._migrate()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: not a usable results store: {exc}") from exc

    def _migrate(self) -> None:
        """Stores written by an older labctl get the columns added since (all nullable)."""
        have = {r["name"] for r in self._db.execute("PRAGMA table_info(runs)")}
        for column in ("controller", "fingerprint", "label"):
            if column not in have:
                try:
                    self._db.execute(f"ALTER TABLE runs ADD COLUMN {column} TEXT")
                except sqlite3.OperationalError as exc:  # another labctl added it just now
                    if "duplicate column" not in str(exc):
                        raise

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- writing
    def start_run(
        self, experiment: str, params: Mapping[str, Any], inventory: str, seed: int | None
    ) -> int:
        with self._transaction() as db:
            cur = db.execute(
                "INSERT INTO runs (experiment, started, status, labctl_version, params, inventory,"
                " seed, controller) VALUES (?, ?, 'running', ?, ?, ?, ?, ?)",
                (
                    experiment,
                    time.time(),
                    __version__,
                    json.dumps(params),
                    inventory,
                    seed,
                    controller_id(),
                ),
            )
            return int(cur.lastrowid or 0)

    def add_hosts(self, run_id: int, hosts: Mapping[str, tuple[str, Mapping[str, Any]]]) -> None:
        """hosts: name → (role, facts)."""
        with self._transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO run_hosts (run_id, host, role, facts) VALUES (?,?,?,?)",
                [(run_id, h, role, json.dumps(facts)) for h, (role, facts) in hosts.items()],
            )

    def add_trial(self, run_id: int, trial: TrialRecord) -> int:
        """One transaction: the trial, its metrics and outputs land together or not at all."""
        with self._transaction() as db:
            cur = db.execute(
                "INSERT INTO trials (run_id, seq, kind, warmup, params, started, duration, valid,"
                " reason, state) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    run_id,
                    trial.seq,
                    trial.kind,
                    int(trial.warmup),
                    json.dumps(trial.params),
                    trial.started,
                    trial.duration,
                    int(trial.valid),
                    trial.reason,
                    json.dumps(trial.state),
                ),
            )
            trial_id = int(cur.lastrowid or 0)
            db.executemany(
                "INSERT INTO metrics (trial_id, name, value) VALUES (?,?,?)",
                [(trial_id, k, float(v)) for k, v in trial.metrics.items()],
            )
            db.executemany(
                "INSERT INTO outputs (trial_id, host, role, stream, text) VALUES (?,?,?,?,?)",
                [(trial_id, *o) for o in trial.outputs],
            )
            return trial_id

    def finish_run(self, run_id: int, status: str, note: str = "") -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE runs SET finished = ?, status = ?, note = ? WHERE id = ?",
                (time.time(), status, note, run_id),
            )

    def set_run_identity(
        self, run_id: int, fingerprint: str | None = None, label: str | None = None
    ) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE runs SET fingerprint = COALESCE(?, fingerprint), label = COALESCE(?, label)"
                " WHERE id = ?",
                (fingerprint, label, run_id),
            )

    def mark_crashed_runs(self) -> list[int]:
        """Runs still 'running' whose labctl is gone (SIGKILL, a power cut): 'crashed'.

        Their finished trials stay; only runs started on this machine can be judged.
        """
        rows = self._db.execute(
            "SELECT id, controller FROM runs WHERE status = 'running' AND controller IS NOT NULL"
        ).fetchall()
        dead = [r["id"] for r in rows if controller_alive(r["controller"]) is False]
        rows = self._db.execute(
            "SELECT id, controller FROM nightly WHERE status = 'running'"
        ).fetchall()
        dead_nightly = [r["id"] for r in rows if controller_alive(r["controller"]) is False]
        if dead or dead_nightly:
            with self._transaction() as db:
                for run_id in dead:
                    db.execute(
                        "UPDATE runs SET status = 'crashed', note = 'its labctl died mid-run'"
                        " WHERE id = ? AND status = 'running'",
                        (run_id,),
                    )
                for nid in dead_nightly:
                    db.execute(
                        "UPDATE nightly SET status = 'crashed' WHERE id = ? AND status = 'running'",
                        (nid,),
                    )
        return dead

    def start_nightly(self, suite: str, suite_file: str, inventory: str) -> int:
        with self._transaction() as db:
            cur = db.execute(
                "INSERT INTO nightly (suite, suite_file, inventory, started, status, controller)"
                " VALUES (?, ?, ?, ?, 'running', ?)",
                (suite, suite_file, inventory, time.time(), controller_id()),
            )
            return int(cur.lastrowid or 0)

    def update_nightly(
        self,
        nightly_id: int,
        *,
        runs: Mapping[str, int] | None = None,
        status: str | None = None,
        summary: Mapping[str, Any] | None = None,
    ) -> None:
        with self._transaction() as db:
            if runs is not None:
                db.execute(
                    "UPDATE nightly SET runs = ? WHERE id = ?", (json.dumps(runs), nightly_id)
                )
            if summary is not None:
                db.execute(
                    "UPDATE nightly SET summary = ? WHERE id = ?",
                    (json.dumps(summary), nightly_id),
                )
            if status is not None:
                db.execute(
                    "UPDATE nightly SET status = ?, finished = ? WHERE id = ?",
                    (status, time.time(), nightly_id),
                )

    def add_undo(self, run_id: int, host: str, entries: Sequence[Mapping[str, Any]]) -> None:
        """Keep what puts back a change (entries: target, action, args). Of several changes
        to one target in a run only the first is kept: it holds the state before the run."""
        if not entries:
            return
        with self._transaction() as db:
            (seq,) = db.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM undo WHERE run_id = ?", (run_id,)
            ).fetchone()
            db.executemany(
                "INSERT OR IGNORE INTO undo (run_id, host, target, seq, action, args)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (run_id, host, e["target"], seq + i, e["action"], json.dumps(e["args"]))
                    for i, e in enumerate(entries, 1)
                ],
            )

    def undo_entries(self, run_id: int) -> list[tuple[str, dict[str, Any]]]:
        """(host, {target, action, args}) of a run, last change first: the order to undo in."""
        rows = self._db.execute(
            "SELECT host, target, action, args FROM undo WHERE run_id = ? ORDER BY seq DESC",
            (run_id,),
        ).fetchall()
        return [
            (
                r["host"],
                {
                    "target": r["target"],
                    "action": r["action"],
                    "args": _loads(r["args"], f"run {run_id}'s undo of {r['target']}"),
                },
            )
            for r in rows
        ]

    # -- reading
    _RUNS_SQL = (
        "SELECT r.*, COUNT(t.id) AS n, COALESCE(SUM(t.valid AND NOT t.warmup), 0) AS v"
        " FROM runs r LEFT JOIN trials t ON t.run_id = r.id"
    )

    def _summaries(self, where: str, args: tuple[Any, ...], limit: int) -> list[RunSummary]:
        rows = self._db.execute(
            f"{self._RUNS_SQL} {where} GROUP BY r.id ORDER BY r.id DESC LIMIT ?",
            (*args, limit),
        ).fetchall()
        return [
            RunSummary(
                r["id"],
                r["experiment"],
                r["started"],
                r["finished"],
                r["status"],
                r["n"],
                r["v"],
                _loads(r["params"], f"run {r['id']}'s params"),
                r["note"] or "",
                r["fingerprint"],
                r["label"],
                r["labctl_version"],
                r["inventory"],
                r["seed"],
            )
            for r in rows
        ]

    def runs(self, limit: int = 20) -> list[RunSummary]:
        return self._summaries("", (), limit)

    def run(self, run_id: int) -> RunSummary:
        found = self._summaries("WHERE r.id = ?", (run_id,), 1)
        if not found:
            raise InputError(f"{self.path}: no run {run_id}")
        return found[0]

    def history(self, experiment: str, before: int, limit: int = 50) -> list[RunSummary]:
        """Finished runs of an experiment older than run `before`, newest first."""
        return self._summaries(
            "WHERE r.experiment = ? AND r.id < ? AND r.status = 'finished'",
            (experiment, before),
            limit,
        )

    def accept_run(self, run_id: int, note: str = "") -> bool:
        """Start a new history at `run_id` on purpose (after an intended change): runs of its
        experiment and suite entry before it no longer count. False if already accepted."""
        run = self.run(run_id)
        if run.status != "finished":
            raise InputError(f"run {run_id} is {run.status}: only a finished run starts a history")
        with self._transaction() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO accepted (run_id, at, note) VALUES (?, ?, ?)",
                (run_id, time.time(), note),
            )
        return cur.rowcount == 1

    def accepted_since(self, experiment: str, label: str | None, before: int) -> int | None:
        """The newest accepted run of `experiment` (and suite entry `label`) before run
        `before`, or that run itself; None when none was accepted."""
        row = self._db.execute(
            "SELECT MAX(a.run_id) FROM accepted a JOIN runs r ON r.id = a.run_id "
            "WHERE r.experiment = ? AND r.id <= ? AND (? IS NULL OR r.label IS ?)",
            (experiment, before, label, label),
        ).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def nightly_runs(self, limit: int = 20) -> list[NightlyRecord]:
        rows = self._db.execute(
            "SELECT * FROM nightly ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [
            NightlyRecord(
                r["id"],
                r["suite"],
                r["started"],
                r["finished"],
                r["status"],
                _loads(r["runs"], f"nightly {r['id']}'s runs"),
                _loads(r["summary"], f"nightly {r['id']}'s summary"),
            )
            for r in rows
        ]

    def trials(self, run_id: int) -> list[TrialRecord]:
        rows = self._db.execute(
            "SELECT * FROM trials WHERE run_id = ? ORDER BY seq", (run_id,)
        ).fetchall()
        out = []
        for r in rows:
            metrics = {
                m["name"]: m["value"]
                for m in self._db.execute(
                    "SELECT name, value FROM metrics WHERE trial_id = ?", (r["id"],)
                )
            }
            bad = next((k for k, v in metrics.items() if not isinstance(v, int | float)), None)
            if bad is not None:
                raise StoreError(
                    f"damaged results store: run {run_id} trial {r['seq']}: metric {bad!r} "
                    f"is {metrics[bad]!r}, not a number"
                )
            out.append(
                TrialRecord(
                    r["seq"],
                    r["kind"],
                    bool(r["warmup"]),
                    _loads(r["params"], f"run {run_id} trial {r['seq']}'s params"),
                    r["started"],
                    r["duration"],
                    bool(r["valid"]),
                    r["reason"],
                    metrics,
                    _loads(r["state"], f"run {run_id} trial {r['seq']}'s state"),
                )
            )
        return out

    def hosts(self, run_id: int) -> dict[str, tuple[str, dict[str, Any]]]:
        rows = self._db.execute(
            "SELECT host, role, facts FROM run_hosts WHERE run_id = ?", (run_id,)
        ).fetchall()
        return {
            r["host"]: (r["role"], _loads(r["facts"], f"run {run_id} host {r['host']}'s facts"))
            for r in rows
        }
