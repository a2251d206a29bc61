"""Within-run ratios: a configuration over its kind's baseline, round by round.

Trials run in shuffled rounds, each round every configuration once (labctl.experiments.base
plan_trials), so the i-th trial of mode=reuseport and the i-th of mode=shared with the same
workers ran within seconds of each other. Their ratio cancels what drifts between runs (the
box's speed tonight), and a nightly run watches it beside the absolute metrics
(docs/nightly.md). The ratios are worked out from the stored trials when a run is judged;
nothing extra is stored.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from labctl.metrics import ExperimentSpec
from labctl.results.store import TrialRecord


def with_ratios(trials: Sequence[TrialRecord], spec: ExperimentSpec | None) -> list[TrialRecord]:
    """`trials`, then one record per round and non-baseline configuration of each kind that
    declares `ratios`: the configuration's params, the ratio metrics (`Metric.name` of
    `TrialKind.ratio_metrics`). Only rounds where both trials are valid give a ratio."""
    out = list(trials)
    if spec is None:
        return out
    for kind in spec.kinds:
        if kind.baseline is None or not kind.ratios:
            continue
        param, base_value = kind.baseline
        rest = tuple(k for k in kind.config if k != param)
        groups: dict[tuple[Any, ...], list[TrialRecord]] = defaultdict(list)
        for t in trials:
            if t.kind == kind.name and not t.warmup and param in t.params:
                key = (*(str(t.params.get(k)) for k in rest), str(t.params[param]))
                groups[key].append(t)
        for key, mine in groups.items():
            if key[-1] == str(base_value):
                continue
            base = groups.get((*key[:-1], str(base_value)))
            if not base:
                continue
            pairs = zip(
                sorted(mine, key=lambda t: t.seq), sorted(base, key=lambda t: t.seq), strict=False
            )
            for a, b in pairs:
                if not (a.valid and b.valid):
                    continue
                metrics = {
                    derived.name: float(a.metrics[m]) / float(b.metrics[m])
                    for m, derived in zip(kind.ratios, kind.ratio_metrics, strict=True)
                    if m in a.metrics and m in b.metrics and float(b.metrics[m]) > 0
                }
                if metrics:
                    out.append(
                        TrialRecord(
                            a.seq, a.kind, False, dict(a.params), a.started,
                            a.duration, True, "", metrics,
                        )
                    )  # fmt: skip
    return out
