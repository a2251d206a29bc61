"""`labctl experiment qdisc` on the namespace lab: three root qdiscs and one the kernel lacks."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

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
