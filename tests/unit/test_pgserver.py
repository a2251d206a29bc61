"""The test run's throwaway PostgreSQL (tests/pgserver.py): a server of its own answers, and
stopping it leaves neither its process nor its directory behind."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.pgserver import PgServer, find_bindir


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return not Path(f"/proc/{pid}").exists()


def dead(pid: int) -> bool:
    """Gone, or a zombie its new parent has not reaped yet."""
    try:
        return gone(pid) or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def test_a_query_through_pg_url_answers(pg_url: str) -> None:
    import psycopg

    with psycopg.connect(pg_url, connect_timeout=10) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.execute("SELECT current_database()").fetchone() == (pg_url.rsplit("/", 1)[1],)


def test_two_pg_url_databases_are_distinct_and_both_empty(pg_server: PgServer, pg_url: str) -> None:
    """The fixture's database and a second one made the same way are two databases: a table
    made in one is not in the other, and neither had any table to begin with."""
    import psycopg

    other = pg_server.create_database()
    try:
        assert other != pg_url
        tables = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        with psycopg.connect(pg_url, autocommit=True) as a, psycopg.connect(other) as b:
            assert a.execute(tables).fetchone() == (0,)
            assert b.execute(tables).fetchone() == (0,)
            a.execute("CREATE TABLE marker (n int)")
            assert a.execute(tables).fetchone() == (1,)
            assert b.execute(tables).fetchone() == (0,)
    finally:
        pg_server.drop_database(other.rsplit("/", 1)[1])
    with psycopg.connect(pg_server.url(), autocommit=True) as conn:
        names = [r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()]
    assert other.rsplit("/", 1)[1] not in names  # dropped
    assert pg_url.rsplit("/", 1)[1] in names


SEEN: list[str] = []


@pytest.mark.parametrize("n", [1, 2])
def test_each_test_gets_a_fresh_database_and_the_last_one_is_dropped(
    pg_server: PgServer, pg_url: str, n: int
) -> None:
    import psycopg

    name = pg_url.rsplit("/", 1)[1]
    assert name not in SEEN
    with psycopg.connect(pg_server.url(), autocommit=True) as conn:
        names = {r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()}
    assert name in names
    assert not names & set(SEEN), "an earlier test's database was not dropped"
    SEEN.append(name)


def test_a_second_server_answers_and_stopping_it_leaves_nothing() -> None:
    import psycopg

    bindir = find_bindir()
    if bindir is None:
        if os.environ.get("LABCTL_TEST_POSTGRES") == "required":  # as conftest's pg_server
            pytest.fail("PostgreSQL is not installed (scripts/setup.sh installs it)")
        pytest.skip("PostgreSQL is not installed (scripts/setup.sh installs it)")
    server = PgServer.start(bindir)
    try:
        assert server.process is not None
        pid = server.process.pid
        directory = server.directory
        assert directory.is_dir() and not gone(pid)
        with psycopg.connect(server.url(), connect_timeout=10) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        server.stop()
    assert gone(pid), f"postgres {pid} still runs after stop()"
    assert not directory.exists()
    assert server.process is None


def test_a_server_left_by_a_killed_test_run_is_swept_by_the_next() -> None:
    import signal
    import subprocess
    import sys

    from tests.pgserver import sweep_orphans
    from tests.support import ROOT

    if find_bindir() is None:
        if os.environ.get("LABCTL_TEST_POSTGRES") == "required":  # as conftest's pg_server
            pytest.fail("PostgreSQL is not installed (scripts/setup.sh installs it)")
        pytest.skip("PostgreSQL is not installed (scripts/setup.sh installs it)")
    starter = (
        "import sys, time\n"
        "from tests.pgserver import PgServer, find_bindir\n"
        "s = PgServer.start(find_bindir())\n"
        "print(s.directory, s.process.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", starter], cwd=ROOT, stdout=subprocess.PIPE, text=True,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        directory_text, pid_text = proc.stdout.readline().split()
        directory, pid = Path(directory_text), int(pid_text)
        os.kill(proc.pid, signal.SIGKILL)  # the "test run" dies; its server stays
        proc.wait(timeout=30)
        assert not gone(pid)
        assert directory in sweep_orphans()
        for _ in range(100):  # bounded: 10 s for it to die and be reaped
            if dead(pid):
                break
            time.sleep(0.1)
        assert dead(pid), f"postgres {pid} still runs after the sweep"
        assert not directory.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
