"""A sweep's progress in the terminal: one line per stored trial (the record), and below
them, on a terminal only, a live bar: trials done of all, time so far, the time left."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.console import Console, RenderableType
from rich.markup import escape
from rich.spinner import Spinner
from rich.text import Text

from labctl.experiments.base import Experiment
from labctl.views.live import LiveArea, clock


@dataclass
class SweepClock:
    """How far a sweep got, and when: its time left from the mean trial time so far (warm-ups
    count: they take as long as any trial)."""

    total: int
    started: float
    done: int = 0
    last: float = 0.0  # when the latest trial was stored

    def trial_done(self, now: float) -> None:
        self.done += 1
        self.last = now

    @property
    def mean(self) -> float | None:
        return (self.last - self.started) / self.done if self.done else None

    def eta(self, now: float) -> float | None:
        """Seconds left, counting down between trials; None before the first trial ends.
        A trial running past the mean leaves the trials not yet begun, never less."""
        mean = self.mean
        if mean is None:
            return None
        left = self.total - self.done
        if left <= 0:
            return 0.0
        return max(mean * (left - 1), mean * left - (now - self.last))


def params_text(params: Any) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items())


class TrialProgress:
    """i of n, the configuration, the trial's headline number, its verdict; and the live bar.

    `start(total)` and each stored trial (`__call__`) are what a sweep calls; `begin(spec)`,
    if called as a trial starts, puts its configuration on the bar. The bar goes when the last
    trial is stored, or at `close()` (a `with` block) whatever happened."""

    def __init__(
        self,
        console: Console,
        experiment: Experiment,
        quiet: bool,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console
        self.experiment = experiment
        self.quiet = quiet
        self.count = 0
        self.total = 0
        self._now = now
        self.clock = SweepClock(0, now())
        self.current = ""  # the running trial's configuration, when told
        self.latest = ""  # the latest stored trial's configuration
        self._spinner = Spinner("dots")
        self.live = LiveArea(console, self.render)

    def start(self, total: int) -> None:
        self.total = total
        self.clock = SweepClock(total, self._now())
        if not self.quiet and total > 0:
            self.live.start()

    def begin(self, spec: Any) -> None:
        self.current = params_text(spec.params) + (" (warm-up)" if spec.warmup else "")

    def __call__(self, spec: Any, record: Any) -> None:
        self.count += 1
        self.clock.trial_done(self._now())
        self.current = ""
        if self.quiet:
            return
        what = params_text(spec.params)
        self.latest = what
        shown = self.experiment.trial_text(record)
        verdict = "[green]valid[/]" if record.valid else f"[yellow]{escape(record.reason)}[/]"
        tag = " (warm-up)" if record.warmup else ""
        self.console.print(f"trial {self.count} of {self.total}: {what}{tag} {shown} {verdict}")
        if self.count >= self.total:
            self.live.stop()

    def status_text(self) -> str:
        """`3 of 12 · 0:25 · about 1:15 left · now mode=shared workers=1`."""
        now = self._now()
        eta = self.clock.eta(now)
        left = "time left unknown yet" if eta is None else f"about {clock(eta)} left"
        parts = [f"{self.count} of {self.total}", clock(now - self.clock.started), left]
        if self.current:
            parts.append(f"now {self.current}")
        elif self.latest:
            parts.append(f"after {self.latest}")
        return " · ".join(parts)

    def render(self) -> RenderableType:
        frame = self._spinner.render(self._now())
        width = 20
        filled = width * self.count // max(self.total, 1)
        line = Text.assemble(
            frame if isinstance(frame, Text) else "",
            " trials ",
            ("━" * filled, "bar.complete"),
            ("━" * (width - filled), "bar.back"),
            " ",
            self.status_text(),
        )
        line.no_wrap, line.overflow = True, "ellipsis"  # one line on a narrow terminal
        return line

    def close(self) -> None:
        self.live.stop()

    def __enter__(self) -> TrialProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SweepsProgress:
    """A nightly run's sweeps, one after the other: each new one's progress closes the one
    before (a sweep that failed half-way never reached its last trial)."""

    def __init__(self, console: Console, quiet: bool) -> None:
        self.console = console
        self.quiet = quiet
        self._current: TrialProgress | None = None

    def new(self, experiment: Experiment) -> TrialProgress:
        self.close()
        self._current = TrialProgress(self.console, experiment, self.quiet)
        return self._current

    def close(self) -> None:
        if self._current is not None:
            self._current.close()

    def __enter__(self) -> SweepsProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
