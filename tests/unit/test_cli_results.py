"""report, results.compare and results.export on a real store, through the command line; each
test on both backends (`store_url`: a sqlite file and a PostgreSQL database)."""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path

import pytest
import sqlalchemy as sa
from junitparser import JUnitXml

from labctl.results.store import ResultsStore, TrialRecord
from tests.support import store_sql as raw

from ..report.synthetic import hosts, run_params
from ..support import run_labctl
from .test_cli import labctl


def add_run(
    db: ResultsStore,
    rates: dict[str, float],
    backlog: int = 4096,
    seed: int = 1,
    rounds: int = 8,
) -> int:
    rng = random.Random(seed)
    run_id = db.start_run("reuseport", run_params(backlog), "hosts/local.yml", seed)
    db.add_hosts(run_id, hosts())
    seq = 0
    for _ in range(rounds):
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
def store(store_url: str) -> str:
    with ResultsStore(store_url) as db:
        add_run(db, {"shared": 40_000, "reuseport": 78_000}, seed=1)
        add_run(db, {"shared": 40_000, "reuseport": 50_000}, backlog=5, seed=2)
    return store_url


def test_compare_gives_medians_ratio_p_and_verdict_per_metric(store: str) -> None:
    proc = labctl("results.compare", "1", "2", "--store", store)
    assert proc.returncode == 1, proc.stderr  # a regression: the CI gate fails
    out = " ".join(proc.stdout.split())
    assert "run 2 against run 1" in out
    assert "regression" in out and "x0.64" in out  # 50k against 78k
    assert "changed: backlog: 4096 -> 5" in out
    assert "smallest possible p" not in out  # 8 trials a side reach alpha: nothing to say


def files(path: Path) -> set[str]:
    return {p.name for p in path.iterdir()}


def test_compare_is_a_ci_gate_0_1_2(store: str, tmp_path: Path) -> None:
    with ResultsStore(store) as db:
        same = add_run(db, {"shared": 40_000, "reuseport": 78_000}, seed=3)
    before = files(tmp_path)
    ok = labctl("results.compare", "1", str(same), "--store", store)
    assert ok.returncode == 0, ok.stderr
    assert "regression" not in ok.stdout and files(tmp_path) == before  # read, never write
    worse = labctl("results.compare", "1", "2", "--store", store)
    assert worse.returncode == 1 and worse.stderr == ""
    for args, words in (
        (("1", "9"), "no run 9"),
        (("1", "x"), "expected a run id"),
        (("1", "2", "--alpha", "2"), "alpha and noise_alpha are between 0 and 1"),
        (("1", "2", "--store", str(tmp_path / "none.db")), "no results store here"),
    ):
        proc = labctl("results.compare", *args, *(() if "--store" in args else ("--store", store)))
        assert proc.returncode == 2 and words in proc.stderr, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1
    assert files(tmp_path) == before
    with raw(store) as conn, conn.begin():  # damaged last: nothing below needs it whole
        conn.execute(sa.text("UPDATE trials SET params = :p WHERE run_id = 2"), {"p": "{broken"})
    proc = labctl("results.compare", "1", "2", "--store", store)
    assert proc.returncode == 2 and "not JSON" in proc.stderr  # never 1: 1 is a regression


def test_compare_json_is_all_of_stdout_and_junit_is_written(store: str, tmp_path: Path) -> None:
    report = tmp_path / "compare.xml"
    proc = labctl("results.compare", "1", "2", "--store", store, "--json", "--junit", str(report))
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)  # nothing else on stdout
    assert (doc["a"], doc["b"], doc["result"]) == (1, 2, "regression")
    assert doc["power"][0]["note"].startswith("n=8 vs 8: the smallest possible p is")
    worse = [v for v in doc["verdicts"] if v["verdict"] == "regression"]
    assert {v["metric"] for v in worse} == {"conn_per_s", "conn_per_s_vs_shared"}
    xml = JUnitXml.fromfile(str(report))
    assert (xml.failures, xml.errors) == (2, 0)


def test_three_against_three_is_undecided_and_says_how_many_repeats(store_url: str) -> None:
    with ResultsStore(store_url) as db:
        add_run(db, {"shared": 40_000, "reuseport": 78_000}, seed=1, rounds=3)
        add_run(db, {"shared": 40_000, "reuseport": 50_000}, seed=2, rounds=3)
    proc = labctl("results.compare", "1", "2", "--store", store_url)
    assert proc.returncode == 0, proc.stderr  # nothing could be a regression at this n
    out = " ".join(proc.stdout.split())
    assert out.count("the smallest possible p is 0.1 > alpha 0.05; 4 repeats per side needed") == 1
    assert "undecided" in out
    doc = json.loads(labctl("results.compare", "1", "2", "--store", store_url, "--json").stdout)
    assert doc["result"] == "ok" and doc["counts"]["undecided"] == 2
    assert [p["reachable"] for p in doc["power"]] == [False]


