"""The namespace lab for tests: one per session, with its own names and subnet, always removed.

Reads like testinfra: `lab.host("srv1").run(["hostname"])` runs over real SSH.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from labctl.actions.base import TaskContext
from labctl.inventory import Host, Inventory, load_inventory
from labctl.labs.netns import LocalLab
from labctl.labs.netns_spec import LabSpec
from labctl.remote import Connections, HostConnection
from tests.support import TEST_LABS, base36, run_labctl, sigterm_runs_teardown


def _require_lab_prerequisites() -> None:
    if os.geteuid() != 0:
        pytest.skip("the namespace lab needs root")
    if not os.access("/usr/sbin/sshd", os.X_OK) or shutil.which("ip") is None:
        pytest.fail("the namespace lab needs openssh-server and iproute2: run scripts/setup.sh")


def unique_spec(hosts: int, tag: int, containers_on: dict[str, int] | None = None) -> LabSpec:
    """Names and a subnet of this test run's own, so a user's lab is never touched.

    The name carries the owning pytest's PID, so a later session can tell a lab whose owner
    was killed (SIGKILL skips every finally) from one still in use, and sweep it.
    """
    pid = os.getpid()
    name = f"t{tag}{base36(pid)}"
    return LabSpec.generated(
        name, f"10.{200 + tag}.{pid % 250}.0/24", hosts, TEST_LABS / name, containers_on
    )


def sweep_orphan_labs() -> list[str]:
    """Take down test labs whose pytest is gone, each by its own record (by PID, by name)."""
    swept = []
    for state in sorted(TEST_LABS.glob("t[0-9]*")) if TEST_LABS.exists() else []:
        owner = int(state.name[2:], 36)
        if Path(f"/proc/{owner}").exists() or not (state / "inventory.yml").exists():
            continue
        LocalLab(LabSpec.from_inventory(load_inventory(state / "inventory.yml"))).down(purge=True)
        swept.append(state.name)
    return swept


@dataclass
class NamespaceLab:
    lab: LocalLab
    inventory_path: Path
    inventory: Inventory
    connections: Connections

    def host(self, name: str) -> HostConnection:
        return self.connections[name]

    def inventory_host(self, name: str) -> Host:
        return self.inventory.host(name)

    def labctl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """The `labctl` command line against this lab, as a user runs it."""
        return run_labctl(*args, timeout=timeout)


def make_lab(spec: LabSpec) -> LocalLab:
    """Up, with its inventory written first so that a sweep can always find it."""
    local = LocalLab(spec)
    local.write_inventory(spec.name, spec.inventory_yaml())
    local.up()
    return local


@contextlib.contextmanager
def session_lab(spec: LabSpec) -> Iterator[NamespaceLab]:
    """A lab for a whole test session, taken down (purged) whatever happens, SIGTERM too."""
    _require_lab_prerequisites()
    sweep_orphan_labs()
    previous = signal.signal(signal.SIGTERM, sigterm_runs_teardown)
    local = LocalLab(spec)
    try:
        local = make_lab(spec)
        path = spec.state_dir / "inventory.yml"
        inventory = load_inventory(path)
        with Connections(inventory.hosts.values()) as conns:
            yield NamespaceLab(local, path, inventory, conns)
    finally:
        local.down(purge=True)
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="session")
def lab() -> Iterator[NamespaceLab]:
    # srv1 is also a docker-like host: two containers on its docker0
    with session_lab(unique_spec(hosts=3, tag=1, containers_on={"srv1": 2})) as made:
        yield made


@pytest.fixture
def srv(lab: NamespaceLab) -> HostConnection:
    """srv1 of the session lab, for action tests."""
    return lab.host("srv1")


@pytest.fixture
def ctx(srv: HostConnection, tmp_path: Path) -> TaskContext:
    """A task context on srv1 whose playbook directory is the test's tmp_path."""
    return TaskContext(conn=srv, vars={}, base_dir=tmp_path)
