"""What a sweep found, for any experiment: per trial kind and configuration (the kind's
`config` params), each metric's median and IQR over the valid, non-warm-up trials, how many
trials were invalid and why, the kind's totals, and the comparison with its baseline
configuration (ratio of medians, Mann-Whitney p), and the smallest change a run like this one
could tell from it (its n and spread; docs/nightly.md). Plain data; labctl/views draws it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from labctl.metrics import ExperimentSpec, Metric, TrialKind
from labctl.results.regress import Rule
from labctl.results.store import TrialRecord
from labctl.stats import Summary, mann_whitney_p, summarize, trial_resolution


@dataclass(frozen=True)
class ConfigSummary:
    kind: str
    config: Mapping[str, Any]  # param → value, in the kind's `config` order
    metric: Metric
    stats: Summary | None  # None when no valid trial gave the metric
    invalid: int  # trials of this configuration not counted (invalid or skipped)
    reason: str  # the first of their reasons
    ratio_vs_baseline: float | None = None
    p_vs_baseline: float | None = None
    totals: Mapping[str, float] | None = None
    resolution: float | None = None  # smallest change in the bad direction vs a run like it


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, int | float) else (1, str(value))


def _values(trials: Sequence[TrialRecord], metric: str) -> list[float]:
    out = []
    for t in trials:
        value = t.metrics.get(metric)
        if t.valid and value is not None and math.isfinite(float(value)):
            out.append(float(value))
    return out


def summarize_kind(kind: TrialKind, trials: Sequence[TrialRecord]) -> list[ConfigSummary]:
    groups: dict[tuple[Any, ...], list[TrialRecord]] = defaultdict(list)
    for t in trials:
        if t.kind == kind.name and not t.warmup:
            groups[tuple(t.params.get(p) for p in kind.config)].append(t)
    rows: list[ConfigSummary] = []
    for key in sorted(groups, key=lambda k: tuple(_sort_key(v) for v in k)):
        ts = groups[key]
        config = dict(zip(kind.config, key, strict=True))
        bad = [t for t in ts if not t.valid]
        reason = next((t.reason for t in bad if t.reason), "")
        measured = [m for m in kind.metrics if any(m.name in t.metrics for t in ts)]
        totals = {
            name: sum(float(t.metrics.get(name, 0.0)) for t in ts if t.valid)
            for name in kind.totals
        }
        for metric in measured or list(kind.metrics[:1]):
            values = _values(ts, metric.name)
            stats = summarize(values) if values else None
            resolution = (
                trial_resolution(values, values, stats.median, metric.better, Rule().alpha)
                if stats is not None
                else None
            )
            ratio = p = None
            if kind.baseline is not None and values:
                param, base_value = kind.baseline
                if config.get(param) != base_value:
                    base_key = tuple(
                        base_value if p_ == param else config[p_] for p_ in kind.config
                    )
                    base = _values(groups.get(base_key, []), metric.name)
                    if base and stats is not None:
                        base_median = summarize(base).median
                        ratio = stats.median / base_median if base_median else None
                        p = mann_whitney_p(values, base)
            rows.append(
                ConfigSummary(
                    kind.name,
                    config,
                    metric,
                    stats,
                    len(bad),
                    reason,
                    ratio,
                    p,
                    totals,
                    resolution,
                )
            )
    return rows


def summarize_run(spec: ExperimentSpec, trials: Sequence[TrialRecord]) -> list[ConfigSummary]:
    """Every kind of the experiment, in the spec's order."""
    return [row for kind in spec.kinds for row in summarize_kind(kind, trials)]
