"""The results store on both backends (issue 19): a sqlite file and a real PostgreSQL server
started by the test run (tests/pgserver.py). Each test runs on both (`store_url`)."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from labctl.errors import InputError
from labctl.results.backend import locate
from labctl.results.copy import copy_store
from labctl.results.liveness import SILENT_AFTER
from labctl.results.migrate import HEAD, MIGRATIONS
from labctl.results.store import ResultsStore, StoreError, TrialRecord
from tests.support import ROOT as REPO
from tests.support import store_sql as raw

WRITER = [sys.executable, "-m", "tests.store_writer"]


def trial(seq: int, value: float = 100.0, **params: object) -> TrialRecord:
    return TrialRecord(
        seq,
        "accept",
        False,
        {"mode": "shared", "workers": 2, **params},
        1000.0 + seq,
        1.0,
        True,
        "",
        {"conn_per_s": value + seq},
        {"sysctls": {"somaxconn": "4096"}},
        (("srv1", "server", "stdout", f"out {seq}"),),
    )


def writer(url: str, trials: int, *more: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*WRITER, url, str(trials), *more],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def test_a_run_round_trips_with_all_it_owns(store_url: str) -> None:
    with ResultsStore(store_url, lab="lab-a") as db:
        run = db.start_run("reuseport", {"workers": [1, 2]}, "/x/hosts/local.yml", 7)
        db.add_hosts(run, {"srv1": ("server", {"kernel_release": "6.1.0-26-amd64"})})
        db.add_hosts(run, {"srv1": ("server", {"kernel_release": "6.1.0-27-amd64"})})  # replaced
        for seq in (1, 2, 3):
            db.add_trial(run, trial(seq))
        with pytest.raises(StoreError, match="(?i)null"):  # a bad trial leaves nothing behind
            db.add_trial(
                run,
                TrialRecord(4, "accept", False, {}, 1.0, 1.0, True, "", {"a": 1.0},
                            outputs=(("h", "r", "s", None),)),  # type: ignore[arg-type]
            )  # fmt: skip
        db.add_undo(run, "srv1", [{"target": "qdisc eth0", "action": "qdisc", "args": {"a": 1}}])
        db.add_undo(run, "srv1", [{"target": "qdisc eth0", "action": "qdisc", "args": {"a": 2}}])
        db.finish_run(run, "finished")
        (summary,) = db.runs()
        assert (summary.id, summary.status, summary.trials, summary.valid) == (
            run,
            "finished",
            3,
            3,
        )
        assert (summary.lab, summary.seed, summary.params) == ("lab-a", 7, {"workers": [1, 2]})
        assert summary.finished is not None and summary.finished >= summary.started
        assert [t.metrics for t in db.trials(run)] == [{"conn_per_s": 100.0 + s} for s in (1, 2, 3)]
        assert db.trials(run)[0] == dataclasses.replace(trial(1), outputs=())  # outputs: export
        assert db.trials(run)[1].state == {"sysctls": {"somaxconn": "4096"}}
        assert db.hosts(run) == {"srv1": ("server", {"kernel_release": "6.1.0-27-amd64"})}
        assert db.undo_entries(run) == [
            ("srv1", {"target": "qdisc eth0", "action": "qdisc", "args": {"a": 1}})
        ]
        later = db.start_run("reuseport", {"workers": [1, 2]}, "/x/hosts/local.yml", 8)
        assert later > run
        assert [r.id for r in db.history("reuseport", before=later)] == [run]
        assert db.accept_run(run, "new NIC") and not db.accept_run(run)
        assert db.accepted_since("reuseport", None, before=later) == run
        night = db.start_nightly("ci", "suite.yml", "/x/hosts/local.yml")
        db.update_nightly(night, runs={"accept": later}, status="ok", summary={"ok": 1})
        (n,) = db.nightly_runs()
        assert (n.status, dict(n.runs), n.lab) == ("ok", {"accept": later}, "lab-a")
        with pytest.raises(InputError, match="no run 999"):
            db.run(999)
    with raw(store_url) as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM metrics")).scalar_one() == 3
        assert conn.execute(sa.text("SELECT COUNT(*) FROM outputs")).scalar_one() == 3


def test_two_writers_at_once_lose_nothing_and_duplicate_nothing(store_url: str) -> None:
    ResultsStore(store_url).close()  # the schema first: the race under test is the writes'
    n = 300
    procs = [writer(store_url, n, "--lab", lab) for lab in ("lab-a", "lab-b")]
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=240)
            assert proc.returncode == 0, err
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    with ResultsStore(store_url, create=False) as db:
        runs = db.runs()
        assert sorted(r.lab for r in runs) == ["lab-a", "lab-b"]
        assert len({r.id for r in runs}) == 2 and all(r.status == "finished" for r in runs)
        for r in runs:
            trials = db.trials(r.id)
            assert [t.seq for t in trials] == list(range(1, n + 1))
            assert all(len(t.metrics) == 2 and t.state == {"writer": r.lab} for t in trials)
    with raw(store_url) as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM trials")).scalar_one() == 2 * n
        assert conn.execute(sa.text("SELECT COUNT(*) FROM metrics")).scalar_one() == 4 * n
        assert conn.execute(sa.text("SELECT COUNT(DISTINCT uid) FROM runs")).scalar_one() == 2


def test_a_writer_killed_midway_keeps_its_trials_and_is_marked_crashed(store_url: str) -> None:
    ResultsStore(store_url).close()
    proc = writer(store_url, 100_000, "--delay", "0.005")
    try:
        assert proc.stdout is not None
        run_line = proc.stdout.readline()
        assert run_line.startswith("run "), proc.stderr.read() if proc.stderr else ""
        run_id = int(run_line.split()[1])
        for _ in range(100_000):  # until 40 trials are in
            if proc.stdout.readline().strip() == "trial 40":
                break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with ResultsStore(store_url, create=False) as db:
        assert db.run(run_id).status == "running"
        assert db.mark_crashed_runs() == [run_id]
        run = db.run(run_id)
        assert (run.status, run.note) == ("crashed", "its labctl died mid-run")
        trials = db.trials(run_id)
        assert len(trials) >= 40
        assert [t.seq for t in trials] == list(range(1, len(trials) + 1))
        assert all(len(t.metrics) == 2 for t in trials)  # none half-written
        assert db.mark_crashed_runs() == []


def test_a_silent_run_of_another_machine_is_crashed_once_its_heartbeat_is_old(
    store_url: str,
) -> None:
    with ResultsStore(store_url) as db:
        silent = db.start_run("reuseport", {}, "lab-b.yml", 1)
        beating = db.start_run("reuseport", {}, "lab-b.yml", 1)
        db.add_trial(silent, trial(1))
    elsewhere = "controller-b:4242:99:0123-boot:pid-ns"  # another machine: no PID to look at
    with raw(store_url) as conn, conn.begin():
        conn.execute(
            sa.text("UPDATE runs SET controller = :c, heartbeat = heartbeat - :age WHERE id = :i"),
            [
                {"c": elsewhere, "age": SILENT_AFTER + 60, "i": silent},
                {"c": elsewhere, "age": 5, "i": beating},
            ],
        )
    with ResultsStore(store_url, create=False) as db:
        assert db.mark_crashed_runs() == [silent]
        assert db.run(silent).status == "crashed"
        assert "controller-b gave no sign of life" in db.run(silent).note
        assert len(db.trials(silent)) == 1
        assert db.run(beating).status == "running"


def test_a_running_run_beats(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import labctl.results.liveness as liveness

    monkeypatch.setattr(liveness, "HEARTBEAT_EVERY", 0.2)
    with ResultsStore(store_url) as db:
        run = db.start_run("reuseport", {}, "lab.yml", 1)
        with raw(store_url) as conn:
            first = conn.execute(sa.text(f"SELECT heartbeat FROM runs WHERE id = {run}")).scalar()
        later = first
        for _ in range(50):  # bounded: 5 s
            time.sleep(0.1)
            with raw(store_url) as conn:
                later = conn.execute(
                    sa.text(f"SELECT heartbeat FROM runs WHERE id = {run}")
                ).scalar()
            if later > first:
                break
        assert later > first
        db.finish_run(run, "finished")


def test_copy_moves_a_history_without_loss_and_copying_again_adds_nothing(
    store_url: str, tmp_path: Path
) -> None:
    source_path = tmp_path / "lab-a.db"
    with ResultsStore(source_path, lab="lab-a") as src:
        ids = []
        for n in range(3):
            run = src.start_run("reuseport", {"workers": [1]}, "lab-a.yml", n)
            src.add_hosts(run, {"srv1": ("server", {"kernel_release": "6.1"})})
            for seq in range(1, 6):
                src.add_trial(run, trial(seq, 10.0 * n))
            src.finish_run(run, "finished")
            ids.append(run)
        src.add_undo(ids[0], "srv1", [{"target": "t", "action": "sysctl", "args": {"v": 1}}])
        src.accept_run(ids[1], "accepted")
        night = src.start_nightly("ci", "suite.yml", "lab-a.yml")
        src.update_nightly(night, runs={"accept": ids[2]}, status="ok")
        still = src.start_run("reuseport", {}, "lab-a.yml", 9)  # still running: not copied
        expected = {src.run(i).seed: src.trials(i) for i in ids}
        with ResultsStore(store_url, lab="lab-b") as dst:
            theirs = dst.start_run("reuseport", {"workers": [1]}, "lab-b.yml", 1)
            dst.finish_run(theirs, "finished")
            first = copy_store(src, dst)
            assert (first.runs, first.trials, first.nightly, first.present, first.running) == (
                3, 15, 1, 0, 1,
            )  # fmt: skip
            again = copy_store(src, dst)
            assert (again.runs, again.trials, again.nightly, again.present) == (0, 0, 0, 3)
            copied = [r for r in dst.runs() if r.lab == "lab-a"]
            assert sorted(r.seed or 0 for r in copied) == [0, 1, 2]  # not the running one (9)
            for r in copied:
                assert dst.trials(r.id) == expected[r.seed]
                assert dst.hosts(r.id) == {"srv1": ("server", {"kernel_release": "6.1"})}
            (n,) = dst.nightly_runs()
            newest = max(r.id for r in copied)
            assert dict(n.runs) == {"accept": newest} and n.lab == "lab-a"
            assert sum(1 for r in copied if dst.undo_entries(r.id)) == 1
            assert dst.accepted_since("reuseport", None, before=newest) is not None
        src.finish_run(still, "finished")


def test_dashboard_views_have_a_column_per_parameter_and_metric(store_url: str) -> None:
    with ResultsStore(store_url, lab="lab-a") as db:
        run = db.start_run("reuseport", {}, "lab-a.yml", 1)
        db.add_hosts(run, {"srv1": ("server", {"kernel_release": "6.1.0-26-amd64"})})
        db.add_trial(run, trial(1, mode="reuseport", workers=4))
        db.finish_run(run, "finished")
    with raw(store_url) as conn:
        rows = conn.execute(
            sa.text(
                "SELECT run, time, lab, experiment, mode, workers, metric, value, valid, kernel,"
                " labctl_version FROM labctl_metrics"
            )
        ).all()
        (r,) = rows
        assert (r.run, r.lab, r.experiment, r.mode, r.workers) == (run, "lab-a", "reuseport",
                                                                   "reuseport", 4)  # fmt: skip
        assert (r.metric, r.value, bool(r.valid), r.kernel) == (
            "conn_per_s", 101.0, True, "6.1.0-26-amd64",
        )  # fmt: skip
        assert r.time is not None and r.labctl_version
        (s,) = conn.execute(
            sa.text("SELECT run, lab, status, trials, valid_trials, kernel FROM labctl_runs")
        ).all()
        assert tuple(s) == (run, "lab-a", "finished", 1, 1, "6.1.0-26-amd64")


def test_a_read_command_finds_no_store_in_an_empty_database(store_url: str) -> None:
    with pytest.raises(InputError, match="no results store here"):
        ResultsStore(store_url, create=False)
    with raw(store_url) as conn:
        assert not sa.inspect(conn).has_table("runs")  # nothing made by looking


def test_the_migrations_head_is_what_the_store_checks_for() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD


@pytest.mark.parametrize(
    ("given", "backend", "shown"),
    [
        ("results/labctl.db", "sqlite", "results/labctl.db"),
        ("sqlite:////var/lib/labctl/r.db", "sqlite", "/var/lib/labctl/r.db"),
        ("postgresql://me:secret@db.example:5433/labctl", "postgresql",
         "postgresql://me:***@db.example:5433/labctl"),
        ("postgres://me@db/labctl", "postgresql", "postgresql://me@db/labctl"),
        ("postgresql+psycopg://me@db/labctl", "postgresql", "postgresql://me@db/labctl"),
    ],
)  # fmt: skip
def test_a_store_is_a_path_or_a_url(given: str, backend: str, shown: str) -> None:
    where = locate(given)
    assert (where.backend, str(where)) == (backend, shown)


@pytest.mark.parametrize(
    ("given", "error"),
    [
        ("mysql://me@db/labctl", "unknown kind of store 'mysql'"),
        ("postgresql+psycopg2://me@db/labctl", "psycopg 3"),
        ("postgresql://me@db", "name the database"),
        ("sqlite://", "needs a file"),
        ("  ", "empty"),
    ],
)
def test_a_bad_store_is_one_line(given: str, error: str) -> None:
    with pytest.raises(InputError, match=error):
        locate(given)


def test_a_postgres_store_leaves_no_folder_behind(pg_url: str, tmp_path: Path) -> None:
    """The bug a new user hit: `--store postgresql://...` made a folder named `postgresql:`."""
    env = {**os.environ, "HOME": str(tmp_path)}
    proc = subprocess.run(
        [str(REPO / ".venv/bin/labctl"), "results.copy", "--from", str(tmp_path / "none.db"),
         "--to", pg_url],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert proc.returncode == 2 and "none.db: no results store here" in proc.stderr
    ResultsStore(pg_url).close()
    listing = subprocess.run(
        [str(REPO / ".venv/bin/labctl"), "results.list", "--store", pg_url],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert listing.returncode == 0, listing.stderr
    assert list(tmp_path.iterdir()) == []


# The store as the last labctl before migrations wrote it (sqlite, no alembic_version).
BEFORE_MIGRATIONS = """
CREATE TABLE runs (id INTEGER PRIMARY KEY, experiment TEXT NOT NULL, started REAL NOT NULL,
  finished REAL, status TEXT NOT NULL, labctl_version TEXT NOT NULL, params TEXT NOT NULL,
  inventory TEXT NOT NULL, seed INTEGER, note TEXT, controller TEXT, fingerprint TEXT,
  label TEXT);
