"""The nightly report as one self-contained HTML page, read over coffee or attached to a ticket.

One file, nothing fetched: plots are matplotlib PNGs embedded as base64 data URIs, the CSS and
the one small script are inline, and a Content-Security-Policy with their hashes forbids every
other source, so a page copied off the lab machine looks the same anywhere and a stray
reference to the network would show up as a broken element, not as a silent fetch. Every
string from the lab (parameters, reasons, facts) goes through Jinja2's autoescape. What the
page shows, top-down (headline, main plot, verdicts, trends, raw trials beside it):
docs/report.md.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import math
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import markupsafe

from labctl.experiments.summary import summarize_run
from labctl.metrics import ExperimentSpec
from labctl.paths import TEMPLATES
from labctl.results.history import RunComparison
from labctl.results.regress import MetricVerdict, config_key, values_by_config
from labctl.results.stamps import RunStamp
from labctl.results.store import TrialRecord
from labctl.stats import Summary
from labctl.views.headline import DecidingRow, headline
from labctl.views.plots import PlotGroup, finite, main_plot, strip_plot
from labctl.views.raw_trials import Export, RawLink, write_atomically, write_raw_trials
from labctl.views.trends import MIN_POINTS, trend_charts, trend_plot
from labctl.views.verdicts import resolves

# The colours a reader (and the browser test) looks for: the badge, and the plots' series.
# "no-baseline" is neither good nor bad news: nothing was compared (labctl.views.headline).
STATUS_COLORS: Mapping[str, str] = {
    "ok": "#2e7d32",
    "regression": "#c62828",
    "failed": "#757575",
    "no-baseline": "#1565c0",
    "undecided": "#e65100",
}


@dataclass(frozen=True)
class NightlyReport:
    title: str
    started: float
    finished: float | None
    status: str  # ok | regression | failed
    sections: Sequence[RunComparison]  # one per experiment run
    notes: Sequence[str] = ()  # lock taken over, provisioning summary, errors
    # run id -> its kernel and labctl version, for every run on a trend (labctl.results.stamps)
    stamps: Mapping[int, RunStamp] = field(default_factory=dict)


def write_html(report: NightlyReport, path: Path, export: Export | None = None) -> Path:
    """Render and write atomically: a reader (or a web server) never sees half a page. With
    `export`, each section's raw trials are written beside the page first, and linked."""
    links = (
        write_raw_trials(path.parent, [s.run.id for s in report.sections], export)
        if export is not None
        else {}
    )
    return write_atomically(path, render_html(report, links))


def trend_runs(sections: Sequence[RunComparison]) -> list[int]:
    """Every run a trend plot shows: the ones whose kernel and labctl version it marks."""
    return list(dict.fromkeys(p.run_id for s in sections for pts in s.trends.values() for p in pts))


def render_html(report: NightlyReport, raw: Mapping[int, Sequence[RawLink]] | None = None) -> str:
    """The page; `raw`: each run's raw trial files, already written beside it."""
    started = report.started
    top = headline(report.status, report.sections)
    several = len(report.sections) > 1
    sections = [
        _section_view(s, report.stamps, (raw or {}).get(s.run.id, ())) for s in report.sections
    ]
    page = _page()
    return page.template.render(
        title=report.title,
        status=top.badge,
        badge_class=f"badge-{top.state}" if top.state in STATUS_COLORS else "badge-other",
        headline=top,
        deciding=[_deciding_row(r, several) for r in top.rows],
        min_points=MIN_POINTS,
        started=_when(started),
        finished=_when(report.finished) if report.finished is not None else "still running",
        took=_took(report.finished - started) if report.finished is not None else "",
        notes=list(report.notes),
        sections=sections,
        style=markupsafe.Markup(page.style),
        script=markupsafe.Markup(page.script),
        csp=page.csp,
    )


# ---------------------------------------------------------------------------- views


