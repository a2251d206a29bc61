"""Containers in the local lab: namespaces on a docker0 inside a lab host, seen over real SSH."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from labctl.inventory import load_inventory
from labctl.labs.netns import LocalLab
from labctl.labs.netns_spec import LabSpec
from labctl.remote import HostConnection, ShellScript, quote

from .conftest import _require_lab_prerequisites, make_lab, unique_spec

pytestmark = pytest.mark.lab


def _spec(tag: int) -> LabSpec:
    """Two hosts of this run's own (see unique_spec), two containers on srv1."""
    base = unique_spec(hosts=2, tag=tag)
    return LabSpec.generated(
        base.name, str(base.subnet), 2, base.state_dir, containers_on={"srv1": 2}
    )


@contextmanager
def _ssh(spec: LabSpec, host: str = "srv1") -> Iterator[HostConnection]:
    """A fresh connection each time: one to a host whose sshd was restarted is dead."""
    with HostConnection(load_inventory(spec.state_dir / "inventory.yml").host(host)) as conn:
        yield conn


def _json(conn: HostConnection, command: str) -> Any:
    out = conn.run(ShellScript(command), check=True).stdout
    return json.loads(out) if out.strip() else []


@pytest.fixture(scope="module")
def clab() -> Iterator[LocalLab]:
    _require_lab_prerequisites()
    spec = _spec(6)
    local = LocalLab(spec)
    try:
        local = make_lab(spec)
        yield local
    finally:
        local.down(purge=True)


def _across_docker0(conn: HostConnection, spec: LabSpec) -> str:
    """From c1 to c2 over TCP (ping may not be installed); returns c1's address as c2 saw it."""
    dst = str(spec.container_address("srv1", 2))
    server = (
        f"import socket; s = socket.create_server(({dst!r}, 5555)); c, a = s.accept(); "
        "c.sendall(a[0].encode()); c.close()"
    )
    client = (
        "import socket, time\n"
        "for _ in range(100):\n"
        "    try:\n"
        f"        c = socket.create_connection(({dst!r}, 5555), timeout=1)\n"
        "        break\n"
        "    except OSError:\n"
        "        time.sleep(0.05)\n"
        "else:\n"
        "    raise SystemExit('no connection')\n"
        "print(c.recv(64).decode())\n"
    )
    script = (
        f"ip netns exec c2 timeout 10 python3 -c {quote(server)} >/dev/null 2>&1 </dev/null &\n"
        f"ip netns exec c1 python3 -c {quote(client)}"
    )
    return conn.run(ShellScript(script), check=True).stdout.strip()


def test_containers_are_seen_on_their_host_as_on_a_docker_host(clab: LocalLab) -> None:
    spec = clab.spec
    subnet = spec.container_subnet("srv1")
    with _ssh(spec) as conn:
        assert sorted(n["name"] for n in _json(conn, "ip -j netns list")) == ["c1", "c2"]
        ports = _json(conn, "ip -j link show master docker0")
        assert sorted(p["ifname"] for p in ports) == ["veth1", "veth2"]
        assert all("UP" in p["flags"] for p in ports)
        bridge = _json(conn, "ip -4 -j addr show dev docker0")[0]
        assert [(a["local"], a["prefixlen"]) for a in bridge["addr_info"]] == [
            (str(subnet.network_address + 1), 24)
        ]
        for k in (1, 2):
            eth0 = _json(conn, f"ip netns exec c{k} ip -4 -j addr show dev eth0")[0]
            local = [a["local"] for a in eth0["addr_info"]]
            assert local == [str(spec.container_address("srv1", k))]
            route = _json(conn, f"ip netns exec c{k} ip -j route show default")
            assert [r["gateway"] for r in route] == [str(subnet.network_address + 1)]
    # Only srv1 has them: another host's /run/netns is its own.
    with _ssh(spec, "cli1") as conn:
        assert _json(conn, "ip -j netns list") == []
        assert conn.run(["ip", "link", "show", "dev", "docker0"]).exit_status != 0


def test_containers_reach_each_other_across_docker0(clab: LocalLab) -> None:
    spec = clab.spec
    with _ssh(spec) as conn:
        assert _across_docker0(conn, spec) == str(spec.container_address("srv1", 1))
        if conn.run(ShellScript("command -v ping")).ok:
            dst = spec.container_address("srv1", 2)
            assert conn.run(["ip", "netns", "exec", "c1", "ping", "-c1", "-W1", str(dst)]).ok


