"""Benchmark: the reuseport harness against the same workloads started by hand.

In one invocation, on its own 3-host namespace lab: the C server and clients run as plain
subprocesses in the hosts' namespaces (`ip netns exec`), then through
`labctl experiment reuseport`, interleaved mode by mode. Prints
- the harness/standalone ratio of conn/s per mode (goal >= 0.9),
- the share of the harness sweep's wall time spent measuring (goal >= 0.75),
- whether reuseport-cbpf beats reuseport in the harness trials (docs/reuseport.md: ~+20%,
  p <= 0.002).
Needs root. Makes its own lab (own names and 10.x subnet) and always removes it.

usage: python benchmarks/reuseport.py [--duration 3] [--repeat 6]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import LABCTL, bench_lab

from labctl.labs.netns_spec import LabSpec
from labctl.stats import mann_whitney_p

ROOT = Path(__file__).resolve().parent.parent
MODES = ("reuseport", "reuseport-cbpf")


def netns_exec(ns: str, argv: list[str], **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, *argv], text=True, stdin=subprocess.DEVNULL, **kw
    )  # type: ignore[call-overload]


def standalone_trial(spec: LabSpec, bin_dir: Path, mode: str, duration: float, port: int) -> float:
    """One trial by hand: server on srv1, a client on each other host; total conn/s."""
    srv = spec.hosts[0]
    cpus = ",".join(str(c) for c in range(os.cpu_count() or 1))
    server = netns_exec(
        spec.netns(srv.name),
        [
            str(bin_dir / "reuseport_server"),
            "--addr",
            srv.address,
            "--port",
            str(port),
            "--mode",
            mode,
            "--workers",
            "2",
            "--cpus",
            cpus,
            "--backlog",
            "4096",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert server.stderr is not None
        line = server.stderr.readline()  # "listening ..." once every worker listens
        if not line.startswith("listening"):
            raise SystemExit(f"benchmark: server did not start: {line.strip()}")
        clients = [
            netns_exec(
                spec.netns(h.name),
                [
                    str(bin_dir / "conn_client"),
                    "--addr",
                    srv.address,
                    "--port",
                    str(port),
                    "--threads",
                    str(os.cpu_count() or 1),
                    "--cpus",
                    cpus,
                    "--inflight",
                    "16",
                    "--duration",
                    f"{duration:g}",
                    "--wait-fin",
                ],
                stdout=subprocess.PIPE,
            )
            for h in spec.hosts[1:]
        ]
        rates = [json.loads(c.communicate(timeout=duration + 30)[0])["rate"] for c in clients]
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)
    return float(sum(rates))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="labctl-bench-bin-") as tmp:
        tmpdir = Path(tmp)
        bin_dir = tmpdir / "bin"
        subprocess.run(["make", "-s", "-C", str(ROOT / "workloads"), f"O={bin_dir}"], check=True)
        with bench_lab("br", 212, 3) as (spec, inventory):

            def harness(repeat: int, extra: list[str]) -> tuple[list[dict[str, Any]], float]:
                started = time.monotonic()
                proc = subprocess.run(
                    [
                        sys.executable,
                        *LABCTL,
                        "experiment",
                        "reuseport",
                        "-i",
                        str(inventory),
                        "--store",
                        str(tmpdir / "r.db"),
                        "--plot",
                        str(tmpdir / "r.png"),
                        "--modes",
                        ",".join(MODES),
                        "--workers",
                        "2",
                        "--duration",
                        f"{args.duration:g}",
                        "--repeat",
                        str(repeat),
                        "--no-pktgen",
                        "--port",
                        "5201",
                        "--json",
                        *extra,
                    ],
                    capture_output=True,
                    text=True,
                    timeout=3600,
                    stdin=subprocess.DEVNULL,
                )
                if proc.returncode != 0:
                    raise SystemExit(f"benchmark: harness failed: {proc.stderr.strip()}")
                trials = [t for t in json.loads(proc.stdout)["trials"] if t["kind"] == "accept"]
                return trials, time.monotonic() - started

            # 1. harness against standalone, interleaved round by round
            alone: dict[str, list[float]] = {m: [] for m in MODES}
            paired: dict[str, list[float]] = {m: [] for m in MODES}
            for _ in range(args.repeat):
                for mode in MODES:
                    alone[mode].append(standalone_trial(spec, bin_dir, mode, args.duration, 5200))
                for t in harness(1, ["--no-warmup"])[0]:
                    if t["valid"]:
                        paired[t["params"]["mode"]].append(t["metrics"]["conn_per_s"])
            # 2. one sweep as a user runs it: time spent measuring, and cbpf against reuseport
            trials, wall = harness(args.repeat, [])

    measured = sum(t["params"]["duration"] for t in trials)
    swept = {
        m: [
            t["metrics"]["conn_per_s"]
            for t in trials
            if t["params"]["mode"] == m and t["valid"] and not t["warmup"]
        ]
        for m in MODES
    }
    print(
        f"reuseport, 2 workers, 2 client hosts, {args.duration:g} s trials, "
        f"{args.repeat} interleaved rounds"
    )
    for m in MODES:
        a, h = statistics.median(alone[m]), statistics.median(paired[m])
        print(
            f"  {m:15s} standalone median {a:9,.0f} conn/s   harness median {h:9,.0f} "
            f"conn/s   harness/standalone {h / a:.2f} (goal >= 0.90)"
        )
    print(
        f"  sweep of {len(trials)} trials: {measured:.0f} s measuring of {wall:.0f} s wall "
        f"= {measured / wall:.2f} (goal >= 0.75)"
    )
    r, c = statistics.median(swept["reuseport"]), statistics.median(swept["reuseport-cbpf"])
    p = mann_whitney_p(swept["reuseport-cbpf"], swept["reuseport"])
    verdict = "beats" if c > r and p is not None and p <= 0.05 else "does not clearly beat"
    print(
        f"  reuseport-cbpf {verdict} reuseport in the sweep: {c / r:.2f}x, Mann-Whitney "
        f"p = {p if p is None else round(p, 4)} "
        f"(n = {len(swept['reuseport-cbpf'])} vs {len(swept['reuseport'])})"
    )


if __name__ == "__main__":
    main()
