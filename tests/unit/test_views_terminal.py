"""The terminal's verdict tables and run summaries: 80 columns, and what a run can resolve."""

from __future__ import annotations

import io

from rich.console import Console

from labctl.experiments.reuseport import Reuseport
from labctl.experiments.summary import summarize_run
from labctl.results.ratios import with_ratios
from labctl.results.regress import Rule, compare
from labctl.results.store import TrialRecord
from labctl.views.summary import summary_tables
from labctl.views.verdicts import verdict_table

SPEC = Reuseport.spec


def rounds(rates: dict[str, float], n: int, spread: float = 0.02) -> list[TrialRecord]:
    out: list[TrialRecord] = []
    for i in range(n):
        for mode, rate in rates.items():
            value = rate * (1 + spread * ((i * 7 + len(out)) % 5 - 2) / 2)
            out.append(
                TrialRecord(
                    len(out) + 1, "accept", False, {"mode": mode, "workers": 2}, 1.0, 2.0,
                    True, "", {"conn_per_s": value, "latency_p99_us": 800.0},
                )
            )  # fmt: skip
    return out


def render(*things: object) -> str:
    out = io.StringIO()
    console = Console(file=out, width=80, color_system=None)
    for thing in things:
        console.print(thing)
    return out.getvalue()


def history(factors: list[float]) -> list[tuple[int, list[TrialRecord]]]:
    return [
        (run, with_ratios(rounds({"shared": 40_000.0 * f, "reuseport": 78_000.0 * f}, 6), SPEC))
        for run, f in zip(range(len(factors), 0, -1), factors, strict=True)
    ]


def test_the_verdict_table_fits_80_columns_and_names_every_number() -> None:
    tonight = with_ratios(rounds({"shared": 40_000.0, "reuseport": 50_000.0}, 6), SPEC)
    past = history([1.0, 1.04, 0.97, 1.02, 0.99, 1.03, 0.98, 1.01])
    verdicts = compare("reuseport", tonight, past, SPEC.watched, Rule(), SPEC)
    text = render(verdict_table("tonight against its history", verdicts))
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 80
    assert "…" not in text  # nothing cut: the metric's name folds instead
    row = next(line for line in text.splitlines() if line.lstrip().startswith("conn_per_s "))
    assert "49,750" in row and "x0.64" in row and "regression" in row
    assert "/4.3" in row and "<0.001" in row  # z against its limit, Mann-Whitney's p
    # three past runs: the t bound is wide, the same drop is within the noise, and it says so
    verdicts = compare("reuseport", tonight, history([1.0, 1.04, 0.97]), SPEC.watched, Rule(), SPEC)
    text = render(verdict_table("tonight against its history", verdicts))
    row = next(line for line in text.splitlines() if line.lstrip().startswith("conn_per_s "))
    assert "/16.3" in row and row.rstrip().endswith("ok")
    assert "! conn_per_s: resolves only changes of 66% or more (run-to-run noise)" in text


def test_a_summary_says_what_a_run_like_it_resolves_and_when_it_never_can() -> None:
    six = summarize_run(SPEC, rounds({"shared": 40_000.0, "reuseport": 78_000.0}, 6))
    text = " ".join(render(*summary_tables(SPEC, six, "run 1")).split())
    assert "conn_per_s: a run like this one tells changes of" in text
    three = summarize_run(SPEC, rounds({"shared": 40_000.0, "reuseport": 78_000.0}, 3))
    text = " ".join(render(*summary_tables(SPEC, three, "run 2")).split())
    assert "3 valid trials against another run's 3 can never reach p < 0.05" in text
    assert "--repeat 4" in text  # 2/C(8,4) = 0.029 < 0.05 (results/power.py)
