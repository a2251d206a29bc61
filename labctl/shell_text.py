"""Shell text for a host: argument lists quoted into one command line, shell scripts passed
as written, a wait bounded by the host's clock, a command named in one short line. Pure text;
labctl/remote.py sends it."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ShellScript:
    """Shell text run as is. Build it from `quote()`d pieces; never from raw user input."""

    text: str


Command = Sequence[str] | ShellScript


def quote(arg: str) -> str:
    return shlex.quote(arg)


def wait_until_script(condition: str, seconds: int, failure: str) -> str:
    """sh that polls `condition` (shell text) every 0.25 s until it holds, or prints `failure`
    to stderr and exits 1 after `seconds` by the host's clock (not a count of tries: one try
    can take a second or more in a TCG VM)."""
    return (
        f"end=$(($(date +%s) + {int(seconds)})); until {condition}; do "
        f'if [ "$(date +%s)" -ge "$end" ]; then echo {quote(failure)} >&2; exit 1; fi; '
        "sleep 0.25; done"
    )


def command_summary(text: str, width: int = 60) -> str:
    """A command's text as one short line for a message (a script's first line, cut)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    said = [line for line in lines if not line.startswith("set -")] or lines  # not `set -e`
    first = said[0] if said else ""
    more = len(lines) > 1 or len(first) > width
    return first[:width] + (" …" if more else "")


# Words a shell reads as its own (keywords, builtins with no program of the same name):
# a command starting with one needs a shell to run it.
_SHELL_WORDS = frozenset(
    [
        "if",
        "then",
        "else",
        "elif",
        "fi",
        "do",
        "done",
        "case",
        "esac",
        "while",
        "until",
        "for",
        "in",
        "function",
        "select",
        "time",
        "{",
        "}",
        "break",
        "continue",
        "eval",
        "exec",
        "exit",
        "export",
        "readonly",
        "return",
        "set",
        "shift",
        "times",
        "trap",
        "unset",
        "cd",
        "alias",
        "unalias",
        "command",
        "getopts",
        "hash",
        "jobs",
        "fg",
        "bg",
        "read",
        "type",
        "ulimit",
        "umask",
        "wait",
        "local",
        "source",
        ".",
        ":",
        # builtins that also exist as programs, with other semantics: `kill -TERM -PGID`
        # (sh's kill signals a process group; procps' reads -PGID as an option), echo's
        # escapes, ...: these keep going through sh, as they always did
        "kill",
        "echo",
        "printf",
        "test",
        "[",
        "pwd",
        "true",
        "false",
    ]
)


def is_program_call(text: str) -> bool:
    """`text` is a program and its arguments, each quoted as `command_text` quotes them (no
    shell syntax: no variable, glob, redirection, operator or assignment)."""
    try:
        words = shlex.split(text)
    except ValueError:
        return False
    return (
        bool(words)
        and shlex.join(words) == text
        and "=" not in words[0]
        and words[0] not in _SHELL_WORDS
    )


def command_text(command: Command) -> str:
    """The exact text the remote shell receives."""
    if isinstance(command, ShellScript):
        return command.text
    if isinstance(command, str):
        # A bare string would be split by the remote shell unquoted: make the caller choose.
        raise TypeError("pass an argument list or a ShellScript, not a str")
    return shlex.join(command)
