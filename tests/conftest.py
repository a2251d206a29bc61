"""Shared test set-up: keep the developer's SSH config and shell rc files out of every test;
the table of faults injected (tests/faults/, and the VM lab's under tests/vm/) and their
outcomes, printed at the end of the run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.pgserver import PgServer


@pytest.fixture(autouse=True)
def _no_user_ssh_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # labctl passes an explicit SSHConfig and known_hosts file; HOME points elsewhere so that a
    # slip (a default ~/.ssh lookup) fails in tests instead of passing on a developer's machine.
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))


@dataclass
class FaultRow:
    fault: str
    outcome: str
    exit_status: str
    reason: str
    orphans: int


TABLE = pytest.StashKey[list[FaultRow]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[TABLE] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    rows = terminalreporter.config.stash.get(TABLE, [])
    if not rows:
        return
    tr = terminalreporter
    tr.section("faults injected")
    tr.write_line("| fault | outcome | exit | one-line reason | orphans |")
    tr.write_line("|---|---|---|---|---|")
    for r in rows:
        tr.write_line(f"| {r.fault} | {r.outcome} | {r.exit_status} | {r.reason} | {r.orphans} |")


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Iterator[list[FaultRow]]:
    rows: list[FaultRow] = []
    yield rows
    request.config.stash[TABLE].extend(rows)


# ---------------------------------------------------------------------------- PostgreSQL
# The results store's PostgreSQL backend is tested against a real server (tests/pgserver.py),
# started at the first test that needs it and stopped at the end of the session, also when
# tests fail. CI sets LABCTL_TEST_POSTGRES=required: there, no server is a failure, not a skip.


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    from tests.pgserver import PgServer, find_bindir

    bindir = find_bindir()
    if bindir is None:
        if os.environ.get("LABCTL_TEST_POSTGRES") == "required":
            pytest.fail("PostgreSQL is not installed (scripts/setup.sh installs it)")
        pytest.skip("PostgreSQL is not installed (scripts/setup.sh installs it)")
    server = PgServer.start(bindir)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh, empty database on the session's server, dropped after the test."""
    url = pg_server.create_database()
    try:
        yield url
    finally:
        pg_server.drop_database(url.rsplit("/", 1)[1])


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A results store that does not exist yet: a sqlite file, or an empty PostgreSQL
    database."""
    if request.param == "sqlite":
        return str(tmp_path / "labctl.db")
    return str(request.getfixturevalue("pg_url"))
