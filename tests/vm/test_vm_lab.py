"""On a VM lab of real Debian kernels: the lab itself, provisioning that really loads the
fixture module, and driver swaps with the management-link guard and the revert, for real.

Tests run in file order and share the session's two VMs (srv1, cli1)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from labctl.facts.host import gather_facts
from labctl.labs.vm import VmLab
from labctl.remote import HostConnection

from .conftest import FIGURES, VmTestLab

pytestmark = pytest.mark.vm

LOAD = "fixture module loaded (where the kernel can load modules)"
BUILD = "fixture module built for the target release"


def _results(doc: dict[str, Any], task: str) -> dict[str, dict[str, Any]]:
    return {r["host"]: r for r in doc["results"] if r["task"] == task}


def _run_json(vmlab: VmTestLab, *args: str, ok: bool = True) -> dict[str, Any]:
    proc = vmlab.labctl(*args, "-i", str(vmlab.inventory_path), "--json")
    if ok:
        assert proc.returncode == 0, proc.stderr + proc.stdout[-3000:]
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def _play(vmlab: VmTestLab, tmp_path: Path, tasks: list[dict[str, Any]]) -> dict[str, Any]:
    book = tmp_path / "play.yml"
    book.write_text(yaml.safe_dump([{"name": "t", "hosts": "srv1", "tasks": tasks}]))
    return _run_json(vmlab, "play", str(book), ok=False)


def _nic(conn: HostConnection, name: str) -> tuple[str, int] | None:
    """(driver, ifindex) of an interface, None while it is gone."""
    res = conn.run(
        [
            "sh",
            "-c",
            f'basename "$(readlink /sys/class/net/{name}/device/driver)" && '
            f"cat /sys/class/net/{name}/ifindex",
        ]
    )
    words = res.stdout.split()
    if not res.ok or len(words) != 2 or not words[1].isdigit():
        return None  # gone, or half there (udev is still renaming it, no driver link yet)
    return words[0], int(words[1])


def _wait_for_nic(conn: HostConnection, name: str, newer_than: int, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # bounded
        found = _nic(conn, name)
        if found and found[1] > newer_than:
            return found
        time.sleep(1)
    return _nic(conn, name)


def _ping_peer(conn: HostConnection, timeout: float = 30) -> bool:
    """srv1 reaches cli1 over the experiment link (bounded: networkd may be re-adding the
    address of an interface that just came back)."""
    deadline = time.monotonic() + timeout
    while True:
        if conn.run(["ping", "-c", "1", "-W", "2", "10.78.0.12"], timeout=10).ok:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(1)


# ---------------------------------------------------------------------------- the lab


def test_vms_run_debian_kernels_with_predictable_nics(vmlab: VmTestLab) -> None:
    for name in ("srv1", "cli1"):
        facts = gather_facts(vmlab.host(name))  # over SSH, host key checked strictly
        assert facts.hostname == name
        assert facts.modules_supported
        assert facts.kernel_release == vmlab.lab.image.kernel_release  # type: ignore[union-attr]
        drivers = {i.name: i.driver for i in facts.interfaces if i.name != "lo"}
        assert drivers == {"enp0s3": "virtio_net", "enp0s4": "e1000e"}
        assert facts.ssh_interface == "enp0s3"
    # the experiment link joins the two VMs
    res = vmlab.host("srv1").run(["ping", "-c", "2", "-W", "5", "10.78.0.12"], timeout=30)
    assert res.ok, res.stdout + res.stderr
    mem = vmlab.host("srv1").run(["free", "-m"], check=True).stdout.splitlines()[1].split()
    FIGURES.append(f"srv1: {mem[2]} MiB used inside the guest after boot (of {mem[1]})")


def test_second_up_changes_nothing_and_status_is_green(vmlab: VmTestLab) -> None:
    pids = vmlab.lab.qemu_pids()
    report = VmLab(vmlab.lab.spec).up()
    assert report.changed == 0, report.changes
    assert VmLab(vmlab.lab.spec).qemu_pids() == pids
    proc = vmlab.labctl("lab.status", "-i", str(vmlab.inventory_path), "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [(r["name"], r["running"], r["ssh_open"]) for r in rows] == [
        ("srv1", True, True),
        ("cli1", True, True),
    ]


def test_a_wrong_host_key_is_refused(vmlab: VmTestLab, tmp_path: Path) -> None:
    """known_hosts was written before boot: a VM answering with another key is refused."""
    from dataclasses import replace

    from labctl.errors import HostUnreachable

    spec = vmlab.lab.spec
    lines = spec.known_hosts_file.read_text().splitlines()
    swapped = tmp_path / "known_hosts"
    # srv1's port with cli1's key
    swapped.write_text(f"{lines[0].split()[0]} {' '.join(lines[1].split()[1:])}\n")
    host = replace(vmlab.inventory.host("srv1"), known_hosts_file=str(swapped))
    with pytest.raises(HostUnreachable, match="host key"), HostConnection(host) as conn:
        conn.run(["true"])


# ---------------------------------------------------------------------------- provisioning


def test_provision_loads_the_fixture_module_then_changes_nothing(vmlab: VmTestLab) -> None:
    started = time.monotonic()
    first = _run_json(vmlab, "provision", "-e", "kmod_build_on=host")  # built inside each VM
    took = time.monotonic() - started
    built = _results(first, BUILD)
    loaded = _results(first, LOAD)
    assert set(loaded) == {"srv1", "cli1"}
    for host in ("srv1", "cli1"):
        assert loaded[host]["status"] == "changed", loaded[host]
        release = vmlab.lab.image.kernel_release  # type: ignore[union-attr]
        assert built[host]["output"]["vermagic"].split()[0] == release
        assert vmlab.host(host).run(["test", "-d", "/sys/module/hello_kmod"]).ok
    FIGURES.append(f"first provision of 2 VMs (fixture module built in each): {took:.0f} s")

    started = time.monotonic()
    second = _run_json(vmlab, "provision", "-e", "kmod_build_on=host")
    FIGURES.append(f"second provision (nothing to do): {time.monotonic() - started:.1f} s")
    assert all(c["changed"] == 0 for c in second["recap"].values()), second["recap"]

    unload = ["provision", "--tags", "load", "-e", "fixture_module_state=unloaded"]
    doc = _run_json(vmlab, *unload)
    assert {r["status"] for r in _results(doc, LOAD).values()} == {"changed"}
    assert not vmlab.host("srv1").run(["test", "-d", "/sys/module/hello_kmod"]).ok
    doc = _run_json(vmlab, *unload)
    assert {r["status"] for r in _results(doc, LOAD).values()} == {"ok"}
    doc = _run_json(vmlab, "provision", "--tags", "load")
    assert {r["status"] for r in _results(doc, LOAD).values()} == {"changed"}
    assert vmlab.host("cli1").run(["test", "-d", "/sys/module/hello_kmod"]).ok


def test_built_once_on_the_controller_installed_on_both(vmlab: VmTestLab) -> None:
    """Build once, install many: the controller has the VMs' headers (setup.sh installs
    linux-headers-amd64; the image took the same release), so it builds, and each VM gets
    the same .ko, checked there by sha256 and vermagic."""
    from labctl.builds.kmod import headers_dir

    release = vmlab.lab.image.kernel_release  # type: ignore[union-attr]
    if headers_dir(release) is None:
        pytest.skip(f"the controller has no headers for the VMs' {release}")
    for host in ("srv1", "cli1"):
        clear = "rmmod hello_kmod 2>/dev/null; rm -rf /root/labctl/kmod-cache"
        vmlab.host(host).run(["sh", "-c", clear], check=True)
    args = ("provision", "--tags", "headers,load", "-e", "kmod_build_on=controller")
    started = time.monotonic()
    doc = _run_json(vmlab, *args)
    FIGURES.append(
        f"provision with the module built on the controller: {time.monotonic() - started:.0f} s"
    )
    built = _results(doc, BUILD)
    hashes = set()
    for host in ("srv1", "cli1"):
        out = built[host]["output"]
        assert built[host]["status"] == "changed", built[host]
        assert out["built_on"] == "controller"
        assert out["vermagic"].split()[0] == release
        on_host = vmlab.host(host).run(["sha256sum", out["ko"]], check=True).stdout.split()[0]
        assert on_host == out["sha256"]
        hashes.add(on_host)
        assert vmlab.host(host).run(["test", "-d", "/sys/module/hello_kmod"]).ok
    assert len(hashes) == 1  # one build, installed twice
    again = _run_json(vmlab, *args)
    assert all(c["changed"] == 0 for c in again["recap"].values()), again["recap"]


# ---------------------------------------------------------------------------- driver swaps


def test_swapping_e1000e_proceeds_and_the_link_comes_back(vmlab: VmTestLab, tmp_path: Path) -> None:
    srv = vmlab.host("srv1")
    before = _nic(srv, "enp0s4")
    assert before is not None and before[0] == "e1000e"
    doc = _play(vmlab, tmp_path, [{"name": "swap", "driver": {"driver": "e1000e"}}])
    (result,) = _results(doc, "swap").values()
    assert result["status"] == "changed", result
    out = result["output"]
    assert "virtio_net" in out["modules_before"] and "e1000e" in out["modules_before"]
    assert out["revert_armed"] and out["revert_cancelled"]
    assert "no interface uses" not in out["guard"] and "enp0s4" in out["guard"]
    after = _nic(srv, "enp0s4")
    assert after is not None and after[0] == "e1000e" and after[1] > before[1]  # reloaded
    recorded = srv.run(["cat", out["modules_before_file"]], check=True).stdout.split()
    assert sorted(out["modules_before"]) == recorded
    # the revert was cancelled: no timer left
    timers = srv.run(["systemctl", "list-timers", "--all", "--no-legend"], check=True).stdout
    assert "labctl-revert" not in timers
    res = srv.run(["ping", "-c", "2", "-W", "5", "10.78.0.12"], timeout=30)
    assert res.ok, res.stdout


def test_swapping_virtio_net_is_refused_in_one_line(vmlab: VmTestLab, tmp_path: Path) -> None:
    doc = _play(vmlab, tmp_path, [{"name": "swap", "driver": {"driver": "virtio_net"}}])
    (result,) = _results(doc, "swap").values()
    assert result["status"] == "failed"
    msg = result["msg"]
    assert "\n" not in msg
    assert "enp0s3 carries the SSH session and uses virtio_net" in msg
    assert "force_mgmt_driver_swap" in msg
    assert vmlab.host("srv1").run(["test", "-d", "/sys/module/virtio_net"]).ok


def test_an_uncancelled_revert_brings_the_stock_driver_back(
    vmlab: VmTestLab, tmp_path: Path
) -> None:
    srv = vmlab.host("srv1")
    before = _nic(srv, "enp0s4")
    assert before is not None
    task = {"driver": "e1000e", "revert_after": 10, "cancel_revert": False}
    doc = _play(vmlab, tmp_path, [{"name": "swap", "driver": task}])
    (result,) = _results(doc, "swap").values()
    assert result["status"] == "changed", result
    assert result["output"]["revert_armed"] and not result["output"]["revert_cancelled"]
    swapped = _nic(srv, "enp0s4")
    assert swapped is not None and swapped[1] > before[1]
    # the timer fires: rmmod + modprobe of the stock driver, a newer enp0s4 again
    back = _wait_for_nic(srv, "enp0s4", newer_than=swapped[1], timeout=60)
    assert back is not None and back[0] == "e1000e" and back[1] > swapped[1], back


def test_a_broken_replacement_is_undone_by_the_revert(vmlab: VmTestLab, tmp_path: Path) -> None:
    """A "driver" that does not drive the NIC (the fixture module): verify fails, the revert
    stays armed and puts stock e1000e back, with enp0s4."""
    srv = vmlab.host("srv1")
    found = srv.run(["sh", "-c", "ls /root/labctl/kmod-cache/*/hello_kmod.ko"], check=True)
    ko = found.stdout.split()[0]
    srv.run(["sh", "-c", "rmmod hello_kmod 2>/dev/null; true"], check=True)
    before = _nic(srv, "enp0s4")
    assert before is not None
    task = {"driver": "e1000e", "replacement": ko, "revert_after": 10}
    doc = _play(vmlab, tmp_path, [{"name": "swap", "driver": task}])
    (result,) = _results(doc, "swap").values()
    assert result["status"] == "failed", result
    assert "revert" in result["msg"] and "stock e1000e back" in result["msg"]
    # hello_kmod drives nothing: enp0s4 is gone, or already back from the revert (it fires
    # after 10 s, and verify waits longer than that before it gives up)
    now = _nic(srv, "enp0s4")
    assert now is None or (now[0] == "e1000e" and now[1] > before[1]), now
    back = _wait_for_nic(srv, "enp0s4", newer_than=before[1], timeout=60)
    assert back is not None and back[0] == "e1000e", back
    srv.run(["rmmod", "hello_kmod"], check=True)
    assert _ping_peer(srv)


def test_a_forced_swap_of_the_ssh_nic_driver_reconnects_and_cancels_the_revert(
    vmlab: VmTestLab, tmp_path: Path
) -> None:
    """force_mgmt_driver_swap: the session's own NIC goes away and comes back; the swap ran
    detached, labctl reconnects, verifies (DHCP gave enp0s3 its address again) and only then
    cancels the revert. Last in the file: srv1 would be away until the revert if this broke."""
    srv = vmlab.host("srv1")
    before = _nic(srv, "enp0s3")
    assert before is not None and before[0] == "virtio_net"
    task = {"driver": "virtio_net", "force_mgmt_driver_swap": True, "revert_after": 60}
    doc = _play(vmlab, tmp_path, [{"name": "swap", "driver": task}])
    (result,) = _results(doc, "swap").values()
    assert result["status"] == "changed", result
    out = result["output"]
    assert "unloading it anyway (forced), with a revert armed" in out["guard"]
    assert out["revert_armed"] and out["revert_cancelled"]
    after = _nic(srv, "enp0s3")
    assert after is not None and after[0] == "virtio_net" and after[1] > before[1]
    timers = srv.run(["systemctl", "list-timers", "--all", "--no-legend"], check=True).stdout
    assert "labctl-revert" not in timers
    FIGURES.append(
        f"forced swap of the SSH NIC's driver, reconnect included: {result['duration']:.1f} s"
    )
