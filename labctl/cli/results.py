"""`labctl results.list/show/compare/export/accept/copy`: the stored runs."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

from invoke import Argument, Collection, Context, Exit, task

from labctl.cli.common import (
    STORE_HELP,
    console,
    errors_as_exit,
    json_dumps,
    open_store,
)
from labctl.cli.common import run_id as _run_id
from labctl.cli.experiment import show_stored_run
from labctl.cli.program import LabctlTask
from labctl.defaults import EXPORT_FORMATS, RULE_ALPHA, RULE_THRESHOLD
from labctl.errors import InputError, LabctlError
from labctl.paths import EXIT_FAILED, NIGHTLY_REGRESSION

# `results.compare` as a CI gate speaks nightly's language: 1 a regression and nothing else;
# anything that stops the comparison (bad input, a damaged store) is 2 (labctl/paths.py).
EXIT_REGRESSION = NIGHTLY_REGRESSION


@task(help={"store": STORE_HELP, "json": "print JSON"})
@errors_as_exit
def results_list(c: Context, store: str | None = None, json: bool = False) -> None:
    """List the stored runs, newest first."""
    from rich import box
    from rich.table import Table

    with open_store(store, create=False) as db:
        runs = db.runs()
    if json:
        print(json_dumps([dataclasses.asdict(r) for r in runs]))
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("run", "experiment", "lab", "started", "status", "trials", "valid"):
        table.add_column(col)
    for r in runs:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started))
        table.add_row(str(r.id), r.experiment, r.lab, when, r.status, str(r.trials), str(r.valid))
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
    c: Context, run: str, store: str | None = None, plot: str | None = None, json: bool = False
) -> None:
    """Show one stored run: summary per configuration, validity, plot."""
    from labctl.experiments import class_of_run

    run_id = _run_id(run)
    with open_store(store, create=False) as db:
        stored = db.run(run_id)
        cls = class_of_run(stored.experiment, stored.params)
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
        "threshold": f"a change counts beyond this fraction (default {RULE_THRESHOLD:g})",
        "alpha": f"significance level of the Mann-Whitney test (default {RULE_ALPHA:g})",
        "json": "print the verdicts as JSON (nothing else on standard output)",
        "junit": "also write the verdicts as JUnit XML here (a regression is a failure)",
    }
)
@errors_as_exit
def results_compare(
    c: Context,
    a: str,
    b: str,
    store: str | None = None,
    threshold: float = RULE_THRESHOLD,
    alpha: float = RULE_ALPHA,
    json: bool = False,
    junit: str = "",
) -> None:
    """Run B against run A, metric by metric: medians, ratio, p-value, verdict, the
    smallest change the two runs' trials can resolve, and whether their sizes can reach
    alpha at all. Exit 0 no regression, 1 a regression, 2 the comparison could not be made
    (a CI gate; docs/results.md)."""
    import sqlite3

    from labctl.experiments import spec_of_run
    from labctl.results.history import compare_pair
    from labctl.results.regress import Rule, overall
    from labctl.views.junit import junit_xml
    from labctl.views.verdicts import comparison_json, verdict_table

    rule = Rule(threshold=float(threshold), alpha=float(alpha))
    problem = rule.check()
    if problem:
        raise InputError(problem)
    try:
        with open_store(store, create=False) as db:
            run_a, run_b = _run_id(a), _run_id(b)
            stored = db.run(run_b)
            spec = spec_of_run(stored.experiment, stored.params)
            pair = compare_pair(db, run_a, run_b, spec, rule)
    except InputError:
        raise
    except (LabctlError, sqlite3.DatabaseError) as exc:  # exit 1 is a regression here
        raise Exit(f"labctl: {exc}", code=EXIT_FAILED) from exc
    if junit:
        _write(junit, junit_xml(f"run {pair.b.id} against run {pair.a.id}", pair.verdicts))
    if json:
        print(json_dumps(comparison_json(pair, rule)))
    else:
        con = console()
        if not pair.same_fingerprint:
            lines = "; ".join(pair.fingerprint_changes)
            con.print(f"[yellow]different fingerprints[/] ({lines}): compare with care")
        con.print(verdict_table(f"run {pair.b.id} against run {pair.a.id}", pair.verdicts))
        for change in pair.changes:
            con.print(f"  changed: {change}")
        if junit:
            con.print(f"junit: {junit}")
    if overall(pair.verdicts) == "regression":
        raise Exit(code=EXIT_REGRESSION)


def _write(path: str, text: str) -> None:
    try:
        Path(path).write_text(text)
    except OSError as exc:
        raise InputError(f"{path}: cannot write: {exc.strerror or exc}") from exc


@task(help={"store": STORE_HELP, "note": "why (kept with the run)"})
@errors_as_exit
def results_accept(c: Context, run: str, store: str | None = None, note: str = "") -> None:
    """Start a new history at RUN on purpose, after an intended change: later runs of its
    experiment (and suite entry) are judged against RUN and the runs after it only."""

    run_id = _run_id(run)
    with open_store(store, create=False) as db:
        stored = db.run(run_id)
        added = db.accept_run(run_id, note)
    entry = f" (suite entry {stored.label})" if stored.label else ""
    console().print(
        f"run {run_id}: {stored.experiment}{entry} history starts here"
        + ("" if added else " (already accepted)")
    )


class _RunOrChosen(Argument):
    """RUN, given on the command line, unless --runs or --since chose the runs. invoke has no
    optional positional argument (one with a default is a flag only), so this one counts as
    given once either flag is; given with them, the task refuses it."""

    chosen_by: tuple[Argument, ...] = ()

    @property
    def value(self) -> Any:
        if self._value is None and any(a.got_value for a in self.chosen_by):
            return ""
        return self._value if self._value is not None else self.default

    @value.setter
    def value(self, arg: str) -> None:
        self.set_value(arg, cast=True)


class _ExportTask(LabctlTask):
    """labctl's task (its flags, cli/program.py), with RUN optional beside --runs/--since."""

    def get_arguments(self, ignore_unknown_help: bool | None = None) -> list[Argument]:
        args = super().get_arguments(ignore_unknown_help=ignore_unknown_help)
        named = {a.attr_name or a.name: a for a in args}
        given = named["run"]
        run = _RunOrChosen(
            names=given.names,
            kind=given.kind,
            help=given.help,
            positional=True,
            attr_name=given.attr_name,
        )
        run.chosen_by = (named["runs"], named["since"])
        return [run if a is given else a for a in args]


