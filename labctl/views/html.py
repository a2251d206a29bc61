"""The nightly report as one self-contained HTML page, read over coffee or attached to a ticket.

One file, nothing fetched: plots are matplotlib PNGs embedded as base64 data URIs, the CSS and
the one small script are inline, and a Content-Security-Policy with their hashes forbids every
other source, so a page copied off the lab machine looks the same anywhere and a stray
reference to the network would show up as a broken element, not as a silent fetch. Every
string from the lab (parameters, reasons, facts) goes through Jinja2's autoescape.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import math
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import markupsafe

from labctl.metrics import ExperimentSpec
from labctl.paths import TEMPLATES
from labctl.results.history import RunComparison
from labctl.results.regress import MetricVerdict, values_by_config
from labctl.results.store import TrialRecord
from labctl.stats import Summary
from labctl.views.plots import (
    PlotGroup,
    finite,
    strip_plot,
    trend_plot,
)
from labctl.views.verdicts import resolves

# The colours a reader (and the browser test) looks for: the badge, and the plots' series.
STATUS_COLORS: Mapping[str, str] = {"ok": "#2e7d32", "regression": "#c62828", "failed": "#757575"}


@dataclass(frozen=True)
class NightlyReport:
    title: str
    started: float
    finished: float | None
    status: str  # ok | regression | failed
    sections: Sequence[RunComparison]  # one per experiment run
    notes: Sequence[str] = ()  # lock taken over, provisioning summary, errors


def write_html(report: NightlyReport, path: Path) -> Path:
    """Render and write atomically: a reader (or a web server) never sees half a page."""
    text = render_html(report)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the page from a web server
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def render_html(report: NightlyReport) -> str:
    started = report.started
    sections = [_section_view(s) for s in report.sections]
    page = _page()
    return page.template.render(
        title=report.title,
        status=report.status,
        badge_class=f"badge-{report.status}" if report.status in STATUS_COLORS else "badge-other",
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


def _section_view(s: RunComparison) -> dict[str, Any]:
    by_config = _values_by_config(s.judged, s.verdicts, s.spec)
    common, short = _short_configs([v.config for v in s.verdicts] + [c for _, c in s.trends])
    main_plots = []
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
        main_plots.append(
            {
                "metric": metric,
                "src": strip_plot(metric, rows[0].direction, groups, common) if drawn else "",
            }
        )
    verdict_of = {(v.metric, v.config): v for v in s.verdicts}
    trend_plots = []
    for (metric, config), points in s.trends.items():
        drawn = any(finite(p.median) for p in points)
        title = f"{metric} · {short.get(config, config)}"
        verdict = verdict_of.get((metric, config))
        trend_plots.append(
            {
                "metric": metric,
                "config": config,
                "runs": len(points),
                "src": trend_plot(title, points, s.run.id, verdict) if drawn else "",
            }
        )
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
        "main_plots": main_plots,
        "trend_plots": trend_plots,
        "validity": _validity(s.trials),
        "hosts": _hosts_view(s.hosts),
        "digest": s.fingerprint.digest,
        "parts": [(k, _show_lines(v)) for k, v in s.fingerprint.parts.items()],
        "changes": list(s.changes),
    }


_VERDICT_ORDER = ("regression", "improvement", "ok", "new", "no-data")


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
