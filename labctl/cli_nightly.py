"""Tasks for nightly lab runs and what they leave: nightly, report, results.compare/export.

`nightly` speaks cron's language: 0 all well, 1 a regression, 2 the run itself failed
(including a refused lock or bad input): a failed run never reads as a mere regression.
"""

from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path
from typing import Any

from invoke import Context, Exit, task
from rich import box
from rich.console import Group
from rich.markup import escape
from rich.table import Table

from labctl.clikit import PROJECT_DIR, console, errors_as_exit, inventory
from labctl.errors import InputError, LabctlError

DEFAULT_SUITE = "playbooks/nightly.yml"
DEFAULT_STORE = "results/labctl.db"


def _suite_path(path: str) -> str:
    given = Path(path)
    if given.is_file() or given.is_absolute():
        return str(given)
    in_project = PROJECT_DIR / given
    return str(in_project if in_project.is_file() else given)


def _median(summary: Any) -> str:
    if summary is None:
        return "-"
    m = summary.median
    return f"{m:,.0f}" if abs(m) >= 100 else f"{m:.3g}"


def _verdict_table(title: str, verdicts: Any) -> Group:
    """A title, then one small table per configuration: each fits in 80 columns."""
    colors = {"regression": "red", "improvement": "green", "ok": "green", "new": "cyan"}
    by_config: dict[str, list[Any]] = {}
    for v in verdicts:
        by_config.setdefault(v.config, []).append(v)
    parts: list[Any] = [f"[bold]{escape(title)}[/]"]
    for config, group in sorted(by_config.items()):
        table = Table(
            title=escape(config or group[0].experiment),
            title_justify="left",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
        )
        for col in ("metric", "tonight", "n", "history", "n ", "ratio", "p", "verdict"):
            left = col in ("metric", "verdict")
            table.add_column(col, justify="left" if left else "right", no_wrap=True)
        for v in sorted(group, key=lambda v: v.metric):
            color = colors.get(v.verdict, "yellow")
            table.add_row(
                v.metric,
                _median(v.current),
                str(v.current.n) if v.current else "-",
                _median(v.baseline),
                str(v.baseline.n) if v.baseline else "-",
                f"x{v.ratio:.2f}" if v.ratio is not None else "-",
                f"{v.p_value:.3g}" if v.p_value is not None else "-",
                f"[{color}]{v.verdict}[/]",
            )
        parts.append(table)
    return Group(*parts)


@task(
    help={
        "inventory": "inventory file (default: hosts/local.yml, the local lab)",
        "suite": f"suite file (default: {DEFAULT_SUITE})",
        "store": f"results database (default: {DEFAULT_STORE})",
        "html": "write the HTML report here (default: nightly-<id>.html beside the store)",
        "junit": "also write JUnit XML here (one testcase per metric; a regression fails)",
        "quiet": "no progress lines, only the verdicts",
    }
)
def nightly(
    c: Context,
    inventory: str | None = None,
    suite: str = DEFAULT_SUITE,
    store: str = DEFAULT_STORE,
    html: str | None = None,
    junit: str | None = None,
    quiet: bool = False,
) -> None:
    """Run a suite under the lab lock, compare with its history: exit 0, 1 regression, 2 failed."""
    from labctl.experiments.base import Interrupted

    try:
        code = _nightly(inventory, suite, store, html, junit, quiet)
    except Interrupted as exc:
        raise Exit(f"labctl: nightly interrupted by {exc}", code=2) from exc
    except LabctlError as exc:  # bad input, a refused lock, an unreachable lab: cron sees 2
        raise Exit(f"labctl: {exc}", code=2) from exc
    except Exception as exc:  # a bug, a full disk: still "the run failed", never "regression"
        traceback.print_exc()
        raise Exit(f"labctl: nightly failed: {type(exc).__name__}: {exc}", code=2) from exc
    if code:
        raise Exit(code=code)


def _nightly(
    inventory_path: str | None,
    suite_path: str,
    store_path: str,
    html: str | None,
    junit: str | None,
    quiet: bool,
) -> int:
    from labctl.cli import _TrialProgress
    from labctl.experiments import find
    from labctl.htmlreport import NightlyReport, write_html
    from labctl.junit import junit_xml
    from labctl.nightly import NightlyOutcome, run_nightly
    from labctl.results import ResultsStore
    from labctl.suite import load_suite

    suite = load_suite(_suite_path(suite_path))
    inv = inventory(inventory_path)
    con = console()

    def say(msg: str) -> None:
        if not quiet:
            con.print(msg)

    def finish(outcome: NightlyOutcome) -> None:
        """Reports are written before the lock goes: the next run sees them complete."""
        report = NightlyReport(
            title=f"labctl nightly {suite.name} #{outcome.nightly_id}",
            started=outcome.started,
            finished=time.time(),
            status="failed" if outcome.exit_code == 2 else outcome.status,
            sections=[comparison.section() for _, comparison in outcome.comparisons],
            notes=[*outcome.notes, *(f"{what}: {why}" for what, why in outcome.errors)],
        )
        default = Path(store_path).parent / f"nightly-{outcome.nightly_id}.html"
        outcome.html = write_html(report, Path(html) if html else default)
        if junit:
            path = Path(junit)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(junit_xml(suite.name, outcome.verdicts, outcome.errors))
            outcome.junit = path

    with ResultsStore(store_path) as db:
        outcome = run_nightly(
            suite,
            inv,
            db,
            project_dir=PROJECT_DIR,
            say=say,
            on_trial=lambda entry: _TrialProgress(con, find(entry.experiment)(), quiet=quiet),
            finish=finish,
        )
    for name, comparison in outcome.comparisons:
        con.print(f"{name} (run {comparison.run.id}): {comparison.history_note}")
        con.print(_verdict_table(f"{name}: tonight against its history", comparison.verdicts))
        for change in comparison.changes:
            con.print(f"  changed since: {change}")
    if quiet:  # said as they happened otherwise; a takeover or a crash is always worth a line
        for note in outcome.notes:
            con.print(note)
    for what, why in outcome.errors:
        print(f"labctl: {what}: {why}", file=sys.stderr)
    regressions = [v for v in outcome.verdicts if v.verdict == "regression"]
    for v in regressions:
        con.print(
            f"[red]REGRESSION[/] {v.experiment} {v.metric} {escape(f'[{v.config}]')}: {v.reason}"
        )
    verdict = {
        "ok": "no regression",
        "regression": f"{len(regressions)} regression(s)",
    }.get(outcome.status, f"the run {outcome.status}")
    con.print(
        f"nightly #{outcome.nightly_id}: {verdict}; report {outcome.html}"
        + (f", JUnit {outcome.junit}" if outcome.junit else "")
    )
    return outcome.exit_code


