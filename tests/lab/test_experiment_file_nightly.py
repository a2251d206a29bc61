"""Experiment files in a nightly suite on the namespace lab (issue 20): the sockperf latency
example named by a suite, run twice, the second run judged against the first like a
built-in experiment's."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from labctl.paths import EXPERIMENT_FILES
from labctl.results.store import ResultsStore
from tests.support import labctl_argv

from .conftest import NamespaceLab

pytestmark = pytest.mark.lab

SUITE = """\
name: files
experiments:
  - name: latency
    experiment: sockperf-latency.yml
    params: {msg_size: [16, 1400], repeat: 2, duration: 1, warmup: false}
    metrics: {latency_avg_us: lower}
"""


def test_a_suite_runs_an_experiment_file_and_judges_it_against_its_history(
    lab: NamespaceLab, tmp_path: Path
) -> None:
    if shutil.which("sockperf") is None:
        pytest.fail("sockperf is not installed (scripts/setup.sh installs it)")
    shutil.copy(EXPERIMENT_FILES / "sockperf-latency.yml", tmp_path)
    suite = tmp_path / "suite.yml"
    suite.write_text(SUITE)
    store = tmp_path / "r.db"
    html = tmp_path / "report.html"
    argv = [*labctl_argv("nightly"), "-i", str(lab.inventory_path), "--suite", str(suite),
            "--store", str(store), "--quiet", "--html", str(html)]  # fmt: skip
    for _ in (1, 2):
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL
        )
        assert proc.returncode in (0, 1), proc.stderr + proc.stdout  # 1: a (noisy) regression
    assert "compared with run 1" in proc.stdout, proc.stdout
    page = html.read_text()  # the report's main plot is the file's `plot`
    assert "sockperf-latency" in page and "data:image/png;base64," in page
    with ResultsStore(store, create=False) as db:
        runs = db.runs()
        assert [r.experiment for r in runs] == ["sockperf-latency"] * 2
        assert all(r.label == "latency" and r.status == "finished" for r in runs)
        for r in runs:
            trials = db.trials(r.id)
            assert len(trials) == 4 and all(t.valid for t in trials), [t.reason for t in trials]
            assert all(
                0 < t.metrics["latency_p50_us"] <= t.metrics["latency_p99_us"] for t in trials
            )
