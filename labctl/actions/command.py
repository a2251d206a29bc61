"""command and shell: run a program; `creates`/`removes` make them idempotent.

`command` takes an argument list (or a string split like a shell would, with no shell
features): every value reaches the program literally. `shell` runs shell text on purpose;
use the `quote` filter for values interpolated into it.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

from labctl.actions.base import Action, Plan, Run, TaskContext
from labctl.remote import Command, ShellScript
from labctl.templating import split_words


@dataclass(frozen=True)
class CommandArgs:
    cmd: str | None = None
    argv: tuple[str, ...] | None = None
    creates: str | None = None  # skip if this path exists
    removes: str | None = None  # skip unless this path exists
    chdir: str | None = None

    def __post_init__(self) -> None:
        if (self.cmd is None) == (self.argv is None):
            raise ValueError("command: give exactly one of 'cmd' or 'argv'")


def _guard_script(creates: str | None, removes: str | None) -> ShellScript | None:
    """One read for both checks (None when there is nothing to check)."""
    if not creates and not removes:
        return None
    tests = []
    if creates:
        tests.append(f"if [ -e {shlex.quote(creates)} ]; then echo creates; fi")
    if removes:
        tests.append(f"if [ ! -e {shlex.quote(removes)} ]; then echo removes; fi")
    return ShellScript("; ".join(tests))


def _guard(ctx: TaskContext, creates: str | None, removes: str | None) -> str | None:
    """Why the command need not run, or None."""
    script = _guard_script(creates, removes)
    if script is None:
        return None
    found = ctx.conn.run(script, check=True).stdout.split()
    if "creates" in found:
        return f"{creates} exists"
    if "removes" in found:
        return f"{removes} does not exist"
    return None


def _reads(creates: str | None, removes: str | None) -> list[Command]:
    script = _guard_script(creates, removes)
    return [] if script is None else [script]


def _in_dir(chdir: str | None, text: str) -> str:
    return f"cd {shlex.quote(chdir)} && {text}" if chdir else text


class CommandAction(Action):
    name = "command"
    Args = CommandArgs
    free_form = "cmd"

    @classmethod
    def prepare_args(cls, raw: dict[str, Any]) -> dict[str, Any]:
        """`cmd` is split into words before anything is rendered, so a value becomes exactly
        one argument (`rm -f {{ f }}` with f='-rf /x' removes a file named '-rf /x')."""
        cmd = raw.get("cmd")
        if not isinstance(cmd, str) or "argv" in raw:
            return raw  # `argv` alone is words already; both is refused by CommandArgs
        words = split_words(cmd)
        if not words:
            raise ValueError("command: empty command")
        return {**{k: v for k, v in raw.items() if k != "cmd"}, "argv": words}

    def reads(self, args: CommandArgs) -> list[Command]:
        return _reads(args.creates, args.removes)

    def plan(self, ctx: TaskContext, args: CommandArgs) -> Plan:
        skipped = _guard(ctx, args.creates, args.removes)
        if skipped:
            return Plan(skipped=skipped)
        argv = list(args.argv) if args.argv is not None else shlex.split(args.cmd or "")
        if not argv:
            raise ValueError("command: empty command")
        text = _in_dir(args.chdir, shlex.join(argv))
        return Plan(steps=[Run(ShellScript(text))], changes=[f"run {shlex.join(argv)}"])


@dataclass(frozen=True)
class ShellArgs:
    cmd: str
    creates: str | None = None
    removes: str | None = None
    chdir: str | None = None


class ShellAction(Action):
    name = "shell"
    Args = ShellArgs
    free_form = "cmd"

    def reads(self, args: ShellArgs) -> list[Command]:
        return _reads(args.creates, args.removes)

    def plan(self, ctx: TaskContext, args: ShellArgs) -> Plan:
        skipped = _guard(ctx, args.creates, args.removes)
        if skipped:
            return Plan(skipped=skipped)
        # The script runs in its own sh so `chdir` and the script's own syntax cannot mix.
        text = _in_dir(args.chdir, "sh -c " + shlex.quote(args.cmd))
        return Plan(steps=[Run(ShellScript(text))], changes=[f"run {args.cmd}"])
