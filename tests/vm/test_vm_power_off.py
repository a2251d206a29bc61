"""A fault on the VM lab: one VM powered off (its QEMU SIGKILLed) in the middle of a
provision. The other VM finishes, the dead one is reported unreachable in one line, and the
next `lab.up` brings the lab back. Runs after the other VM tests (file order): it reboots
both VMs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import FaultRow
from tests.support import labctl_argv

from .conftest import VmTestLab

pytestmark = pytest.mark.vm

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "hello_kmod"


def test_a_vm_powered_off_mid_provision(
    vmlab: VmTestLab, tmp_path: Path, record: list[FaultRow]
) -> None:
    # A fixture module source of this test's own: a new build key, so each VM builds it
    # (kmod_build_on=host) and the provision is busy long enough to be cut.
    src = tmp_path / "hello_kmod"
    shutil.copytree(FIXTURE, src)
    with (src / "hello_kmod.c").open("a") as f:
        f.write(f"\n/* power-off fault test {os.getpid()} */\n")
    argv = [
        *labctl_argv(),
        "provision",
        "-i",
        str(vmlab.inventory_path),
        "--tags",
        "headers",
        "-e",
        f"fixture_src={src}",
        "-e",
        "kmod_build_on=host",
        "--json",
    ]
    cli1 = vmlab.host("cli1")
    victim = vmlab.lab.qemu_pids()["cli1"]
    run = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # until cli1 is compiling
            ps = cli1.run(["ps", "-e", "-o", "comm="]).stdout.split()
            if "make" in ps or "cc1" in ps or run.poll() is not None:
                break
            time.sleep(0.5)
        assert run.poll() is None, "the provision ended before the fault could be injected"
        os.kill(victim, signal.SIGKILL)  # the power cord
        out, err = run.communicate(timeout=600)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate(timeout=30)
    doc = json.loads(out)
    recap = doc["recap"]
    assert run.returncode == 4, err
    assert recap["cli1"]["unreachable"] == 1 and recap["srv1"]["failed"] == 0, recap
    built = [r for r in doc["results"] if r["host"] == "srv1" and "built" in r["task"]]
    assert built and built[0]["status"] == "changed", built
    reason = next(r["msg"] for r in doc["results"] if r["status"] == "unreachable")
    assert reason.startswith("cli1: ") and "\n" not in reason
    # Nothing of the build is left on the VM that finished (the other went with its power).
    builders = {"make", "cc1", "gcc", "as", "ld", "modpost"}
    left = [c for c in vmlab.host("srv1").run(["ps", "-e", "-o", "comm="]).stdout.split()]
    orphans = sum(c in builders for c in left)
    assert orphans == 0, left
    vmlab.connections.close()  # the old sessions died with the VM and its peer's restart
    up = vmlab.labctl("lab.up", "-i", str(vmlab.inventory_path))
    assert up.returncode == 0, up.stderr
    assert vmlab.host("cli1").run(["true"]).ok
    record.append(
        FaultRow(
            "a VM powered off (QEMU SIGKILLed) mid-provision",
            "the other VM finishes its build; the dead one unreachable; the next lab.up "
            "boots both again",
            str(run.returncode),
            reason[:90],
            orphans,
        )
    )
