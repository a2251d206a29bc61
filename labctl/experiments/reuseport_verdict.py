"""What a reuseport trial measured, from what its programs and the kernel said: nstat's
counters, CPU time, the workloads' JSON, and the verdict on whether the trial measured the
server's accept capacity (docs/reuseport.md, "Validity")."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Counters whose growth means the listen queue, not the server, limited the rate.
OVERFLOW_COUNTERS = (
    "TcpExtListenOverflows",
    "TcpExtListenDrops",
    "TcpExtTCPReqQFullDrop",
    "TcpExtSyncookiesSent",
)
MAX_ERROR_SHARE = 0.01  # client errors beyond this share of connections: invalid


def parse_nstat(text: str) -> dict[str, int]:
    """`nstat -asz` lines: NAME VALUE RATE."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


def parse_cpu_line(text: str) -> list[int]:
    """The aggregate `cpu` line of /proc/stat as jiffies per state."""
    for line in text.splitlines():
        if line.startswith("cpu "):
            return [int(x) for x in line.split()[1:]]
    raise ValueError("no cpu line in /proc/stat")


def cpu_shares(before: Sequence[int], after: Sequence[int]) -> dict[str, float]:
    """Percent of CPU time idle and in softirq between two /proc/stat samples."""
    delta = [a - b for a, b in zip(after, before, strict=False)]
    total = sum(delta) or 1
    # user nice system idle iowait irq softirq steal ...
    return {"cpu_idle_pct": 100.0 * delta[3] / total, "cpu_softirq_pct": 100.0 * delta[6] / total}


def last_json(text: str) -> dict[str, Any]:
    """The JSON document a workload printed last (one per run, on stdout)."""
    start = text.rfind("\n{") + 1 if "\n{" in text else text.find("{")
    if start < 0:
        raise ValueError("no JSON in output")
    doc: dict[str, Any] = json.JSONDecoder().raw_decode(text[start:])[0]
    return doc


@dataclass(frozen=True)
class Verdict:
    valid: bool
    reason: str


def judge(
    server: Mapping[str, Any],
    clients: Sequence[Mapping[str, Any]],
    deltas: Mapping[str, int],
    in_flight_max: int,
    wait_fin: bool,
    link_flaps: Mapping[str, int] | None = None,
) -> Verdict:
    """Did this trial measure the server's accept capacity? Why not, if not.
    `link_flaps`: host:interface → carrier changes during the trial."""
    problems = []
    if link_flaps:
        problems.append(
            "a link went down mid-trial: "
            + ", ".join(f"{k} (carrier changed {v} times)" for k, v in sorted(link_flaps.items()))
        )
    grown = {k: v for k, v in deltas.items() if k in OVERFLOW_COUNTERS and v > 0}
    if grown:
        problems.append(
            "listen queue overflowed: "
            + ", ".join(f"{k.removeprefix('TcpExt')} +{v}" for k, v in grown.items())
        )
    accepted = int(server.get("accepts_total", 0))
    connected = sum(int(c.get("connections", 0)) for c in clients)
    # With --wait-fin a client counts a connection only after the server closed it, so the
    # server's count is at least the clients'; at most the connects still in flight above it.
    low = connected if wait_fin else max(0, connected - in_flight_max)
    if not low <= accepted <= connected + in_flight_max:
        problems.append(
            f"counts do not reconcile: server accepted {accepted}, "
            f"clients connected {connected} (in flight at most {in_flight_max})"
        )
    errors = sum(sum(c.get("errors", {}).values()) for c in clients)
    if connected and errors > MAX_ERROR_SHARE * connected:
        problems.append(f"client errors {errors} > {MAX_ERROR_SHARE:.0%} of {connected}")
    if connected == 0:
        problems.append("no connection completed")
    return Verdict(not problems, "; ".join(problems))


def trial_metrics(
    server: Mapping[str, Any],
    clients: Sequence[Mapping[str, Any]],
    duration: float,
    deltas: Mapping[str, int],
    cpu: Mapping[str, float],
) -> dict[str, float]:
    workers = server.get("workers", [])
    samples = sum(int(w.get("incoming_cpu_samples", 0)) for w in workers)
    matches = sum(int(w.get("incoming_cpu_matches", 0)) for w in workers)
    accepts = [int(w.get("accepts", 0)) for w in workers]
    metrics: dict[str, float] = {
        "conn_per_s": sum(float(c.get("rate", 0.0)) for c in clients),
        "client_connections": sum(int(c.get("connections", 0)) for c in clients),
        "server_accepts": int(server.get("accepts_total", 0)),
        "accepts_per_s": int(server.get("accepts_total", 0)) / max(duration, 1e-9),
        "client_errors": sum(sum(c.get("errors", {}).values()) for c in clients),
        "latency_p50_us": max(
            (float(c.get("latency_us", {}).get("p50", 0)) for c in clients), default=0.0
        ),
        "latency_p99_us": max(
            (float(c.get("latency_us", {}).get("p99", 0)) for c in clients), default=0.0
        ),
        **{k.removeprefix("TcpExt").lower(): float(v) for k, v in deltas.items()},
        **cpu,
    }
    if samples:
        metrics["incoming_cpu_match_share"] = matches / samples
    if accepts and max(accepts) > 0:
        metrics["worker_balance"] = min(accepts) / max(accepts)
    return metrics


def parse_carriers(text: str) -> dict[str, int]:
    """`iface=N` lines → {iface: N} (an interface that reports nothing is left out)."""
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition("=")
        if value.strip().isdigit():
            out[name] = int(value)
    return out


def link_flaps(
    before: Mapping[str, Mapping[str, int]], after: Mapping[str, Mapping[str, int]]
) -> dict[str, int]:
    """host:interface → how often its carrier changed between two readings."""
    return {
        f"{host}:{name}": after[host][name] - count
        for host, counts in before.items()
        for name, count in counts.items()
        if host in after and after[host].get(name, count) > count
    }
