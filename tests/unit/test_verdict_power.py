"""What a comparison too small to decide shows: once in the terminal, in JSON, in JUnit."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence

from junitparser import JUnitXml, Skipped
from rich.console import Console

from labctl.experiments.reuseport import Reuseport
from labctl.results.history import PairComparison
from labctl.results.regress import MetricVerdict, Rule, compare, powers
from labctl.results.store import RunSummary, TrialRecord
from labctl.views.junit import junit_xml
from labctl.views.verdicts import comparison_json, verdict_table

SPEC = Reuseport.spec
NOTE = (
    "n=3 vs 3: the smallest possible p is 0.1 > alpha 0.05; 4 repeats per side needed "
    "(or 5 against the baseline's 3)"
)


def rounds(levels: dict[str, float], n: int, seed: int) -> list[TrialRecord]:
    rng = random.Random(seed)
    out: list[TrialRecord] = []
    for _ in range(n):
        for mode, level in levels.items():
            metrics = {"conn_per_s": level * rng.uniform(0.98, 1.02), "latency_p99_us": 800.0}
            params = {"mode": mode, "workers": 2}
            out.append(
                TrialRecord(len(out) + 1, "accept", False, params, 1.0, 1.0, True, "", metrics)
            )
    return out


def pair_verdicts(n: int, slowdown: float = 0.6) -> list[MetricVerdict]:
    before = rounds({"shared": 40_000.0, "reuseport": 78_000.0}, n, 1)
    after = rounds({"shared": 40_000.0, "reuseport": 78_000.0 * slowdown}, n, 2)
    return compare("reuseport", after, [(1, before)], SPEC.watched, Rule(), SPEC, pair=True)


def render(verdicts: Sequence[MetricVerdict]) -> str:
    con = Console(width=80, record=True, force_terminal=False)
    con.print(verdict_table("run 2 against run 1", verdicts))
    return con.export_text()


def test_the_terminal_says_it_once_and_never_within_noise() -> None:
    verdicts = pair_verdicts(3)
    assert {v.verdict for v in verdicts} == {"undecided", "ok"}
    assert len(powers(verdicts)) == 1 and len(verdicts) > 3
    text = " ".join(render(verdicts).split())
    assert text.count("n=3 vs 3: the smallest possible p is 0.1") == 1
    assert f"! trials: {NOTE}" in text
    assert "undecided" in text and "noise" not in text


def test_enough_trials_say_nothing_more() -> None:
    verdicts = pair_verdicts(6)
    assert "regression" in {v.verdict for v in verdicts}
    assert all(p.reachable for p in powers(verdicts))
    assert "smallest possible p" not in render(verdicts)


def run(run_id: int) -> RunSummary:
    return RunSummary(run_id, "reuseport", 1.0, 2.0, "finished", 6, 6, {})


def test_json_carries_the_power_once_and_per_verdict() -> None:
    verdicts = pair_verdicts(3)
    pair = PairComparison(run(1), run(2), True, (), tuple(verdicts), ("backlog: 4096 -> 5",))
    doc = json.loads(json.dumps(comparison_json(pair, Rule()), allow_nan=False))
    assert (doc["a"], doc["b"], doc["result"]) == (1, 2, "ok")
    assert doc["counts"]["undecided"] >= 1 and doc["counts"]["regression"] == 0
    (power,) = doc["power"]
    assert power == {
        "n": 3,
        "m": 3,
        "alpha": 0.05,
        "smallest_p": 0.1,
        "per_side": 4,
        "against_baseline": 5,
        "reachable": False,
        "note": NOTE,
    }
    undecided = [v for v in doc["verdicts"] if v["verdict"] == "undecided"]
    assert undecided and all(v["power"]["note"] == NOTE for v in undecided)
    assert doc["changes"] == ["backlog: 4096 -> 5"] and doc["rule"]["alpha"] == 0.05


def test_junit_skips_what_it_could_not_decide() -> None:
    verdicts = pair_verdicts(3)
    doc = JUnitXml.fromstring(junit_xml("run 2 against run 1", verdicts))
    undecided = sum(v.verdict == "undecided" for v in verdicts)
    assert (doc.failures, doc.skipped) == (0, undecided)
    (suite,) = list(doc)
    skipped = [c for c in suite if c.result and isinstance(c.result[0], Skipped)]
    assert len(skipped) == undecided and all(c.result[0].message == NOTE for c in skipped)
