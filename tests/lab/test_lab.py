"""The local lab itself: facts over SSH, a host down, idempotent up, a down that leaves nothing."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from labctl.facts import gather_facts
from labctl.lab import LocalLab
from labctl.remote import Connections, ShellScript

from .conftest import NamespaceLab, unique_spec

pytestmark = pytest.mark.lab


def test_facts_from_every_host_over_ssh(lab: NamespaceLab) -> None:
    outcomes = lab.connections.run_on_hosts(gather_facts)
    assert [o.host for o in outcomes] == ["srv1", "cli1", "cli2"]
    release = os.uname().release
    for o in outcomes:
        assert o.ok, o.error
        facts = o.value
        assert facts is not None and facts.errors == ()
        host = lab.inventory_host(o.host)
        assert facts.hostname == o.host
        assert facts.kernel_release == release
        assert facts.modules_supported == os.path.exists("/proc/modules")
        assert (facts.ssh_interface, facts.ssh_address) == ("eth0", host.address)
        assert facts.controller_address == str(lab.lab.spec.gateway)
        eth0 = facts.interface("eth0")
        assert eth0 is not None and eth0.driver == "veth" and eth0.root_qdisc == "noqueue"


def test_facts_command_json(lab: NamespaceLab) -> None:
    proc = lab.labctl("facts", "-i", str(lab.inventory_path), "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)["hosts"]
    assert list(doc) == ["srv1", "cli1", "cli2"]
    assert {d["hostname"] for d in doc.values()} == {"srv1", "cli1", "cli2"}
    assert all(d["kernel_release"] == os.uname().release for d in doc.values())
    assert all(d["modules_supported"] is os.path.exists("/proc/modules") for d in doc.values())
    table = lab.labctl("facts", "-i", str(lab.inventory_path), "--limit", "clients")
    assert table.returncode == 0, table.stderr
    assert "cli1" in table.stdout and "cli2" in table.stdout and "srv1" not in table.stdout


def test_host_with_sshd_stopped_fails_alone_then_up_repairs_it(lab: NamespaceLab) -> None:
    pid = lab.lab.sshd_pid("cli2")
    assert pid is not None
    os.kill(pid, 15)
    try:
        proc = lab.labctl("facts", "-i", str(lab.inventory_path), "--json")
        assert proc.returncode == 4, proc.stderr
        doc = json.loads(proc.stdout)["hosts"]
        assert doc["srv1"]["hostname"] == "srv1" and doc["cli1"]["hostname"] == "cli1"
        assert doc["cli2"]["unreachable"] is True
        assert proc.stderr.strip() == "labctl: cli2: unreachable: connection refused"
    finally:
        report = LocalLab(lab.lab.spec).up()
    assert [c.what for c in report.changes if c.changed] == ["sshd cli2"]
    # The run's persistent connection to cli2 died with its sshd; a fresh one works.
    with Connections([lab.inventory_host("cli2")]) as conns:
        assert conns["cli2"].run(["hostname"]).stdout == "cli2\n"


def test_up_twice_changes_nothing(lab: NamespaceLab) -> None:
    report = LocalLab(lab.lab.spec).up()
    assert report.changed == 0, report.changes
    proc = lab.labctl("lab.status", "-i", str(lab.inventory_path), "--json")
    assert proc.returncode == 0, proc.stderr
    assert all(row["ssh_port_open"] for row in json.loads(proc.stdout))


def _links() -> set[str]:
    out = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, check=True)
    return {link["ifname"] for link in json.loads(out.stdout)}


def _netns() -> set[str]:
    out = subprocess.run(["ip", "-j", "netns", "list"], capture_output=True, text=True).stdout
    return {n["name"] for n in json.loads(out)} if out.strip() else set()


def test_down_leaves_no_namespace_link_or_process(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the namespace lab needs root")
    spec = unique_spec(tmp_path, hosts=2, tag=2)
    lab = LocalLab(spec)
    links_before, netns_before = _links(), _netns()
    try:
        lab.up()
        assert _netns() - netns_before == {spec.netns("srv1"), spec.netns("cli1")}
        assert {spec.bridge, spec.veth(1), spec.veth(2)} <= _links()
        sshd_pids = [lab.sshd_pid("srv1"), lab.sshd_pid("cli1")]
        inventory = tmp_path / "inventory.yml"
        inventory.write_text(spec.inventory_yaml())
        from labctl.inventory import load_inventory

        host = load_inventory(inventory).host("srv1")
        with Connections([host]) as conns:
            # A program left running on the host, detached from the SSH session.
            out = (
                conns["srv1"]
                .run(
                    ShellScript("setsid sleep 600 >/dev/null 2>&1 </dev/null & echo $!"), check=True
                )
                .stdout
            )
        stray = int(out)
        assert Path(f"/proc/{stray}").exists()
    finally:
        report = lab.down(purge=True)
    assert _netns() == netns_before
    assert _links() == links_before
    for pid in [*sshd_pids, stray]:
        assert pid is not None
        stat = Path(f"/proc/{pid}/stat")
        assert not stat.exists() or stat.read_text().split(") ")[1].startswith("Z"), pid
    assert not spec.state_dir.exists()
    assert any("processes in" in c.what for c in report.changes)
