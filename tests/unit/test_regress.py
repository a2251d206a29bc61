"""Regression verdicts, fingerprints and provenance on trials shaped as the experiments store
them (accept, pktgen and qdisc trials with their real params and metric names)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from labctl.experiments.qdisc import Qdisc
from labctl.experiments.reuseport import Reuseport
from labctl.facts.host import parse_host_facts
from labctl.metrics import Direction
from labctl.results.fingerprint import (
    Fingerprint,
    fingerprint_changes,
    provenance_changes,
)
from labctl.results.fingerprint import fingerprint as _fingerprint
from labctl.results.regress import MetricVerdict, Rule, overall
from labctl.results.regress import compare as _compare
from labctl.results.regress import config_key as _config_key
from labctl.results.store import TrialRecord

# Each experiment's own spec, as the command line and the nightly run pass it
SPECS = {"reuseport": Reuseport.spec, "qdisc": Qdisc.spec}
WATCHED = {name: spec.watched for name, spec in SPECS.items()}
BY_KIND = {k.name: spec for spec in SPECS.values() for k in spec.kinds}


def compare(
    experiment: str,
    current: Sequence[TrialRecord],
    history: Sequence[tuple[int, Sequence[TrialRecord]]],
    metrics: Mapping[str, Direction],
    threshold: float = 0.10,
    alpha: float = 0.05,
) -> list[MetricVerdict]:
    rule = Rule(threshold=threshold, alpha=alpha)
    return _compare(experiment, current, history, metrics, rule, SPECS.get(experiment))


def config_key(trial: TrialRecord) -> str:
    return _config_key(trial, BY_KIND.get(trial.kind))


def fingerprint(experiment: str, params: Mapping[str, Any], hosts: Any) -> Fingerprint:
    return _fingerprint(experiment, params, hosts, SPECS.get(experiment))


FACTS = Path(__file__).parent / "data" / "facts" / "lab-veth-host.txt"

# conn/s of the shared mode, 2 workers, on the 2-core lab (docs/reuseport.md: ~27.7k, spread 3-23%)
BASELINE_A = [27_710.0, 26_950.0, 28_400.0, 27_120.0, 29_050.0]
BASELINE_B = [27_480.0, 26_300.0, 28_820.0, 27_900.0, 25_980.0]
BASELINE_C = [27_300.0, 28_100.0, 26_700.0, 27_650.0, 28_250.0]
HALVED = [13_820.0, 14_150.0, 13_400.0, 14_600.0, 13_990.0, 12_870.0]


def accept(
    seq: int,
    conn_per_s: float,
    *,
    mode: str = "shared",
    workers: int = 2,
    valid: bool = True,
    warmup: bool = False,
    reason: str = "",
    latency_p99_us: float = 850.0,
    backlog: int = 4096,
) -> TrialRecord:
    return TrialRecord(
        seq=seq,
        kind="accept",
        warmup=warmup,
        params={
            "mode": mode,
            "workers": workers,
            "duration": 5.0,
            "backlog": backlog,
            "inflight": 16,
            "client_threads": {"cli1": 2},
            "wait_fin": True,
            "port": 5000,
        },
        started=1_700_000_000.0 + seq * 6,
        duration=5.4,
        valid=valid,
        reason=reason,
        metrics={
            "conn_per_s": conn_per_s,
            "latency_p50_us": latency_p99_us / 3,
            "latency_p99_us": latency_p99_us,
            "client_errors": 0.0,
        },
    )


def trials(values: Sequence[float], **kw: Any) -> list[TrialRecord]:
    return [accept(i + 1, v, **kw) for i, v in enumerate(values)]


# Three past runs: enough to know the run-to-run spread (labctl.results.noise.MIN_RUNS)
HISTORY = [(4, trials(BASELINE_B)), (3, trials(BASELINE_A)), (2, trials(BASELINE_C))]


def thrice(run: int, past: list[TrialRecord]) -> list[tuple[int, list[TrialRecord]]]:
    """One past run's trials as three runs: a history whose run-to-run spread is known."""
    return [(run, past), (run - 1, past), (run - 2, past)]


CONN = {"conn_per_s": WATCHED["reuseport"]["conn_per_s"]}


def only(verdicts: Sequence[Any]) -> Any:
    assert len(verdicts) == 1, verdicts
    return verdicts[0]