CREATE TABLE run_hosts (run_id INTEGER NOT NULL REFERENCES runs(id), host TEXT NOT NULL,
  role TEXT NOT NULL, facts TEXT NOT NULL, PRIMARY KEY (run_id, host));
CREATE TABLE trials (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id),
  seq INTEGER NOT NULL, kind TEXT NOT NULL, warmup INTEGER NOT NULL, params TEXT NOT NULL,
  started REAL NOT NULL, duration REAL NOT NULL, valid INTEGER NOT NULL, reason TEXT NOT NULL,
  state TEXT NOT NULL);
CREATE TABLE metrics (trial_id INTEGER NOT NULL REFERENCES trials(id), name TEXT NOT NULL,
  value REAL NOT NULL, PRIMARY KEY (trial_id, name));
CREATE TABLE nightly (id INTEGER PRIMARY KEY, suite TEXT NOT NULL, suite_file TEXT NOT NULL,
  inventory TEXT NOT NULL, started REAL NOT NULL, finished REAL, status TEXT NOT NULL,
  controller TEXT NOT NULL, runs TEXT NOT NULL DEFAULT '{}', summary TEXT NOT NULL DEFAULT '{}');
INSERT INTO runs VALUES (1, 'reuseport', 1.0, 2.0, 'finished', '0.1.0', '{"workers": [1]}',
  '/lab/hosts/lab-a.yml', 3, '', 'h:1:2:3:4', 'stale-digest', 'accept');
