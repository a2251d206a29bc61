"""Stored runs as tidy tables (`labctl results.export`, docs/results.md).

One row per trial and metric (a trial without a metric still gets one row, metric and value
empty), one column per parameter (the union over the runs exported), and beside them what
says where and when it ran: run, experiment, labctl version, the trial's start (ISO 8601,
UTC), the server's kernel and a column per host role. CSV or JSON lines, so
`pandas.read_csv` and `pandas.read_json(lines=True)` read either with no reshaping. `json`
stays the whole-run document of one run (run, hosts with their facts, trials) it always was.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from labctl.defaults import EXPORT_FORMATS
from labctl.errors import InputError
from labctl.metrics import ExperimentSpec
from labctl.results.store import ResultsStore, RunSummary, TrialRecord

TIDY_FORMATS = ("csv", "jsonl")

# The columns every row has, in order; each parameter's column comes after `reason`, each
# host role's after `kernel`, then metric, value and unit close the row.
HEAD = ("run", "experiment", "labctl_version", "time", "kernel")
TRIAL = ("kind", "seq", "warmup", "valid", "reason")
TAIL = ("metric", "value", "unit")
FIXED = frozenset((*HEAD, *TRIAL, *TAIL))
PARAM_PREFIX = "param_"  # a parameter named like a fixed or role column: `param_seq`

SpecOf = Callable[[str], ExperimentSpec | None]


def _finite(value: float) -> float | None:
    # Strict JSON has no Infinity; a metric that overflowed is better null than unparsable.
    return value if math.isfinite(value) else None


# ---------------------------------------------------------------------------- one run, whole


def _trial_dict(t: TrialRecord) -> dict[str, Any]:
    return {
        "seq": t.seq,
        "kind": t.kind,
        "warmup": t.warmup,
        "params": dict(t.params),
        "started": t.started,
        "duration": t.duration,
        "valid": t.valid,
        "reason": t.reason,
        "metrics": {k: _finite(float(v)) for k, v in sorted(t.metrics.items())},
    }


def _json(store: ResultsStore, run_id: int) -> str:
    doc = {
        "run": dataclasses.asdict(store.run(run_id)),
        "hosts": {
            name: {"role": role, "facts": facts}
            for name, (role, facts) in sorted(store.hosts(run_id).items())
        },
        "trials": [_trial_dict(t) for t in store.trials(run_id)],
    }
    return json.dumps(doc, indent=2, allow_nan=False) + "\n"


# ---------------------------------------------------------------------------- tidy rows


@dataclasses.dataclass(frozen=True)
class _Run:
    """What every row of one run repeats: the run's own columns and its host roles."""

    summary: RunSummary
    kernel: str
    roles: Mapping[str, str]  # role -> its hosts, space-separated: {"client": "cli1 cli2"}
    trials: Sequence[TrialRecord]
    units: Mapping[str, str]  # metric -> unit, where the experiment's spec says


