"""Quoting: every argument reaches the remote shell as one word."""

from __future__ import annotations

import shlex

import pytest

from labctl.remote import ShellScript, command_text


def test_argument_lists_are_quoted() -> None:
    args = ["printf", "%s", "a b; rm -rf / $(x) `y` 'z'"]
    assert shlex.split(command_text(args)) == args


def test_shell_scripts_pass_as_written_and_bare_strings_are_refused() -> None:
    assert command_text(ShellScript("a | b")) == "a | b"
    with pytest.raises(TypeError):
        command_text("echo hi")  # type: ignore[arg-type]
