"""The experiment's pure parts: trial plans, parsers, the validity verdict, the store."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from labctl.experiments.base import plan_trials
from labctl.experiments.reuseport import ACCEPT, ReuseportOptions
from labctl.experiments.reuseport_verdict import (
    cpu_shares,
    judge,
    last_json,
    parse_cpu_line,
    parse_nstat,
)
from labctl.experiments.summary import summarize_kind
from labctl.results.store import ResultsStore, StoreError, TrialRecord


def test_trials_are_interleaved_repeated_and_shuffled_with_one_warmup() -> None:
    trials = plan_trials({"mode": ["a", "b", "c"], "workers": [1, 2]}, repeat=4, seed=7)
    assert trials[0].warmup and not any(t.warmup for t in trials[1:])
    assert [t.seq for t in trials] == list(range(25))
    counted = Counter((t.params["mode"], t.params["workers"]) for t in trials[1:])
    assert set(counted.values()) == {4} and len(counted) == 6
    rounds = [[tuple(t.params.values()) for t in trials[1 + 6 * r : 7 + 6 * r]] for r in range(4)]
    assert all(len(set(r)) == 6 for r in rounds)  # each round has every configuration once
    assert len({tuple(r) for r in rounds}) > 1  # and not always in the same order
    assert plan_trials({"m": [1]}, 2, seed=7) == plan_trials({"m": [1]}, 2, seed=7)


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown mode 'fast'"):
        ReuseportOptions(modes=("fast",))
    with pytest.raises(ValueError, match="workers"):
        ReuseportOptions(workers=(0,))


def test_nstat_and_proc_stat_parsers() -> None:
    nstat = "#kernel\nTcpExtListenOverflows           12                 0.0\nIpInReceives 5 0.0\n"
    assert parse_nstat(nstat) == {"TcpExtListenOverflows": 12, "IpInReceives": 5}
    before = parse_cpu_line("cpu  100 0 100 700 0 0 100 0 0 0\ncpu0 1 2 3\n")
    after = parse_cpu_line("cpu  200 0 200 800 0 0 200 0 0 0\n")
    assert cpu_shares(before, after) == {"cpu_idle_pct": 25.0, "cpu_softirq_pct": 25.0}
    assert last_json('noise\n{"a": 1}\n{"b": [2]}\n') == {"b": [2]}
    with pytest.raises(ValueError):
        last_json("no json here")


SERVER = {"accepts_total": 1000, "workers": [{"accepts": 500}, {"accepts": 500}]}


def test_verdict() -> None:
    ok = judge(SERVER, [{"connections": 990, "errors": {}}], {}, 16, wait_fin=True)
    assert ok.valid and ok.reason == ""
    overflow = judge(SERVER, [{"connections": 990}], {"TcpExtListenOverflows": 7}, 16, True)
    assert not overflow.valid and overflow.reason == "listen queue overflowed: ListenOverflows +7"
    off = judge(SERVER, [{"connections": 1100}], {}, 16, wait_fin=True)
    assert "counts do not reconcile: server accepted 1000, clients connected 1100" in off.reason
    errors = judge(SERVER, [{"connections": 995, "errors": {"ECONNREFUSED": 50}}], {}, 16, True)
    assert "client errors 50" in errors.reason
    flapped = judge(SERVER, [{"connections": 990}], {}, 16, True, {"cli1:eth0": 2})
    assert not flapped.valid
    assert flapped.reason == "a link went down mid-trial: cli1:eth0 (carrier changed 2 times)"


def test_link_flaps_are_counted_per_host_and_interface() -> None:
    from labctl.experiments.reuseport_verdict import link_flaps, parse_carriers

    before = {"srv1": parse_carriers("eth0=2\nlo=\nveth1=0\n"), "cli1": {"eth0": 4}}
    after = {"srv1": {"eth0": 2, "veth1": 0}, "cli1": {"eth0": 6}}
    assert before["srv1"] == {"eth0": 2, "veth1": 0}  # lo reports nothing: left out
    assert link_flaps(before, after) == {"cli1:eth0": 2}
    assert link_flaps(before, {"srv1": {}}) == {}  # an interface gone: not a flap count


def record(
    seq: int, mode: str, rate: float, valid: bool = True, warmup: bool = False
) -> TrialRecord:
    return TrialRecord(
        seq,
        "accept",
        warmup,
        {"mode": mode, "workers": 2},
        0.0,
        1.0,
        valid,
        "" if valid else "overflow",
        {"conn_per_s": rate},
    )


def test_summary_groups_valid_trials_and_compares_with_shared() -> None:
    trials = [record(0, "shared", 1e6, warmup=True)]
    trials += [record(1 + i, "shared", 27_000 + 100 * i) for i in range(8)]
    trials += [record(9 + i, "reuseport-cbpf", 33_000 + 100 * i) for i in range(8)]
    trials += [record(17, "reuseport-cbpf", 1.0, valid=False)]
    rows = {
        r.config["mode"]: r for r in summarize_kind(ACCEPT, trials) if r.metric.name == "conn_per_s"
    }
    assert {r.config["workers"] for r in rows.values()} == {2}
    shared, cbpf = rows["shared"], rows["reuseport-cbpf"]
    assert shared.stats is not None and shared.stats.n == 8  # the warm-up is not counted
    assert cbpf.stats is not None and cbpf.stats.median == 33_350 and cbpf.invalid == 1
    assert cbpf.ratio_vs_baseline == pytest.approx(33_350 / 27_350)
    assert cbpf.p_vs_baseline is not None and cbpf.p_vs_baseline < 0.001


def test_store_round_trip_and_one_transaction_per_trial(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    with ResultsStore(path) as store:
        run = store.start_run("reuseport", {"repeat": 1}, "inv.yml", seed=3)
        store.add_hosts(run, {"srv1": ("server", {"kernel_release": "6.1"})})
        store.add_trial(
            run,
            TrialRecord(
                1,
                "accept",
                False,
                {"mode": "shared", "workers": 1},
                1.0,
                2.0,
                True,
                "",
                {"conn_per_s": 123.0},
                {"sysctls": {"x": "1"}},
                (("srv1", "server", "stdout", "{}"),),
            ),
        )
        with pytest.raises(StoreError, match="NOT NULL"):  # a bad trial leaves nothing behind
            store.add_trial(
                run,
                TrialRecord(
                    2,
                    "accept",
                    False,
                    {},
                    1.0,
                    1.0,
                    True,
                    "",
                    {"a": 1.0},
                    outputs=(("h", "r", "s", None),),
                ),
            )  # type: ignore[arg-type]
        store.finish_run(run, "finished")
        (summary,) = store.runs()
        assert (summary.status, summary.trials, summary.valid) == ("finished", 1, 1)
        (trial,) = store.trials(run)
        assert trial.metrics == {"conn_per_s": 123.0} and trial.state == {"sysctls": {"x": "1"}}
        assert store.hosts(run) == {"srv1": ("server", {"kernel_release": "6.1"})}
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT COUNT(*) FROM metrics").fetchone()[0] == 1


def test_iperf3_parser_and_qdisc_summary() -> None:
    import json

    from labctl.experiments.qdisc import QDISC_KIND, parse_iperf3

    tcp = {
        "end": {
            "sum_sent": {"bits_per_second": 2e10, "retransmits": 7},
            "sum_received": {"bits_per_second": 1.9e10},
        }
    }
    assert parse_iperf3(json.dumps(tcp), "tcp") == {"throughput_mbps": 19000.0, "retransmits": 7.0}
    udp = {
        "end": {"sum": {"seconds": 2.0, "packets": 1000, "lost_packets": 100, "lost_percent": 10.0}}
    }
    assert parse_iperf3(json.dumps(udp), "udp") == {
        "pps": 450.0,
        "sent_pps": 500.0,
        "lost_percent": 10.0,
    }
    with pytest.raises(ValueError, match="iperf3: unable to connect"):
        parse_iperf3('{"error": "unable to connect to server"}', "tcp")
    trials = [
        TrialRecord(
            i,
            "qdisc",
            False,
            {"qdisc": "pfifo", "proto": "udp"},
            0,
            1,
            True,
            "",
            {"pps": 100.0 * i, "qdisc_drops": 1.0},
        )
        for i in (1, 2, 3)
    ]
    trials.append(
        TrialRecord(
            4,
            "qdisc",
            False,
            {"qdisc": "fq_codel", "proto": "udp"},
            0,
            0,
            False,
            "skipped: no fq_codel",
            {},
        )
    )
    rows = {r.config["qdisc"]: r for r in summarize_kind(QDISC_KIND, trials)}
    assert rows["pfifo"].stats is not None and rows["pfifo"].stats.median == 200.0
    assert rows["pfifo"].metric.name == "pps"  # the metric the trials have, not TCP's
    assert rows["pfifo"].totals == {"qdisc_drops": 3.0, "qdisc_requeues": 0.0}
    assert rows["fq_codel"].stats is None and rows["fq_codel"].reason == "skipped: no fq_codel"
