"""What every experiment shares: a parameter matrix, interleaved repeats, a stored sweep.

Trials are interleaved and repeated in shuffled order (DESIGN 5: 3 repeats cannot resolve
effects under ~20% here; slow drift of the machine must not line up with one configuration),
after one warm-up trial that is stored but never counted. Each trial is committed as it
ends; SIGINT or SIGTERM stops the sweep, cleans the hosts, and keeps what was measured.
"""

from __future__ import annotations

import itertools
import random
import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from labctl.errors import LabctlError
from labctl.results import ResultsStore, TrialRecord

# The experiments' own pidfiles and outputs, apart from the `process` action's default
# run_dir: a run that finds something here under the lab lock knows a dead run left it.
RUN_DIR = "/root/labctl/run/experiments"


class ExperimentError(LabctlError):
    """The experiment cannot go on (a busy port, a workload that does not start, ...)."""


def experiment_hosts(inventory: Any, server: str | None, clients: str) -> list[Any]:
    """The hosts an experiment runs on: its server (default: the first of `servers`) and the
    hosts of the `clients` pattern. What a run must lock."""
    servers = [inventory.host(server)] if server else list(inventory.select("servers"))[:1]
    return list({h.name: h for h in [*servers, *inventory.select(clients)]}.values())


@dataclass(frozen=True)
class TrialSpec:
    seq: int
    params: Mapping[str, Any]
    warmup: bool = False


def plan_trials(
    matrix: Mapping[str, Sequence[Any]], repeat: int, seed: int, warmup: bool = True
) -> list[TrialSpec]:
    """Every combination, `repeat` times, each round in its own shuffled order."""
    if repeat < 1:
        raise ValueError("repeat must be at least 1")
    keys = list(matrix)
    combos = [
        dict(zip(keys, values, strict=True))
        for values in itertools.product(*(matrix[k] for k in keys))
    ]
    rng = random.Random(seed)
    trials: list[TrialSpec] = []
    if warmup and combos:
        trials.append(TrialSpec(0, combos[0], warmup=True))
    for _ in range(repeat):
        round_ = combos[:]
        rng.shuffle(round_)
        trials.extend(TrialSpec(len(trials), p) for p in round_)
    return trials


class SweepProgress(Protocol):
    """Told how many trials there are, then of each trial as it is stored."""

    def start(self, total: int) -> None: ...

    def __call__(self, spec: TrialSpec, record: TrialRecord) -> None: ...


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived during a sweep."""


@contextmanager
def interrupts_as_exception() -> Iterator[None]:
    """SIGTERM (cron's kill, a CI timeout) ends the sweep like Ctrl-C: cleanly."""

    def handler(signum: int, frame: object) -> None:
        raise Interrupted(signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@dataclass
class SweepOutcome:
    run_id: int
    status: str  # finished, interrupted, failed
    trials: list[TrialRecord]
    note: str = ""


def run_sweep(
    store: ResultsStore,
    run_id: int,
    trials: Sequence[TrialSpec],
    run_trial: Callable[[TrialSpec], TrialRecord],
    cleanup: Callable[[], None],
    on_trial: SweepProgress | None = None,
) -> SweepOutcome:
    """Run the trials in order, storing each; always clean the hosts at the end."""
    done: list[TrialRecord] = []
    status, note = "finished", ""
    if on_trial:
        on_trial.start(len(trials))
    try:
        with interrupts_as_exception():
            for spec in trials:
                record = run_trial(spec)
                store.add_trial(run_id, record)
                done.append(record)
                if on_trial:
                    on_trial(spec, record)
    except Interrupted as exc:
        status, note = "interrupted", f"stopped by {exc}"
    except LabctlError as exc:
        status, note = "failed", str(exc)
    except BaseException as exc:  # a bug: still clean the hosts and say the run failed
        status, note = "failed", f"{type(exc).__name__}: {exc}"
        raise
    finally:
        # Whatever happened, no server or client is left running on any host.
        started = time.monotonic()
        with interrupts_as_exception():
            try:
                cleanup()
            except Interrupted:
                note += f"; cleanup interrupted after {time.monotonic() - started:.1f} s"
        store.finish_run(run_id, status, note)
    return SweepOutcome(run_id, status, done, note)