def _section_view(
    s: RunComparison, stamps: Mapping[int, RunStamp], raw: Sequence[RawLink]
) -> dict[str, Any]:
    by_config = _values_by_config(s.judged, s.verdicts, s.spec)
    common, short = _short_configs([v.config for v in s.verdicts] + [c for _, c in s.trends])
    strip_plots = []
    for metric in dict.fromkeys(v.metric for v in s.verdicts):
        rows = [v for v in s.verdicts if v.metric == metric]
        groups = [
            PlotGroup(
                short[v.config],
                by_config.get((metric, v.config), []),
                _median(v.baseline),
                v.verdict,
            )
            for v in rows
        ]
        drawn = any(g.values or g.baseline is not None for g in groups)
        strip_plots.append(
            {
                "metric": metric,
                "src": strip_plot(metric, rows[0].direction, groups, common) if drawn else "",
            }
        )
    charts = trend_charts(s.trends, s.verdicts, stamps, short)
    trend_plots = [
        {
            "metric": c.metric,
            "src": trend_plot(c, _unit(s.spec, c.metric), s.run.id),
            "lines": len(c.lines),
            "runs": len({p.run_id for line in c.lines for p in line.points}),
            "marks": [m.label for m in c.marks],
            "short": [short.get(x, x) for x in c.short],
        }
        for c in charts
    ]
    counts = [(k, sum(1 for v in s.verdicts if v.verdict == k)) for k in _VERDICT_ORDER]
    return {
        "anchor": f"run-{s.run.id}",
        "run": s.run,
        "run_started": _when(s.run.started),
        "run_finished": _when(s.run.finished) if s.run.finished is not None else "not finished",
        "label": s.run.label or "",
        "note": s.run.note,
        "params": [(k, _show(v)) for k, v in s.run.params.items()],
        "history_note": s.history_note,
        "verdict_counts": [(k, n) for k, n in counts if n],
        "verdicts": [_verdict_row(v) for v in s.verdicts],
        "main_plot": _main_plot(s),
        "strip_plots": strip_plots,
        "trend_plots": trend_plots,
        "trend_wait": _trend_wait(s) if s.trends and not trend_plots else "",
        "trend_short": [
            f"{metric} · {short.get(config, config)}"
            for metric, config in s.trends
            if metric not in {c.metric for c in charts}
        ]
        if trend_plots
        else [],
        "raw": [{"fmt": r.fmt, "href": r.href} for r in raw],
        "validity": _validity(s.trials),
        "hosts": _hosts_view(s.hosts),
        "digest": s.fingerprint.digest,
        "parts": [(k, _show_lines(v)) for k, v in s.fingerprint.parts.items()],
        "changes": list(s.changes),
    }


def _main_plot(s: RunComparison) -> dict[str, str] | None:
    """The experiment's own plot (its spec's `plot`) of tonight's trials, with the history's
    medians: None when the experiment declares none."""
    plot = s.spec.plot if s.spec is not None else None
    if s.spec is None or plot is None:
        return None
    kind = s.spec.kind(plot.kind)
    rows = summarize_run(s.spec, s.trials)
    history: dict[tuple[str, tuple[Any, ...]], float] = {}
    if kind is not None:
        # A verdict names its configuration by config_key; the plot by the config's values.
        values_of = {
            config_key(t, s.spec): tuple(t.params.get(p) for p in kind.config)
            for t in s.trials
            if t.kind == kind.name
        }
        for v in s.verdicts:
            if v.config in values_of and v.center is not None:
                history[(v.metric, values_of[v.config])] = v.center
    metrics = ", ".join(plot.y)
    what = f"{metrics} against {plot.x_label or plot.x}" + (
        f", one line per {plot.series}" if plot.series else ""
    )
    return {
        "src": main_plot(plot, rows, history, f"{s.run.experiment} · run {s.run.id}"),
        "alt": f"{what}: tonight's medians with IQR bars"
        + (", the history's medians beside them" if history else ""),
        "what": what,
    }


