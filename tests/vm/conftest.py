"""The VM lab for tests: two QEMU VMs booting Debian's kernel, one per session, with a name,
state directory and ports of this test run's own, always taken down by PID.

The base image is the shared cache's (/var/lib/labctl/images): built once (~1.5-3 min), then
reused by every run until its recipe changes. The measured costs (image build, boot to SSH,
memory per VM) are printed in pytest's terminal summary.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from labctl.inventory import Inventory, load_inventory
from labctl.labs.qemu import is_our_qemu
from labctl.labs.vm import VmLab
from labctl.labs.vm_spec import VmLabSpec
from labctl.remote import Connections, HostConnection
from tests.support import TEST_LABS, base36, run_labctl, sigterm_runs_teardown

FIGURES: list[str] = []  # measured costs, printed at the end of the session


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("VM lab costs (TCG unless said; emulated hardware)")
        for line in FIGURES:
            terminalreporter.write_line(line)


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ports_for(pid: int) -> int:
    """A link port (SSH ports follow it) derived from the PID, moved on while any is taken."""
    for attempt in range(50):  # bounded
        base = 21000 + ((pid + attempt * 7) % 1500) * 10
        if all(_free(base + i) for i in range(3)):
            return base
    raise RuntimeError("no three free ports on 127.0.0.1 for the VM lab")


def unique_spec() -> VmLabSpec:
    """The name carries the owning pytest's PID, so a later session can sweep the lab of a
    pytest that was killed (SIGKILL skips every finally)."""
    pid = os.getpid()
    name = f"v{base36(pid)}"
    return VmLabSpec.generated(name, 2, _ports_for(pid), TEST_LABS / name)


def sweep_orphan_labs() -> list[str]:
    """Take down VM test labs whose pytest is gone, each by its own record (by PID)."""
    swept = []
    for state in sorted(TEST_LABS.glob("v[0-9a-z]*")) if TEST_LABS.exists() else []:
        owner = int(state.name[1:], 36)
        inventory = state / "inventory.yml"
        if Path(f"/proc/{owner}").exists() or not inventory.exists():
            continue
        VmLab(VmLabSpec.from_inventory(load_inventory(inventory))).down(purge=True)
        swept.append(state.name)
    return swept


@dataclass
class VmTestLab:
    lab: VmLab
    inventory_path: Path
    inventory: Inventory
    connections: Connections

    def host(self, name: str) -> HostConnection:
        return self.connections[name]

    def labctl(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """The `labctl` command line against this lab, as a user runs it."""
        return run_labctl(*args, timeout=timeout)


def _require_prerequisites() -> None:
    if os.geteuid() != 0:
        pytest.skip("the VM lab needs root")
    missing = [
        t
        for t in ("qemu-system-x86_64", "qemu-img", "mmdebstrap", "mke2fs")
        if shutil.which(t) is None
    ]
    if missing:
        pytest.fail(f"the VM lab needs {', '.join(missing)}: run scripts/setup.sh")


@pytest.fixture(scope="session")
def vmlab() -> Iterator[VmTestLab]:
    _require_prerequisites()
    sweep_orphan_labs()
    previous = signal.signal(signal.SIGTERM, sigterm_runs_teardown)
    spec = unique_spec()
    lab = VmLab(spec, progress=lambda msg: print(f"  {msg}", flush=True))
    # first, so that a sweep can always find the lab
    path = lab.write_inventory(spec.name, spec.inventory_yaml())
    try:
        started = time.monotonic()
        lab.up()
        took = time.monotonic() - started
        image = lab.image
        assert image is not None
        FIGURES.append(
            f"image {image.dir.name[:12]} (kernel {image.kernel_release}): "
            + (f"built in {image.build_seconds:.0f} s" if lab.image_built else "cached")
        )
        FIGURES.append(f"accel: {lab.accel}; lab.up of 2 VMs: {took:.0f} s in all")
        for host, seconds in lab.boot_seconds.items():
            FIGURES.append(f"{host}: boot to SSH {seconds:.1f} s")
        for row in lab.status():
            FIGURES.append(
                f"{row.name}: QEMU RSS after boot {row.rss_mib or 0:.0f} MiB "
                f"(-m {spec.memory_mib}, TCG cache 256 MiB)"
            )
        inventory = load_inventory(path)
        with Connections(inventory.hosts.values()) as conns:
            yield VmTestLab(lab, path, inventory, conns)
        for row in lab.status():
            FIGURES.append(f"{row.name}: QEMU RSS at the end {row.rss_mib or 0:.0f} MiB")
    finally:
        recorded = dict(lab._load_record().get("qemu", {}))
        try:
            lab.down(purge=True)
        finally:
            signal.signal(signal.SIGTERM, previous)
        # down stopped exactly those PIDs, and left no overlay behind
        alive = [
            r["pid"]
            for r in recorded.values()
            if r.get("pid") and is_our_qemu(r["pid"], r.get("start"), Path(r["pidfile"]))
        ]
        assert not alive, f"QEMU still running after lab.down: {alive}"
        assert not any(spec.overlay(h.name).exists() for h in spec.hosts)
