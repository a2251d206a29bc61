"""The local lab itself: facts over SSH, a host down, idempotent up, a down that leaves nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from labctl.errors import LabError
from labctl.facts.host import gather_facts
from labctl.inventory import load_inventory
from labctl.labs.netns import LocalLab
from labctl.labs.netns_spec import LabSpec
from labctl.remote import Connections, ShellScript

from .conftest import TEST_LABS, NamespaceLab, make_lab, unique_spec

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


def _procs_mentioning(text: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if text.encode() in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def _alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return not stat.read_text().rsplit(") ", 1)[1].startswith("Z")
    except OSError:
        return False


def _stat(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().strip()
    except OSError:
        return "gone"


def test_down_leaves_no_namespace_link_or_process() -> None:
    spec = unique_spec(hosts=2, tag=2)
    links_before, netns_before = _links(), _netns()
    lab = None
    try:
        lab = make_lab(spec)
        assert _netns() - netns_before == {spec.netns("srv1"), spec.netns("cli1")}
        assert {spec.bridge, spec.veth(1), spec.veth(2)} <= _links()
        sshd_pids = [lab.sshd_pid("srv1"), lab.sshd_pid("cli1")]
        host = load_inventory(spec.state_dir / "inventory.yml").host("srv1")
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
        assert _alive(stray)
    finally:
        report = (lab or LocalLab(spec)).down(purge=True)
    assert _netns() == netns_before
    assert _links() == links_before
    left = [pid for pid in [*sshd_pids, stray] if pid and _alive(pid)]
    assert not left, [(pid, _stat(pid)) for pid in left]  # which one, in which state
    assert not [p for p in _procs_mentioning(str(spec.state_dir)) if _alive(p)]
    assert not spec.state_dir.exists()
    assert any("processes in" in c.what for c in report.changes)


def test_up_refuses_what_it_did_not_make_and_down_undoes_a_failed_up() -> None:
    spec = unique_spec(hosts=2, tag=3)
    foreign = spec.netns("cli1")  # the second host's namespace, made by someone else
    subprocess.run(["ip", "netns", "add", foreign], check=True)
    links_before, netns_before = _links(), _netns()
    try:
        with pytest.raises(LabError, match=f"a namespace named {foreign} exists and this lab did"):
            make_lab(spec)
        # srv1 was made before the refusal: down removes it all, and leaves the foreign one.
        LocalLab(spec).down(purge=True)
        assert _netns() == netns_before and foreign in _netns()
        assert _links() == links_before
    finally:
        subprocess.run(["ip", "netns", "del", foreign], check=False)
        LocalLab(spec).down(purge=True)


def test_a_subnet_already_routed_elsewhere_is_refused(lab: NamespaceLab) -> None:
    other = LabSpec.generated("t9x", str(lab.lab.spec.subnet), 1, TEST_LABS / "t9x")
    with pytest.raises(
        LabError,
        match=f"lab subnet {other.subnet} overlaps .* on {lab.lab.spec.bridge}: choose another",
    ):
        LocalLab(other).up()
    assert other.bridge not in _links()
    LocalLab(other).down(purge=True)


def test_down_kills_only_a_pid_that_is_still_its_sshd() -> None:
    spec = unique_spec(hosts=1, tag=4)
    bystander = subprocess.Popen(["sleep", "60"])  # ours, outside the lab
    try:
        lab = make_lab(spec)
        record = json.loads(spec.record_file.read_text())
        record["sshd"]["srv1"]["pid"] = bystander.pid  # as if the PID had been reused
        spec.record_file.write_text(json.dumps(record))
        lab.down(purge=True)
        assert bystander.poll() is None  # not a lab process: untouched
        assert spec.netns("srv1") not in _netns()
    finally:
        bystander.kill()
        bystander.wait()
        LocalLab(spec).down(purge=True)


def test_lab_commands_as_a_user_runs_them(lab: NamespaceLab) -> None:
    spec = unique_spec(hosts=2, tag=5)
    inventory = LocalLab(spec).write_inventory(spec.name, spec.inventory_yaml())
    try:
        up = lab.labctl("lab.up", "-i", str(inventory))
        assert up.returncode == 0, up.stderr
        assert f"lab {spec.name}: 2 hosts up (" in up.stdout
        again = lab.labctl("lab.up", "-i", str(inventory))
        expected = f"lab {spec.name}: 2 hosts already up, nothing changed"
        assert again.stdout.strip().endswith(expected)
        status = lab.labctl("lab.status", "-i", str(inventory), "--json")
        assert [r["ssh_port_open"] for r in json.loads(status.stdout)] == [True, True]
    finally:
        down = lab.labctl("lab.down", "-i", str(inventory), "--purge")
    assert down.returncode == 0, down.stderr
    assert f"lab {spec.name} down: removed 2 sshd" in down.stdout
    assert not spec.state_dir.exists()


def test_down_acts_only_on_the_namespace_up_made() -> None:
    """The name is someone else's now: its processes and the namespace are left alone."""
    spec = unique_spec(hosts=1, tag=6)
    ns = spec.netns("srv1")
    bystander: subprocess.Popen[bytes] | None = None
    try:
        lab = make_lab(spec)
        # The lab's namespace loses its name (its sshd keeps it alive); another takes it.
        subprocess.run(["ip", "netns", "del", ns], check=True)
        subprocess.run(["ip", "netns", "add", ns], check=True)
        bystander = subprocess.Popen(["ip", "netns", "exec", ns, "sleep", "60"])
        deadline = time.monotonic() + 5
        while not _netns_pids(ns) and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(LabError, match=f"the namespace named {ns} is not the one"):
            LocalLab(spec).up()
        report = lab.down(purge=True)
        assert bystander.poll() is None, "a process in a namespace labctl did not make died"
        assert ns in _netns()
        assert any(c.what == f"netns {ns} left: not the one up made" for c in report.changes)
    finally:
        if bystander is not None:
            bystander.kill()
            bystander.wait(timeout=10)
        subprocess.run(["ip", "netns", "del", ns], check=False)
        LocalLab(spec).down(purge=True)


def _netns_pids(ns: str) -> list[str]:
    return subprocess.run(
        ["ip", "netns", "pids", ns], capture_output=True, text=True
    ).stdout.split()


def test_a_state_dir_holding_a_users_files_is_never_written_or_purged() -> None:
    spec = unique_spec(hosts=1, tag=7)
    state = spec.state_dir
    state.mkdir(parents=True, exist_ok=True)
    mine = {"id_ed25519": "a user's own key\n", "known_hosts": "a user's known host\n"}
    links_before, netns_before = _links(), _netns()
    try:
        for name, text in mine.items():
            (state / name).write_text(text)
        with pytest.raises(LabError, match=f"{state}/id_ed25519 exists and labctl did not"):
            LocalLab(spec).up()
        assert (_links(), _netns()) == (links_before, netns_before)  # nothing made
        LocalLab(spec).down(purge=True)
        assert {n: (state / n).read_text() for n in mine} == mine
        assert sorted(p.name for p in state.iterdir()) == sorted(mine)

        # Beside labctl's own files, a user's file survives a purge, and so does the dir.
        for name in mine:
            (state / name).unlink()
        (state / "notes.txt").write_text("mine\n")
        make_lab(spec).down(purge=True)
        assert sorted(p.name for p in state.iterdir()) == ["notes.txt"]
    finally:
        LocalLab(spec).down(purge=True)
        shutil.rmtree(state, ignore_errors=True)
