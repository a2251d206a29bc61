"""The nightly decision rule on series of nights: drift, a step, an outlier night, a short
history, within-run ratios, pinned and accepted baselines, and what a run can resolve."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from labctl.errors import InputError
from labctl.experiments.reuseport import Reuseport
from labctl.nightly.run import pinned_baselines
from labctl.nightly.suite import load_suite
from labctl.results.history import compare_run
from labctl.results.noise import _MAD_CORRECTION, NORMAL_MAD, limit, run_noise
from labctl.results.ratios import with_ratios
from labctl.results.regress import MetricVerdict, Rule, compare
from labctl.results.store import ResultsStore, TrialRecord
from labctl.stats import min_p, trial_resolution

SPEC = Reuseport.spec
CONN = {"conn_per_s": "higher"}


def night(
    level: float, n: int = 6, spread: float = 0.02, seed: int = 0, **params: object
) -> list[float]:
    """n trial values around `level`, spread like one run's trials on the lab (a few %)."""
    rng = random.Random(seed)
    return [level * (1 + rng.gauss(0, spread)) for _ in range(n)]


def trials(values: Sequence[float], mode: str = "shared", first: int = 1) -> list[TrialRecord]:
    return [
        TrialRecord(
            first + 2 * i, "accept", False, {"mode": mode, "workers": 2}, 1.0, 2.0, True, "",
            {"conn_per_s": v},
        )
        for i, v in enumerate(values)
    ]  # fmt: skip


def judge(
    tonight: Sequence[float], levels: Sequence[float], rule: Rule | None = None
) -> MetricVerdict:
    """Tonight against past nights at `levels` (oldest first), each of 6 trials."""
    rule = rule or Rule()
    history = [(run, trials(night(level, seed=run))) for run, level in enumerate(levels, start=1)][
        ::-1
    ][: rule.history]
    (v,) = compare("reuseport", trials(tonight), history, CONN, rule, SPEC)
    return v


# ---------------------------------------------------------------------------- the rule


def test_mad_corrections_are_what_simulation_gives() -> None:
    rng = np.random.default_rng(7)
    for k, factor in _MAD_CORRECTION.items():
        x = rng.standard_normal((200_000, k))
        mad = np.median(np.abs(x - np.median(x, axis=1, keepdims=True)), axis=1) * NORMAL_MAD
        assert 1 / mad.mean() == pytest.approx(factor, rel=0.02), k


def test_the_limit_is_the_t_prediction_bound_and_shrinks_with_history() -> None:
    assert limit(3, 0.01) == pytest.approx(9.925 * (1 + 1 / 3) ** 0.5, rel=1e-3)
    assert limit(10, 0.01) == pytest.approx(3.250 * 1.1**0.5, rel=1e-3)
    assert limit(3, 0.01) > limit(5, 0.01) > limit(10, 0.01) > limit(30, 0.01) > 2.5


def test_drift_between_nights_that_the_trials_call_significant_is_not_a_regression() -> None:
    # The case: the box wanders +-12% from night to night while each night's trials
    # agree within 2%; tonight is 13% under the history's median.
    levels = [100.0, 112.0, 91.0, 104.0, 96.0, 109.0, 88.0, 101.0, 107.0, 94.0]
    tonight = night(87.0, seed=99)
    v = judge(tonight, levels)
    assert v.ratio is not None and v.ratio < 0.9
    assert v.p_value is not None and v.p_value < 0.01  # the trials alone would cry wolf
    assert v.verdict == "ok" and v.decided_by == "run-to-run"
    assert v.noise is not None and v.noise.known and abs(v.noise.z) < v.noise.limit
    assert "within the run-to-run noise" in v.reason and "run-to-run: z=" in v.reason


def test_a_slow_drift_is_not_flagged_night_after_night() -> None:
    levels = [100.0 * (1 - 0.01 * i) for i in range(20)]  # 1% slower every night
    flagged = [judge(night(levels[i], seed=100 + i), levels[:i]).verdict for i in range(3, 20)]
    assert set(flagged) == {"ok"}


def test_a_step_is_flagged_with_all_three_conditions_named() -> None:
    levels = [100.0, 101.0, 99.0, 100.5, 98.5, 100.0, 99.5, 101.5, 100.0, 99.0]
    v = judge(night(85.0, seed=5), levels)
    assert v.verdict == "regression" and v.decided_by == "all three"
    assert v.noise is not None and v.noise.z < -v.noise.limit
    assert "threshold, run-to-run noise and trials agree" in v.reason
    assert v.resolution is not None and v.resolution <= 0.10 + 1e-9 and not v.warning
    up = judge(night(118.0, seed=6), levels)
    assert up.verdict == "improvement"


