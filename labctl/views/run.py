"""A stored run, as `labctl experiment` ends and `labctl results.show` shows it: the
summary tables of its experiment, the notes it adds, its main plot; or all of it as JSON."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from labctl.experiments.base import Experiment
from labctl.experiments.summary import ConfigSummary, summarize_run
from labctl.results.store import RunSummary, TrialRecord
from labctl.views.plots import plot_run
from labctl.views.summary import summary_tables


def run_json(
    run: RunSummary,
    rows: Sequence[ConfigSummary],
    trials: Sequence[TrialRecord],
    png: Path | None,
    notes: Sequence[str],
) -> str:
    """The run, its summary, its notes, every trial and the plot, as one JSON document."""
    summary = [
        {**dataclasses.asdict(r), "metric": r.metric.name, "unit": r.metric.unit} for r in rows
    ]
    doc = {
        "run": dataclasses.asdict(run),
        "summary": summary,
        "notes": list(notes),
        "trials": [dataclasses.asdict(t) for t in trials],
        "plot": str(png) if png else None,
    }
    return json.dumps(doc, indent=2)


def show_run(
    console: Console,
    experiment: Experiment,
    run: RunSummary,
    trials: Sequence[TrialRecord],
    hosts: Mapping[str, tuple[str, Mapping[str, Any]]],
    plot: Path | None,
    as_json: bool,
) -> None:
    spec = experiment.spec
    rows = summarize_run(spec, trials)
    title = f"run {run.id}: {run.experiment}"
    png = plot_run(spec, rows, plot, title) if plot else None
    notes = experiment.notes(hosts, trials)
    if as_json:
        print(run_json(run, rows, trials, png, notes))
        return
    for part in summary_tables(spec, rows, f"run {run.id} ({run.experiment}, {run.status})"):
        console.print(part)
    for note in notes:
        console.print(f"note: {escape(note)}")
    if png:
        console.print(f"plot: {png}", soft_wrap=True)
