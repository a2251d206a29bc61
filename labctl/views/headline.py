"""The report's first line: what tonight's verdicts say, and only what they say.

"no baseline yet" when nothing was compared (a first run, a new history), "all within noise"
when every compared metric stayed inside the rule (docs/nightly.md), "N regressions"
otherwise, "N changes undecided at this n" when a change beyond the threshold met too few
trials for the test ever to reach alpha; each with the rows that decided it (metric,
configuration, median before and after, ratio, p). A run that failed says so first. The badge
takes its colour from the headline's state, so a page never shows a green OK for a run that
nothing was compared with, nor for one whose changes its trial counts could not judge.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from labctl.results.history import RunComparison
from labctl.results.regress import MetricVerdict
from labctl.results.store import RunSummary

COMPARED = ("ok", "regression", "improvement", "undecided")  # verdicts with a history behind them
SHOWN_WITHIN_NOISE = 3  # the largest changes shown under "all within noise"


@dataclass(frozen=True)
class DecidingRow:
    experiment: str
    run_id: int
    metric: str
    config: str
    before: float | None  # the median of the past runs' medians
    after: float | None  # tonight's median
    ratio: float | None
    p_value: float | None
    verdict: str


@dataclass(frozen=True)
class Headline:
    # no-baseline | ok | undecided | regression | failed | other: the badge's class and colour
    state: str
    badge: str  # the badge's word: "no baseline", "ok", "regression", "failed"
    text: str  # "no baseline yet", "all within noise", "2 regressions", "run failed; ..."
    detail: str  # one line under it: what was compared, or why nothing was
    rows: tuple[DecidingRow, ...]  # the numbers that decided it


def _row(run: RunSummary, v: MetricVerdict) -> DecidingRow:
    return DecidingRow(
        run.experiment,
        run.id,
        v.metric,
        v.config,
        v.center,
        v.current.median if v.current is not None else None,
        v.ratio,
        v.p_value,
        v.verdict,
    )


def _change(row: DecidingRow) -> float:
    """How far a ratio is from 1, either way (x0.5 as far as x2)."""
    r = row.ratio
    return abs(math.log(r)) if r is not None and r > 0 and math.isfinite(r) else 0.0


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def headline(status: str, sections: Sequence[RunComparison]) -> Headline:
    """`status` is the report's (ok, regression, failed, ...): a failed run is said first and
    any other word than these is shown as is, neutral; the rest comes from the verdicts."""
    pairs = [(s.run, v) for s in sections for v in s.verdicts]
    compared = [(r, v) for r, v in pairs if v.verdict in COMPARED]
    regressions = [_row(r, v) for r, v in compared if v.verdict == "regression"]
    improvements = [_row(r, v) for r, v in compared if v.verdict == "improvement"]
    uncompared = len(pairs) - len(compared)
    histories = sorted({run_id for s in sections for run_id in s.history})
    against = (
        f"{_plural(len(compared), 'median')} (metric × configuration) compared with "
        f"{_plural(len(histories), 'past run')} ({', '.join(map(str, histories))})"
        if compared
        else ""
    )
    if uncompared and compared:
        against += f"; {uncompared} without a baseline (new configurations or no data)"
    if status == "failed":
        text = "run failed" + (
            f"; {_plural(len(regressions), 'regression')}" if regressions else ""
        )
        why = (
            "; ".join(dict.fromkeys(s.history_note for s in sections)) if not compared else against
        )
        return Headline(
            "failed", "failed", text, why or "no experiment finished", tuple(regressions)
        )
    if status not in ("ok", "regression"):
        return Headline("other", status, status, against, tuple(regressions))
    if regressions:
        return Headline(
            "regression", "regression", _plural(len(regressions), "regression"), against,
            tuple(regressions),
        )  # fmt: skip
    if not compared:
        why = "; ".join(dict.fromkeys(s.history_note for s in sections))
        return Headline(
            "no-baseline",
            "no baseline",
            "no baseline yet",
            (why or "no experiment ran") + ". Tonight's numbers are shown, not judged.",
            (),
        )
    undecided = [_row(r, v) for r, v in compared if v.verdict == "undecided"]
    if undecided:  # beyond the threshold, but no test at these trial counts could tell
        text = f"{_plural(len(undecided), 'change')} undecided at this n"
        why = (
            against
            + "; too few trials for the test to ever reach alpha (the verdicts say how many)"
        )
        return Headline("undecided", "undecided", text, why, tuple(undecided))
    if improvements:
        text = f"no regression, {_plural(len(improvements), 'improvement')}"
        return Headline("ok", "ok", text, against, tuple(improvements))
    largest = sorted((_row(r, v) for r, v in compared), key=_change, reverse=True)
    return Headline(
        "ok", "ok", "all within noise", against + "; largest changes:",
        tuple(largest[:SHOWN_WITHIN_NOISE]),
    )  # fmt: skip
