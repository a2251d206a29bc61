"""One stored run as JSON or CSV (`invoke results.export RUN --format json|csv`)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from typing import Any

from labctl.errors import InputError
from labctl.metrics import ExperimentSpec
from labctl.results.regress import config_key
from labctl.results.store import ResultsStore, TrialRecord

FORMATS = ("json", "csv")
CSV_FIELDS = ("run_id", "seq", "kind", "warmup", "valid", "config", "metric", "value", "reason")


def _finite(value: float) -> float | None:
    # Strict JSON has no Infinity; a metric that overflowed is better null than unparsable.
    return value if math.isfinite(value) else None


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


def _csv(store: ResultsStore, run_id: int, spec: ExperimentSpec | None) -> str:
    store.run(run_id)  # an unknown run is an error, not an empty file
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for t in store.trials(run_id):
        row = {
            "run_id": run_id,
            "seq": t.seq,
            "kind": t.kind,
            "warmup": str(t.warmup).lower(),
            "valid": str(t.valid).lower(),
            "config": config_key(t, spec),
            "metric": "",
            "value": "",
            "reason": t.reason,
        }
        if not t.metrics:
            writer.writerow(row)
        for name, value in sorted(t.metrics.items()):
            writer.writerow({**row, "metric": name, "value": repr(float(value))})
    return buf.getvalue()


def export_run(
    store: ResultsStore, run_id: int, fmt: str, spec: ExperimentSpec | None = None
) -> str:
    """The run, its hosts' facts and its trials as JSON; or one CSV row per trial and metric
    (a trial without a metric still gets one row, metric and value empty)."""
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}: choose {' or '.join(FORMATS)}")
    return _json(store, run_id) if fmt == "json" else _csv(store, run_id, spec)
