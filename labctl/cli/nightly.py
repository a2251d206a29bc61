"""`labctl nightly`: a suite run under the lab lock, judged against its history.

It speaks cron's language (labctl/paths.py): 0 all well, 1 a regression, 2 the run itself
failed (including a refused lock or bad input): a failed run never reads as a regression.
"""

from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path

from invoke import Context, Exit, task

from labctl.cli.common import (
    INVENTORY_HELP,
    STORE_HELP,
    console,
    inventory,
    open_store,
    output_path,
    project_file,
    run_id,
)
from labctl.errors import LabctlError
from labctl.paths import DEFAULT_SUITE, NIGHTLY_FAILED, PROJECT_DIR


@task(
    help={
        "inventory": INVENTORY_HELP,
        "suite": f"suite file (default: {DEFAULT_SUITE})",
        "store": STORE_HELP,
        "html": "write the HTML report here (default: nightly-<id>.html in the output dir)",
        "junit": "also write JUnit XML here (one testcase per metric; a regression fails)",
        "quiet": "no progress lines, only the verdicts",
        "baseline": "judge against these runs (RUN[,RUN]: each pins its suite entry) and the "
        "comparable runs before them, not the latest",
    }
)
def nightly(
    c: Context,
    inventory: str | None = None,
    suite: str = DEFAULT_SUITE,
    store: str | None = None,
    html: str | None = None,
    junit: str | None = None,
    quiet: bool = False,
    baseline: str = "",
) -> None:
    """Run a suite under the lab lock, compare with its history: exit 0, 1 regression, 2 failed."""
    from labctl.experiments.base import Interrupted

    try:
        code = _nightly(inventory, suite, store, html, junit, quiet, baseline)
    except Interrupted as exc:
        raise Exit(f"labctl: nightly interrupted by {exc}", code=NIGHTLY_FAILED) from exc
    except LabctlError as exc:  # bad input, a refused lock, an unreachable lab: cron sees 2
        raise Exit(f"labctl: {exc}", code=NIGHTLY_FAILED) from exc
    except Exception as exc:  # a bug, a full disk: still "the run failed", never "regression"
        traceback.print_exc()
        msg = f"labctl: nightly failed: {type(exc).__name__}: {exc}"
        raise Exit(msg, code=NIGHTLY_FAILED) from exc
    if code:
        raise Exit(code=code)


def _nightly(
    inventory_path: str | None,
    suite_path: str,
    store: str | None,
    html: str | None,
    junit: str | None,
    quiet: bool,
    baseline: str,
) -> int:
    from labctl.nightly.run import NightlyOutcome, pinned_baselines, run_nightly
    from labctl.nightly.suite import load_suite
    from labctl.results.stamps import run_stamps
    from labctl.views.html import NightlyReport, trend_runs, write_html
    from labctl.views.junit import junit_xml
    from labctl.views.progress import SweepsProgress
    from labctl.views.raw_trials import store_export
    from labctl.views.verdicts import regression_line, verdict_table

    suite = load_suite(project_file(suite_path))
    pinned = [run_id(x) for x in str(baseline).split(",") if x.strip()]
    inv = inventory(inventory_path)
    con = console()

    def say(msg: str) -> None:
        if not quiet:
            con.print(msg)

    def finish(outcome: NightlyOutcome) -> None:
        """Reports are written before the lock goes: the next run sees them complete. Called
        inside run_nightly, so `db` (below) is open: it gives the trends' kernels and labctl
        versions and the raw trials written beside the page."""
        sections = [comparison for _, comparison in outcome.comparisons]
        report = NightlyReport(
            title=f"labctl nightly {suite.name} #{outcome.nightly_id}",
            started=outcome.started,
            finished=time.time(),
            status="failed" if outcome.exit_code == NIGHTLY_FAILED else outcome.status,
            sections=sections,
            notes=[*outcome.notes, *(f"{what}: {why}" for what, why in outcome.errors)],
            stamps=run_stamps(db, trend_runs(sections)),
        )
        where = output_path(html, f"nightly-{outcome.nightly_id}.html")
        outcome.html = write_html(report, where, export=store_export(db))
        if junit:
            path = Path(junit)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(junit_xml(suite.name, outcome.verdicts, outcome.errors))
            outcome.junit = path

    sweeps = SweepsProgress(con, quiet)
    with open_store(store) as db, sweeps:
        outcome = run_nightly(
            suite,
            inv,
            db,
            project_dir=PROJECT_DIR,
            baselines=pinned_baselines(suite, db, pinned),
            say=say,
            on_trial=lambda entry: sweeps.new(entry.experiment_type()()),
            finish=finish,
        )
    for name, comparison in outcome.comparisons:
        con.print(f"{name} (run {comparison.run.id}): {comparison.history_note}")
        con.print(verdict_table(f"{name}: tonight against its history", comparison.verdicts))
        for change in comparison.changes:
            con.print(f"  changed since: {change}")
    if quiet:  # said as they happened otherwise; a takeover or a crash is always worth a line
        for note in outcome.notes:
            con.print(note)
    for what, why in outcome.errors:
        print(f"labctl: {what}: {why}", file=sys.stderr)
    regressions = [v for v in outcome.verdicts if v.verdict == "regression"]
    for v in regressions:
        con.print(regression_line(v))
    verdict = {
        "ok": "no regression",
        "regression": f"{len(regressions)} regression(s)",
    }.get(outcome.status, f"the run {outcome.status}")
    con.print(
        f"nightly #{outcome.nightly_id}: {verdict}; report {outcome.html}"
        + (f", JUnit {outcome.junit}" if outcome.junit else "")
    )
    return outcome.exit_code
