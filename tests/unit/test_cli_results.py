"""report, results.compare and results.export on a real store, through the command line."""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path

import pytest

from labctl.results.store import ResultsStore, TrialRecord

from ..report.synthetic import hosts, run_params
from .test_cli import labctl


def add_run(db: ResultsStore, rates: dict[str, float], backlog: int = 4096, seed: int = 1) -> int:
    rng = random.Random(seed)
    run_id = db.start_run("reuseport", run_params(backlog), "hosts/local.yml", seed)
    db.add_hosts(run_id, hosts())
    seq = 0
    for _ in range(8):
        for mode, rate in rates.items():
            seq += 1
            metrics = {"conn_per_s": rate * rng.uniform(0.97, 1.03), "latency_p99_us": 800.0}
            params = {"mode": mode, "workers": 2}
            db.add_trial(
                run_id,
                TrialRecord(seq, "accept", False, params, 1.0, 3.0, True, "", metrics),
            )
    db.finish_run(run_id, "finished")
    return run_id


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "r.db"
    with ResultsStore(path) as db:
        add_run(db, {"shared": 40_000, "reuseport": 78_000}, seed=1)
        add_run(db, {"shared": 40_000, "reuseport": 50_000}, backlog=5, seed=2)
    return path


def test_compare_gives_medians_ratio_p_and_verdict_per_metric(store: Path) -> None:
    proc = labctl("results.compare", "1", "2", "--store", str(store))
    assert proc.returncode == 0, proc.stderr
    out = " ".join(proc.stdout.split())
    assert "run 2 against run 1" in out
    assert "regression" in out and "x0.64" in out  # 50k against 78k
    assert "changed: backlog: 4096 -> 5" in out


def test_compare_refuses_runs_of_different_experiments(store: Path) -> None:
    with ResultsStore(store) as db:
        other = db.start_run("qdisc", {}, "inv", 1)
    proc = labctl("results.compare", "1", str(other), "--store", str(store))
    assert proc.returncode == 2
    assert "not comparable" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_export_json_and_csv(store: Path, tmp_path: Path) -> None:
    as_json = labctl("results.export", "2", "--store", str(store))
    assert as_json.returncode == 0, as_json.stderr
    doc = json.loads(as_json.stdout)
    assert doc["run"]["id"] == 2 and len(doc["trials"]) == 16
    out = tmp_path / "run2.csv"
    as_csv = labctl("results.export", "2", "--format", "csv", "--store", str(store), "-o", str(out))
    assert as_csv.returncode == 0, as_csv.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 32  # 16 trials x 2 metrics
    bad = labctl("results.export", "2", "--format", "xml", "--store", str(store))
    assert bad.returncode == 2 and "xml" in bad.stderr


def test_report_writes_a_page_beside_the_store(store: Path) -> None:
    proc = labctl("report", "2", "--store", str(store))
    assert proc.returncode == 0, proc.stderr
    page = store.parent / "run-2.html"
    assert f"report: {page}" in " ".join(proc.stdout.split())
    html = page.read_text()
    assert "compared with run 1" in html
    assert html.count("data:image/png;base64,") >= 3


def test_accept_starts_a_history_once_and_refuses_what_is_not_a_finished_run(store: Path) -> None:
    first = labctl("results.accept", "2", "--store", str(store), "--note", "new kernel")
    assert first.returncode == 0, first.stderr
    assert "run 2: reuseport history starts here" in first.stdout
    again = labctl("results.accept", "2", "--store", str(store))
    assert again.returncode == 0 and "(already accepted)" in again.stdout
    for bad, words in (("9", "no run 9"), ("two", "expected a run id")):
        proc = labctl("results.accept", bad, "--store", str(store))
        assert proc.returncode == 2 and words in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    with ResultsStore(store) as db:
        running = db.start_run("reuseport", {}, "inv", 1)
    proc = labctl("results.accept", str(running), "--store", str(store))
    assert proc.returncode == 2 and "only a finished run starts a history" in proc.stderr
