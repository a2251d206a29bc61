"""An experiment that exists only in the tests: it proves that adding an experiment is adding
one module (found through LABCTL_EXPERIMENT_MODULES), with its own flags, help, summary,
suite entries and history, and nothing else in labctl naming it.

Each trial counts the characters of a word on the server host, over SSH (`wc -c`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from labctl.experiments.base import (
    Experiment,
    RunContext,
    SweepOutcome,
    TrialSpec,
    option,
    plan_trials,
    run_params,
    run_sweep,
    server_host,
)
from labctl.metrics import ExperimentSpec, Metric, PlotSpec, TrialKind
from labctl.remote import Connections
from labctl.results.store import TrialRecord


@dataclass(frozen=True)
class EchoOptions:
    words: tuple[str, ...] = option(("hi", "hello"), "words to count, comma-separated")
    repeat: int = option(2, "repeats of every word")
    shout: bool = option(False, "upper-case the words first")

    def __post_init__(self) -> None:
        if not self.words or self.repeat < 1:
            raise ValueError("words: at least one; repeat: at least 1")


class Echo(Experiment):
    spec = ExperimentSpec(
        name="echo",
        identity=("words",),
        kinds=(
            TrialKind(
                "echo",
                config=("word",),
                metrics=(Metric("chars", "characters", "chars", "higher", watched=True),),
            ),
        ),
        plot=PlotSpec("echo", x="word", y=("chars",)),
    )
    help = "counts the characters of words on the server host (a test experiment)"
    Options = EchoOptions

    def run(self, ctx: RunContext, options: EchoOptions) -> SweepOutcome:
        host = server_host(ctx.inventory, ctx.server)
        with Connections([host]) as conns:
            run_id, seed = ctx.start_run(
                self.spec.name,
                run_params(options),
                {host.name: ("server", {"kernel_release": "?"})},
            )

            def trial(spec: TrialSpec) -> TrialRecord:
                word = str(spec.params["word"])
                word = word.upper() if options.shout else word
                started = time.time()
                res = conns[host.name].run(["sh", "-c", 'printf %s "$1" | wc -c', "echo", word])
                params: dict[str, Any] = {"word": str(spec.params["word"])}
                return TrialRecord(
                    spec.seq, "echo", spec.warmup, params, started, time.time() - started,
                    res.ok, "" if res.ok else res.stderr.strip(),
                    {"chars": float(res.stdout.strip() or 0)},
                )  # fmt: skip

            plan = plan_trials({"word": options.words}, options.repeat, seed, warmup=False)
            return run_sweep(ctx.store, run_id, plan, trial, lambda: None, on_trial=ctx.on_trial)
