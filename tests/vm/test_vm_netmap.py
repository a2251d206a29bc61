"""netmap's whole path on the VM lab's real Debian kernels, with labctl's fixture tree
(fixtures/netmap-fixture: netmap's build interface, none of its code): built once on the
controller, installed on both VMs, netmap.ko loaded (/dev/netmap), the patched e1000e swapped
in on the experiment NIC (never the SSH NIC's virtio_net), pkt-gen tx on cli1 and rx on srv1
measured and checked against both NICs' counters, then everything put back.

The test builds from its own copy of the fixture (its own build key) and removes that build
from the controller's cache afterwards."""

from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from labctl.builds.builder import DEFAULT_CACHE
from labctl.builds.kmod import headers_dir
from labctl.facts.host import gather_facts
from tests.support import ROOT

from .conftest import FIGURES, VmTestLab

pytestmark = pytest.mark.vm

INSTALL = "netmap built for the target release and installed"
LOAD = "netmap loaded, its patched drivers swapped in (never the SSH interface's)"
UNLOAD = "netmap unloaded, stock drivers and the modules loaded before put back"
VMS = ("srv1", "cli1")


def _labctl_json(vmlab: VmTestLab, *args: str) -> tuple[dict[str, Any], int, float]:
    started = time.monotonic()
    proc = vmlab.labctl(*args, "-i", str(vmlab.inventory_path), "--json", timeout=1200)
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc, proc.returncode, time.monotonic() - started


def _by_host(doc: dict[str, Any], task: str) -> dict[str, dict[str, Any]]:
    return {r["host"]: r for r in doc["results"] if r["task"] == task}


def _patched_e1000e(vmlab: VmTestLab, host: str) -> bool:
    """enp0s4 is driven by an e1000e that holds netmap: the fixture's patched one."""
    conn = vmlab.host(host)
    check = (
        "[ -d /sys/module/netmap/holders/e1000e ] && "
        '[ "$(basename "$(readlink /sys/class/net/enp0s4/device/driver)")" = e1000e ]'
    )
    return conn.run(["sh", "-c", check]).ok


def test_netmap_built_once_loaded_measured_and_put_back(vmlab: VmTestLab, tmp_path: Path) -> None:
    image = vmlab.lab.image
    assert image is not None
    if headers_dir(image.kernel_release) is None:
        pytest.skip(f"the controller has no headers for the VMs' {image.kernel_release}")
    tree = tmp_path / "netmap-fixture"
    shutil.copytree(ROOT / "fixtures" / "netmap-fixture", tree)
    (tree / "labctl-test-run").write_text(f"{uuid.uuid4()}\n")
    key = ""
    try:
        doc, rc, took = _labctl_json(
            vmlab, "provision", "--tags", "headers,netmap,load", "-e", f"netmap_src={tree}"
        )
        installed = _by_host(doc, INSTALL)
        key = next((r["output"]["key"] for r in installed.values() if "key" in r["output"]), "")
        assert rc == 0, json.dumps(doc["results"], indent=1)[-4000:]
        outs = [installed[h]["output"] for h in VMS]
        assert [o["built_now"] for o in outs].count(True) == 1  # built once, for both
        assert {o["built_on"] for o in outs} == {"controller"}
        assert outs[0]["files"] == outs[1]["files"]
        build_s = sum(next(o["build_seconds"] for o in outs if o["built_now"]).values())
        FIGURES.append(
            f"netmap fixture: built once on the controller in {build_s:.0f} s, installed on "
            f"2 VMs, loaded and e1000e swapped: {took:.0f} s in all"
        )
        loaded = _by_host(doc, LOAD)
        for host in VMS:
            assert loaded[host]["status"] == "changed", loaded[host]
            swap = loaded[host]["output"]["drivers_swapped"]["e1000e"]
            assert swap["revert_armed"] and swap["revert_cancelled"]
            assert "enp0s3" in swap["guard"] and "virtio_net" in swap["guard"]  # not touched
            conn = vmlab.host(host)
            assert conn.run(["test", "-c", "/dev/netmap"]).ok
            assert _patched_e1000e(vmlab, host)
            facts = gather_facts(conn)  # over the same SSH NIC the whole time
            nm = facts.netmap
            assert nm is not None and nm.loaded and nm.native_drivers == ("e1000e",)
            assert nm.mode("e1000e") == "native" and nm.mode("virtio_net") == "generic"
            assert facts.interface("enp0s3") is not None
            assert facts.interface("enp0s4").driver == "e1000e"  # type: ignore[union-attr]
        again, rc, took = _labctl_json(
            vmlab, "provision", "--tags", "headers,netmap,load", "-e", f"netmap_src={tree}"
        )
        assert rc == 0 and all(c["changed"] == 0 for c in again["recap"].values())
        FIGURES.append(f"second provision (nothing to build, copy or load): {took:.1f} s")

        # pkt-gen, both modes, against both NICs' counters
        run, rc, took = _labctl_json(
            vmlab, "experiment", "pktgen", "--mode", "native,generic", "--duration", "2",
            "--repeat", "1", "--rate", "5000", "--no-warmup", "--store",
            str(tmp_path / "r.db"), "--plot", str(tmp_path / "p.png"),
        )  # fmt: skip
        assert rc == 0, run
        trials = run["trials"]
        assert sorted(t["params"]["mode"] for t in trials) == ["generic", "native"]
        for t in trials:
            m = t["metrics"]
            assert t["valid"], t["reason"]
            assert m["tx_packets"] == 10_000  # tx given the count 5000/s x 2 s, ends by itself
            assert m["tx_pps"] == pytest.approx(5_000, rel=0.15)
            assert abs(m["nic_tx_packets"] - m["tx_packets"]) <= 64
            assert m["rx_packets"] <= m["nic_rx_packets"] + 64
            assert m["loss_share"] < 0.2
            FIGURES.append(
                f"pkt-gen {t['params']['mode']} (VM rates, fixture's AF_PACKET pkt-gen): "
                f"tx {m['tx_pps']:,.0f} pkt/s, rx {m['rx_pps']:,.0f} pkt/s, "
                f"loss {m['loss_share']:.1%}"
            )
        assert any("virtual hardware (qemu)" in n for n in run["notes"])

        # put back: stock e1000e, netmap gone, the NIC with its address; twice is a no-op
        down, rc, took = _labctl_json(vmlab, "provision", "--tags", "unload")
        assert rc == 0, down
        FIGURES.append(f"--tags unload on 2 VMs: {took:.0f} s")
        for host in VMS:
            assert _by_host(down, UNLOAD)[host]["status"] == "changed"
            conn = vmlab.host(host)
            assert not conn.run(["test", "-d", "/sys/module/netmap"]).ok
            assert not _patched_e1000e(vmlab, host)
            taint = conn.run(["cat", "/sys/module/e1000e/taint"], check=True).stdout.strip()
            assert "O" not in taint  # the in-tree (stock) module, not an out-of-tree one
            ip = conn.run(["ip", "-br", "-4", "addr", "show", "enp0s4"], check=True).stdout
            assert "10.78.0." in ip
        twice, rc, _ = _labctl_json(vmlab, "provision", "--tags", "unload")
        assert rc == 0 and all(c["changed"] == 0 for c in twice["recap"].values())
    finally:
        if key:
            shutil.rmtree(DEFAULT_CACHE / key, ignore_errors=True)
            (DEFAULT_CACHE / f"{key}.lock").unlink(missing_ok=True)