@task(
    help={
        "store": f"results database (default: {DEFAULT_STORE})",
        "html": "where to write the page (default: run-<RUN>.html beside the store)",
        "history": "compare with the last N comparable runs (default 5)",
        "threshold": "a change counts beyond this fraction (default 0.10)",
    }
)
@errors_as_exit
def report(
    c: Context,
    run: int,
    store: str = DEFAULT_STORE,
    html: str | None = None,
    history: int = 5,
    threshold: float = 0.10,
) -> None:
    """Write one run's HTML report: summary, plots, trends against its history, provenance."""
    from labctl.experiments import spec_of
    from labctl.history import compare_run
    from labctl.htmlreport import NightlyReport, write_html
    from labctl.regress import overall
    from labctl.results import ResultsStore

    with ResultsStore(store) as db:
        run_id = int(run)
        comparison = compare_run(
            db,
            run_id,
            spec_of(db.run(run_id).experiment),
            history=int(history),
            threshold=float(threshold),
        )
        r = comparison.run
        status = "failed" if r.status != "finished" else overall(comparison.verdicts)
        page = NightlyReport(
            title=f"labctl run {r.id}: {r.experiment}",
            started=r.started,
            finished=r.finished,
            status=status,
            sections=[comparison.section()],
            notes=[f"run {r.status}: {r.note}"] if r.note else [],
        )
        path = write_html(page, Path(html) if html else Path(store).parent / f"run-{r.id}.html")
    con = console()
    con.print(_verdict_table(f"run {r.id}: {comparison.history_note}", comparison.verdicts))
    con.print(f"report: {path}")


@task(
    help={
        "store": f"results database (default: {DEFAULT_STORE})",
        "threshold": "a change counts beyond this fraction (default 0.10)",
        "alpha": "significance level of the Mann-Whitney test (default 0.05)",
    }
)
@errors_as_exit
def results_compare(
    c: Context,
    a: int,
    b: int,
    store: str = DEFAULT_STORE,
    threshold: float = 0.10,
    alpha: float = 0.05,
) -> None:
    """Run B against run A, metric by metric: medians, ratio, p-value, verdict."""
    from labctl.experiments import spec_of
    from labctl.history import run_fingerprint
    from labctl.regress import compare, fingerprint_changes, provenance_changes
    from labctl.results import ResultsStore

    with ResultsStore(store) as db:
        run_a, run_b = db.run(int(a)), db.run(int(b))
        if run_a.experiment != run_b.experiment:
            raise InputError(
                f"run {a} is {run_a.experiment}, run {b} is {run_b.experiment}: not comparable"
            )
        spec = spec_of(run_b.experiment)
        fp_a, fp_b = run_fingerprint(db, run_a, spec), run_fingerprint(db, run_b, spec)
        verdicts = compare(
            run_b.experiment,
            db.trials(run_b.id),
            [(run_a.id, db.trials(run_a.id))],
            spec.watched if spec is not None else {},
            float(threshold),
            float(alpha),
            spec,
        )
        changes = provenance_changes(
            run_a.params, run_b.params, db.hosts(run_a.id), db.hosts(run_b.id)
        )
    con = console()
    if fp_a.digest != fp_b.digest:
        lines = "; ".join(fingerprint_changes(fp_a.parts, fp_b.parts))
        con.print(f"[yellow]different fingerprints[/] ({lines}): compare with care")
    con.print(_verdict_table(f"run {b} against run {a}", verdicts))
    for change in changes:
        con.print(f"  changed: {change}")


@task(
    help={
        "format": "json or csv",
        "store": f"results database (default: {DEFAULT_STORE})",
        "output": "write here instead of standard output",
    }
)
@errors_as_exit
def results_export(
    c: Context, run: int, format: str = "json", store: str = DEFAULT_STORE, output: str = ""
) -> None:
    """One run's trials and metrics as JSON or CSV."""
    from labctl.experiments import spec_of
    from labctl.export import export_run
    from labctl.results import ResultsStore

    with ResultsStore(store) as db:
        text = export_run(db, int(run), format, spec_of(db.run(int(run)).experiment))
    if output:
        Path(output).write_text(text)
    else:
        sys.stdout.write(text)