def _trend_wait(s: RunComparison) -> str:
    runs = max((sum(1 for p in pts if finite(p.median)) for pts in s.trends.values()), default=0)
    return (
        f"Trends appear after {MIN_POINTS} runs of this history "
        f"(it has {runs} with a median so far)."
    )


def _unit(spec: ExperimentSpec | None, metric: str) -> str:
    m = spec.metric(metric) if spec is not None else None
    return m.unit if m is not None else ""


def _deciding_row(r: DecidingRow, several: bool) -> dict[str, str]:
    return {
        "cls": f"deciding verdict-{r.verdict}",
        "what": f"{r.experiment} run {r.run_id}: {r.metric}" if several else r.metric,
        "config": r.config,
        "before": _num(r.before),
        "after": _num(r.after),
        "ratio": f"×{_ratio(r.ratio)}" if r.ratio is not None else "–",
        "p": _p(r.p_value),
        "verdict": r.verdict,
    }


_VERDICT_ORDER = ("regression", "undecided", "improvement", "ok", "new", "no-data")


def _verdict_row(v: MetricVerdict) -> dict[str, Any]:
    cur, base = v.current, v.baseline
    return {
        "cls": f"verdict-{v.verdict}" if v.verdict in _VERDICT_ORDER else "",
        "metric": v.metric,
        "config": v.config,
        "better": "↑ higher" if v.direction == "higher" else "↓ lower",
        "median": _num(cur.median) if cur else "–",
        "iqr": _num(cur.iqr) if cur else "–",
        "iqr_range": f"{_num(cur.q1)} – {_num(cur.q3)}" if cur else "",
        "n": str(cur.n) if cur else "0",
        "base_median": _num(v.center) if v.center is not None else "–",
        "base_n": str(base.n) if base else "0",
        "base_runs": ", ".join(map(str, v.baseline_runs)) or "–",
        "ratio": _ratio(v.ratio),
        "p": _p(v.p_value),
        "z": f"{v.noise.z:+.1f} / {v.noise.limit:.1f}" if v.noise else "–",
        "resolves": "–" if v.resolution is None and not v.warning else resolves(v),
        "warning": v.warning,
        "verdict": v.verdict,
        "reason": v.reason,
    }


def _validity(trials: Sequence[TrialRecord]) -> dict[str, Any]:
    """Counts per kind and why trials were invalid; warm-ups never count (docs/reuseport.md)."""
    kinds: dict[str, dict[str, int]] = {}
    reasons: dict[str, list[int]] = defaultdict(list)
    for t in trials:
        row = kinds.setdefault(t.kind, {"valid": 0, "invalid": 0, "warmup": 0})
        if t.warmup:
            row["warmup"] += 1
        elif t.valid:
            row["valid"] += 1
        else:
            row["invalid"] += 1
            reasons[t.reason or "(no reason recorded)"].append(t.seq)
    return {
        "kinds": sorted(kinds.items()),
        "valid": sum(k["valid"] for k in kinds.values()),
        "invalid": sum(k["invalid"] for k in kinds.values()),
        "warmup": sum(k["warmup"] for k in kinds.values()),
        "reasons": sorted(
            ((r, len(seqs), ", ".join(map(str, seqs))) for r, seqs in reasons.items()),
            key=lambda row: (-row[1], row[0]),
        ),
    }


