"""sysctl: a kernel parameter at a value, now and (with `persist`) in a sysctl.d file.

The plan reads /proc/sys (and the file when persisting) and changes only what differs.
Many net.* sysctls are per network namespace, and a few (net.core.default_qdisc) exist only
in the initial one: on the namespace lab they are absent, and the plan says so (docs/qdiscs.md).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from labctl.actions.base import (
    Action,
    ActionResult,
    Plan,
    Run,
    Step,
    TaskContext,
    Undo,
    Upload,
)
from labctl.remote import CommandFailed

PROC_SYS = "/proc/sys"
_COMPONENT = re.compile(r"^[A-Za-z0-9_.:@+-]+$")


def split_name(name: str) -> list[str]:
    """The /proc/sys path components of a sysctl name, dotted or slash form.

    As in procps: in the dotted form a '/' stands for a '.' inside one component (a VLAN
    interface `eth0.1` is `net.ipv4.conf.eth0/1.rp_filter`); in the slash form dots are literal.
    """
    text = name.strip()
    if "/" in text and ("." not in text or text.index("/") < text.index(".")):
        parts = text.strip("/").split("/")
    else:
        parts = [p.replace("/", ".") for p in text.split(".")]
    if not parts or any(p in ("", ".", "..") or not _COMPONENT.match(p) for p in parts):
        raise ValueError(f"bad sysctl name {name!r} (like net.ipv4.tcp_tw_reuse)")
    return parts


def dotted_name(name: str) -> str:
    """Canonical name: `net.ipv4.conf.eth0/1.rp_filter`, as `sysctl -a` prints it."""
    return ".".join(p.replace(".", "/") for p in split_name(name))


def proc_path(name: str) -> str:
    return "/".join([PROC_SYS, *split_name(name)])


def normalize_value(value: str) -> str:
    """Multi-value sysctls read back tab-separated (`32768\t60999`) but are written with
    spaces: compare words, not whitespace."""
    return " ".join(value.split())


def conf_key(line: str) -> str | None:
    """The canonical sysctl name a sysctl.d line sets, or None for comments and blanks."""
    text = line.strip()
    if not text or text[0] in "#;" or "=" not in text:
        return None
    key = text.split("=", 1)[0].strip().lstrip("-").strip()  # "-key" = ignore errors
    try:
        return dotted_name(key)
    except ValueError:
        return None


def update_conf(text: str, name: str, value: str) -> str:
    """`text` with every line setting `name` changed to `name = value` (or one such line
    appended); every other line is kept as it was."""
    want = f"{name} = {value}"
    lines = text.splitlines()
    found = False
    for i, line in enumerate(lines):
        if conf_key(line) == name:
            found = True
            prefix = "-" if line.strip().startswith("-") else ""
            lines[i] = prefix + want
    if not found:
        lines.append(want)
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class SysctlArgs:
    name: str
    value: str
    persist: bool = False
    file: str = "/etc/sysctl.d/99-labctl.conf"

    def __post_init__(self) -> None:
        split_name(self.name)
        if not normalize_value(self.value):
            raise ValueError(f"sysctl {self.name}: value must not be empty")
        if "\n" in self.value or "\r" in self.value:
            raise ValueError(f"sysctl {self.name}: value must be one line, not {self.value!r}")
        if not self.file.startswith("/"):
            raise ValueError(f"file {self.file!r} must be an absolute path")


def read_sysctl(ctx: TaskContext, name: str) -> str:
    """The current value, normalised; ValueError with one line if the host has no such key."""
    res = ctx.conn.run(["cat", "--", proc_path(name)])
    if res.ok:
        return normalize_value(res.stdout)
    host = ctx.conn.host.name
    if "No such file or directory" in res.stderr:
        hint = " (only in the initial network namespace?)" if name.startswith("net.") else ""
        raise ValueError(f"sysctl {name}: not available on {host}{hint}")
    if "Permission denied" in res.stderr:
        raise ValueError(f"sysctl {name}: not readable on {host} (write-only or not root)")
    raise CommandFailed(res)


def _read_file(ctx: TaskContext, path: str) -> str:
    res = ctx.conn.run(["cat", "--", path])
    if res.ok:
        return res.stdout
    if "No such file or directory" in res.stderr:
        return ""
    raise CommandFailed(res)


class SysctlAction(Action):
    name = "sysctl"
    Args = SysctlArgs

    def plan(self, ctx: TaskContext, args: SysctlArgs) -> Plan:
        name = dotted_name(args.name)
        want = normalize_value(args.value)
        now = read_sysctl(ctx, name)
        steps: list[Step] = []
        changes: list[str] = []
        diff = None
        if now != want:
            # An argument list, no shell: the kernel's refusal comes back as one line,
            # `sysctl: setting key "net.ipv4.tcp_tw_reuse": Invalid argument`.
            steps.append(Run(["sysctl", "-w", f"{name}={want}"]))
            changes.append(f"{name} {now} -> {want}")
        if args.persist:
            before = _read_file(ctx, args.file)
            after = update_conf(before, name, want)
            if after != before:
                steps.append(Upload(after.encode(), args.file, mode="644"))
                changes.append(f"{args.file}: {name} = {want}")
                if ctx.want_diff:
                    diff = "".join(
                        difflib.unified_diff(
                            before.splitlines(keepends=True),
                            after.splitlines(keepends=True),
                            f"{args.file} (before)",
                            f"{args.file} (after)",
                        )
                    )
        undo = [Undo(f"sysctl {name}", "sysctl", {"name": name, "value": now})]
        return Plan(
            steps,
            changes,
            diff=diff,
            output={"previous": now, "value": want},
            undo=undo if now != want else [],
        )

    def apply(self, ctx: TaskContext, args: SysctlArgs, plan: Plan) -> ActionResult:
        """Set the value, check the kernel kept it, and only then persist it."""
        name = dotted_name(args.name)
        writes: list[Step] = [s for s in plan.steps if isinstance(s, Run)]
        rest: list[Step] = [s for s in plan.steps if not isinstance(s, Run)]
        if writes:
            result = super().apply(ctx, args, Plan(writes, plan.changes, output=plan.output))
            if result.failed:
                return result
            got = read_sysctl(ctx, name)
            want = plan.output["value"]
            if got != want:
                # Some sysctls clamp or ignore a value without an error.
                return ActionResult(
                    changed=True,
                    failed=True,
                    changes=tuple(plan.changes),
                    msg=f"sysctl {name}: wrote {want!r} but the kernel kept {got!r}",
                    output={**plan.output, "value": got},
                )
        if rest:
            super().apply(ctx, args, Plan(rest, plan.changes, output=plan.output))
        return ActionResult(
            changed=plan.changed, changes=tuple(plan.changes), diff=plan.diff, output=plan.output
        )
