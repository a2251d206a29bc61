"""A sweep's progress in the terminal: one line per stored trial."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape

from labctl.experiments.base import Experiment


class TrialProgress:
    """i of n, the configuration, the trial's headline number, its verdict."""

    def __init__(self, console: Console, experiment: Experiment, quiet: bool) -> None:
        self.console = console
        self.experiment = experiment
        self.quiet = quiet
        self.count = 0
        self.total = 0

    def start(self, total: int) -> None:
        self.total = total

    def __call__(self, spec: Any, record: Any) -> None:
        self.count += 1
        if self.quiet:
            return
        what = " ".join(f"{k}={v}" for k, v in spec.params.items())
        shown = self.experiment.trial_text(record)
        verdict = "[green]valid[/]" if record.valid else f"[yellow]{escape(record.reason)}[/]"
        tag = " (warm-up)" if record.warmup else ""
        self.console.print(f"trial {self.count} of {self.total}: {what}{tag} {shown} {verdict}")
