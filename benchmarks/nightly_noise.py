"""Benchmark: how often a nightly run cries wolf on an untouched lab, and what it catches.

On its own 3-host namespace lab, the default suite (playbooks/nightly.yml) runs N times with
nothing changed between runs, each night a whole `labctl nightly` as cron runs it. Every
night from the second is judged against the nights before it, as the nightly itself did:
any verdict either way (regression or improvement) is a false alarm. Then known slowdowns
are injected, one night each: a tbf rate limit on the server's link, sized from the measured
bytes per connection to cost 5%, 10%, 20% and 40% of the fastest accept configuration. Each
injected night is judged against the clean nights only (`--baseline`). Prints
- each clean night: its history, its exit status, every verdict that was not "ok";
- per metric: comparisons, false alarms, and the smallest change each night could resolve;
- per injection: the drop it really caused in each configuration, and whether it was caught;
- the README's sentence: "on this lab, N clean nights gave F false alarms; a drop of X% or
  more is caught".

The store and the nights' log are kept (`--out`), so the judging can be done again on the
same nights with `--judge DIR` (no lab needed). Needs root for the lab. Makes its own lab
(own names and 10.x subnet) and always removes it.

usage: python benchmarks/nightly_noise.py [--nights 12] [--inject 5,10,20,40] [--out DIR]
       python benchmarks/nightly_noise.py --judge DIR
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import LABCTL, bench_lab

from labctl.experiments import find
from labctl.nightly.suite import load_suite
from labctl.paths import DEFAULT_SUITE, PROJECT_DIR
from labctl.results.history import compare_run
from labctl.results.noise import limit as noise_limit
from labctl.results.regress import MetricVerdict
from labctl.results.store import ResultsStore
from labctl.stats import summarize

PROBE_PORT = 5301


def sh(argv: list[str], timeout: float = 60) -> str:
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if proc.returncode != 0:
        raise SystemExit(f"benchmark: {' '.join(argv)} exited {proc.returncode}: {proc.stderr}")
    return proc.stdout


def tx_bytes(ns: str) -> int:
    return int(sh(["ip", "netns", "exec", ns, "cat", "/sys/class/net/eth0/statistics/tx_bytes"]))


def night(inventory: Path, suite: Path, store: Path, out: Path, *more: str) -> dict[str, Any]:
    """One `labctl nightly`, as cron runs it; its nightly id, runs and exit status."""
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable, *LABCTL, "nightly", "-i", str(inventory), "--suite", str(suite),
            "--store", str(store), "--quiet", "--html", str(out / "last.html"), *more,
        ],
        capture_output=True, text=True, timeout=3600, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if proc.returncode == 2:
        raise SystemExit(f"benchmark: the nightly run failed:\n{proc.stdout}\n{proc.stderr}")
    with ResultsStore(store, create=False) as db:
        latest = db.nightly_runs(limit=1)[0]
    return {
        "nightly": latest.id,
        "runs": dict(latest.runs),
        "exit": proc.returncode,
        "seconds": round(time.monotonic() - started, 1),
    }


def bytes_per_connection(inventory: Path, ns: str, store: Path) -> float:
    """Bytes the server sends per accepted connection (SYN-ACK, ACKs, FIN; SSH's are noise)."""
    before = tx_bytes(ns)
    proc = subprocess.run(
        [
            sys.executable, *LABCTL, "experiment", "reuseport", "-i", str(inventory),
            "--store", str(store), "--modes", "reuseport", "--workers", "2", "--duration", "3",
            "--repeat", "1", "--no-warmup", "--no-pktgen", "--port", str(PROBE_PORT), "--json",
        ],
        capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    sent = tx_bytes(ns) - before
    if proc.returncode != 0:
        raise SystemExit(f"benchmark: probe failed: {proc.stderr.strip()}")
    trial = next(t for t in json.loads(proc.stdout)["trials"] if t["kind"] == "accept")
    return sent / (trial["metrics"]["conn_per_s"] * trial["params"]["duration"])


def gather(args: argparse.Namespace, out: Path) -> None:
    suite = Path(args.suite)
    store = out / "store.db"
    log: dict[str, Any] = {"suite": str(suite), "clean": [], "injected": []}
    with bench_lab("bn", 213, 3) as (spec, inventory):
        server_ns = spec.netns(spec.hosts[0].name)
        for i in range(args.nights):
            log["clean"].append(night(inventory, suite, store, out))
            print(f"clean night {i + 1}/{args.nights}: {log['clean'][-1]}", flush=True)
            (out / "nights.json").write_text(json.dumps(log, indent=1))
        per_conn = bytes_per_connection(inventory, server_ns, out / "probe.db")
        fastest = fastest_accept(store, log["clean"])
        log["bytes_per_connection"], log["fastest_conn_per_s"] = per_conn, fastest
        baseline = ",".join(str(r) for r in log["clean"][-1]["runs"].values())
        for target in args.inject:
            rate = int(fastest * per_conn * 8 * (1 - target / 100))
            burst = max(32768, rate // 8 // 100)
            tc = ["ip", "netns", "exec", server_ns, "tc", "qdisc"]
            sh([*tc, "replace", "dev", "eth0", "root", "tbf", "rate", f"{rate}bit",
                "burst", str(burst), "latency", "400ms"])  # fmt: skip
            try:
                entry = night(inventory, suite, store, out, "--baseline", baseline)
            finally:
                sh([*tc, "del", "dev", "eth0", "root"])
            entry.update(target=target, rate_bit=rate)
            log["injected"].append(entry)
            print(f"injected -{target}%: {entry}", flush=True)
            (out / "nights.json").write_text(json.dumps(log, indent=1))


def fastest_accept(store: Path, clean: list[dict[str, Any]]) -> float:
    """The fastest accept configuration's median conn/s over the clean nights."""
    values: dict[str, list[float]] = {}
    with ResultsStore(store, create=False) as db:
        for entry in clean:
            for run_id in entry["runs"].values():
                for t in db.trials(run_id):
                    if t.kind == "accept" and t.valid and not t.warmup:
                        key = f"{t.params['mode']} {t.params['workers']}"
                        values.setdefault(key, []).append(t.metrics["conn_per_s"])
    return max(summarize(v).median for v in values.values())


# ---------------------------------------------------------------------------- judging


def judge(out: Path) -> None:
    log = json.loads((out / "nights.json").read_text())
    suite = load_suite(log["suite"])
    entries = {e.name: e for e in suite.experiments}
    store = out / "store.db"
    rows: list[tuple[int, str, MetricVerdict]] = []  # (night, entry, verdict)
    false_nights = 0
    rule = suite.rule
    print(
        f"suite {suite.name}: history {rule.history}, threshold {rule.threshold:g}, "
        f"alpha {rule.alpha:g} (trials), noise_alpha {rule.noise_alpha:g} (run-to-run)"
    )
    print("\nclean nights (nothing changed between them):")
    with ResultsStore(store, create=False) as db:
        for n, entry in enumerate(log["clean"], start=1):
            flagged = []
            history = 0
            for name, run_id in entry["runs"].items():
                e = entries[name]
                comparison = compare_run(
                    db, run_id, find(e.experiment).spec, label=name,
                    metrics=e.metrics or None, rule=rule,
                )  # fmt: skip
                history = max(history, len(comparison.history))
                for v in comparison.verdicts:
                    rows.append((n, name, v))
                    if v.verdict in ("regression", "improvement"):
                        flagged.append(v)
            false_nights += bool(flagged)
            print(
                f"  night {n:2d}: history {history:2d} runs, exit {entry['exit']}, "
                f"{len(flagged)} false verdict(s)"
            )
            for v in flagged:
                print(f"      {v.verdict.upper()} {v.config} {v.reason}")
        judged = [r for r in rows if r[2].verdict not in ("new", "no-data")]
        print(
            "\nper metric, over the comparisons with a known run-to-run spread (3+ past runs):"
            "\n  resolves: median smallest change flagged; between: run-to-run spread of the"
            "\n  medians; within: sampling error of one run's median; to resolve the threshold:"
            "\n  the repeats it would take (the run-to-run spread must fall below"
            "\n  -ln(1 - threshold) / limit), or why repeats cannot"
        )
        print(
            f"  {'metric':36s} {'compared':>8s} {'false':>5s} {'resolves':>8s} {'between':>7s} "
            f"{'within':>6s}  to resolve {rule.threshold * 100:.0f}%"
        )
        metrics = sorted({f"{name} {v.metric}" for _, name, v in judged})
        for m in metrics:
            mine = [v for _, name, v in judged if f"{name} {v.metric}" == m]
            false = sum(v.verdict in ("regression", "improvement") for v in mine)
            known = [v for v in mine if v.noise is not None and v.noise.known]
            res = [v.resolution for v in known if v.resolution is not None]
            if not known:
                print(f"  {m:36s} {len(mine):8d} {false:5d}  (no comparison with 3+ past runs)")
                continue
            between = summarize([v.noise.between for v in known if v.noise]).median
            within = summarize([v.noise.within for v in known if v.noise]).median
            n = summarize([v.current.n for v in known if v.current]).median
            bound = noise_limit(rule.history, rule.noise_alpha)
            target = -math.log(1 - rule.threshold) / bound  # the spread that resolves it
            drift = math.sqrt(max(between**2 - within**2, 0.0))  # beyond sampling error
            if drift >= target:
                would = f"no: runs drift {drift * 100:.1f}% beyond sampling (> {target * 100:.1f}%)"
            else:  # the sampling error falls as 1/sqrt(n)
                would = f"~{math.ceil(n * within**2 / (target**2 - drift**2))} repeats"
            print(
                f"  {m:36s} {len(mine):8d} {false:5d} "
                f"{(summarize(res).median * 100 if res else math.nan):7.0f}% "
                f"{between * 100:6.1f}% {within * 100:5.1f}%  {would}"
            )
        nights = len(log["clean"])
        print(f"\n{nights} clean nights: {false_nights} with a false verdict (either way)")

        caught_drops: list[float] = []
        missed_drops: list[float] = []
        if log["injected"]:
            print(
                f"\ninjected slowdowns (tbf on the server's link; {log['bytes_per_connection']:.0f}"
                f" B sent per connection, fastest clean median "
                f"{log['fastest_conn_per_s']:,.0f} conn/s):"
            )
        for entry in log["injected"]:
            print(f"  target -{entry['target']}%: tbf rate {entry['rate_bit'] / 1e6:.1f} Mbit/s")
            for name, run_id in entry["runs"].items():
                e = entries[name]
                baseline = log["clean"][-1]["runs"][name]
                comparison = compare_run(
                    db, run_id, find(e.experiment).spec, label=name,
                    metrics=e.metrics or None, rule=rule, baseline=baseline,
                )  # fmt: skip
                for v in comparison.verdicts:
                    if v.ratio is None or v.baseline is None:
                        continue
                    bad = 1 - v.ratio if v.direction == "higher" else v.ratio - 1
                    caught = v.verdict == "regression"
                    if name == "accept-scaling" and v.metric == "conn_per_s":
                        (caught_drops if caught else missed_drops).append(bad)
                    if bad > 0.02 or v.verdict != "ok":
                        print(
                            f"      {name} {v.metric} {v.config}: x{v.ratio:.2f} -> "
                            f"{v.verdict}{'' if caught else ' (' + v.reason + ')'}"
                        )
    if caught_drops or missed_drops:
        limit = min((d for d in caught_drops if all(m < d for m in missed_drops)), default=None)
        worst_miss = max(missed_drops, default=0.0)
        line = (
            f"on this lab, {nights} clean nights gave {false_nights} false alarm(s); "
            + (
                f"a drop of {limit * 100:.0f}% or more in conn/s is caught"
                if limit is not None
                else "no injected drop was caught"
            )
            + (f" (largest drop missed: {worst_miss * 100:.0f}%)" if missed_drops else "")
        )
        print("\n" + line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nights", type=int, default=12)
    parser.add_argument("--inject", default="5,10,20,40", help="target drops in %%")
    parser.add_argument("--suite", default=str(PROJECT_DIR / DEFAULT_SUITE))
    parser.add_argument("--out", help="keep the store and the nights' log here")
    parser.add_argument("--judge", metavar="DIR", help="judge the nights kept in DIR again")
    args = parser.parse_args()
    args.inject = [int(x) for x in args.inject.split(",") if x]
    if args.judge:
        judge(Path(args.judge))
        return
    out = Path(args.out or tempfile.mkdtemp(prefix="labctl-noise-", dir="/var/tmp"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"store and log in {out}", flush=True)
    gather(args, out)
    judge(out)


if __name__ == "__main__":
    main()
