"""Suite files: read whole, checked before any host is touched, errors with file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.errors import InputError
from labctl.nightly.suite import load_suite
from labctl.results.regress import Rule

PROJECT = Path(__file__).resolve().parent.parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "suite.yml"
    path.write_text(text)
    return path


def test_the_shipped_suite_loads() -> None:
    suite = load_suite(PROJECT / "playbooks" / "nightly.yml")
    assert suite.name == "nightly"
    assert [e.experiment for e in suite.experiments] == ["reuseport", "qdisc"]
    assert suite.provision and "workloads" in suite.provision_tags
    options = suite.experiments[0].options()
    assert options.modes == ("shared", "reuseport") and options.workers == (1, 2)


def test_defaults_and_overrides(tmp_path: Path) -> None:
    suite = load_suite(
        write(
            tmp_path,
            "experiments:\n"
            "  - name: a\n"
            "    experiment: reuseport\n"
            "    params: {workers: [1], duration: 1, repeat: 3, threads: 1}\n"
            "    metrics: {conn_per_s: higher}\n"
            "    seed: 7\n",
        )
    )
    assert suite.name == "suite" and not suite.provision
    assert suite.rule == Rule() and (suite.rule.history, suite.rule.noise_alpha) == (10, 0.005)
    assert entry_baseline(tmp_path) == 12
    entry = suite.experiments[0]
    assert entry.seed == 7 and entry.metrics == {"conn_per_s": "higher"}
    assert entry.options().threads == 1


def entry_baseline(tmp_path: Path) -> int | None:
    text = "compare: {history: 4, noise_alpha: 0.02}\nexperiments:\n"
    text += "  - {name: a, experiment: qdisc, baseline: 12}\n"
    suite = load_suite(write(tmp_path, text))
    assert suite.rule == Rule(history=4, noise_alpha=0.02)
    return suite.experiments[0].baseline


def test_a_pktgen_entry(tmp_path: Path) -> None:
    """Any registered experiment is a suite entry, its options checked as its command's."""
    suite = load_suite(
        write(
            tmp_path,
            "experiments:\n"
            "  - name: line-rate\n"
            "    experiment: pktgen\n"
            "    params: {mode: [native, generic], size: [60, 1514], rate: 0, duration: 5}\n",
        )
    )
    options = suite.experiments[0].options()
    assert options.mode == ("native", "generic") and options.size == (60, 1514)
    with pytest.raises(InputError, match="size: frames of 60 to 1514 bytes"):
        load_suite(
            write(
                tmp_path,
                "experiments:\n  - name: a\n    experiment: pktgen\n    params: {size: [30]}\n",
            )
        )
    with pytest.raises(InputError, match="size: expected an integer"):
        load_suite(
            write(
                tmp_path,
                "experiments:\n  - name: a\n    experiment: pktgen\n    params: {size: big}\n",
            )
        )


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("experiments: []\n", 1, "at least one"),
        ("nme: x\nexperiments: [{name: a, experiment: reuseport}]\n", 1, "unknown key 'nme'"),
        (
            "experiments:\n  - name: a\n    experiment: reuseprot\n",
            3,
            "unknown experiment 'reuseprot'",
        ),
        (
            "experiments:\n  - name: a\n    experiment: reuseport\n    params:\n      backlg: 5\n",
            5,
            "unknown key 'backlg'",
        ),
        (
            "experiments:\n  - name: a\n    experiment: reuseport\n    params: {workers: [0]}\n",
            4,
            "workers must be at least 1",
        ),
        (
            "experiments:\n  - {name: a, experiment: qdisc}\n  - {name: a, experiment: qdisc}\n",
            3,
            "used twice",
        ),
        (
            "experiments:\n  - name: a\n    experiment: qdisc\n    metrics: {pps: up}\n",
            4,
            "higher or lower",
        ),
        (
            "compare:\n  threshold: lots\nexperiments: [{name: a, experiment: qdisc}]\n",
            2,
            "threshold must be",
        ),
        (
            "experiments:\n  - name: a\n    experiment: qdisc\n    metrics: {ppps: higher}\n",
            4,
            "qdisc has no metric 'ppps' (known: throughput_mbps, pps, throughput_mbps_vs_noqueue",
        ),
        (
            "compare:\n  noise_alpha: 2\nexperiments: [{name: a, experiment: qdisc}]\n",
            2,
            "alpha and noise_alpha are between 0 and 1",
        ),
        (
            "compare:\n  z: 3\nexperiments: [{name: a, experiment: qdisc}]\n",
            2,
            "unknown key 'z'",
        ),
        (
            "experiments:\n  - {name: a, experiment: qdisc, baseline: last}\n",
            2,
            "baseline must be an integer",
        ),
        ("experiments:\n  - name: a\n    experiment: [x\n", 4, "invalid YAML"),
        (
            "provision:\n  tags: 5\nexperiments: [{name: a, experiment: qdisc}]\n",
            2,
            "tags is a list of step names",
        ),
    ],
)
def test_bad_suites_say_file_and_line(tmp_path: Path, text: str, line: int, words: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InputError) as err:
        load_suite(path)
    assert str(err.value).startswith(f"{path}:{line}: "), str(err.value)
    assert words in str(err.value)


def test_an_entry_names_an_experiment_file_beside_the_suite(tmp_path: Path) -> None:
    """issue 20: `experiment: mine.yml`, checked with the suite, its params as options."""
    shipped = PROJECT / "experiments" / "sockperf-latency.yml"
    (tmp_path / "mine.yml").write_text(shipped.read_text())
    suite = load_suite(
        write(
            tmp_path,
            "experiments:\n"
            "  - name: latency\n"
            "    experiment: mine.yml\n"
            "    params: {msg_size: [64], repeat: 2}\n"
            "    metrics: {latency_p99_us: lower}\n",
        )
    )
    (entry,) = suite.experiments
    assert entry.experiment == "sockperf-latency"
    assert entry.experiment_type().spec.metric("latency_p99_us") is not None
    assert (entry.options().msg_size, entry.options().repeat) == ((64,), 2)
    with pytest.raises(InputError, match=r"suite.yml:3: experiment latency: no experiment file"):
        load_suite(write(tmp_path, "experiments:\n  - name: latency\n    experiment: nope.yml\n"))
    (tmp_path / "mine.yml").write_text(shipped.read_text().replace("{{ port }}", "{{ prot }}"))
    with pytest.raises(InputError, match=r"mine.yml:\d+: processes.server.start: undefined"):
        load_suite(write(tmp_path, "experiments:\n  - name: l\n    experiment: mine.yml\n"))
