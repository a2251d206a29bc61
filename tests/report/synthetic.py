"""A realistic nightly report built from synthetic trials through labctl's own comparison.

Two configurations of the reuseport experiment, a history of five runs (four past and
tonight), one regression: tonight, reuseport's conn/s dropped by a quarter after the backlog
went from 4096 to 5. The verdicts, fingerprint and provenance changes come from
`labctl.results.regress`, so the page shows what a real nightly would show.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from labctl.experiments.reuseport import Reuseport
from labctl.results.fingerprint import fingerprint, provenance_changes
from labctl.results.history import HistoryPoint, RunComparison
from labctl.results.regress import compare, config_key
from labctl.results.stamps import RunStamp
from labctl.results.store import RunSummary, TrialRecord
from labctl.views.html import NightlyReport

SPEC = Reuseport.spec

T0 = 1_760_000_000.0  # a fixed night, so pages compare byte for byte between renders
DAY = 86_400.0
MODES = ("shared", "reuseport")
REPEAT = 8

# Medians per mode before tonight; tonight's reuseport conn/s is 25% lower (the regression).
CONN_PER_S = {"shared": 41_000.0, "reuseport": 78_000.0}
LATENCY_P99_US = {"shared": 900.0, "reuseport": 610.0}


def host_facts(kernel: str = "6.1.0-26-amd64", somaxconn: int = 4096) -> dict[str, Any]:
    def iface(name: str, driver: str | None, version: str | None, qdisc: str) -> dict[str, Any]:
        return {
            "name": name,
            "mac": "02:00:00:00:00:01",
            "mtu": 1500,
            "state": "UP",
            "addresses": ["10.77.0.2/24"],
            "driver": driver,
            "driver_version": version,
            "root_qdisc": qdisc,
        }

    return {
        "kernel_release": kernel,
        "arch": "x86_64",
        "cpu_model": "Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz",
        "cpus": 2,
        "interfaces": [
            iface("lo", None, None, "noqueue"),
            iface("eth0", "veth", "1.0", "noqueue"),
            iface("eth1", "ixgbe", "5.19.6-k", "mq"),
        ],
        "somaxconn": somaxconn,
        "default_qdisc": "fq_codel",
        "modules_supported": True,
    }


def hosts(**facts: Any) -> dict[str, tuple[str, Mapping[str, Any]]]:
    netmap = {
        "status": "loaded",
        "loaded": True,
        "device": True,
        "source": "git https://github.com/luigirizzo/netmap 5b7f2e1",
        "admode": 0,
    }
    server = host_facts(**facts) | {"netmap": netmap}
    return {"srv1": ("server", server), "cli1": ("client", host_facts(**facts) | {"netmap": None})}


def run_params(backlog: int = 4096, workers: Sequence[int] = (2,)) -> dict[str, Any]:
    return {
        "modes": list(MODES),
        "workers": list(workers),
        "duration": 3.0,
        "repeat": REPEAT,
        "backlog": backlog,
        "wait_fin": True,
        "pktgen": False,
    }


def trials(
    rng: random.Random,
    started: float,
    slowdown: float = 1.0,
    invalid: int = 0,
    workers: Sequence[int] = (2,),
) -> list[TrialRecord]:
    """One warm-up, then REPEAT interleaved rounds over the modes (and worker counts: conn/s
    scales with them, reuseport's better than shared's); `invalid` of them fail."""
    out: list[TrialRecord] = []

    def trial(
        mode: str, warmup: bool, valid: bool = True, reason: str = "", n: int = 2
    ) -> TrialRecord:
        scale = (n / 2) ** (0.8 if mode == "reuseport" else 0.3)
        conn = CONN_PER_S[mode] * scale * (slowdown if mode == "reuseport" else 1.0)
        return TrialRecord(
            seq=len(out),
            kind="accept",
            warmup=warmup,
            params={"mode": mode, "workers": n, "duration": 3.0},
            started=started + 4.0 * len(out),
            duration=3.5,
            valid=valid,
            reason=reason,
            metrics={
                "conn_per_s": conn * rng.uniform(0.95, 1.05),
                "latency_p99_us": LATENCY_P99_US[mode] * rng.uniform(0.9, 1.1),
            },
        )

    out.append(trial(MODES[0], warmup=True, n=workers[0]))
    for r in range(REPEAT):
        for n in workers:
            for mode in MODES:
                bad = r < invalid and mode == "shared"
                reason = "listen queue overflowed: ListenOverflows +12" if bad else ""
                out.append(trial(mode, warmup=False, valid=not bad, reason=reason, n=n))
    return out


def _median_of(trials: Sequence[TrialRecord], metric: str, config: str) -> float | None:
    values = [
        t.metrics[metric]
        for t in trials
        if not t.warmup and t.valid and metric in t.metrics and config_key(t, SPEC) == config
    ]
    return statistics.median(values) if values else None


def reuseport_section(
    tonight_id: int = 5,
    past_runs: int = 4,
    slowdown: float = 0.75,
    params: Mapping[str, Any] | None = None,
    workers: Sequence[int] = (2,),
) -> RunComparison:
    rng = random.Random(7)
    history = [
        (
            run_id,
            T0 - (tonight_id - run_id) * DAY,
            trials(rng, T0 - (tonight_id - run_id) * DAY, workers=workers),
        )
        for run_id in range(tonight_id - past_runs, tonight_id)
    ]
    tonight = trials(rng, T0, slowdown=slowdown, invalid=2, workers=workers)
    params = dict(params) if params is not None else run_params(backlog=5, workers=workers)
    now_hosts, old_hosts = hosts(somaxconn=4096), hosts(somaxconn=4096)
    fp = fingerprint("reuseport", params, now_hosts, SPEC)
    verdicts = compare(
        "reuseport",
        tonight,
        [(run_id, ts) for run_id, _, ts in reversed(history)],
        SPEC.watched,
        spec=SPEC,
    )
    trends = {
        (v.metric, v.config): [
            HistoryPoint(run_id, started, _median_of(ts, v.metric, v.config))
            for run_id, started, ts in history
        ]
        + [HistoryPoint(tonight_id, T0, _median_of(tonight, v.metric, v.config))]
        for v in verdicts
    }
    run = RunSummary(
        id=tonight_id,
        experiment="reuseport",
        started=T0,
        finished=T0 + 75.0,
        status="finished",
        trials=len(tonight),
        valid=sum(1 for t in tonight if t.valid and not t.warmup),
        params=params,
        label="reuseport-2w",
    )
    return RunComparison(
        run=run,
        trials=tuple(tonight),
        hosts=now_hosts,
        fingerprint=fp,
        history=tuple(r for r, _, _ in reversed(history)),
        history_note=(
            "compared with runs " + ", ".join(str(r) for r, _, _ in history)
            if history
            else "no earlier run to compare with: this run starts the history"
        ),
        verdicts=tuple(verdicts),
        changes=tuple(
            provenance_changes(run_params(workers=workers), params, old_hosts, now_hosts, spec=SPEC)
        )
        if history
        else (),
        trends={k: tuple(v) for k, v in trends.items()},
        spec=SPEC,
    )


def stamps(tonight_id: int = 5, past_runs: int = 4) -> dict[int, RunStamp]:
    """labctl 0.9.0 from the history's third run on: a change the trend plots mark."""
    first = tonight_id - past_runs
    return {
        r: RunStamp("6.1.0-26-amd64", "0.8.2" if r < first + 2 else "0.9.0")
        for r in range(first, tonight_id + 1)
    }


def nightly_report(**section: Any) -> NightlyReport:
    s = reuseport_section(**section)
    status = "regression" if any(v.verdict == "regression" for v in s.verdicts) else "ok"
    return NightlyReport(
        title="labctl nightly: local lab",
        started=T0 - 120.0,
        finished=T0 + 90.0,
        status=status,
        sections=[s],
        notes=["provisioning: 2 hosts ok, 0 changed", "lock taken from a dead labctl (pid 4242)"],
        stamps=stamps(section.get("tonight_id", 5), section.get("past_runs", 4)),
    )
