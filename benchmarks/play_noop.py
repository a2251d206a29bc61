"""Benchmark: a no-op `labctl play` of a 5-task playbook against a hand-written fabric script.

On a 16-host namespace lab, the playbook is applied once, then both are timed as whole
processes, interleaved (A B A B ...), doing the same checks on the same hosts and changing
nothing. Prints each one's median and the ratio. Goal: labctl <= 1.3x the hand-written script.
Needs root. Makes its own lab (own names and 10.x subnet) and always removes it.

usage: python benchmarks/play_noop.py [--hosts 16] [--runs 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from benchlib import LABCTL, bench_lab, timed

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=16)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with bench_lab("bp", 211, args.hosts) as (spec, inventory):
        labctl = [
            sys.executable,
            *LABCTL,
            "play",
            str(HERE / "data" / "noop.yml"),
            "-i",
            str(inventory),
            "--json",
        ]
        loop = [
            sys.executable,
            str(HERE / "handwritten_noop.py"),
            str(spec.key_file),
            str(spec.known_hosts_file),
            *(f"{h.name}={h.address}" for h in spec.hosts),
        ]
        _, out = timed(labctl)  # apply once
        _, out = timed(labctl)
        recap = json.loads(out)["recap"]
        assert len(recap) == args.hosts, recap
        assert all(r["changed"] == 0 and r["ok"] == 5 for r in recap.values()), recap
        timed(loop)  # fails unless it too sees nothing to change
        a_times, b_times = [], []
        for _ in range(args.runs):
            a_times.append(timed(labctl)[0])
            b_times.append(timed(loop)[0])

    a, b = statistics.median(a_times), statistics.median(b_times)
    pair = statistics.median(x / y for x, y in zip(a_times, b_times, strict=True))
    print(f"no-op play of 5 tasks on {args.hosts} namespace hosts, {args.runs} interleaved runs")
    print(f"  labctl play --json       median {a * 1000:7.1f} ms  (min {min(a_times) * 1000:.1f})")
    print(f"  hand-written fabric      median {b * 1000:7.1f} ms  (min {min(b_times) * 1000:.1f})")
    print(
        f"  ratio labctl/hand-written: {a / b:.2f}x (median of pairwise ratios {pair:.2f}x; "
        f"goal <= 1.30x)"
    )


if __name__ == "__main__":
    main()