def test_an_outlier_night_in_the_history_neither_hides_a_step_nor_flags_a_normal_night() -> None:
    levels = [100.0, 101.0, 55.0, 99.0, 100.5, 98.5, 100.0, 99.5, 101.5, 100.0]
    assert judge(night(100.0, seed=8), levels).verdict == "ok"
    v = judge(night(85.0, seed=9), levels)
    assert v.verdict == "regression", v.reason
    assert v.noise is not None and v.noise.spread < 0.03  # the 55 did not widen the spread


def test_an_outlier_night_tonight_is_flagged() -> None:
    levels = [100.0, 103.0, 97.0, 101.0, 99.0, 102.0, 98.0]
    assert judge(night(55.0, seed=10), levels).verdict == "regression"


def test_a_short_history_flags_only_a_step_far_beyond_the_threshold() -> None:
    v = judge(night(50.0, seed=11), [100.0, 100.0])  # the box may wander that much, untold
    assert v.verdict == "ok" and v.noise is not None and not v.noise.known
    assert "run-to-run spread unknown (2 of 3 runs), taken as 9.5%" in v.reason
    assert v.resolution == pytest.approx(1 - 1 / 1.1 ** limit(3, Rule().noise_alpha), rel=1e-3)
    assert "more than the 10% threshold" in v.warning
    collapsed = judge(night(15.0, seed=12), [100.0, 100.0])
    assert collapsed.verdict == "regression" and collapsed.decided_by == "short history"


def test_a_run_that_collapsed_to_zero_is_flagged() -> None:
    v = judge([0.0] * 6, [100.0, 101.0, 99.0, 100.0])
    assert v.verdict == "regression" and v.noise is not None and v.noise.z == float("-inf")


def test_equal_runs_and_trials_compare_without_dividing_by_zero() -> None:
    noise = run_noise([100.0] * 3, [[100.0] * 3] * 4, 0.01, 0.1)
    assert noise is not None and noise.z == 0.0 and not noise.outside


# ---------------------------------------------------------------------------- resolution


def test_three_against_three_can_never_reach_005_and_says_so() -> None:
    assert min_p(3, 3) == pytest.approx(0.1)
    assert trial_resolution([1.0, 1.1, 0.9], [1.0, 1.05, 0.95], 1.0, "higher", 0.05) is None
    history = [(1, trials([100.0, 101.0, 99.0]))]
    (v,) = compare("reuseport", trials([50.0, 51.0, 49.0]), history, CONN, Rule(), SPEC)
    # halved, and still no test at n=3 could have said so: undecided, never "ok"
    assert v.verdict == "undecided" and v.resolution is None and v.decided_by == "too few trials"
    note = (
        "n=3 vs 3: the smallest possible p is 0.1 > alpha 0.05; 4 repeats per side needed "
        "(or 5 against the baseline's 3)"
    )
    assert v.warning == note and v.power is not None and v.power.note() == note
    assert v.reason.endswith(f"-> undecided: undecidable at this n ({note})")
    assert "noise" not in v.reason.split("->")[1] and "not significant" not in v.reason
    # within the threshold it is ok by the threshold, and the warning still says why
    (same,) = compare("reuseport", trials([100.5, 99.5, 100.0]), history, CONN, Rule(), SPEC)
    assert (same.verdict, same.decided_by, same.warning) == ("ok", "threshold", note)
    # a pair judged with pair=True says the same
    (pair,) = compare("reuseport", trials([50.0, 51.0, 49.0]), history, CONN, Rule(), SPEC, True)
    assert pair.verdict == "undecided"


def test_four_a_side_can_decide() -> None:
    history = [(1, trials([100.0, 101.0, 99.0, 100.5]))]
    (v,) = compare("reuseport", trials([50.0, 51.0, 49.0, 50.5]), history, CONN, Rule(), SPEC, True)
    assert v.verdict == "regression" and v.power is not None and v.power.reachable
    assert v.p_value == pytest.approx(2 / 70)


def test_a_nightly_with_one_trial_tonight_is_undecided_not_ok() -> None:
    history = [(run, trials(night(100.0, seed=run))) for run in range(5, 0, -1)]
    (v,) = compare("reuseport", trials([40.0]), history, CONN, Rule(), SPEC)
    assert v.verdict == "undecided" and v.p_value is None
    assert "too few trials for a test (n=1 vs 30, need 2 each)" in v.reason
    assert "n=1 vs 30: Mann-Whitney needs 2 trials a side" in v.reason


def test_the_resolution_grows_with_the_run_to_run_spread_and_warns_beyond_the_threshold() -> None:
    calm = judge(night(100.0, seed=20), [100.0, 101.0, 99.0, 100.0, 100.5, 99.5, 100.0, 101.0])
    wild = judge(night(100.0, seed=21), [100.0, 120.0, 85.0, 110.0, 92.0, 115.0, 88.0, 104.0])
    assert calm.resolution is not None and wild.resolution is not None
    assert calm.resolution == pytest.approx(0.10) and not calm.warning
    assert wild.resolution > 0.3
    assert wild.warning.startswith(f"resolves only changes of {wild.resolution * 100:.0f}%")
    assert "(run-to-run noise), more than the 10% threshold" in wild.warning


