"""Export of a real sqlite results store: JSON and CSV parsed back."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from labctl.errors import InputError
from labctl.experiments.reuseport import Reuseport
from labctl.results.export import CSV_FIELDS, export_run
from labctl.results.store import ResultsStore, TrialRecord
from tests.unit.test_regress import accept, lab_facts, run_params


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ResultsStore]:
    with ResultsStore(tmp_path / "labctl.db") as s:
        yield s


def stored_run(store: ResultsStore) -> int:
    """A reuseport run: a warm-up, two valid trials, one invalid, a skipped pktgen trial."""
    run_id = store.start_run("reuseport", run_params(), "lab/inventory.yml", 1234)
    store.add_hosts(run_id, {"srv1": ("server", lab_facts()), "cli1": ("client", lab_facts())})
    store.add_trial(run_id, accept(0, 25_100.0, warmup=True))
    store.add_trial(run_id, accept(1, 27_710.5, mode="reuseport", workers=1))
    store.add_trial(run_id, accept(2, 26_950.25))
    store.add_trial(
        run_id,
        accept(3, 310.0, valid=False, reason="listen queue overflowed: ListenOverflows +5120"),
    )
    store.add_trial(
        run_id,
        TrialRecord(
            4,
            "pktgen",
            False,
            {"tool": "pkt-gen", "duration": 5.0},
            1_700_000_030.0,
            0.0,
            False,
            'skipped: srv1: netmap not loaded (/dev/netmap missing), "quoted"',
            {},
        ),
    )
    store.finish_run(run_id, "finished")
    return run_id


def test_json_holds_run_hosts_and_trials(store: ResultsStore) -> None:
    run_id = stored_run(store)
    doc = json.loads(export_run(store, run_id, "json"))
    assert set(doc) == {"run", "hosts", "trials"}
    run = doc["run"]
    assert (run["id"], run["experiment"], run["status"]) == (run_id, "reuseport", "finished")
    assert (run["trials"], run["valid"]) == (5, 2)  # warm-up and invalid ones not valid
    assert run["params"]["backlog"] == 4096 and run["finished"] >= run["started"]
    assert doc["hosts"]["srv1"]["role"] == "server"
    assert doc["hosts"]["cli1"]["facts"]["kernel_release"] == "6.18.44-fc-v669"
    assert [t["seq"] for t in doc["trials"]] == [0, 1, 2, 3, 4]
    first = doc["trials"][1]
    assert set(first) == {
        "seq",
        "kind",
        "warmup",
        "params",
        "started",
        "duration",
        "valid",
        "reason",
        "metrics",
    }
    assert first["params"]["mode"] == "reuseport" and first["metrics"]["conn_per_s"] == 27_710.5
    assert doc["trials"][0]["warmup"] is True
    assert doc["trials"][3]["valid"] is False
    assert doc["trials"][4]["metrics"] == {}


def test_csv_one_row_per_trial_and_metric(store: ResultsStore) -> None:
    run_id = stored_run(store)
    text = export_run(store, run_id, "csv", Reuseport.spec)
    reader = csv.DictReader(io.StringIO(text))
    assert tuple(reader.fieldnames or ()) == CSV_FIELDS
    rows = list(reader)
    per_accept = len(accept(0, 0.0).metrics)
    assert len(rows) == 4 * per_accept + 1
    conn = [r for r in rows if r["metric"] == "conn_per_s"]
    assert [(r["seq"], r["warmup"], r["valid"], r["config"], float(r["value"])) for r in conn] == [
        ("0", "true", "true", "accept mode=shared workers=2", 25_100.0),
        ("1", "false", "true", "accept mode=reuseport workers=1", 27_710.5),
        ("2", "false", "true", "accept mode=shared workers=2", 26_950.25),
        ("3", "false", "false", "accept mode=shared workers=2", 310.0),
    ]
    assert {r["run_id"] for r in rows} == {str(run_id)}
    assert conn[3]["reason"] == "listen queue overflowed: ListenOverflows +5120"
    (pktgen,) = [r for r in rows if r["kind"] == "pktgen"]
    assert (pktgen["config"], pktgen["metric"], pktgen["value"]) == ("pktgen", "", "")
    assert pktgen["reason"].endswith(', "quoted"')


def test_unknown_format_and_unknown_run_are_input_errors(store: ResultsStore) -> None:
    run_id = stored_run(store)
    with pytest.raises(InputError, match="unknown export format 'xml': choose json or csv"):
        export_run(store, run_id, "xml")
    for fmt in ("json", "csv"):
        with pytest.raises(InputError, match="no run 99"):
            export_run(store, 99, fmt)
