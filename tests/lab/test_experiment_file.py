"""An experiment file run on the namespace lab (issue 20): the shipped iperf3-qdisc example,
its trials stored like a built-in experiment's, what its setup changed put back, nothing
left running."""

from __future__ import annotations

import json
import statistics
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
        assert t.metrics["qdisc_drops"] >= 0  # tc's counter, after minus before
    assert (tmp_path / "plot.png").stat().st_size > 0
    assert root_qdisc(lab, "cli1") == before  # the setup's qdisc put back
    leftovers = lab.host("srv1").run(["sh", "-c", "ps -eo args | grep -c '[i]perf3 -s -1 -p 5311'"])
    assert leftovers.stdout.strip() == "0"


def test_reuseport_as_a_file_gives_the_built_in_metrics_on_the_same_lab(
    lab: NamespaceLab, tmp_path: Path
) -> None:
    """issue 20: the reuseport experiment written as a file, next to the built-in one, same
    lab, same matrix: the same metrics, of the same size (a loose bound: a shared 2-core
    machine)."""
    store = tmp_path / "r.db"
    common = ["-i", str(lab.inventory_path), "--store", str(store), "--json"]
    built_in = subprocess.run(
        [*labctl_argv("experiment.reuseport"), *common, "--modes", "reuseport",
         "--workers", "2", "--duration", "1", "--repeat", "2", "--no-pktgen", "--port", "5412"],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert built_in.returncode == 0, built_in.stderr
    from_file = subprocess.run(
        [*labctl_argv("experiment.run"), str(EXPERIMENT_FILES / "reuseport.yml"), *common,
         "-e", "mode=reuseport", "-e", "workers=2", "-e", "duration=1", "-e", "repeat=2"],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert from_file.returncode == 0, from_file.stderr + from_file.stdout
    with ResultsStore(store, create=False) as db:
        ours, theirs = db.runs()  # newest first: the file's run
        assert (ours.experiment, theirs.experiment) == ("reuseport-file", "reuseport")
        measured = {
            run.experiment: [t for t in db.trials(run.id) if not t.warmup and t.kind != "pktgen"]
            for run in (ours, theirs)
        }
    for trials in measured.values():
        assert len(trials) == 2 and all(t.valid for t in trials), [t.reason for t in trials]
    names = ("conn_per_s", "latency_p50_us", "latency_p99_us")
    for name in names:
        file_median = statistics.median(t.metrics[name] for t in measured["reuseport-file"])
        built_median = statistics.median(t.metrics[name] for t in measured["reuseport"])
        assert built_median > 0 and 1 / 3 < file_median / built_median < 3, (name, measured)
    assert all(t.metrics["listen_drops"] >= 0 for t in measured["reuseport-file"])