def test_trial_resolution_is_the_smallest_shift_mann_whitney_tells_apart() -> None:
    base = night(100.0, n=12, spread=0.05, seed=30)
    tonight = night(100.0, n=6, spread=0.05, seed=31)
    step = trial_resolution(tonight, base, 100.0, "higher", 0.05)
    assert step is not None and 0.01 < step < 0.2
    from labctl.stats import mann_whitney_p

    mid = float(np.median(tonight))
    at = [v / mid * 100.0 * (1 - step) for v in tonight]
    short = [v / mid * 100.0 * (1 - step * 0.9) for v in tonight]
    assert (mann_whitney_p(at, base) or 1) < 0.05 <= (mann_whitney_p(short, base) or 1)


# ---------------------------------------------------------------------------- ratios


def rounds(levels: dict[str, float], n: int, drift: float, seed: int) -> list[TrialRecord]:
    """n shuffled rounds of every mode, the whole box `drift` times faster tonight."""
    rng = random.Random(seed)
    out: list[TrialRecord] = []
    for _ in range(n):
        modes = list(levels)
        rng.shuffle(modes)
        for mode in modes:
            value = levels[mode] * drift * (1 + rng.gauss(0, 0.01))
            out += trials([value], mode=mode, first=len(out) + 1)
    return out


def test_ratios_pair_trials_round_by_round_and_cancel_the_box_drift() -> None:
    levels = {"shared": 30_000.0, "reuseport": 42_000.0}
    drifts = [1.0, 1.15, 0.88, 1.05, 0.93, 1.1, 0.9, 1.02]
    history = [
        (run, with_ratios(rounds(levels, 6, d, run), SPEC)) for run, d in enumerate(drifts, start=1)
    ][::-1]
    tonight = with_ratios(rounds(levels, 6, 0.8, 99), SPEC)  # the box 20% slower tonight
    derived = [t for t in tonight if "conn_per_s_vs_shared" in t.metrics]
    assert len(derived) == 6 and all(t.params["mode"] == "reuseport" for t in derived)
    assert [t.metrics["conn_per_s_vs_shared"] for t in derived] == pytest.approx(
        [1.4] * 6, rel=0.05
    )
    metrics = {"conn_per_s": "higher", "conn_per_s_vs_shared": "higher"}
    verdicts = compare("reuseport", tonight, history, metrics, Rule(), SPEC)
    by = {(v.metric, v.config): v for v in verdicts}
    ratio = by[("conn_per_s_vs_shared", "accept mode=reuseport workers=2")]
    assert ratio.verdict == "ok" and ratio.ratio == pytest.approx(1.0, abs=0.03)
    assert ratio.resolution == pytest.approx(0.1) and not ratio.warning
    absolute = by[("conn_per_s", "accept mode=reuseport workers=2")]
    assert absolute.verdict == "ok" and absolute.decided_by == "run-to-run"
    assert "(run-to-run noise), more than the 10% threshold" in absolute.warning
    # reuseport alone loses 15%: the ratio sees it at once, whatever the box does
    hurt = with_ratios(rounds({**levels, "reuseport": 42_000 * 0.85}, 6, 1.1, 98), SPEC)
    verdicts = compare("reuseport", hurt, history, metrics, Rule(), SPEC)
    by = {(v.metric, v.config): v for v in verdicts}
    assert by[("conn_per_s_vs_shared", "accept mode=reuseport workers=2")].verdict == "regression"


def test_a_round_with_an_invalid_trial_gives_no_ratio() -> None:
    tr = rounds({"shared": 100.0, "reuseport": 140.0}, 3, 1.0, 1)
    bad = [
        TrialRecord(t.seq, t.kind, t.warmup, t.params, t.started, t.duration, False, "x", t.metrics)
        if t.params["mode"] == "shared" and i < 2
        else t
        for i, t in enumerate(tr)
    ]
    derived = [t for t in with_ratios(bad, SPEC) if "conn_per_s_vs_shared" in t.metrics]
    assert len(derived) == len([t for t in bad if t.params["mode"] == "shared" and t.valid])
    assert "conn_per_s_vs_shared" in SPEC.watched


# ---------------------------------------------------------------------------- baselines


def stored_runs(db: ResultsStore, levels: Sequence[float], label: str = "accept") -> list[int]:
    ids = []
    for i, level in enumerate(levels):
        run = db.start_run("reuseport", {"modes": ["shared"], "workers": [2]}, "inv", 1)
        if label:
            db.set_run_identity(run, label=label)
        for t in trials(night(level, seed=200 + i)):
            db.add_trial(run, t)
        db.finish_run(run, "finished")
        ids.append(run)
    return ids