@task(
    klass=_ExportTask,
    positional=["run"],
    help={
        "run": "one run id (see results.list); or choose with --runs or --since",
        "runs": "run ids: 3,5,8 or 3-8",
        "since": "every run started on or after this ISO date (2026-12-01, UTC)",
        "format": f"{', '.join(EXPORT_FORMATS)} (default: json for one RUN, else jsonl); csv and "
        "jsonl are one row per trial and metric, json one run's whole document",
        "store": STORE_HELP,
        "output": "write here instead of standard output",
    },
)
@errors_as_exit
def results_export(
    c: Context,
    run: str | None = None,
    runs: str = "",
    since: str = "",
    format: str = "",
    store: str | None = None,
    output: str = "",
) -> None:
    """Stored trials as a table, one row per trial and metric with a column per parameter,
    for pandas or a spreadsheet; or one run's whole JSON document (docs/results.md)."""
    from labctl.experiments import spec_of
    from labctl.results.export import export_run, export_runs, parse_run_list, runs_since

    chosen = [x for x in (run, runs, since) if x]
    if len(chosen) != 1:
        raise InputError("results.export: give one of RUN, --runs or --since")
    fmt = format or ("json" if run else "jsonl")
    if fmt not in EXPORT_FORMATS:
        raise InputError(f"unknown export format {fmt!r}: choose {', '.join(EXPORT_FORMATS)}")
    with open_store(store, create=False) as db:
        if run:
            text = export_run(db, _run_id(run), fmt, spec_of)
        elif fmt == "json":
            raise InputError("--format json is one run's document: give RUN, or use csv or jsonl")
        else:
            ids = parse_run_list(runs) if runs else runs_since(db, since)
            if since and not ids:
                raise InputError(f"{db.path}: no run started on or after {since}")
            text = export_runs(db, ids, fmt, spec_of=spec_of)
    if output:
        _write(output, text)
    else:
        sys.stdout.write(text)


@task(
    help={
        "from": "the store to copy from: a sqlite file or postgresql://... (required)",
        "to": "the store to copy into (required; created if it is a new sqlite file or an "
        "empty database)",
    }
)
@errors_as_exit
def results_copy(c: Context, from_: str = "", to: str = "") -> None:
    """Copy every finished run (trials, hosts, nightly runs) a store lacks into it; a run it
    already has is skipped, so copying again adds only what is new (docs/results.md)."""
    from labctl.results.copy import copy_store

    if not from_ or not to:
        raise InputError("results.copy: give both --from STORE and --to STORE")
    with open_store(from_, create=False) as source, open_store(to) as target:
        if source.path == target.path:
            raise InputError(f"results.copy: --from and --to are the same store ({source.path})")
        tty = sys.stderr.isatty()

        def progress(done: int, total: int) -> None:
            if tty and (done % 20 == 0 or done == total):
                print(f"\rlabctl: {done}/{total} runs", end="", file=sys.stderr, flush=True)

        outcome = copy_store(source, target, progress)
        if tty:
            print(file=sys.stderr)
    print(
        f"copied {outcome.runs} run(s) ({outcome.trials} trials) and {outcome.nightly} "
        f"nightly run(s) from {source.path} to {target.path}; {outcome.present} run(s) "
        f"were there already"
        + (f"; {outcome.running} still running, not copied" if outcome.running else "")
    )


def collection() -> Collection:
    results = Collection("results")
    results.add_task(results_list, name="list")
    results.add_task(results_show, name="show")
    results.add_task(results_compare, name="compare")
    results.add_task(results_export, name="export")
    results.add_task(results_accept, name="accept")
    results.add_task(results_copy, name="copy")
    return results
