"""The command line's shape (issue 17): every task's help, the short flags with Ansible's
meanings, -v, and one line with exit 2 for an unknown task or flag."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from labctl.cli import namespace
from labctl.cli.flags import SHORT_FLAGS
from labctl.cli.program import LabctlProgram
from labctl.inventory import Host
from labctl.localhost import LocalConnection
from labctl.paths import EXIT_FAILED
from labctl.remote import ShellScript
from labctl.views.verbose import show_commands
from tests.support import ROOT, run_labctl

# invoke's own options, which configure nothing labctl runs
INVOKE_ONLY = (
    "--echo",
    "--dry",
    "--warn-only",
    "--pty",
    "--hide",
    "--debug",
    "--config",
    "--command-timeout",
    "--prompt-for-sudo-password",
    "--write-pyc",
)


def program() -> LabctlProgram:
    return LabctlProgram(namespace=namespace(), version="0", name="labctl", binary="labctl")


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """The program as `labctl` runs it, in this process; its exit status and output."""
    try:
        program().run(["labctl", *argv])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def parsed(argv: list[str]) -> tuple[dict[str, Any], int]:
    """The task's keyword arguments and the verbosity, parsed but not run."""
    prog = program()
    prog.create_config()
    prog.parse_core(["labctl", *argv])
    prog.parse_collection()
    prog.parse_tasks()
    return prog.tasks[0].as_kwargs, prog.verbosity


def contexts() -> Any:
    """Every task's parser context, as `labctl` builds them."""
    prog = program()
    prog.create_config()
    prog.parse_core(["labctl"])
    prog.parse_collection()
    return prog._make_parser().contexts


def task_names() -> list[str]:
    return sorted(namespace().task_names)


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize("task", task_names())
def test_every_task_has_help(task: str, flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run([task, flag], capsys)
    assert code == 0, err
    assert out.startswith("Usage: labctl "), out
    assert "Options:" in out and "-h, --help" in out
    assert not any(opt in out for opt in INVOKE_ONLY), out
    assert err == ""


def test_help_after_a_positional_argument(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["report", "3", "--help"], capsys)
    assert code == 0 and out.startswith("Usage: labctl report [options] RUN")
    code, out, _ = run(["experiment", "reuseport", "-h"], capsys)
    assert code == 0 and out.startswith("Usage: labctl experiment reuseport [options]")


def test_core_help_lists_no_invoke_only_options(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--help"], capsys)
    assert code == 0 and "Subcommands:" in out
    assert not any(opt in out for opt in INVOKE_ONLY)


def test_short_flags_only_from_the_one_table() -> None:
    letters = set(SHORT_FLAGS.values())
    for ctx in contexts().values():
        for flag in ctx.flags:
            if not flag.startswith("--") and not ctx.flags[flag].positional:
                assert flag[1:] in letters, f"{ctx.name}: {flag}"
                long_name = ctx.flags[flag].names[0]
                assert SHORT_FLAGS[long_name.replace("-", "_")] == flag[1:], (ctx.name, flag)


def test_play_takes_ansible_short_flags() -> None:
    args, verbosity = parsed(
        [
            "play",
            "site.yml",
            "-i",
            "inv.yml",
            "-l",
            "servers",
            "-e",
            "a=1",
            "-e",
            "@v.yml",
            "-t",
            "deps",
            "-C",
            "-D",
            "-f",
            "3",
            "-vv",
        ]
    )
    assert args == {
        "playbook": "site.yml",
        "inventory": "inv.yml",
        "limit": "servers",
        "extra": ["a=1", "@v.yml"],
        "tags": "deps",
        "check": True,
        "diff": True,
        "forks": 3,
        "json": False,
        "read_ahead": True,
    }
    assert verbosity == 2


def test_provision_takes_ansible_short_flags() -> None:
    args, verbosity = parsed(["provision", "-i", "x.yml", "-C", "-t", "netmap", "-e", "k=v", "-v"])
    assert (args["inventory"], args["check"], args["tags"], args["extra"]) == (
        "x.yml",
        True,
        "netmap",
        ["k=v"],
    )
    assert verbosity == 1


def test_experiment_short_flags_mean_what_they_mean_elsewhere() -> None:
    args, verbosity = parsed(["experiment.reuseport", "-i", "x.yml", "-vvv", "--seed", "4"])
    assert args["inventory"] == "x.yml" and args["seed"] == 4 and verbosity == 3
    reuseport = contexts()["experiment.reuseport"]
    for letter in ("-l", "-e", "-f", "-h"):  # once --plot, --seed, --inflight, --threads
        assert letter not in reuseport.flags


def test_read_only_task_has_no_verbose_flag() -> None:
    every = contexts()
    assert "-v" not in every["inventory"].flags and "-v" not in every["results.list"].flags
    assert "-v" in every["facts"].flags and "-v" in every["nightly"].flags


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["nosuch"], "labctl: unknown task 'nosuch' (`labctl --list` lists the tasks)"),
        (
            ["facts", "--nosuch"],
            "labctl: facts: unknown flag --nosuch (`labctl facts --help` lists the flags)",
        ),
        (
            ["play", "x.yml", "-x"],
            "labctl: play: unknown flag -x (`labctl play --help` lists the flags)",
        ),
        (
            ["play", "x.yml", "--forks", "many"],
            "labctl: a flag's value expects an integer, not 'many'",
        ),
        (["--echo", "facts"], "labctl: unknown flag --echo (`labctl --help` lists the flags)"),
    ],
)
def test_bad_command_line_is_one_line_and_exit_2(argv: list[str], line: str) -> None:
    proc = run_labctl(*argv, timeout=60, cwd=ROOT)
    assert proc.returncode == EXIT_FAILED
    assert proc.stderr.strip() == line and proc.stdout == ""


def test_verbose_shows_commands_then_their_output(capsys: pytest.CaptureFixture[str]) -> None:
    host = Host("localhost", "127.0.0.1", 22, "root", None, None, False, (), {})
    conn = LocalConnection(host)
    with show_commands(1):
        conn.run(["echo", "one two"])
    first = capsys.readouterr().err
    assert first == "localhost $ echo 'one two'\n"
    with show_commands(2):
        conn.run(ShellScript("echo out; echo err >&2; exit 3"))
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "localhost $ echo out; echo err >&2; exit 3"
    assert lines[1].startswith("localhost rc=3 in ")
    assert lines[2:] == ["localhost out| out", "localhost err| err"]
    conn.run(["true"])  # no -v: nothing
    assert capsys.readouterr().err == ""
    assert logging.getLogger("labctl.remote").handlers == []


def test_version(tmp_path: Path) -> None:
    proc = run_labctl("--version", timeout=60, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("labctl ")
