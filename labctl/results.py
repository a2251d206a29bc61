"""The results store: one sqlite file (WAL), runs → trials → metrics, with provenance.

Each trial is written in one transaction, so a run killed mid-way keeps every trial that
finished and never half of one. Host facts are stored with the run they describe.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl import __version__
from labctl.errors import InputError

DEFAULT_STORE = Path("results") / "labctl.db"

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    experiment TEXT NOT NULL,
    started REAL NOT NULL,
    finished REAL,
    status TEXT NOT NULL,              -- running, finished, interrupted, failed
    labctl_version TEXT NOT NULL,
    params TEXT NOT NULL,              -- JSON
    inventory TEXT NOT NULL,
    seed INTEGER,
    note TEXT
);
CREATE TABLE IF NOT EXISTS run_hosts (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    host TEXT NOT NULL,
    role TEXT NOT NULL,
    facts TEXT NOT NULL,               -- JSON, as `labctl facts --json` shows a host
    PRIMARY KEY (run_id, host)
);
CREATE TABLE IF NOT EXISTS trials (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,                -- e.g. accept, pktgen
    warmup INTEGER NOT NULL,
    params TEXT NOT NULL,              -- JSON
    started REAL NOT NULL,
    duration REAL NOT NULL,
    valid INTEGER NOT NULL,
    reason TEXT NOT NULL,              -- why not valid, or why skipped
    state TEXT NOT NULL                -- JSON: sysctls, counters before/after
);
CREATE TABLE IF NOT EXISTS metrics (
    trial_id INTEGER NOT NULL REFERENCES trials(id),
    name TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (trial_id, name)
);
CREATE TABLE IF NOT EXISTS outputs (
    trial_id INTEGER NOT NULL REFERENCES trials(id),
    host TEXT NOT NULL,
    role TEXT NOT NULL,
    stream TEXT NOT NULL,
    text TEXT NOT NULL
);
"""


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


class ResultsStore:
    def __init__(self, path: str | Path = DEFAULT_STORE) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)

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
                " seed) VALUES (?, ?, 'running', ?, ?, ?, ?)",
                (experiment, time.time(), __version__, json.dumps(params), inventory, seed),
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

    # -- reading
    def runs(self, limit: int = 20) -> list[RunSummary]:
        rows = self._db.execute(
            "SELECT r.*, COUNT(t.id) AS n, COALESCE(SUM(t.valid AND NOT t.warmup), 0) AS v"
            " FROM runs r LEFT JOIN trials t ON t.run_id = r.id"
            " GROUP BY r.id ORDER BY r.id DESC LIMIT ?",
            (limit,),
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
                json.loads(r["params"]),
            )
            for r in rows
        ]

    def run(self, run_id: int) -> RunSummary:
        for r in self.runs(limit=1_000_000):
            if r.id == run_id:
                return r
        raise InputError(f"{self.path}: no run {run_id}")

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
            out.append(
                TrialRecord(
                    r["seq"],
                    r["kind"],
                    bool(r["warmup"]),
                    json.loads(r["params"]),
                    r["started"],
                    r["duration"],
                    bool(r["valid"]),
                    r["reason"],
                    metrics,
                    json.loads(r["state"]),
                )
            )
        return out

    def hosts(self, run_id: int) -> dict[str, tuple[str, dict[str, Any]]]:
        rows = self._db.execute(
            "SELECT host, role, facts FROM run_hosts WHERE run_id = ?", (run_id,)
        ).fetchall()
        return {r["host"]: (r["role"], json.loads(r["facts"])) for r in rows}
