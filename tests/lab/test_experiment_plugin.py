"""An experiment added by one module that lives only in the tests (tests/plugins/
echo_experiment.py): the command line, the store, the summary, a nightly suite and its
history take it as they take the built-in ones, and nothing in labctl names it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.lab.conftest import NamespaceLab
from tests.support import ROOT, plugin_env, run_labctl


def labctl(*args: str) -> subprocess.CompletedProcess[str]:
    return run_labctl(*args, timeout=180, env=plugin_env())


def test_nothing_in_labctl_names_the_test_experiment() -> None:
    found = subprocess.run(
        ["grep", "-rl", "echo_experiment\\|EchoOptions", str(ROOT / "labctl")],
        capture_output=True,
        text=True,
    )
    assert found.stdout == ""


def test_its_flags_and_help_are_its_own() -> None:
    listing = labctl("experiment")
    assert listing.returncode == 0, listing.stderr
    assert "echo " in listing.stdout and "reuseport " in listing.stdout
    helped = labctl("experiment", "echo", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "--words" in helped.stdout and "--shout" in helped.stdout
    assert "--workers" not in helped.stdout and "--qdiscs" not in helped.stdout
    refused = labctl("experiment", "echo", "--workers", "2")
    assert refused.returncode != 0 and "--workers" in refused.stderr
    bad = labctl("experiment", "echo", "--repeat", "0", "-i", "/nonexistent.yml")
    assert bad.returncode == 2 and "repeat: at least 1" in bad.stderr


def test_it_runs_is_stored_summarized_and_judged_nightly(lab: NamespaceLab, tmp_path: Path) -> None:
    store = str(tmp_path / "r.db")
    inv = str(lab.inventory_path)
    run = labctl(
        "experiment", "echo", "-i", inv, "--store", store, "--words", "a,abc",
        "--plot", str(tmp_path / "p.png"), "--json",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["run"]["experiment"] == "echo"
    chars = {t["params"]["word"]: t["metrics"]["chars"] for t in doc["trials"]}
    assert chars == {"a": 1.0, "abc": 3.0}  # counted by wc -c on srv1, over SSH
    medians = {r["config"]["word"]: r["stats"]["median"] for r in doc["summary"]}
    assert medians == {"a": 1.0, "abc": 3.0}
    assert Path(doc["plot"]).is_file()
    shown = labctl("results.show", str(doc["run"]["id"]), "--store", store)
    assert shown.returncode == 0 and "chars" in shown.stdout, shown.stderr

    suite = tmp_path / "suite.yml"
    suite.write_text(
        "name: plug\nhosts: all\ncompare: {history: 2}\n"
        "experiments:\n  - {name: words, experiment: echo, params: {words: [ab], repeat: 2}}\n"
    )
    for expected in ("this run starts the history", "compared with run"):
        nightly = labctl(
            "nightly", "-i", inv, "--suite", str(suite), "--store", store,
            "--html", str(tmp_path / "n.html"),
        )  # fmt: skip
        assert nightly.returncode == 0, nightly.stdout + nightly.stderr
        assert expected in nightly.stdout