INSERT INTO run_hosts VALUES (1, 'srv1', 'server', '{"kernel_release": "6.1"}');
INSERT INTO trials VALUES (1, 1, 1, 'accept', 0, '{"mode": "shared", "workers": 1}', 1.0, 1.0,
  1, '', '{}');
INSERT INTO metrics VALUES (1, 'conn_per_s', 123.0);
INSERT INTO nightly VALUES (1, 'ci', 's.yml', '/lab/hosts/lab-a.yml', 1.0, 2.0, 'ok', 'c',
  '{"accept": 1}', '{}');
"""


def test_a_store_from_before_migrations_is_migrated_in_place_keeping_every_row(
    tmp_path: Path,
) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(BEFORE_MIGRATIONS)
    with ResultsStore(path, create=False) as store:  # a read command migrates it too
        (run,) = store.runs()
        assert (run.id, run.lab, run.label, run.fingerprint) == (1, "lab-a", "accept", None)
        assert [t.metrics for t in store.trials(1)] == [{"conn_per_s": 123.0}]
        assert store.hosts(1) == {"srv1": ("server", {"kernel_release": "6.1"})}
        assert store.nightly_runs()[0].runs == {"accept": 1}
        new = store.start_run("reuseport", {}, "lab-a.yml", 1)  # tables it lacked: made
        store.add_undo(new, "srv1", [{"target": "t", "action": "sysctl", "args": {}}])
        assert new == 2
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchone() == (HEAD,)
        assert db.execute("SELECT COUNT(DISTINCT uid) FROM runs").fetchone() == (2,)
        assert db.execute("SELECT lab, metric, value FROM labctl_metrics").fetchall() == [
            ("lab-a", "conn_per_s", 123.0)
        ]