def test_accept_starts_a_new_history_and_baseline_pins_one(tmp_path: Path) -> None:
    with ResultsStore(tmp_path / "r.db") as db:
        old = stored_runs(db, [100.0, 101.0, 99.0, 100.0])
        new = stored_runs(db, [80.0, 81.0, 79.0, 80.0])  # an intended change: 20% slower
        rule = Rule()
        v = compare_run(db, new[-1], SPEC, rule=rule).verdicts[0]
        assert v.baseline_runs == tuple(sorted([*old, *new[:-1]]))
        assert db.accept_run(new[0], "new kernel") and not db.accept_run(new[0])
        c = compare_run(db, new[-1], SPEC, rule=rule)
        assert c.history == tuple(reversed(new[:-1])) and "accepted from run" in c.history_note
        assert c.verdicts[0].verdict == "ok"
        first = compare_run(db, new[0], SPEC, rule=rule)
        assert first.history == () and "was accepted" in first.history_note
        # pinned: the last run against the old history, as if nothing had been accepted since
        pinned = compare_run(db, new[-1], SPEC, rule=rule, baseline=new[1])
        assert pinned.history == (new[1], new[0]) and "pinned baseline" in pinned.history_note
        with pytest.raises(Exception, match="is not an earlier run"):
            compare_run(db, new[0], SPEC, rule=rule, baseline=new[1])
        with pytest.raises(Exception, match="does not compare"):
            compare_run(db, new[-1], SPEC, rule=rule, baseline=old[-1])  # before the accept


def test_baseline_runs_given_to_a_nightly_pin_their_suite_entries(tmp_path: Path) -> None:
    suite_file = tmp_path / "s.yml"
    suite_file.write_text(
        "experiments:\n"
        "  - {name: accept, experiment: reuseport}\n"
        "  - {name: accept-big, experiment: reuseport}\n"
        "  - {name: q, experiment: qdisc}\n"
    )
    suite = load_suite(suite_file)
    with ResultsStore(tmp_path / "r.db") as db:
        (labelled,) = stored_runs(db, [100.0], label="accept-big")
        (by_hand,) = stored_runs(db, [100.0], label="")
        qdisc = db.start_run("qdisc", {}, "inv", 1)
        assert pinned_baselines(suite, db, [labelled, qdisc]) == {
            "accept-big": labelled,
            "q": qdisc,
        }
        with pytest.raises(InputError, match="matches entries accept, accept-big: name one"):
            pinned_baselines(suite, db, [by_hand])
        with pytest.raises(InputError, match="two baselines for entry accept-big"):
            pinned_baselines(suite, db, [labelled, labelled])


# ---------------------------------------------------------------------------- recorded


RECORDED = Path(__file__).parent / "data" / "nightly_noise.json"


def test_recorded_clean_nights_of_the_local_lab_raise_at_most_one_false_alarm() -> None:
    """Trials of real clean nights (benchmarks/nightly_noise.py on the local lab), judged
    night after night as a nightly run would: the rule's false alarms on a real drift."""
    doc = json.loads(RECORDED.read_text())
    false = 0
    for config, nights in doc["clean"].items():
        mode, workers = config.split()
        for i in range(1, len(nights)):
            history = [
                (run, trials(nights[run - 1], mode=mode))
                for run in range(i, max(0, i - Rule().history), -1)
            ]
            (v,) = compare("reuseport", trials(nights[i], mode=mode), history, CONN, Rule(), SPEC)
            false += v.verdict != "ok"
    assert false <= 1, false


def test_recorded_injected_slowdowns_a_large_one_is_caught_a_small_one_is_not() -> None:
    """Nights of the same lab with a tbf on the server's link sized to cost 5% and 40%,
    each against the last 10 clean nights."""
    doc = json.loads(RECORDED.read_text())

    def verdicts(target: str) -> dict[str, MetricVerdict]:
        out = {}
        for config, values in doc["injected"][target].items():
            mode = config.split()[0]
            nights = doc["clean"][config][-Rule().history :]
            history = [(run, trials(v, mode=mode)) for run, v in enumerate(nights[::-1], 1)]
            (out[config],) = compare(
                "reuseport", trials(values, mode=mode), history, CONN, Rule(), SPEC
            )
        return out

    big = verdicts("40")
    assert {c: v.verdict for c, v in big.items()} == dict.fromkeys(big, "regression")
    assert all(v.ratio is not None and v.ratio < 0.7 for v in big.values())
    small = verdicts("5")
    assert {c: v.verdict for c, v in small.items()} == dict.fromkeys(small, "ok")
