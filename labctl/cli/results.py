"""`labctl results.list/show/compare/export/accept`: the stored runs."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

from invoke import Collection, Context, task
from rich import box
from rich.table import Table

from labctl.cli.common import console, errors_as_exit, json_dumps
from labctl.cli.common import run_id as _run_id
from labctl.cli.experiment import show_stored_run
from labctl.errors import InputError, LabctlError
from labctl.experiments import registry, spec_of
from labctl.paths import DEFAULT_STORE
from labctl.results.export import export_run
from labctl.results.history import compare_pair
from labctl.results.regress import Rule
from labctl.results.store import ResultsStore
from labctl.views.verdicts import verdict_table

STORE_HELP = f"results database (default: {DEFAULT_STORE})"


@task(help={"store": STORE_HELP, "json": "print JSON"})
@errors_as_exit
def results_list(c: Context, store: str = DEFAULT_STORE, json: bool = False) -> None:
    """List the stored runs, newest first."""
    with ResultsStore(store, create=False) as db:
        runs = db.runs()
    if json:
        print(json_dumps([dataclasses.asdict(r) for r in runs]))
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("run", "experiment", "started", "status", "trials", "valid"):
        table.add_column(col)
    for r in runs:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started))
        table.add_row(str(r.id), r.experiment, when, r.status, str(r.trials), str(r.valid))
    console().print(table)


@task(
    help={
        "run": "run id (see results.list)",
        "store": STORE_HELP,
        "plot": "write the plot here",
        "json": "print JSON",
    }
)
@errors_as_exit
def results_show(
    c: Context, run: str, store: str = DEFAULT_STORE, plot: str | None = None, json: bool = False
) -> None:
    """Show one stored run: summary per configuration, validity, plot."""
    run_id = _run_id(run)
    with ResultsStore(store, create=False) as db:
        stored = db.run(run_id)
        cls = registry().get(stored.experiment)
        if cls is None and stored.experiment.startswith("play:"):
            raise InputError(
                f"run {run_id} is a playbook run ({stored.experiment[5:]}): no trials to show; "
                f"`labctl restore {run_id}` puts back what it changed"
            )
        if cls is None:
            raise LabctlError(f"run {run_id}: experiment {stored.experiment!r} is not known here")
        show_stored_run(console(), cls(), db, run_id, plot, json)


@task(
    help={
        "store": STORE_HELP,
        "threshold": f"a change counts beyond this fraction (default {Rule().threshold:g})",
        "alpha": f"significance level of the Mann-Whitney test (default {Rule().alpha:g})",
    }
)
@errors_as_exit
def results_compare(
    c: Context,
    a: str,
    b: str,
    store: str = DEFAULT_STORE,
    threshold: float = Rule().threshold,
    alpha: float = Rule().alpha,
) -> None:
    """Run B against run A, metric by metric: medians, ratio, p-value, verdict, and the
    smallest change the two runs' trials can resolve."""
    rule = Rule(threshold=float(threshold), alpha=float(alpha))
    problem = rule.check()
    if problem:
        raise InputError(problem)
    with ResultsStore(store, create=False) as db:
        run_a, run_b = _run_id(a), _run_id(b)
        spec = spec_of(db.run(run_b).experiment)
        pair = compare_pair(db, run_a, run_b, spec, rule)
    con = console()
    if not pair.same_fingerprint:
        lines = "; ".join(pair.fingerprint_changes)
        con.print(f"[yellow]different fingerprints[/] ({lines}): compare with care")
    con.print(verdict_table(f"run {run_b} against run {run_a}", pair.verdicts))
    for change in pair.changes:
        con.print(f"  changed: {change}")


@task(help={"store": STORE_HELP, "note": "why (kept with the run)"})
@errors_as_exit
def results_accept(c: Context, run: str, store: str = DEFAULT_STORE, note: str = "") -> None:
    """Start a new history at RUN on purpose, after an intended change: later runs of its
    experiment (and suite entry) are judged against RUN and the runs after it only."""
    run_id = _run_id(run)
    with ResultsStore(store, create=False) as db:
        stored = db.run(run_id)
        added = db.accept_run(run_id, note)
    entry = f" (suite entry {stored.label})" if stored.label else ""
    console().print(
        f"run {run_id}: {stored.experiment}{entry} history starts here"
        + ("" if added else " (already accepted)")
    )


@task(
    help={
        "format": "json or csv",
        "store": STORE_HELP,
        "output": "write here instead of standard output",
    }
)
@errors_as_exit
def results_export(
    c: Context, run: str, format: str = "json", store: str = DEFAULT_STORE, output: str = ""
) -> None:
    """One run's trials and metrics as JSON or CSV."""
    run_id = _run_id(run)
    with ResultsStore(store, create=False) as db:
        text = export_run(db, run_id, format, spec_of(db.run(run_id).experiment))
    if output:
        try:
            Path(output).write_text(text)
        except OSError as exc:
            raise InputError(f"{output}: cannot write: {exc.strerror or exc}") from exc
    else:
        sys.stdout.write(text)


def collection() -> Collection:
    results = Collection("results")
    results.add_task(results_list, name="list")
    results.add_task(results_show, name="show")
    results.add_task(results_compare, name="compare")
    results.add_task(results_export, name="export")
    results.add_task(results_accept, name="accept")
    return results