# ---------------------------------------------------------------------------- compare


def test_same_distribution_is_ok() -> None:
    v = only(compare("reuseport", trials(BASELINE_A + BASELINE_B[:1]), HISTORY, CONN))
    assert v.verdict == "ok"
    assert v.config == "accept mode=shared workers=2"
    assert v.baseline_runs == (2, 3, 4)
    assert v.current.n == 6 and v.baseline.n == 15
    assert v.ratio == pytest.approx(1.0, abs=0.03)
    assert v.p_value is not None and v.p_value > 0.5
    assert overall([v]) == "ok"


def test_half_the_rate_over_6_vs_15_trials_is_a_regression() -> None:
    v = only(compare("reuseport", trials(HALVED), HISTORY, CONN))
    assert v.verdict == "regression"
    # the ratio is to the median of the three runs' medians (27,710, 27,480, 27,650)
    assert v.center == 27_650.0 and v.ratio == pytest.approx(13_905 / 27_650)
    # all 6 below all 15: the exact two-sided p is 2 / C(21, 6)
    assert v.p_value == pytest.approx(2 / 54_264)
    assert v.reason == (
        "conn_per_s median 13,905 (n=6) vs 27,650 (median of 3 runs: 2,3,4; 15 trials): "
        "x0.50 beyond 10%; run-to-run: z=-38.5 (limit 16.3, spread 1.8% over 3 runs); "
        "trials p=3.7e-05 < 0.05 -> regression: threshold, run-to-run noise and trials agree"
    )
    assert v.decided_by == "all three" and v.noise is not None and v.noise.known
    assert overall([v]) == "regression"


def test_a_significant_drop_within_the_threshold_is_ok() -> None:
    # 6% slower, every trial below every past one: real, but not worth waking anyone for
    tonight = [25_900.0, 25_950.0, 26_000.0, 25_800.0, 25_850.0, 25_920.0]
    history = [(2, trials([27_600.0, 27_650.0, 27_700.0, 27_550.0, 27_620.0]))]
    v = only(compare("reuseport", trials(tonight), history, CONN))
    assert v.p_value is not None and v.p_value < 0.01
    assert v.ratio == pytest.approx(0.94, abs=0.01)
    assert v.verdict == "ok"
    assert "within 10%" in v.reason


def test_a_large_drop_that_noise_explains_is_ok() -> None:
    tonight = [12_000.0, 30_000.0, 14_000.0, 29_000.0]
    history = [(2, trials([28_000.0, 13_000.0, 29_500.0, 27_000.0]))]
    v = only(compare("reuseport", trials(tonight), history, CONN))
    assert v.ratio is not None and v.ratio < 0.9
    assert v.p_value is not None and v.p_value >= 0.05
    assert v.verdict == "ok"
    assert "beyond 10%" in v.reason and ">= 0.05" in v.reason


def test_too_few_trials_are_never_flagged_and_say_so() -> None:
    v = only(compare("reuseport", trials([9_000.0]), HISTORY, CONN))
    assert (v.verdict, v.p_value) == ("undecided", None)
    assert v.ratio == pytest.approx(9_000 / 27_650)
    assert "too few trials" in v.reason and "n=1 vs 15" in v.reason


def test_lower_is_better_latency() -> None:
    metrics = {"latency_p99_us": WATCHED["reuseport"]["latency_p99_us"]}
    history = [
        (
            7,
            [
                accept(i, 27_000.0, latency_p99_us=us)
                for i, us in enumerate([810, 850, 870, 830, 900])
            ],
        )
    ]

    slower = [
        accept(i, 27_000.0, latency_p99_us=us)
        for i, us in enumerate([1_700, 1_650, 1_800, 1_720, 1_690])
    ]
    v = only(compare("reuseport", slower, thrice(7, history[0][1]), metrics))
    assert (v.direction, v.verdict) == ("lower", "regression")
    assert v.ratio == pytest.approx(1_700 / 850)

    faster = [
        accept(i, 27_000.0, latency_p99_us=us) for i, us in enumerate([410, 420, 400, 430, 415])
    ]
    faster_v = only(compare("reuseport", faster, thrice(7, history[0][1]), metrics))
    assert faster_v.verdict == "improvement"


