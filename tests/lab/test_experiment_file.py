"""An experiment file run on the namespace lab (issue 20): the shipped iperf3-qdisc example,
its trials stored like a built-in experiment's, what its setup changed put back, nothing
left running."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from labctl.paths import EXPERIMENT_FILES
from labctl.results.store import ResultsStore
from tests.support import labctl_argv

from .conftest import NamespaceLab

pytestmark = pytest.mark.lab


def root_qdisc(lab: NamespaceLab, host: str) -> str:
    out = lab.host(host).run(["tc", "-j", "qdisc", "show", "dev", "eth0", "root"]).stdout
    found = json.loads(out or "[]")
    return str(found[0]["kind"]) if found else "noqueue"


def test_the_iperf3_example_runs_like_a_built_in_experiment(
    lab: NamespaceLab, tmp_path: Path
) -> None:
    store = tmp_path / "r.db"
    before = root_qdisc(lab, "cli1")
    proc = subprocess.run(
        [*labctl_argv("experiment.run"), str(EXPERIMENT_FILES / "iperf3-qdisc.yml"),
         "-i", str(lab.inventory_path), "--store", str(store), "--seed", "7",
         "-e", "qdisc=noqueue,pfifo_fast", "-e", "repeat=2", "-e", "duration=1",
         "--plot", str(tmp_path / "plot.png"), "--json"],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr + proc.stdout
    doc = json.loads(proc.stdout)
    assert doc["run"]["experiment"] == "iperf3-qdisc"
    with ResultsStore(store, create=False) as db:
        (run,) = db.runs()
        trials = db.trials(run.id)
        assert run.status == "finished" and run.params["file"] == "iperf3-qdisc.yml"
        assert run.params["qdisc"] == ["noqueue", "pfifo_fast"] and "file_text" in run.params
        assert {role for role, _ in db.hosts(run.id).values()} == {"server", "client"}
    assert len(trials) == 1 + 2 * 2  # a warm-up, then 2 rounds of 2 qdiscs
    assert sorted(t.params["qdisc"] for t in trials if not t.warmup) == [
        "noqueue", "noqueue", "pfifo_fast", "pfifo_fast",
    ]  # fmt: skip
    for t in trials:
        assert t.valid, t.reason
        assert t.metrics["throughput_mbps"] > 1 and t.metrics["retransmits"] >= 0
    assert (tmp_path / "plot.png").stat().st_size > 0
    assert root_qdisc(lab, "cli1") == before  # the setup's qdisc put back
    leftovers = lab.host("srv1").run(["sh", "-c", "ps -eo args | grep -c '[i]perf3 -s -1 -p 5311'"])
    assert leftovers.stdout.strip() == "0"
