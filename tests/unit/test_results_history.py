"""The store's history side: runs a dead labctl left, old stores, comparable runs. On both
backends (`store_url`: a sqlite file and a PostgreSQL database), but for the old sqlite store."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import sqlalchemy as sa

from labctl.procs import controller_id
from labctl.results.store import ResultsStore, TrialRecord
from tests.support import store_sql as raw


def trial(seq: int, value: float) -> TrialRecord:
    return TrialRecord(
        seq,
        "accept",
        False,
        {"mode": "shared", "workers": 1},
        1.0,
        1.0,
        True,
        "",
        {"conn_per_s": value},
    )


def dead_controller() -> str:
    child = subprocess.Popen(["true"])
    child.wait()
    return controller_id(child.pid).replace(":?:", ":1:")  # its start is gone with it


def test_runs_left_running_by_a_dead_labctl_become_crashed_and_keep_their_trials(
    store_url: str,
) -> None:
    with ResultsStore(store_url) as db:
        mine = db.start_run("reuseport", {}, "inv", 1)
        orphan = db.start_run("reuseport", {}, "inv", 1)
        db.add_trial(orphan, trial(1, 100.0))
        night = db.start_nightly("n", "suite.yml", "inv")
    with raw(store_url) as conn, conn.begin():
        conn.execute(
            sa.text("UPDATE runs SET controller = :c WHERE id = :i"),
            {"c": dead_controller(), "i": orphan},
        )
        conn.execute(
            sa.text("UPDATE nightly SET controller = :c WHERE id = :i"),
            {"c": dead_controller(), "i": night},
        )
    with ResultsStore(store_url) as db:
        assert db.mark_crashed_runs() == [orphan]
        assert db.run(orphan).status == "crashed"
        assert db.run(mine).status == "running"  # this process is alive: its run is not touched
        assert [t.metrics["conn_per_s"] for t in db.trials(orphan)] == [100.0]
        assert db.nightly_runs()[0].status == "crashed"
        assert db.mark_crashed_runs() == []


# sqlite only: the old store under test is a sqlite file, from before PostgreSQL was one.
def test_a_store_from_before_the_history_columns_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as raw:
        raw.execute(
            "CREATE TABLE runs (id INTEGER PRIMARY KEY, experiment TEXT NOT NULL, started REAL"
            " NOT NULL, finished REAL, status TEXT NOT NULL, labctl_version TEXT NOT NULL,"
            " params TEXT NOT NULL, inventory TEXT NOT NULL, seed INTEGER, note TEXT)"
        )
        raw.execute(
            "INSERT INTO runs (experiment, started, status, labctl_version, params, inventory)"
            " VALUES ('reuseport', 1.0, 'finished', '0.0.9', '{}', 'inv')"
        )
    with ResultsStore(path) as db:
        old = db.run(1)
        assert (old.fingerprint, old.label, old.status) == (None, None, "finished")
        db.set_run_identity(1, "abc", "accept")
        assert (db.run(1).fingerprint, db.run(1).label) == ("abc", "accept")
        db.set_run_identity(1, label="other")  # the fingerprint stays
        assert (db.run(1).fingerprint, db.run(1).label) == ("abc", "other")


def test_history_is_older_finished_runs_of_the_same_experiment_newest_first(
    store_url: str,
) -> None:
    with ResultsStore(store_url) as db:
        ids = [db.start_run(e, {}, "inv", 1) for e in ("reuseport", "qdisc", "reuseport")]
        for run_id in ids:
            db.finish_run(run_id, "finished")
        failed = db.start_run("reuseport", {}, "inv", 1)
        db.finish_run(failed, "failed")
        latest = db.start_run("reuseport", {}, "inv", 1)
        assert [r.id for r in db.history("reuseport", before=latest)] == [ids[2], ids[0]]
        assert [r.id for r in db.history("reuseport", before=ids[2])] == [ids[0]]