def test_container_veths_have_the_default_qdisc(clab: LocalLab) -> None:
    with _ssh(clab.spec) as conn:
        for veth in ("veth1", "veth2"):
            qdiscs = _json(conn, f"tc -j qdisc show dev {veth}")
            assert [(q["kind"], q.get("root")) for q in qdiscs] == [("noqueue", True)]


def test_up_twice_changes_nothing_and_status_counts_containers(clab: LocalLab) -> None:
    report = LocalLab(clab.spec).up()
    assert report.changed == 0, [c.what for c in report.changes if c.changed]
    assert {c.what for c in report.changes} >= {"docker0 srv1", "container srv1/c1"}
    rows = {r.name: r for r in LocalLab(clab.spec).status()}
    assert (rows["srv1"].containers, rows["cli1"].containers) == (2, 0)
    assert all(r.ssh_port_open for r in rows.values())


def _start_in_c1(conn: HostConnection) -> int:
    """A program in container c1, started over SSH and detached from the session."""
    conn.run(
        ShellScript("ip netns exec c1 setsid sleep 600 >/dev/null 2>&1 </dev/null &"), check=True
    )
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        pids = conn.run(["ip", "netns", "pids", "c1"], check=True).stdout.split()
        if pids:
            assert len(pids) == 1, pids
            return int(pids[0])
        time.sleep(0.05)
    raise AssertionError("no process in c1")


def _alive(pid: int) -> bool:
    try:
        return not Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].startswith("Z")
    except OSError:
        return False


def _kill_sshd(lab: LocalLab, host: str) -> None:
    pid = lab.sshd_pid(host)
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(pid)


def test_a_restarted_sshd_gets_its_containers_made_again(clab: LocalLab) -> None:
    spec = clab.spec
    with _ssh(spec) as conn:
        stray = _start_in_c1(conn)
    _kill_sshd(clab, "srv1")
    assert _alive(stray)  # the old c1 lives on in its process's copy of the old mount namespace
    report = LocalLab(spec).up()
    changed = [c.what for c in report.changes if c.changed]
    assert "sshd srv1" in changed
    assert "container srv1/c1 re-made: sshd restarted, stopped 1 processes left in the old one" in (
        changed
    )
    assert "container srv1/c2 re-made: sshd restarted" in changed
    assert not _alive(stray)
    with _ssh(spec) as conn:
        assert sorted(n["name"] for n in _json(conn, "ip -j netns list")) == ["c1", "c2"]
        ports = _json(conn, "ip -j link show master docker0")
        assert sorted(p["ifname"] for p in ports) == ["veth1", "veth2"]
        assert _across_docker0(conn, spec) == str(spec.container_address("srv1", 1))
    assert LocalLab(spec).up().changed == 0


# ---------------------------------------------------------------------------- down


def _links() -> set[str]:
    out = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, check=True)
    return {link["ifname"] for link in json.loads(out.stdout)}


def _netns() -> set[str]:
    out = subprocess.run(["ip", "-j", "netns", "list"], capture_output=True, text=True).stdout
    return {n["name"] for n in json.loads(out)} if out.strip() else set()


def _procs_in_netns(inodes: set[int]) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if os.stat(proc / "ns" / "net").st_ino in inodes and _alive(int(proc.name)):
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def _procs_mentioning(text: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if text.encode() in (proc / "cmdline").read_bytes() and _alive(int(proc.name)):
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


@pytest.mark.parametrize("sshd_first", [False, True], ids=["sshd-alive", "sshd-already-gone"])
def test_down_stops_container_processes_and_leaves_nothing(sshd_first: bool) -> None:
    _require_lab_prerequisites()
    spec = _spec(7)
    links_before, netns_before = _links(), _netns()
    lab = None
    try:
        lab = make_lab(spec)
        with _ssh(spec) as conn:
            stray = _start_in_c1(conn)
        record = json.loads(spec.record_file.read_text())
        inodes = {c["inode"] for c in record["container"].values()}
        assert len(inodes) == 2 and stray in _procs_in_netns(inodes)
        sshd = lab.sshd_pid("srv1")
        if sshd_first:  # the host is gone, its containers are not: the sleep holds c1
            _kill_sshd(lab, "srv1")
            assert _alive(stray)
    finally:
        report = (lab or LocalLab(spec)).down(purge=True)
    assert not _alive(stray)
    whats = [c.what for c in report.changes]
    assert "1 processes in srv1/c1" in whats
    if not sshd_first:  # removed inside the host, before its sshd was stopped
        assert {"container srv1/c1", "container srv1/c2"} <= set(whats)
    assert sshd is not None and not _alive(sshd)
    assert _netns() == netns_before
    assert _links() == links_before
    assert not _procs_mentioning(str(spec.state_dir))
    assert not spec.state_dir.exists()
