"""modprobe: a kernel module of the running kernel is loaded (`present`) or not (`absent`),
as community.general.modprobe does; `kmod` is for out-of-tree modules labctl builds.

The probe reads /proc/modules and the kernel's modules.builtin in one round trip; a builtin
module is always present and cannot be removed. Loading records an undo that removes it
again (`labctl restore`).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from labctl.actions.base import Action, ActionFailed, Plan, Run, TaskContext, Undo
from labctl.remote import ShellScript

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
STATES = ("present", "absent")


@dataclass(frozen=True)
class ModprobeArgs:
    name: str
    state: str = "present"
    params: str = ""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"modprobe: name {self.name!r} must be letters, digits, _ and -")
        if self.state not in STATES:
            raise ValueError(f"modprobe: state must be present or absent, not {self.state!r}")
        shlex.split(self.params)  # an unclosed quote is the file's error


def probe_script(name: str) -> ShellScript:
    """Prints `loaded`, `builtin` or `absent` for module `name` (- and _ are one)."""
    n = shlex.quote(name.replace("-", "_"))
    return ShellScript(
        f'if grep -q "^{n} " /proc/modules 2>/dev/null; then echo loaded; '
        f"elif [ -r /lib/modules/$(uname -r)/modules.builtin ] && "
        f"tr - _ < /lib/modules/$(uname -r)/modules.builtin | "
        f'grep -q "/{n}\\.ko\\(\\.[a-z]*\\)\\?$"; then echo builtin; else echo absent; fi'
    )


def plan_modprobe(args: ModprobeArgs, found: str) -> Plan:
    """The plan for what the probe found (`loaded`, `builtin` or `absent`)."""
    if args.state == "present":
        if found in ("loaded", "builtin"):
            return Plan(output={"name": args.name, "params": args.params, "state": "present"})
        return Plan(
            steps=[Run(["modprobe", args.name, *shlex.split(args.params)])],
            changes=[f"load module {args.name}"],
            output={"name": args.name, "params": args.params, "state": "present"},
            undo=[Undo(f"module {args.name}", "modprobe", {"name": args.name, "state": "absent"})],
        )
    if found == "builtin":
        raise ActionFailed(f"modprobe: {args.name} is built into the kernel: it cannot be removed")
    if found == "absent":
        return Plan(output={"name": args.name, "params": args.params, "state": "absent"})
    return Plan(
        steps=[Run(["modprobe", "-r", args.name])],
        changes=[f"remove module {args.name}"],
        output={"name": args.name, "params": args.params, "state": "absent"},
        undo=[Undo(f"module {args.name}", "modprobe", {"name": args.name, "state": "present"})],
    )


class ModprobeAction(Action):
    name = "modprobe"
    Args = ModprobeArgs

    def plan(self, ctx: TaskContext, args: ModprobeArgs) -> Plan:
        res = ctx.conn.run(probe_script(args.name))
        found = res.stdout.strip()
        if not res.ok or found not in ("loaded", "builtin", "absent"):
            raise ActionFailed(f"modprobe {args.name}: {res.first_error_line()}", res)
        return plan_modprobe(args, found)
