"""Benchmark: `labctl facts` against a hand-written fabric loop, on a 16-host namespace lab.

Both run as whole processes, interleaved (A B A B ...), on the same hosts with the same
commands; prints each one's median wall time and the ratio. Goal: labctl <= 1.3x the loop.
Needs root. Makes its own lab (own names and 10.x subnet) and always removes it.

usage: python benchmarks/facts.py [--hosts 16] [--runs 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from benchlib import LABCTL, bench_lab, timed

from labctl.facts.host import facts_script

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=16)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with bench_lab("bf", 210, args.hosts) as (spec, inventory):
        script = inventory.parent / "facts.sh"
        script.write_text(facts_script())
        labctl = [sys.executable, *LABCTL, "facts", "-i", str(inventory), "--json"]
        loop = [
            sys.executable,
            str(HERE / "handwritten_facts.py"),
            str(script),
            str(spec.key_file),
            str(spec.known_hosts_file),
            *(h.address for h in spec.hosts),
        ]
        # Check once that both really reach every host before timing anything.
        _, out = timed(labctl)
        doc = json.loads(out)["hosts"]
        assert len(doc) == args.hosts and all("hostname" in v for v in doc.values()), doc
        _, out = timed(loop)
        assert len(json.loads(out)) == args.hosts
        a_times, b_times = [], []
        for _ in range(args.runs):
            a_times.append(timed(labctl)[0])
            b_times.append(timed(loop)[0])

    a, b = statistics.median(a_times), statistics.median(b_times)
    pair = statistics.median(x / y for x, y in zip(a_times, b_times, strict=True))
    print(f"facts on {args.hosts} namespace hosts over SSH, {args.runs} interleaved runs each")
    print(f"  labctl facts --json      median {a * 1000:7.1f} ms  (min {min(a_times) * 1000:.1f})")
    print(f"  hand-written fabric loop median {b * 1000:7.1f} ms  (min {min(b_times) * 1000:.1f})")
    print(
        f"  ratio labctl/loop: {a / b:.2f}x (median of pairwise ratios {pair:.2f}x; goal <= 1.30x)"
    )


if __name__ == "__main__":
    main()