def iso_utc(epoch: float) -> str:
    """`2026-12-04T00:13:20.250Z`: a moment as ISO 8601 in UTC, to the millisecond."""
    moment = datetime.fromtimestamp(epoch, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def server_kernel(hosts: Mapping[str, tuple[str, Mapping[str, Any]]]) -> str:
    """The kernel release the server ran (`kernel_release` of its stored facts); with no
    host in the role "server", every host's, distinct, space-separated."""
    servers = [facts for _, (role, facts) in sorted(hosts.items()) if role == "server"]
    chosen = servers or [facts for _, (_, facts) in sorted(hosts.items())]
    releases = dict.fromkeys(str(f["kernel_release"]) for f in chosen if f.get("kernel_release"))
    return " ".join(releases)


def _units(spec: ExperimentSpec | None) -> dict[str, str]:
    if spec is None:
        return {}
    return {m.name: m.unit for k in spec.kinds for m in (*k.metrics, *k.ratio_metrics) if m.unit}


def _read(store: ResultsStore, run_id: int, spec_of: SpecOf | None) -> _Run:
    summary = store.run(run_id)  # an unknown run is an error, not an empty file
    hosts = store.hosts(run_id)
    roles: dict[str, list[str]] = {}
    for name, (role, _) in sorted(hosts.items()):
        roles.setdefault(role, []).append(name)
    spec = spec_of(summary.experiment) if spec_of is not None else None
    return _Run(
        summary,
        server_kernel(hosts),
        {role: " ".join(names) for role, names in roles.items()},
        store.trials(run_id),
        _units(spec),
    )


def _columns(runs: Sequence[_Run]) -> tuple[list[str], dict[str, str]]:
    """The header, and each parameter's column name (`param_` before a taken name)."""
    roles = sorted({role for r in runs for role in r.roles} - FIXED)
    params = sorted({k for r in runs for t in r.trials for k in t.params})
    taken = FIXED | set(roles)
    named = {p: f"{PARAM_PREFIX}{p}" if p in taken else p for p in params}
    return [*HEAD, *roles, *TRIAL, *named.values(), *TAIL], named


def _rows(runs: Sequence[_Run], named: Mapping[str, str]) -> Iterable[dict[str, Any]]:
    """The rows, values as Python objects (None where a run or trial has no such column)."""
    for r in runs:
        s = r.summary
        for t in r.trials:
            row: dict[str, Any] = {
                "run": s.id,
                "experiment": s.experiment,
                "labctl_version": s.labctl_version,
                "time": iso_utc(t.started),
                "kernel": r.kernel,
                **{role: hosts for role, hosts in r.roles.items() if role not in FIXED},
                "kind": t.kind,
                "seq": t.seq,
                "warmup": t.warmup,
                "valid": t.valid,
                "reason": t.reason,
                **{named[k]: v for k, v in t.params.items()},
            }
            if not t.metrics:
                yield {**row, "metric": None, "value": None, "unit": None}
            for name, value in sorted(t.metrics.items()):
                yield {**row, "metric": name, "value": float(value), "unit": r.units.get(name, "")}


def _csv_cell(value: Any) -> str:
    """`true`/`false` (pandas reads them as booleans), floats round-trip exactly, a list or
    mapping as compact JSON, nothing for a missing value."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str | int):
        return str(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _json_cell(value: Any) -> Any:
    if isinstance(value, float):
        return _finite(value)
    return value


def export_runs(
    store: ResultsStore, run_ids: Sequence[int], fmt: str, *, spec_of: SpecOf | None = None
) -> str:
    """The runs' trials as one tidy table: `fmt` "csv" (a header, then a row per trial and
    metric) or "jsonl" (an object per row, every column in each, null where empty).
    `spec_of` (experiment name -> its spec, e.g. `labctl.experiments.spec_of`) fills the
    unit column; without it units are empty. An unknown run is an InputError."""
    if fmt not in TIDY_FORMATS:
        raise InputError(f"unknown table format {fmt!r}: choose {' or '.join(TIDY_FORMATS)}")
    runs = [_read(store, run_id, spec_of) for run_id in dict.fromkeys(run_ids)]
    header, named = _columns(runs)
    buf = io.StringIO()
    if fmt == "csv":
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(header)
        for row in _rows(runs, named):
            writer.writerow([_csv_cell(row.get(col)) for col in header])
    else:
        for row in _rows(runs, named):
            line = {col: _json_cell(row.get(col)) for col in header}
            buf.write(json.dumps(line, allow_nan=False, default=str) + "\n")
    return buf.getvalue()


def export_run(store: ResultsStore, run_id: int, fmt: str, spec_of: SpecOf | None = None) -> str:
    """One run: "json" its whole document (the run, its hosts' facts, its trials), "csv" or
    "jsonl" its tidy table (export_runs)."""
    if fmt not in EXPORT_FORMATS:
        raise InputError(f"unknown export format {fmt!r}: choose {', '.join(EXPORT_FORMATS)}")
    return (
        _json(store, run_id)
        if fmt == "json"
        else export_runs(store, [run_id], fmt, spec_of=spec_of)
    )


def runs_since(store: ResultsStore, since: str) -> list[int]:
    """The ids of the experiment runs started on or after `since`, oldest first: an ISO date
    (`2026-12-01`, midnight UTC) or date and time (`2026-12-01T18:00`, UTC unless it names
    its offset). Playbook runs (no trials) are left out."""
    try:
        moment = datetime.fromisoformat(since.strip())
    except ValueError:
        raise InputError(
            f"--since {since!r}: expected an ISO date (2026-12-01) or date and time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    start = moment.timestamp()
    found = [
        r.id
        for r in store.runs(limit=1_000_000)
        if r.started >= start and not r.experiment.startswith("play:")
    ]
    return sorted(found)


def parse_run_list(text: str) -> list[int]:
    """`3,5,8` (and ranges `3-8`) as run ids, in the order given, each once."""
    ids: list[int] = []
    for word in (w.strip() for w in str(text).split(",")):
        low, dash, high = word.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise InputError(f"--runs {text!r}: expected run ids like 3,5,8 or 3-8")
        first, last = int(low), int(high) if dash else int(low)
        if last < first:
            raise InputError(f"--runs {text!r}: {word} is an empty range")
        ids += range(first, last + 1)
    return list(dict.fromkeys(ids))
