"""Benchmark: the results store on its two backends, sqlite and PostgreSQL, with 10,000 stored
trials (issue 19).

For each backend, in the same run: the trial insert rate through labctl's store (one
transaction per trial with its metrics and output, as a sweep writes them) against the
database driver alone doing the same transactions (sqlite3, psycopg: the peer), and the time
of the reads the commands make: `results.list` (the newest 20 runs), a run's history (500
runs of one experiment), one run's trials, and `labctl results.list` as a whole process.
Medians of --repeat reads. The PostgreSQL server is a throwaway one of this benchmark's own
(Debian's package, as the tests start it), removed at the end.

usage: python benchmarks/store.py [--runs 100] [--trials 100] [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests/pgserver.py: the same throwaway server the tests use

from labctl.results.store import ResultsStore, TrialRecord  # noqa: E402
from tests.pgserver import PgServer, find_bindir  # noqa: E402

LABCTL = str(ROOT / ".venv" / "bin" / "labctl")


def trial(seq: int) -> TrialRecord:
    return TrialRecord(
        seq,
        "accept",
        False,
        {"mode": ("shared", "reuseport")[seq % 2], "workers": 1 + seq % 4},
        time.time(),
        1.0,
        seq % 10 != 0,
        "" if seq % 10 else "too few connections",
        {"conn_per_s": 1000.0 + seq, "p99_us": 50.0 + seq % 7},
        {"sysctls": {"net.core.somaxconn": "4096"}},
        (("srv1", "server", "stdout", '{"accepted": 123}'),),
    )


def fill(url: str, runs: int, trials: int) -> float:
    """Seconds to write runs x trials through ResultsStore (its schema made before)."""
    ResultsStore(url).close()
    with ResultsStore(url, lab="bench") as db:
        started = time.perf_counter()
        for _ in range(runs):
            run_id = db.start_run("reuseport", {"workers": [1, 2, 3, 4]}, "bench.yml", 1)
            db.add_hosts(run_id, {"srv1": ("server", {"kernel_release": "6.1.0-bench"})})
            for seq in range(1, trials + 1):
                db.add_trial(run_id, trial(seq))
            db.finish_run(run_id, "finished")
        return time.perf_counter() - started


def raw_sqlite(path: Path, runs: int, trials: int) -> float:
    import sqlite3

    ResultsStore(path).close()  # the same schema, made by labctl
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    started = time.perf_counter()
    for _ in range(runs):
        db.execute("BEGIN IMMEDIATE")
        run_id = db.execute(
            "INSERT INTO runs (experiment, started, status, labctl_version, params, inventory)"
            " VALUES ('reuseport', ?, 'running', 'x', '{}', 'bench.yml')",
            (time.time(),),
        ).lastrowid
        db.execute("COMMIT")
        for seq in range(1, trials + 1):
            t = trial(seq)
            db.execute("BEGIN IMMEDIATE")
            trial_id = db.execute(
                "INSERT INTO trials (run_id, seq, kind, warmup, params, started, duration,"
                " valid, reason, state) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (run_id, seq, t.kind, 0, json.dumps(t.params), t.started, t.duration,
                 int(t.valid), t.reason, json.dumps(t.state)),
            ).lastrowid  # fmt: skip
            db.executemany(
                "INSERT INTO metrics (trial_id, name, value) VALUES (?,?,?)",
                [(trial_id, k, v) for k, v in t.metrics.items()],
            )
            db.executemany(
                "INSERT INTO outputs (trial_id, host, role, stream, text) VALUES (?,?,?,?,?)",
                [(trial_id, *o) for o in t.outputs],
            )
            db.execute("COMMIT")
    elapsed = time.perf_counter() - started
    db.close()
    return elapsed


def raw_postgres(url: str, runs: int, trials: int) -> float:
    import psycopg

    ResultsStore(url).close()
    started = time.perf_counter()
    with psycopg.connect(url) as db:
        for _ in range(runs):
            with db.transaction():
                run_id = db.execute(
                    "INSERT INTO runs (experiment, started, status, labctl_version, params,"
                    " inventory) VALUES ('reuseport', %s, 'running', 'x', '{}', 'bench.yml')"
                    " RETURNING id",
                    (time.time(),),
                ).fetchone()[0]  # type: ignore[index]
            for seq in range(1, trials + 1):
                t = trial(seq)
                with db.transaction():
                    trial_id = db.execute(
                        "INSERT INTO trials (run_id, seq, kind, warmup, params, started,"
                        " duration, valid, reason, state) VALUES"
                        " (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) RETURNING id",
                        (run_id, seq, t.kind, 0, json.dumps(t.params), t.started, t.duration,
                         int(t.valid), t.reason, json.dumps(t.state)),
                    ).fetchone()[0]  # type: ignore[index]  # fmt: skip
                    with db.cursor() as cur:
                        cur.executemany(
                            "INSERT INTO metrics (trial_id, name, value) VALUES (%s,%s,%s)",
                            [(trial_id, k, v) for k, v in t.metrics.items()],
                        )
                        cur.executemany(
                            "INSERT INTO outputs (trial_id, host, role, stream, text)"
                            " VALUES (%s,%s,%s,%s,%s)",
                            [(trial_id, *o) for o in t.outputs],
                        )
    return time.perf_counter() - started


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def timed_reads(db: ResultsStore, repeat: int, trials: int) -> dict[str, float]:
    newest = db.runs(1)[0].id
    return {
        "results.list (20 runs)": median_ms(lambda: db.runs(20), repeat),
        "history (500 runs)": median_ms(lambda: db.history("reuseport", newest, 500), repeat),
        f"one run's trials ({trials})": median_ms(lambda: db.trials(newest), repeat),
    }


def process_ms(url: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(
            [LABCTL, "results.list", "--store", url, "--json"],
            check=True, capture_output=True, timeout=120, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


@contextmanager
def backends(tmp: Path) -> Iterator[dict[str, Callable[[str], str]]]:
    """backend -> a function making a fresh, empty store of that backend by name."""
    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("benchmark: PostgreSQL is not installed (scripts/setup.sh installs it)")
    server = PgServer.start(bindir)
    try:
        yield {
            "sqlite": lambda name: str(tmp / f"{name}.db"),
            "postgresql": lambda name: server.create_database(name),
        }
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--trials", type=int, default=100, help="per run")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    n = args.runs * args.trials
    rows = []
    with (
        tempfile.TemporaryDirectory(prefix="labctl-bench-store-") as tmp,
        backends(Path(tmp)) as make,
    ):
        for backend, new in make.items():
            url = new("labctl")
            print(f"{backend}: writing {n} trials through labctl ...", file=sys.stderr)
            labctl_s = fill(url, args.runs, args.trials)
            peer_url = new("peer")
            print(f"{backend}: the same through the driver alone ...", file=sys.stderr)
            if backend == "sqlite":
                peer_s = raw_sqlite(Path(peer_url), args.runs, args.trials)
            else:
                peer_s = raw_postgres(peer_url, args.runs, args.trials)
            with ResultsStore(url, create=False) as db:
                reads = timed_reads(db, args.repeat, args.trials)
            reads["`labctl results.list` process"] = process_ms(url, args.repeat)
            rows.append((backend, n / labctl_s, n / peer_s, reads))
    print(f"\nresults store with {n} trials ({args.runs} runs x {args.trials}), "
          f"one transaction per trial; reads: median of {args.repeat}")  # fmt: skip
    print(f"{'backend':<11} {'labctl trials/s':>16} {'driver alone':>13} {'ratio':>7}")
    for backend, rate, peer, _ in rows:
        print(f"{backend:<11} {rate:>16,.0f} {peer:>13,.0f} {rate / peer:>6.2f}x")
    print(f"\n{'read':<34}" + "".join(f"{b:>12}" for b, *_ in rows) + f"{'pg/sqlite':>11}")
    for name in rows[0][3]:
        values = [r[3][name] for r in rows]
        print(
            f"{name:<34}"
            + "".join(f"{v:>10.1f}ms" for v in values)
            + f"{values[1] / values[0]:>10.2f}x"
        )


if __name__ == "__main__":
    main()
