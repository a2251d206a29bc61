"""Benchmark: how fast labctl starts (issue 18), against fabric's own import as the peer.

Times whole processes, interleaved (A B C A B C ...): `labctl --version`, `labctl --list`,
`labctl play --help` and `python -c "import fabric"`, the least a labctl command that reaches
hosts must import. Prints each one's median and its ratio to the peer. Needs no lab, no root.
(A no-op play on hosts: benchmarks/play_noop.py; what each command imports:
tests/unit/test_startup.py.)

usage: python benchmarks/startup.py [--runs 20]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LABCTL = [sys.executable, "-m", "labctl"]  # the `labctl` command
PEER = "import fabric"
COMMANDS: dict[str, list[str]] = {
    "labctl --version": [*LABCTL, "--version"],
    "labctl --list": [*LABCTL, "--list"],
    "labctl play --help": [*LABCTL, "play", "--help"],
    f'python -c "{PEER}"': [sys.executable, "-c", PEER],
}


def timed(argv: list[str]) -> float:
    """Wall seconds of one run; a failure ends the benchmark with its reason."""
    started = time.perf_counter()
    proc = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"benchmark: {argv[1:]} exited {proc.returncode}: {proc.stderr.strip()}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    for argv in COMMANDS.values():  # warm the disk cache and the .pyc files once
        timed(argv)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.runs):
        for name, argv in COMMANDS.items():
            times[name].append(timed(argv))
    peer = statistics.median(times[f'python -c "{PEER}"'])
    print(f"labctl start-up, {args.runs} interleaved runs each (wall time, medians)")
    for name, runs in times.items():
        median = statistics.median(runs)
        print(
            f"  {name:24} median {median * 1000:6.1f} ms  (min {min(runs) * 1000:5.1f})"
            f"  {median / peer:4.2f}x the peer"
        )


if __name__ == "__main__":
    main()