def test_compare_refuses_runs_of_different_experiments(store: str) -> None:
    with ResultsStore(store) as db:
        other = db.start_run("qdisc", {}, "inv", 1)
    proc = labctl("results.compare", "1", str(other), "--store", store)
    assert proc.returncode == 2
    assert "not comparable" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_export_json_and_csv(store: str, tmp_path: Path) -> None:
    as_json = labctl("results.export", "2", "--store", store)
    assert as_json.returncode == 0, as_json.stderr
    doc = json.loads(as_json.stdout)
    assert doc["run"]["id"] == 2 and len(doc["trials"]) == 16
    out = tmp_path / "run2.csv"
    as_csv = labctl("results.export", "2", "--format", "csv", "--store", store, "-o", str(out))
    assert as_csv.returncode == 0, as_csv.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 32  # 16 trials x 2 metrics
    assert {(r["mode"], r["workers"], r["server"], r["client"]) for r in rows} == {
        ("shared", "2", "srv1", "cli1"),
        ("reuseport", "2", "srv1", "cli1"),
    }
    assert {r["kernel"] for r in rows} == {"6.1.0-26-amd64"} and rows[0]["unit"] == "conn/s"
    bad = labctl("results.export", "2", "--format", "xml", "--store", store)
    assert bad.returncode == 2 and "xml" in bad.stderr


def test_export_many_runs_as_jsonl_or_csv(store: str, tmp_path: Path) -> None:
    before = files(tmp_path)
    by_list = labctl("results.export", "--runs", "1,2", "--store", store)
    assert by_list.returncode == 0, by_list.stderr
    rows = [json.loads(line) for line in by_list.stdout.splitlines()]  # jsonl by default
    assert len(rows) == 64 and {r["run"] for r in rows} == {1, 2}
    by_date = labctl("results.export", "--since", "2000-01-01", "--format", "csv", "--store", store)
    assert by_date.returncode == 0, by_date.stderr
    assert len(list(csv.DictReader(io.StringIO(by_date.stdout)))) == 64
    assert files(tmp_path) == before  # read commands create nothing
    for args, words in (
        (("--runs", "1,2", "--format", "json"), "one run's document"),
        (("1", "--runs", "2"), "give one of RUN, --runs or --since"),
        (("--runs", "1,9"), "no run 9"),
        (("--since", "2999-01-01"), "no run started on or after 2999-01-01"),
        (("--since", "soon"), "expected an ISO date"),
    ):
        proc = labctl("results.export", *args, "--store", store)
        assert proc.returncode == 2 and words in proc.stderr, (args, proc.stderr)
        assert proc.stdout == "" and len(proc.stderr.strip().splitlines()) == 1
    nothing = labctl("results.export", "--store", store)
    assert nothing.returncode == 2 and nothing.stdout == ""


def test_report_writes_a_page_in_the_output_dir(store: str, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    env = {"LABCTL_OUTPUT_DIR": str(out)}
    proc = run_labctl("report", "2", "--store", store, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    page = out / "run-2.html"
    assert f"report: {page}" in " ".join(proc.stdout.split())
    html = page.read_text()
    assert "compared with run 1" in html
    assert html.count("data:image/png;base64,") >= 3


def test_accept_starts_a_history_once_and_refuses_what_is_not_a_finished_run(store: str) -> None:
    first = labctl("results.accept", "2", "--store", store, "--note", "new kernel")
    assert first.returncode == 0, first.stderr
    assert "run 2: reuseport history starts here" in first.stdout
    again = labctl("results.accept", "2", "--store", store)
    assert again.returncode == 0 and "(already accepted)" in again.stdout
    for bad, words in (("9", "no run 9"), ("two", "expected a run id")):
        proc = labctl("results.accept", bad, "--store", store)
        assert proc.returncode == 2 and words in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    with ResultsStore(store) as db:
        running = db.start_run("reuseport", {}, "inv", 1)
    proc = labctl("results.accept", str(running), "--store", store)
    assert proc.returncode == 2 and "only a finished run starts a history" in proc.stderr