def test_higher_rate_is_an_improvement_not_a_regression() -> None:
    v = only(compare("reuseport", trials([x * 1.5 for x in BASELINE_A]), HISTORY, CONN))
    assert v.verdict == "improvement"
    assert overall([v]) == "ok"


def test_invalid_and_warmup_trials_never_count() -> None:
    tonight = trials(BASELINE_A + BASELINE_B[:1])
    tonight.append(
        accept(7, 310.0, valid=False, reason="listen queue overflowed: ListenOverflows +5120")
    )
    tonight.append(accept(0, 150.0, warmup=True))
    v = only(compare("reuseport", tonight, HISTORY, CONN))
    assert v.verdict == "ok"
    assert v.current.n == 6 and v.current.median == pytest.approx(27_595)

    # an awful invalid trial in the history must not make tonight look like an improvement
    history = [(3, [*trials(BASELINE_A), accept(9, 2.0, valid=False, reason="no connection")])]
    v = only(compare("reuseport", trials(BASELINE_B), history, CONN))
    assert v.verdict == "ok" and v.baseline.n == 5


def test_a_metric_missing_from_a_trial_is_skipped() -> None:
    t = accept(8, 0.0)
    bare = TrialRecord(t.seq, t.kind, t.warmup, t.params, t.started, t.duration, True, "", {})
    v = only(compare("reuseport", [*trials(HALVED), bare], HISTORY, CONN))
    assert v.current.n == 6 and v.verdict == "regression"


def test_no_history_is_new() -> None:
    v = only(compare("reuseport", trials(HALVED), [], CONN))
    assert (v.verdict, v.baseline, v.baseline_runs, v.ratio) == ("new", None, (), None)
    assert "13,905" in v.reason and "no valid trial in the history" in v.reason

    # history of another configuration only: this one is new, that one has no data tonight
    other = [(5, trials(BASELINE_A, mode="reuseport"))]
    by_config = {v.config: v for v in compare("reuseport", trials(HALVED, workers=1), other, CONN)}
    assert by_config["accept mode=shared workers=1"].verdict == "new"
    gone = by_config["accept mode=reuseport workers=2"]
    assert gone.verdict == "no-data" and "not run" in gone.reason


def test_all_trials_invalid_tonight_is_no_data_with_the_reason() -> None:
    tonight = trials([700.0, 650.0], valid=False, reason="listen queue overflowed: ListenDrops +9")
    v = only(compare("reuseport", tonight, HISTORY, CONN))
    assert (v.verdict, v.current, v.baseline_runs) == ("no-data", None, (2, 3, 4))
    assert "2 invalid: listen queue overflowed" in v.reason
    assert overall([v]) == "ok"


def test_one_verdict_per_metric_and_configuration_in_a_stable_order() -> None:
    tonight = [
        *trials(BASELINE_A, mode="reuseport-cbpf"),
        *trials(BASELINE_B, mode="shared"),
        TrialRecord(
            30,
            "pktgen",
            False,
            {"mode": "native", "size": 60, "rate": 0, "duration": 5.0},
            0.0,
            5.1,
            True,
            "",
            {"tx_pps": 1.2e6, "rx_pps": 1.1e6},
        ),
    ]
    verdicts = compare("reuseport", tonight, [], WATCHED["reuseport"])
    assert [(v.metric, v.config) for v in verdicts] == [
        ("conn_per_s", "accept mode=reuseport-cbpf workers=2"),
        ("conn_per_s", "accept mode=shared workers=2"),
        ("latency_p99_us", "accept mode=reuseport-cbpf workers=2"),
        ("latency_p99_us", "accept mode=shared workers=2"),
        ("rx_pps", "pktgen mode=native size=60"),
        ("tx_pps", "pktgen mode=native size=60"),
    ]
    assert {v.verdict for v in verdicts} == {"new"}
    assert all(v.experiment == "reuseport" for v in verdicts)


