"""Export of a real results store, on both backends (`store_url`: a sqlite file and a PostgreSQL
database): the whole-run JSON, and the tidy table (CSV and JSON lines) read back by the csv and
json modules, and by pandas where it is installed."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

from labctl.errors import InputError
from labctl.experiments import spec_of
from labctl.results.export import (
    HEAD,
    TAIL,
    TRIAL,
    export_run,
    export_runs,
    iso_utc,
    parse_run_list,
    runs_since,
    server_kernel,
)
from labctl.results.store import ResultsStore, TrialRecord
from tests.unit.test_regress import accept, lab_facts, run_params


@pytest.fixture
def store(store_url: str) -> Iterator[ResultsStore]:
    with ResultsStore(store_url) as s:
        yield s


def stored_run(store: ResultsStore, kernel: str = "6.18.44-fc-v669") -> int:
    """A reuseport run: a warm-up, two valid trials, one invalid, a skipped pktgen trial; a
    server and two clients."""
    run_id = store.start_run("reuseport", run_params(), "lab/inventory.yml", 1234)
    store.add_hosts(
        run_id,
        {
            "srv1": ("server", lab_facts(kernel_release=kernel)),
            "cli2": ("client", lab_facts(kernel_release="6.1.0-client")),
            "cli1": ("client", lab_facts(kernel_release="6.1.0-client")),
        },
    )
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


def qdisc_run(store: ResultsStore) -> int:
    """A run of another experiment, with parameters of its own and one named like a column."""
    run_id = store.start_run("qdisc", {"qdiscs": ["pfifo"]}, "inv", 1)
    store.add_hosts(run_id, {"srv1": ("server", lab_facts(kernel_release="6.19.0"))})
    params = {"qdisc": "pfifo", "proto": "udp", "seq": 99}
    store.add_trial(
        run_id,
        TrialRecord(1, "qdisc", False, params, 1_700_100_000.5, 2.0, True, "", {"pps": 1.5e6}),
    )
    store.finish_run(run_id, "finished")
    return run_id


def read_csv(text: str) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text))
    rows = list(reader)
    return list(reader.fieldnames or ()), rows


# ---------------------------------------------------------------------------- whole run


def test_json_holds_run_hosts_and_trials(store: ResultsStore) -> None:
    run_id = stored_run(store)
    doc = json.loads(export_run(store, run_id, "json"))
    assert set(doc) == {"run", "hosts", "trials"}
    run = doc["run"]
    assert (run["id"], run["experiment"], run["status"]) == (run_id, "reuseport", "finished")
    assert (run["trials"], run["valid"]) == (5, 2)  # warm-up and invalid ones not valid
    assert run["params"]["backlog"] == 4096 and run["finished"] >= run["started"]
    assert doc["hosts"]["srv1"]["role"] == "server"
    assert doc["hosts"]["cli1"]["facts"]["kernel_release"] == "6.1.0-client"
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


# ---------------------------------------------------------------------------- tidy


def test_csv_one_row_per_trial_and_metric_a_column_per_parameter(store: ResultsStore) -> None:
    run_id = stored_run(store)
    header, rows = read_csv(export_runs(store, [run_id], "csv", spec_of=spec_of))
    params = ["backlog", "client_threads", "duration", "inflight", "mode", "port", "tool"]
    params += ["wait_fin", "workers"]
    assert header == [*HEAD, "client", "server", *TRIAL, *params, *TAIL]
    per_accept = len(accept(0, 0.0).metrics)
    assert len(rows) == 4 * per_accept + 1  # a trial without a metric still gets a row
    conn = [r for r in rows if r["metric"] == "conn_per_s"]
    assert [
        (r["seq"], r["warmup"], r["valid"], r["mode"], r["workers"], float(r["value"]))
        for r in conn
    ] == [
        ("0", "true", "true", "shared", "2", 25_100.0),
        ("1", "false", "true", "reuseport", "1", 27_710.5),
        ("2", "false", "true", "shared", "2", 26_950.25),
        ("3", "false", "false", "shared", "2", 310.0),
    ]
    first = conn[0]
    assert (first["run"], first["experiment"], first["kind"]) == (
        str(run_id),
        "reuseport",
        "accept",
    )
    assert first["time"] == iso_utc(1_700_000_000.0) == "2023-11-14T22:13:20.000Z"
    assert (first["server"], first["client"]) == ("srv1", "cli1 cli2")
    assert first["kernel"] == "6.18.44-fc-v669"  # the server's, not the clients'
    assert first["labctl_version"] and first["unit"] == "conn/s"
    assert first["client_threads"] == '{"cli1":2}' and first["wait_fin"] == "true"
    assert conn[3]["reason"] == "listen queue overflowed: ListenOverflows +5120"
    (pktgen,) = [r for r in rows if r["kind"] == "pktgen"]
    assert (pktgen["metric"], pktgen["value"], pktgen["unit"], pktgen["mode"]) == ("", "", "", "")
    assert (pktgen["tool"], pktgen["duration"]) == ("pkt-gen", "5.0")
    assert pktgen["reason"].endswith(', "quoted"')


def test_many_runs_share_one_header_the_union_of_their_parameters(store: ResultsStore) -> None:
    first, other, second = stored_run(store), qdisc_run(store), stored_run(store, "6.20.0")
    header, rows = read_csv(export_runs(store, [first, other, second, first], "csv"))
    assert {"mode", "qdisc", "proto", "param_seq"} <= set(header)  # `seq` is the trial's
    assert [r["run"] for r in rows].count(str(first)) == 17  # given twice, exported once
    assert list(dict.fromkeys(r["run"] for r in rows)) == [str(first), str(other), str(second)]
    (q,) = [r for r in rows if r["experiment"] == "qdisc"]
    assert (q["qdisc"], q["param_seq"], q["seq"], q["mode"], q["client"]) == (
        "pfifo",
        "99",
        "1",
        "",
        "",
    )
    assert q["time"] == "2023-11-16T02:00:00.500Z" and q["kernel"] == "6.19.0"
    assert q["unit"] == ""  # no spec given: units unknown
    assert {r["kernel"] for r in rows if r["run"] == str(second)} == {"6.20.0"}


def test_jsonl_is_the_same_table_an_object_per_row(store: ResultsStore) -> None:
    ids = [stored_run(store), qdisc_run(store)]
    header, rows = read_csv(export_runs(store, ids, "csv", spec_of=spec_of))
    lines = export_runs(store, ids, "jsonl", spec_of=spec_of).splitlines()
    objects = [json.loads(line) for line in lines]
    assert len(objects) == len(rows) and all(list(o) == header for o in objects)
    conn = next(o for o in objects if o["metric"] == "conn_per_s")
    assert conn["warmup"] is True and conn["workers"] == 2 and conn["value"] == 25_100.0
    assert conn["client_threads"] == {"cli1": 2}
    pktgen = next(o for o in objects if o["kind"] == "pktgen")
    assert (pktgen["metric"], pktgen["value"], pktgen["mode"]) == (None, None, None)
    assert next(o for o in objects if o["experiment"] == "qdisc")["param_seq"] == 99


def test_pandas_reads_both_with_no_reshaping(store: ResultsStore) -> None:
    pd: Any = pytest.importorskip("pandas")
    ids = [stored_run(store), qdisc_run(store)]
    by_csv = pd.read_csv(io.StringIO(export_runs(store, ids, "csv")))
    by_json = pd.read_json(io.StringIO(export_runs(store, ids, "jsonl")), lines=True)
    for frame in (by_csv, by_json):
        assert len(frame) == 18 and frame["valid"].dtype == bool
        medians = frame[frame.metric == "conn_per_s"].groupby("mode")["value"].median()
        assert medians["reuseport"] == 27_710.5


def test_a_non_finite_value_stays_parsable(store: ResultsStore) -> None:
    run_id = store.start_run("reuseport", {}, "inv", 1)
    store.add_trial(
        run_id, TrialRecord(1, "accept", False, {}, 1.0, 1.0, True, "", {"x": float("inf")})
    )
    (row,) = [json.loads(line) for line in export_runs(store, [run_id], "jsonl").splitlines()]
    assert row["value"] is None and row["kernel"] == ""
    _, (csv_row,) = read_csv(export_runs(store, [run_id], "csv"))
    assert float(csv_row["value"]) == float("inf")


def test_server_kernel_falls_back_to_every_host() -> None:
    hosts = {"a": ("node", {"kernel_release": "6.1"}), "b": ("node", {"kernel_release": "6.2"})}
    assert server_kernel(hosts) == "6.1 6.2"
    assert server_kernel({**hosts, "s": ("server", {"kernel_release": "6.9"})}) == "6.9"
    assert server_kernel({}) == ""


# ---------------------------------------------------------------------------- choosing runs


def test_runs_since_a_date_oldest_first_without_playbook_runs(store: ResultsStore) -> None:
    ids = [stored_run(store) for _ in range(3)]
    play = store.start_run("play:site.yml", {}, "inv", None)
    assert play and runs_since(store, "2000-01-01") == ids
    assert runs_since(store, "2999-01-01T00:00+02:00") == []
    with pytest.raises(InputError, match="expected an ISO date"):
        runs_since(store, "yesterday")


def test_parse_run_list() -> None:
    assert parse_run_list("3,5,8") == [3, 5, 8]
    assert parse_run_list(" 8, 3-5 ,4") == [8, 3, 4, 5]
    for bad in ("3,,5", "a", "5-3", "3-"):
        with pytest.raises(InputError, match="--runs"):
            parse_run_list(bad)


def test_unknown_format_and_unknown_run_are_input_errors(store: ResultsStore) -> None:
    run_id = stored_run(store)
    with pytest.raises(InputError, match="unknown export format 'xml': choose json, csv, jsonl"):
        export_run(store, run_id, "xml")
    with pytest.raises(InputError, match="unknown table format 'json'"):
        export_runs(store, [run_id], "json")
    for fmt in ("json", "csv", "jsonl"):
        with pytest.raises(InputError, match="no run 99"):
            export_run(store, 99, fmt)
    with pytest.raises(InputError, match="no run 99"):
        export_runs(store, [run_id, 99], "csv")
