"""What a command imports as it starts (issue 18): only what it uses. Structural, not timed:
each command runs in a fresh interpreter, as `labctl` runs it, and the modules it imported
are read at its exit. (benchmarks/startup.py times them.)"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from labctl.actions import WHERE
from labctl.cli.program import needs_experiments

ROOT = Path(__file__).resolve().parents[2]

# `labctl ARGS` in this interpreter, writing the names in sys.modules to $MODULES_OUT at exit
# (-X importtime would miss what importlib.import_module imports: the actions, for one).
RECORD = """
import atexit, json, os, sys
out = os.environ["MODULES_OUT"]
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
sys.argv = ["labctl", *json.loads(os.environ["LABCTL_ARGS"])]
from labctl.cli import main
main()
"""

ACTION_MODULES = {f"labctl.actions.{module}" for module, _ in WHERE.values()}
# Never imported by a command that only starts: terminal and template libraries, the stats,
# the test library invoke imports (cli/invoke_light.py), and every domain room.
NOT_AT_START = (
    "rich",
    "jinja2",
    "scipy",
    "matplotlib",
    "unittest.mock",
    "asyncio",
    "paramiko",
    "fabric",
    "labctl.remote",
    "labctl.experiments",
    "labctl.nightly",
    "labctl.labs",
    "labctl.results",
    "labctl.play",
    "labctl.inventory",
    *sorted(ACTION_MODULES),
)
# Never imported by a play: what it does not use.
NOT_IN_A_PLAY = (
    "rich",
    "scipy",
    "matplotlib",
    "unittest.mock",
    "labctl.experiments",
    "labctl.nightly",
    "labctl.labs",
    "labctl.results",
)


def _imported(args: list[str], tmp_path: Path) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    out = tmp_path / "modules.json"
    env = {**os.environ, "MODULES_OUT": str(out), "LABCTL_ARGS": json.dumps(args)}
    env.pop("LABCTL_EXPERIMENT_MODULES", None)
    proc = subprocess.run(
        [sys.executable, "-c", RECORD],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    return set(json.loads(out.read_text())), proc


def _found(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def test_version_and_play_help_import_only_invoke_and_the_cli(tmp_path: Path) -> None:
    for args in (["--version"], ["play", "--help"], ["facts", "--help"]):
        modules, proc = _imported(args, tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert not _found(modules, NOT_AT_START), (args, _found(modules, NOT_AT_START))
        assert "invoke" in modules


def test_the_task_list_imports_the_experiments_and_nothing_they_run_with(tmp_path: Path) -> None:
    """Listing the tasks finds the experiments (each is a module: they are imported), and
    their flags are their Options: what they run with is imported when they run."""
    rest = tuple(name for name in NOT_AT_START if name != "labctl.experiments")
    for args in (["--list"], ["--help"], ["experiment", "reuseport", "--help"]):
        modules, proc = _imported(args, tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert "labctl.experiments.reuseport" in modules
        assert not _found(modules, rest), (args, _found(modules, rest))


@pytest.mark.parametrize(
    ("words", "needed"),
    [
        ("", True),  # invoke's help lists every task
        ("--version", False),
        ("-V", False),
        ("--list", True),
        ("--help", True),
        ("-h play", True),
        ("--complete -- labctl pl", True),
        ("play site.yml -i hosts.yml", False),
        ("play --help", False),
        ("results show 3", False),
        ("experiment", True),
        ("experiment reuseport --help", True),
        ("experiment.reuseport", True),
        ("play site.yml experiment.qdisc", True),  # two tasks, one an experiment
        ("nosuch", False),  # an unknown task is one either way
    ],
)
def test_the_tree_leaves_the_experiments_out_only_when_no_word_can_need_them(
    words: str, needed: bool
) -> None:
    assert needs_experiments(["labctl", *words.split()]) is needed


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_play_imports_the_engine_and_the_actions_it_uses_only(tmp_path: Path) -> None:
    """A play whose one host refuses the connection: the whole path up to SSH is taken."""
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(
        "all:\n  hosts:\n    h1:\n      ansible_host: 127.0.0.1\n"
        f"      ansible_port: {_closed_port()}\n      labctl_known_hosts_file: /dev/null\n"
    )
    book = tmp_path / "noop.yml"
    book.write_text("- hosts: all\n  tasks:\n    - command: 'true'\n      changed_when: false\n")
    modules, proc = _imported(["play", str(book), "-i", str(inventory), "--json"], tmp_path)
    doc: dict[str, Any] = json.loads(proc.stdout)
    assert doc["recap"]["h1"]["unreachable"] == 1, proc.stdout + proc.stderr
    assert not _found(modules, NOT_IN_A_PLAY), _found(modules, NOT_IN_A_PLAY)
    assert modules & ACTION_MODULES == {"labctl.actions.command"}
    assert {"fabric", "jinja2", "labctl.play.run"} <= modules


def test_invoke_is_imported_without_unittest_mock_and_mock_context_still_works() -> None:
    code = """
import sys
import labctl.cli
assert "invoke" in sys.modules and "unittest.mock" not in sys.modules, "mock imported"
from invoke import MockContext, Result
c = MockContext(run={"ls": Result("x")})
assert c.run("ls").stdout == "x"
c.run.assert_called_once_with("ls")
import unittest.mock
assert unittest.mock.Mock.__module__ == "unittest.mock" and hasattr(unittest.mock, "patch")
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr


def test_the_pool_size_the_help_names_is_the_one_connections_use() -> None:
    from labctl.defaults import DEFAULT_POOL_SIZE
    from labctl.remote import DEFAULT_POOL_SIZE as used

    assert used == DEFAULT_POOL_SIZE