def qdisc_trial(seq: int, qdisc: str, proto: str, value: float) -> TrialRecord:
    limits: dict[str, dict[str, Any]] = {
        "pfifo": {"kind": "pfifo", "limit": 100},
        "noqueue": {"kind": "noqueue"},
    }
    metric = {
        "tcp": {"throughput_mbps": value, "retransmits": 0.0},
        "udp": {"pps": value, "sent_pps": value * 1.4, "lost_percent": 28.5},
    }[proto]
    return TrialRecord(
        seq,
        "qdisc",
        False,
        {
            "qdisc": qdisc,
            **limits[qdisc],
            "proto": proto,
            "duration": 3.0,
            "interface": "srv1:eth0",
            "path": "cli1 -> srv1 (eth0)",
        },
        0.0,
        3.2,
        True,
        "",
        {**metric, "qdisc_drops": 0.0, "qdisc_requeues": 0.0},
    )


def test_qdisc_metrics_follow_their_protocol() -> None:
    past = [
        qdisc_trial(i, q, p, v)
        for i, (q, p, v) in enumerate([("pfifo", "tcp", 9_400.0), ("pfifo", "udp", 410_000.0)] * 4)
    ]
    tonight = [
        qdisc_trial(i, q, p, v)
        for i, (q, p, v) in enumerate([("pfifo", "tcp", 9_380.0), ("pfifo", "udp", 205_000.0)] * 4)
    ]
    verdicts = compare("qdisc", tonight, thrice(11, past), WATCHED["qdisc"])
    assert [(v.metric, v.config, v.verdict) for v in verdicts] == [
        ("throughput_mbps", "qdisc proto=tcp qdisc=pfifo", "ok"),
        ("pps", "qdisc proto=udp qdisc=pfifo", "regression"),
    ]


def test_config_key() -> None:
    assert (
        config_key(accept(1, 1.0, mode="reuseport", workers=2)) == "accept mode=reuseport workers=2"
    )
    assert config_key(qdisc_trial(1, "pfifo", "udp", 1.0)) == "qdisc proto=udp qdisc=pfifo"
    pktgen = TrialRecord(
        9, "pktgen", False, {"mode": "native", "size": 60, "rate": 0}, 0, 0, False, "", {}
    )
    assert config_key(pktgen) == "pktgen mode=native size=60"
    # a kind labctl does not know: its scalar params, tuning knobs left out
    other = TrialRecord(
        1,
        "udp_rr",
        False,
        {"size": 64.0, "zerocopy": True, "port": 9, "cpus": [0, 1]},
        0,
        0,
        True,
        "",
        {},
    )
    assert config_key(other) == "udp_rr size=64 zerocopy=true"


# ---------------------------------------------------------------------------- fingerprint


def lab_facts(**changes: Any) -> dict[str, Any]:
    """A real host's facts as the store keeps them (HostFacts.to_dict through JSON)."""
    facts: dict[str, Any] = json.loads(
        json.dumps(parse_host_facts("cli1", FACTS.read_text()).to_dict())
    )
    facts.update(changes)
    return facts


def run_params(**changes: Any) -> dict[str, Any]:
    params = {
        "modes": ["shared", "reuseport", "reuseport-cbpf"],
        "workers": [1, 2],
        "duration": 5.0,
        "repeat": 8,
        "backlog": 4096,
        "port": 5000,
        "threads": 0,
        "inflight": 16,
        "wait_fin": True,
        "pktgen": True,
        "warmup": True,
        "server": "srv1",
        "clients": ["cli1"],
    }
    params.update(changes)
    return params


def lab_hosts(**server_facts: Any) -> dict[str, tuple[str, Mapping[str, Any]]]:
    return {"srv1": ("server", lab_facts(**server_facts)), "cli1": ("client", lab_facts())}


def test_fingerprint_is_stable_and_covers_what_is_measured() -> None:
    fp = fingerprint("reuseport", run_params(), lab_hosts())
    assert re.fullmatch(r"[0-9a-f]{16}", fp.digest)
    assert fp.parts["params"] == {
        "duration": 5.0,
        "modes": ["reuseport", "reuseport-cbpf", "shared"],
        "pktgen": True,
        "wait_fin": True,
        "workers": [1, 2],
    }
    assert fp.parts["roles"]["server"] == [
        {
            "kernel_release": "6.18.44-fc-v669",
            "arch": "x86_64",
            "cpu_model": lab_facts()["cpu_model"],
            "cpus": 2,
            "nics": ["veth"],
        }
    ]
    assert json.loads(json.dumps(fp.parts)) == fp.parts
    # the order of a list of modes changes nothing that is measured
    again = fingerprint(
        "reuseport",
        run_params(modes=["reuseport-cbpf", "shared", "reuseport"]),
        dict(reversed(list(lab_hosts().items()))),
    )
    assert again == fp


