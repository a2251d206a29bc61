"""Quoting: every argument reaches the remote shell as one word."""

from __future__ import annotations

import shlex
import subprocess
import time

import pytest

from labctl.remote import ShellScript, command_text, wait_until_script


def test_argument_lists_are_quoted() -> None:
    args = ["printf", "%s", "a b; rm -rf / $(x) `y` 'z'"]
    assert shlex.split(command_text(args)) == args


def test_shell_scripts_pass_as_written_and_bare_strings_are_refused() -> None:
    assert command_text(ShellScript("a | b")) == "a | b"
    with pytest.raises(TypeError):
        command_text("echo hi")  # type: ignore[arg-type]


def test_a_wait_is_bounded_by_the_clock_not_by_a_count_of_tries() -> None:
    """Each try here takes 1 s (as a try can in a TCG VM): a 2 s wait gives up after 2-3 s,
    where 8 tries of 0.25 s would have taken 10 s."""
    script = wait_until_script("{ sleep 1; false; }", 2, "it's not there; $(x) `y`")
    started = time.monotonic()
    res = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30)
    assert res.returncode == 1 and res.stderr == "it's not there; $(x) `y`\n"
    assert time.monotonic() - started < 5
    ok = subprocess.run(["sh", "-c", wait_until_script("true", 2, "no")], timeout=30)
    assert ok.returncode == 0


@pytest.mark.parametrize(
    ("text", "program"),
    [
        ("uname -r", True),
        (command_text(["cat", "--", "a b; $(x)"]), True),
        (command_text(["printf", "%s", "a b; $(x)"]), False),  # a builtin: sh's, as before
        ("kill -TERM -4242", False),  # sh's kill signals the group; procps' would not
        ("echo done", False),
        ("tc qdisc show dev lo", True),
        ("echo a; echo b", False),
        ("A=1 env", False),
        ("cd /tmp", False),
        ("exit 3", False),
        ("[ -e /x ]", False),
        ("ls *", False),
        ("echo $HOME", False),
        ("cat < /etc/hostname", False),
        ("echo 'unclosed", False),
        ("", False),
    ],
)
def test_a_program_call_is_told_from_shell_text(text: str, program: bool) -> None:
    from labctl.remote import is_program_call

    assert is_program_call(text) is program
