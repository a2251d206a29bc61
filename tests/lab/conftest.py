"""The namespace lab for tests: one per session, with its own names and subnet, always removed.

Reads like testinfra: `lab.host("srv1").run(["hostname"])` runs over real SSH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from labctl.inventory import Host, Inventory, load_inventory
from labctl.lab import LabSpec, LocalLab
from labctl.remote import Connections, HostConnection

pytestmark = pytest.mark.lab


def _require_lab_prerequisites() -> None:
    if os.geteuid() != 0:
        pytest.skip("the namespace lab needs root")
    if not os.access("/usr/sbin/sshd", os.X_OK) or shutil.which("ip") is None:
        pytest.fail("the namespace lab needs openssh-server and iproute2: run scripts/setup.sh")


def unique_spec(tmp: Path, hosts: int, tag: int) -> LabSpec:
    """Names and a subnet of this test run's own, so a user's lab is never touched."""
    pid = os.getpid()
    return LabSpec.generated(
        f"lt{tag}{pid % 10000}", f"10.{200 + tag}.{pid % 250}.0/24", hosts, tmp
    )


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
        argv = [sys.executable, "-c", "from labctl.cli import main; main()", *args]
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NamespaceLab]:
    _require_lab_prerequisites()
    spec = unique_spec(tmp_path_factory.mktemp("lab"), hosts=3, tag=1)
    local = LocalLab(spec)
    try:
        local.up()
        path = spec.state_dir / "inventory.yml"
        path.write_text(spec.inventory_yaml())
        inventory = load_inventory(path)
        with Connections(inventory.hosts.values()) as conns:
            yield NamespaceLab(local, path, inventory, conns)
    finally:
        local.down(purge=True)