def _hosts_view(hosts: Mapping[str, tuple[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
    out = []
    for name, (role, facts) in sorted(hosts.items(), key=lambda h: (h[1][0], h[0])):
        nics = []
        for i in facts.get("interfaces") or ():
            if not isinstance(i, Mapping) or i.get("name") == "lo":
                continue
            driver = " ".join(str(x) for x in (i.get("driver"), i.get("driver_version")) if x)
            nics.append(
                {
                    "name": str(i.get("name", "?")),
                    "driver": driver or "–",
                    "qdisc": str(i.get("root_qdisc") or "–"),
                }
            )
        cpus = facts.get("cpus")
        cpu = " × ".join(str(x) for x in (cpus, facts.get("cpu_model")) if x is not None)
        out.append(
            {
                "name": name,
                "role": role,
                "kernel": _show(facts.get("kernel_release")),
                "cpu": cpu or "–",
                "nics": nics,
                "somaxconn": _show(facts.get("somaxconn")),
                "default_qdisc": _show(facts.get("default_qdisc")),
                "modules": "yes" if facts.get("modules_supported") else "no",
                "netmap": _netmap(facts["netmap"]) if "netmap" in facts else None,
            }
        )
    return out


def _netmap(value: Any) -> str:
    """facts.NetmapFacts as a dict ("loaded; git URL COMMIT; admode 0"), or an older shape."""
    if isinstance(value, bool):
        return "loaded" if value else "not loaded"
    if isinstance(value, Mapping) and "status" in value:
        words = [str(value["status"])]
        if value.get("source"):
            words.append(str(value["source"]))
        if value.get("admode") is not None:
            words.append(f"admode {value['admode']}")
        return "; ".join(words)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) or "–"
    return _show(value)


def _values_by_config(
    trials: Sequence[TrialRecord], verdicts: Sequence[MetricVerdict], spec: ExperimentSpec | None
) -> dict[tuple[str, str], list[float]]:
    """Tonight's counted values per (metric, config): the very values the verdicts judged."""
    return {
        (m, config): values
        for m in {v.metric for v in verdicts}
        for config, values in values_by_config(trials, m, spec).items()
    }


def _short_configs(configs: Sequence[str]) -> tuple[str, dict[str, str]]:
    """The words every configuration shares ("accept workers=2"), and each one without them
    ("mode=shared"): full keys do not fit under a small plot."""
    split = {c: c.split() for c in configs}
    if len(split) < 2:
        return "", {c: c for c in split}
    first, *rest = split.values()
    common = [w for w in first if all(w in ws for ws in rest)]
    short = {c: " ".join(w for w in ws if w not in common) or c for c, ws in split.items()}
    return " ".join(common), short


# ---------------------------------------------------------------------------- formatting


def _median(s: Summary | None) -> float | None:
    return s.median if s is not None and math.isfinite(s.median) else None


def _num(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def _ratio(r: float | None) -> str:
    return f"{r:.3f}" if r is not None and math.isfinite(r) else "–"


def _p(p: float | None) -> str:
    if p is None or not math.isfinite(p):
        return "–"
    return f"{p:.1e}" if p < 0.001 else f"{p:.3f}"


def _show(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def _show_lines(value: Any) -> str:
    """A mapping one key per line (hosts in a fingerprint), anything else as `_show`."""
    if isinstance(value, Mapping) and value:
        return "\n".join(f"{k}: {_show(v)}" for k, v in value.items())
    return _show(value)


def _when(t: float | None) -> str:
    if t is None:
        return "–"
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(t))


def _took(seconds: float) -> str:
    minutes, s = divmod(max(0, round(seconds)), 60)
    h, m = divmod(minutes, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s"


# ---------------------------------------------------------------------------- page


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@dataclass(frozen=True)
class _Page:
    template: jinja2.Template
    style: str
    script: str  # counts the images the browser really decoded; the browser test reads it
    csp: str  # nothing but this page's own style and script, and images embedded in it


@functools.cache
def _page() -> _Page:
    """The template, style and script, read and compiled once, when a page is first written
    (not when any labctl command starts)."""
    style = (TEMPLATES / "report.css").read_text()
    script = (TEMPLATES / "report.js").read_text()
    csp = (
        f"default-src 'none'; img-src data:; style-src {_sha256(style)}; "
        f"script-src {_sha256(script)}; base-uri 'none'; form-action 'none'"
    )
    template = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    ).get_template("report.html.j2")
    return _Page(template, style, script, csp)
