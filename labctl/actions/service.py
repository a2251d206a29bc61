"""service and systemd: a unit started/stopped/restarted/reloaded and enabled or not, through
systemctl (Ansible's service on a systemd host, and systemd: its systemd_service module,
which labctl/play/modules.py maps to `systemd`).

One read-only command answers whether systemd runs the host (`/run/systemd/system`, as
sd_booted(3) checks), the unit's `systemctl show` properties and `systemctl is-enabled`.
A host without systemd fails the task in one line: labctl has no other init backend (the
namespace lab's hosts, whose PID 1 is not systemd, are such hosts). The decisions are pure
functions of the parsed properties, as Ansible takes them: started starts a unit that is not
active/activating; stopped stops one that is, or is deactivating; restarted and reloaded
always act (reloaded starts a stopped unit). Registered: name, status (the properties),
enabled and state when asked for.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any

from labctl.actions.base import Action, ActionResult, Plan, Run, Step, TaskContext
from labctl.remote import ShellScript

NO_SYSTEMD = "nosystemd"
_NAME = re.compile(r"^[A-Za-z0-9:_.@\\-]+$")
STATES = ("started", "stopped", "restarted", "reloaded")
# `systemctl is-enabled` answers that mean "starts at boot" (Ansible: exit status 0, but
# indirect and alias alone mean not enabled).
ENABLED_STATES = ("enabled", "enabled-runtime", "static", "generated", "transient", "linked")


def parse_systemctl_show(text: str) -> dict[str, str]:
    """`systemctl show` output → properties. A value that opens `{` without closing it on
    its line (ExecStart=...) runs on over the next lines until one ends with `}`."""
    props: dict[str, str] = {}
    key: str | None = None
    value: list[str] = []
    for line in text.splitlines():
        if key is not None:
            value.append(line)
            if line.rstrip().endswith("}"):
                props[key] = "\n".join(value).strip()
                key = None
            continue
        name, sep, rest = line.partition("=")
        if not sep or not name:
            continue
        if rest.startswith("{") and not rest.rstrip().endswith("}"):
            key, value = name, [rest]
        else:
            props[name] = rest
    if key is not None:
        props[key] = "\n".join(value).strip()
    return props


def is_running(status: dict[str, str]) -> bool:
    return status.get("ActiveState") in ("active", "activating")


@dataclass(frozen=True)
class UnitState:
    status: dict[str, str]
    is_enabled: str  # `systemctl is-enabled`'s answer, "" when it gave none

    @property
    def found(self) -> bool:
        return self.status.get("LoadState", "not-found") != "not-found"

    @property
    def enabled(self) -> bool:
        return self.is_enabled in ENABLED_STATES


def read_script(name: str) -> ShellScript:
    n = shlex.quote(name)
    return ShellScript(
        f"if [ ! -d /run/systemd/system ]; then echo {NO_SYSTEMD}; exit 0; fi; "
        f"systemctl show -- {n}; "
        f'echo "LabctlIsEnabled=$(systemctl is-enabled -- {n} 2>/dev/null | head -n1)"'
    )


def parse_read(text: str) -> UnitState | None:
    """None: no systemd on the host."""
    if text.strip() == NO_SYSTEMD:
        return None
    status = parse_systemctl_show(text)
    return UnitState(status, status.pop("LabctlIsEnabled", ""))


def state_action(wanted: str | None, status: dict[str, str]) -> str | None:
    """The systemctl verb that brings the unit to `wanted`, or None."""
    running = is_running(status)
    if wanted == "started":
        return None if running else "start"
    if wanted == "stopped":
        return "stop" if running or status.get("ActiveState") == "deactivating" else None
    if wanted == "restarted":
        return "restart" if running else "start"
    if wanted == "reloaded":
        return "reload" if running else "start"
    return None


@dataclass(frozen=True)
class ServiceArgs:
    name: str
    state: str | None = None
    enabled: bool | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name) or self.name.startswith("-"):
            raise ValueError(f"name {self.name!r} is not a unit name")
        if self.state is not None and self.state not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}, not {self.state!r}")


@dataclass(frozen=True)
class SystemdArgs(ServiceArgs):
    daemon_reload: bool = False


@dataclass(frozen=True)
class DaemonReload(Run):
    """systemctl daemon-reload: run, but not a change by itself (as in Ansible)."""


class ServiceAction(Action):
    name = "service"
    Args = ServiceArgs

    def plan(self, ctx: TaskContext, args: ServiceArgs) -> Plan:
        read = parse_read(ctx.conn.run(read_script(args.name), check=True).stdout)
        if read is None:
            raise ValueError(
                f"{ctx.conn.host.name}: systemd is not running on this host "
                f"(no /run/systemd/system): {self.name} needs systemd"
            )
        unit = args.name
        masked = read.status.get("LoadState") == "masked"
        if read.found and not masked and read.status.get("LoadError"):
            raise ValueError(f"Error loading unit file '{unit}': {read.status['LoadError']}")
        steps: list[Step] = []
        changes: list[str] = []
        if getattr(args, "daemon_reload", False):
            steps.append(DaemonReload(["systemctl", "daemon-reload"]))
        out: dict[str, Any] = {"name": unit, "status": read.status}
        if (args.enabled is not None or args.state is not None) and not read.found:
            raise ValueError(f"Could not find the requested service {unit}: host")
        if args.enabled is not None:
            out["enabled"] = args.enabled
            if read.enabled != args.enabled:
                verb = "enable" if args.enabled else "disable"
                steps.append(Run(["systemctl", verb, "--", unit]))
                changes.append(f"{verb} {unit} (is-enabled: {read.is_enabled or '-'})")
        if args.state is not None:
            out["state"] = args.state
            how = state_action(args.state, read.status)
            if how:
                steps.append(Run(["systemctl", how, "--", unit]))
                changes.append(f"{how} {unit} (was {read.status.get('ActiveState', '-')})")
        return Plan(steps, changes, output=out)

    def apply(self, ctx: TaskContext, args: Any, plan: Plan) -> ActionResult:
        result = super().apply(ctx, args, plan)
        if result.failed or any(not isinstance(s, DaemonReload) for s in plan.steps):
            return result
        return ActionResult(output=result.output)  # only a daemon-reload ran: not "changed"


class SystemdAction(ServiceAction):
    name = "systemd"
    Args = SystemdArgs
