"""Shared test set-up: keep the developer's SSH config and shell rc files out of every test;
the table of faults injected (tests/faults/, and the VM lab's under tests/vm/) and their
outcomes, printed at the end of the run."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest


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
