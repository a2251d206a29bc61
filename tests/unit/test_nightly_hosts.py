"""A nightly never measures on a host it has not locked: checked before any host is touched."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.errors import InputError
from labctl.inventory import load_inventory
from labctl.nightly.run import run_nightly
from labctl.nightly.suite import load_suite
from labctl.results.store import ResultsStore

ROOT = Path(__file__).resolve().parents[2]


def test_an_experiment_outside_the_suites_hosts_is_refused(tmp_path: Path) -> None:
    suite_file = tmp_path / "s.yml"
    suite_file.write_text("hosts: servers\nexperiments:\n  - {name: a, experiment: reuseport}\n")
    inventory = load_inventory(ROOT / "hosts" / "local.yml")
    with ResultsStore(tmp_path / "r.db") as db, pytest.raises(InputError) as err:
        run_nightly(load_suite(suite_file), inventory, db, project_dir=tmp_path)
    assert str(err.value).startswith(f"{suite_file}:3: experiment a runs on cli1, cli2, outside")
    with ResultsStore(tmp_path / "r.db") as db:
        assert db.nightly_runs() == [] and db.runs() == []