def test_a_kernel_upgrade_starts_a_new_history() -> None:
    old = fingerprint("reuseport", run_params(), lab_hosts(kernel_release="6.1.0-25-amd64"))
    new = fingerprint("reuseport", run_params(), lab_hosts(kernel_release="6.1.0-26-amd64"))
    assert old.digest != new.digest
    assert fingerprint_changes(old.parts, new.parts) == [
        "server kernel_release: 6.1.0-25-amd64 -> 6.1.0-26-amd64"
    ]


def test_identity_changes_are_named() -> None:
    old = fingerprint("reuseport", run_params(), lab_hosts())
    hosts = {**lab_hosts(), "cli3": ("client", lab_facts())}
    new = fingerprint("reuseport", run_params(workers=[1, 2, 4], wait_fin=False), hosts)
    assert fingerprint_changes(old.parts, new.parts) == [
        "wait_fin: true -> false",
        "workers: [1, 2] -> [1, 2, 4]",
        "client: 1 host -> 2 hosts",
    ]
    # Another lab built alike, its hosts named otherwise: the same fingerprint (issue 19).
    renamed = {"a-srv": lab_hosts()["srv1"], "a-cli": lab_hosts()["cli1"]}
    assert fingerprint("reuseport", run_params(), renamed).digest == old.digest
    qdisc = fingerprint(
        "qdisc", {"qdiscs": ["pfifo"], "protos": ["tcp"], "duration": 3.0}, lab_hosts()
    )
    assert "experiment: reuseport -> qdisc" in fingerprint_changes(old.parts, qdisc.parts)
    assert fingerprint_changes(old.parts, old.parts) == []


def test_a_backlog_change_keeps_the_history_and_is_a_likely_cause() -> None:
    assert "backlog" not in Reuseport.spec.identity
    old = fingerprint("reuseport", run_params(), lab_hosts())
    new = fingerprint("reuseport", run_params(backlog=5, threads=1), lab_hosts())
    assert old.digest == new.digest
    assert provenance_changes(
        run_params(), run_params(backlog=5, threads=1), lab_hosts(), lab_hosts()
    ) == [
        "backlog: 4096 -> 5",
        "threads: 0 -> 1",
    ]


def test_provenance_names_sysctls_drivers_qdiscs_and_netmap() -> None:
    old_facts = lab_facts(netmap={"ref": "v14.0-12-gabc", "loaded": False})
    new_facts = lab_facts(
        somaxconn=128, gcc_version="12.3.0", netmap={"ref": "v14.0-12-gabc", "loaded": True}
    )
    new_facts["interfaces"] = [
        {**i, "driver_version": "1.1", "root_qdisc": "pfifo"} if i["name"] == "eth0" else i
        for i in new_facts["interfaces"]
    ]
    old_eth0 = next(i for i in old_facts["interfaces"] if i["name"] == "eth0")
    new_facts["interfaces"].append({**old_eth0, "name": "eth9", "driver": "virtio_net"})
    lines = provenance_changes(
        run_params(),
        run_params(),
        {"srv1": ("server", old_facts), "cli1": ("client", lab_facts())},
        {"srv1": ("server", new_facts), "cli2": ("client", lab_facts())},
    )
    assert lines == [
        "host cli1 removed",
        "host cli2 added",
        "srv1 eth0 driver_version: 1.0 -> 1.1",
        "srv1 eth0 root_qdisc: noqueue -> pfifo",
        "srv1 gcc_version: 12.2.0 -> 12.3.0",
        "srv1 interface eth9 added",
        "srv1 netmap.loaded: false -> true",
        "srv1 somaxconn: 4096 -> 128",
    ]


def test_provenance_of_identity_params_only_without_the_experiment() -> None:
    old, new = run_params(), run_params(duration=10.0, backlog=5)
    hosts = lab_hosts()
    assert provenance_changes(old, new, hosts, hosts) == [
        "backlog: 4096 -> 5",
        "duration: 5.0 -> 10.0",
    ]
    assert provenance_changes(old, new, hosts, hosts, spec=Reuseport.spec) == ["backlog: 4096 -> 5"]
