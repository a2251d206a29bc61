"""A labctl writing one run into a results store, as a separate process: the store tests start
two at once, or kill one midway. Prints `run ID` once the run exists and `trial SEQ` after
each trial is committed.

    python -m tests.store_writer STORE TRIALS [--delay S] [--lab NAME]
"""

from __future__ import annotations

import argparse
import time

from labctl.results.store import ResultsStore, TrialRecord


def trial(seq: int, lab: str) -> TrialRecord:
    return TrialRecord(
        seq,
        "accept",
        seq <= 2,
        {"mode": "reuseport" if seq % 2 else "shared", "workers": 1 + seq % 4},
        time.time(),
        0.01,
        seq % 10 != 0,
        "" if seq % 10 else "too few connections",
        {"conn_per_s": 1000.0 + seq, "p99_us": 50.0 + seq % 7},
        {"writer": lab},
        (("srv1", "server", "stdout", f"{lab} trial {seq}"),),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("trials", type=int)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--lab", default="lab-a")
    args = parser.parse_args()
    with ResultsStore(args.store, lab=args.lab) as db:
        run_id = db.start_run("reuseport", {"workers": [1, 2, 3, 4]}, f"{args.lab}.yml", 1)
        db.add_hosts(run_id, {"srv1": ("server", {"kernel_release": "6.1.0-test"})})
        print(f"run {run_id}", flush=True)
        for seq in range(1, args.trials + 1):
            db.add_trial(run_id, trial(seq, args.lab))
            print(f"trial {seq}", flush=True)
            if args.delay:
                time.sleep(args.delay)
        db.finish_run(run_id, "finished")
    print("done", flush=True)


if __name__ == "__main__":
    main()
