"""`labctl report RUN`: one stored run's HTML page."""

from __future__ import annotations

from invoke import Context, task

from labctl.cli.common import STORE_HELP, console, errors_as_exit, open_store, output_path
from labctl.cli.common import run_id as _run_id
from labctl.defaults import RULE_HISTORY, RULE_THRESHOLD
from labctl.errors import InputError


@task(
    help={
        "store": STORE_HELP,
        "html": "where to write the page (default: run-<RUN>.html in the output dir)",
        "history": f"compare with the last N comparable runs (default {RULE_HISTORY})",
        "threshold": f"a change counts beyond this fraction (default {RULE_THRESHOLD:g})",
    }
)
@errors_as_exit
def report(
    c: Context,
    run: str,
    store: str | None = None,
    html: str | None = None,
    history: int = RULE_HISTORY,
    threshold: float = RULE_THRESHOLD,
) -> None:
    """Write one run's HTML report (its raw trials beside it): headline, main plot, verdicts,
    trends against its history, provenance."""
    from labctl.experiments import spec_of_run
    from labctl.results.history import compare_run
    from labctl.results.regress import Rule, overall
    from labctl.results.stamps import run_stamps
    from labctl.views.html import NightlyReport, trend_runs, write_html
    from labctl.views.raw_trials import store_export
    from labctl.views.verdicts import verdict_table

    run_id = _run_id(run)
    with open_store(store, create=False) as db:
        stored = db.run(run_id)
        spec = spec_of_run(stored.experiment, stored.params)
        rule = Rule(history=int(history), threshold=float(threshold))
        problem = rule.check()
        if problem:
            raise InputError(problem)
        comparison = compare_run(db, run_id, spec, rule=rule)
        r = comparison.run
        status = "failed" if r.status != "finished" else overall(comparison.verdicts)
        page = NightlyReport(
            title=f"labctl run {r.id}: {r.experiment}",
            started=r.started,
            finished=r.finished,
            status=status,
            sections=[comparison],
            notes=[f"run {r.status}: {r.note}"] if r.note else [],
            stamps=run_stamps(db, trend_runs([comparison])),
        )
        path = write_html(
            page,
            output_path(html, f"run-{r.id}.html"),
            export=store_export(db),
        )
    con = console()
    con.print(verdict_table(f"run {r.id}: {comparison.history_note}", comparison.verdicts))
    con.print(f"report: {path}", soft_wrap=True)
