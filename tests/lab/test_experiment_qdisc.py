"""`labctl experiment qdisc` on the namespace lab: three root qdiscs and one the kernel lacks."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.support import labctl_argv

from .conftest import NamespaceLab

pytestmark = pytest.mark.lab


def test_root_qdiscs_compared_with_their_stats_stored(lab: NamespaceLab, tmp_path: Path) -> None:
    store = tmp_path / "r.db"
    proc = lab.labctl(
        "experiment",
        "qdisc",
        "-i",
        str(lab.inventory_path),
        "--store",
        str(store),
        "--plot",
        str(tmp_path / "q.png"),
        "--duration",
        "1",
        "--repeat",
        "1",
        "--qdiscs",
        "noqueue,pfifo,pfifo_fast,fq_codel",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    trials = [t for t in doc["trials"] if not t["warmup"]]
    measured = {(t["params"]["qdisc"], t["params"]["proto"]): t for t in trials}
    for name in ("noqueue", "pfifo", "pfifo_fast"):
        tcp, udp = measured[(name, "tcp")], measured[(name, "udp")]
        assert tcp["valid"] and udp["valid"], (tcp["reason"], udp["reason"])
        assert tcp["metrics"]["throughput_mbps"] > 10 and udp["metrics"]["pps"] > 1000
        # the qdisc's own counters, before and after, are stored with the trial
        assert udp["state"]["before"]["kind"] == name
        assert tcp["params"]["interface"] == "srv1:veth2"  # the docker pattern: host-side veth
        if name != "noqueue":  # noqueue has no queue to count in
            assert udp["metrics"]["qdisc_packets"] > 0.5 * udp["metrics"]["pps"]
    fq = measured[("fq_codel", "tcp")]
    if not fq["valid"]:  # this kernel has no fq_codel (docs/qdiscs.md)
        assert fq["reason"].startswith("skipped: srv1: veth2: qdisc kind 'fq_codel'")
    assert (tmp_path / "q.png").stat().st_size > 10_000
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT experiment, status FROM runs").fetchone() == ("qdisc", "finished")
    # the interface under test is back at the kernel's default
    q = json.loads(lab.host("srv1").run(["tc", "-j", "qdisc", "show", "dev", "veth2"]).stdout)
    assert q[0]["kind"] == "noqueue"
    shown = lab.labctl(
        "results.show", "1", "--store", str(store), "--plot", str(tmp_path / "again.png")
    )
    assert shown.returncode == 0, shown.stderr
    assert "pfifo_fast" in shown.stdout and "Mbit/s" in shown.stdout


def _root(lab: NamespaceLab) -> tuple[str, int | None, int]:
    srv = lab.host("srv1")
    q = json.loads(srv.run(["tc", "-j", "qdisc", "show", "dev", "veth2", "root"]).stdout)
    link = json.loads(srv.run(["ip", "-j", "link", "show", "dev", "veth2"]).stdout)
    return q[0]["kind"], q[0].get("options", {}).get("limit"), link[0]["txqlen"]


def test_a_run_puts_back_what_it_found_and_restore_does_it_again(
    lab: NamespaceLab, tmp_path: Path
) -> None:
    """Not "back to the default": back to what the run found (pfifo limit 77 here), at the
    end of the run and by `labctl restore RUN`, whose second call changes nothing."""
    srv = lab.host("srv1")
    srv.run(["tc", "qdisc", "replace", "dev", "veth2", "root", "pfifo", "limit", "77"], check=True)
    try:
        found = _root(lab)
        assert found[:2] == ("pfifo", 77)
        store = tmp_path / "r.db"
        proc = lab.labctl(
            "experiment", "qdisc", "-i", str(lab.inventory_path), "--store", str(store),
            "--plot", str(tmp_path / "q.png"), "--duration", "1", "--repeat", "1",
            "--qdiscs", "noqueue,bfifo", "--protos", "udp", "--no-warmup",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert _root(lab) == found  # the run's own end put it back
        again = lab.labctl("restore", "1", "-i", str(lab.inventory_path), "--store", str(store))
        assert again.returncode == 0, again.stderr
        assert "nothing to put back" in again.stdout
        # Someone changes it after the run: restore puts back what the run found.
        srv.run(["tc", "qdisc", "replace", "dev", "veth2", "root", "pfifo", "limit", "5"])
        srv.run(["ip", "link", "set", "veth2", "txqueuelen", "10"], check=True)
        fixed = lab.labctl("restore", "1", "-i", str(lab.inventory_path), "--store", str(store))
        assert fixed.returncode == 0, fixed.stderr
        assert "srv1: veth2: root pfifo limit 5 -> pfifo limit 77" in fixed.stdout
        assert _root(lab)[:2] == ("pfifo", 77)
        twice = lab.labctl("restore", "1", "-i", str(lab.inventory_path), "--store", str(store))
        assert "nothing to put back" in twice.stdout, twice.stdout
    finally:
        srv.run(["tc", "qdisc", "del", "dev", "veth2", "root"])
        srv.run(["ip", "link", "set", "veth2", "txqueuelen", str(found[2])])


def test_sigterm_mid_run_still_puts_back_what_it_found(lab: NamespaceLab, tmp_path: Path) -> None:
    srv = lab.host("srv1")
    srv.run(
        ["tc", "qdisc", "replace", "dev", "veth2", "root", "bfifo", "limit", "9000"], check=True
    )
    found = _root(lab)
    store = tmp_path / "r.db"
    argv = [
        *labctl_argv(), "experiment", "qdisc", "-i", str(lab.inventory_path), "--store",
        str(store), "--duration", "2", "--repeat", "3", "--qdiscs", "pfifo,noqueue",
        "--protos", "udp",
    ]  # fmt: skip
    run = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while _root(lab)[0] == "bfifo" and time.monotonic() < deadline:  # a trial changed it
            time.sleep(0.1)
        assert _root(lab)[0] != "bfifo"
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=120)
        assert run.returncode == 130, err
        assert _root(lab) == found
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate(timeout=30)
        srv.run(["tc", "qdisc", "del", "dev", "veth2", "root"])
