"""Did tonight get worse? Fingerprints decide which past runs compare; trials decide the rest.

Which runs compare is their fingerprint's business (labctl.results.fingerprint, re-exported
here): the same experiment, measurement parameters and hardware per role.

A metric regresses only when three conditions hold (docs/nightly.md): the change in the bad
direction is beyond a threshold; tonight's median is outside what the history's own
run-to-run variation explains (labctl.results.noise: each past run counts once, by its
median); and the Mann-Whitney test on the trials says it is not within-run noise. A lab drifts
between runs more than one run's trials spread, so pooled trials alone cry wolf. Every verdict
says which condition decided, with its numbers, and the smallest change it could have flagged.
Invalid and warm-up trials never count.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from labctl.defaults import RULE_ALPHA, RULE_HISTORY, RULE_THRESHOLD
from labctl.metrics import Direction, ExperimentSpec
from labctl.results.noise import RunNoise, run_noise
from labctl.results.power import Power, assess
from labctl.results.store import TrialRecord
from labctl.stats import Summary, figure, mann_whitney_p, summarize, trial_resolution

# A trial kind no experiment declares (a run of one since removed) is named by all its
# scalar params, except these knobs.
_KNOBS = frozenset({"backlog", "threads", "inflight", "port", "repeat", "seed", "warmup"})

# ---------------------------------------------------------------------------- verdicts


@dataclass(frozen=True)
class Rule:
    """How tonight is judged (docs/nightly.md); the defaults the command line names are
    spelled in labctl/defaults.py."""

    history: int = RULE_HISTORY  # compare with the last N comparable runs
    threshold: float = RULE_THRESHOLD  # a change counts beyond this fraction of the median...
    alpha: float = RULE_ALPHA  # ...when Mann-Whitney on the trials gives p below this...
    noise_alpha: float = 0.005  # ...and tonight is outside the run-to-run noise at this level

    def check(self) -> str | None:
        """What is wrong with these values, one line; None when they are usable."""
        if self.history < 1:
            return "history must be 1 or more runs"
        if not 0 < self.threshold < 10:
            return "threshold is a fraction > 0 (0.1 = 10%)"
        if not 0 < self.alpha < 1 or not 0 < self.noise_alpha < 1:
            return "alpha and noise_alpha are between 0 and 1"
        return None


@dataclass(frozen=True)
class MetricVerdict:
    experiment: str
    metric: str
    config: str  # config_key of the trials, "" when none
    direction: Direction
    current: Summary | None  # tonight's valid, non-warm-up trials
    baseline: Summary | None  # the history's valid trials, pooled
    baseline_runs: tuple[int, ...]  # the past runs that gave a value, ascending
    ratio: float | None  # current.median / the median of the past runs' medians
    p_value: float | None  # Mann-Whitney two-sided, tonight's trials against the pooled
    verdict: str  # ok | regression | improvement | undecided | new | no-data
    reason: str  # one line with the numbers that decided it
    noise: RunNoise | None = None  # tonight against the run-to-run spread (3+ past runs)
    decided_by: str = ""  # threshold | run-to-run | trials | all three | trials alone | ...
    resolution: float | None = None  # the smallest change in the bad direction it can flag
    warning: str = ""  # set when `resolution` is beyond the threshold, or never reached
    center: float | None = None  # the median of the past runs' medians: what ratio is to
    power: Power | None = None  # what the trial test can reach at these n (labctl.results.power)


def _param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def config_key(trial: TrialRecord, spec: ExperimentSpec | None = None) -> str:
    """ "accept mode=reuseport workers=2", "qdisc proto=udp qdisc=pfifo": the trial's kind and
    the params that say which configuration it measured (its kind's `config` in the
    experiment's spec), sorted by name."""
    kind = spec.kind(trial.kind) if spec is not None else None
    keys = kind.config if kind is not None else None
    if keys is None:
        keys = tuple(
            k
            for k, v in trial.params.items()
            if k not in _KNOBS and isinstance(v, str | int | float | bool)
        )
    pairs = [f"{k}={_param_text(trial.params[k])}" for k in sorted(keys) if k in trial.params]
    return " ".join([trial.kind, *pairs])


def _runs_text(runs: Iterable[int]) -> str:
    return ",".join(str(r) for r in runs)


def values_by_config(
    trials: Iterable[TrialRecord], metric: str, spec: ExperimentSpec | None
) -> dict[str, list[float]]:
    """Valid, non-warm-up values of `metric` per configuration."""
    out: dict[str, list[float]] = defaultdict(list)
    for t in trials:
        if t.warmup or not t.valid or metric not in t.metrics:
            continue
        value = float(t.metrics[metric])
        if math.isfinite(value):
            out[config_key(t, spec)].append(value)
    return out


def _pct(fraction: float) -> str:
    return f"{fraction * 100:.0f}%" if fraction >= 0.1 else f"{fraction * 100:.1f}%"


def _judge(
    blank: MetricVerdict,
    cur: list[float],
    past: Sequence[tuple[int, list[float]]],
    rule: Rule,
    why_no_data: str,
    pair: bool = False,
) -> MetricVerdict:
    """Tonight's values against the past runs' (run id, values): the three conditions.
    `blank` names the metric and configuration; the verdict is it, filled in."""
    metric, direction, runs = blank.metric, blank.direction, blank.baseline_runs
    base = [v for _, values in past for v in values]
    current = summarize(cur) if cur else None
    baseline = summarize(base) if base else None
    if current is None:
        return replace(
            blank, baseline=baseline, verdict="no-data", reason=f"{metric}: {why_no_data}"
        )
    if baseline is None:
        return replace(
            blank,
            current=current,
            verdict="new",
            reason=f"{metric} median {figure(current.median)} (n={current.n}): no valid trial "
            "in the history of this fingerprint",
            decided_by="no history",
        )
    center = statistics.median(statistics.median(values) for _, values in past if values)
    head = (
        f"{metric} median {figure(current.median)} (n={current.n}) vs "
        f"{figure(center)} (median of {len(runs)} run{'s' if len(runs) > 1 else ''}: "
        f"{_runs_text(runs)}; {baseline.n} trials)"
    )
    if center <= 0:
        return replace(
            blank, current=current, baseline=baseline, reason=f"{head}: history median 0, no ratio"
        )
    ratio = current.median / center
    noise = (
        None
        if pair
        else run_noise(cur, [values for _, values in past], rule.noise_alpha, rule.threshold)
    )
    p = mann_whitney_p(cur, base)
    if p is not None and math.isnan(p):
        p = 1.0  # every value equal on both sides: nothing to tell apart
    worse = ratio < 1 - rule.threshold if direction == "higher" else ratio > 1 + rule.threshold
    better = ratio > 1 + rule.threshold if direction == "higher" else ratio < 1 - rule.threshold
    # What this comparison can resolve: the largest of the three conditions' smallest steps.
    by_trials = trial_resolution(cur, base, center, direction, rule.alpha)
    by_noise = noise.resolvable(direction) if noise is not None else None
    steps = [rule.threshold, *(x for x in (by_trials, by_noise) if x is not None)]
    resolution = max(steps) if by_trials is not None else None
    power = assess(current.n, baseline.n, rule.alpha)
    if by_trials is None:
        warning = (
            power.note()
            if not power.reachable
            else f"the trials spread too widely for any change to reach p < {rule.alpha:g}"
        )
    elif resolution is not None and resolution > rule.threshold * 1.0001:
        limiter = "run-to-run noise" if by_noise == resolution else "trials' spread"
        warning = (
            f"resolves only changes of {_pct(resolution)} or more ({limiter}), more than the "
            f"{_pct(rule.threshold)} threshold"
        )
    else:
        warning = ""
    parts = [f"x{ratio:.2f} {'beyond' if worse or better else 'within'} {_pct(rule.threshold)}"]
    if noise is not None:
        parts.append(noise.describe())
    elif pair:
        parts.append("run-to-run noise not judged (two runs)")
    if p is None:
        parts.append(f"too few trials for a test (n={current.n} vs {baseline.n}, need 2 each)")
    else:
        parts.append(f"trials p={p:.2g} {'<' if p < rule.alpha else '>='} {rule.alpha:g}")
    text = f"{head}: " + "; ".join(parts)
    judged = replace(
        blank,
        current=current,
        baseline=baseline,
        ratio=ratio,
        p_value=p,
        noise=noise,
        resolution=resolution,
        warning=warning,
        center=center,
        power=power,
    )
    if not (worse or better):
        return _replace(judged, text, "ok", "threshold")
    if p is None or not power.reachable:
        # Not "within noise": no outcome at these n could have been significant (issue 17).
        return _replace(
            judged, text, "undecided", "too few trials", f"undecidable at this n ({power.note()})"
        )
    if not pair and (noise is None or not (noise.outside and (noise.z < 0) == (ratio < 1))):
        return _replace(judged, text, "ok", "run-to-run")
    if p >= rule.alpha:
        return _replace(judged, text, "ok", "trials")
    change = "regression" if worse else "improvement"
    if pair:
        return _replace(judged, text, change, "pair")
    known = noise is not None and noise.known
    return _replace(judged, text, change, "all three" if known else "short history")


def _replace(
    judged: MetricVerdict, text: str, verdict: str, decided_by: str, said: str = ""
) -> MetricVerdict:
    said = (
        said
        or {
            "threshold": "within the threshold",
            "too few trials": "undecidable at this n",
            "run-to-run": "within the run-to-run noise",
            "trials": "not significant on the trials",
            "all three": "threshold, run-to-run noise and trials agree",
            "short history": "a step far beyond what a short history can explain",
            "pair": "beyond the threshold and significant on the trials",
        }[decided_by]
    )
    return replace(
        judged, verdict=verdict, reason=f"{text} -> {verdict}: {said}", decided_by=decided_by
    )


def compare(
    experiment: str,
    current: Sequence[TrialRecord],
    history: Sequence[tuple[int, Sequence[TrialRecord]]],
    metrics: Mapping[str, Direction],
    rule: Rule = Rule(),
    spec: ExperimentSpec | None = None,
    pair: bool = False,
) -> list[MetricVerdict]:
    """One verdict per (metric, configuration) seen tonight or in `history` (run_id, trials)
    of comparable past runs, newest first; each past run counts once for the run-to-run
    noise, and all their trials pool for the trial test. `pair`: one run against another
    (`labctl results.compare`), judged on the threshold and the trials, the run-to-run noise
    said to be unknown.

    A (metric, configuration) is "seen" when any non-warm-up trial of it carries the metric,
    valid or not; so a configuration whose trials all failed tonight still gets a "no-data"
    verdict, but a metric no trial ever produced (pktgen on a lab without netmap) gets none.
    """
    out: list[MetricVerdict] = []
    for metric, direction in metrics.items():
        tonight = values_by_config(current, metric, spec)
        past: dict[str, list[tuple[int, list[float]]]] = defaultdict(list)
        seen = {config_key(t, spec) for t in current if not t.warmup and metric in t.metrics}
        for run_id, trials in history:
            for key, values in values_by_config(trials, metric, spec).items():
                past[key].append((run_id, values))
            seen |= {config_key(t, spec) for t in trials if not t.warmup and metric in t.metrics}
        for key in sorted(seen):
            invalid = [
                t for t in current if not t.warmup and config_key(t, spec) == key and not t.valid
            ]
            why = "no valid trial tonight"
            if invalid:
                first = " ".join(invalid[0].reason.split()) or "no reason given"
                why += f" ({len(invalid)} invalid: {first})"
            elif not any(not t.warmup and config_key(t, spec) == key for t in current):
                why += " (not run)"
            runs = tuple(sorted(run for run, values in past.get(key, []) if values))
            blank = MetricVerdict(
                experiment, metric, key, direction, None, None, runs, None, None, "ok", ""
            )
            out.append(_judge(blank, tonight.get(key, []), past.get(key, []), rule, why, pair))
    return out


def powers(verdicts: Sequence[MetricVerdict]) -> list[Power]:
    """The trial test's reach at each distinct pair of sample sizes among `verdicts`, those
    that cannot reach alpha first: what a comparison says once, not once per metric."""
    found = dict.fromkeys(v.power for v in verdicts if v.power is not None)
    return sorted(found, key=lambda p: (p.reachable, p.n, p.m))


def overall(verdicts: Sequence[MetricVerdict]) -> str:
    """ "regression" if any verdict is one, else "ok"."""
    return "regression" if any(v.verdict == "regression" for v in verdicts) else "ok"
