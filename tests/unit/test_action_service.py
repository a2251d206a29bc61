"""service/systemd without a host: the `systemctl show` parser on output in systemd 252's
format (Debian 12; an excerpt of `systemctl show ssh.service`), and plans from canned reads."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from labctl.actions.base import ArgsError, Run, TaskContext, build_args, run_action
from labctl.actions.service import (
    DaemonReload,
    ServiceAction,
    SystemdAction,
    parse_read,
    parse_systemctl_show,
    state_action,
)
from labctl.remote import CommandResult, command_text

SHOW_SSH = """\
Type=notify
ExitType=main
Restart=on-failure
NotifyAccess=main
RestartUSec=100ms
MainPID=612
ExecMainStartTimestamp=Thu 2026-12-03 20:00:01 UTC
ExecMainPID=612
ExecReload={ path=/usr/sbin/sshd ; argv[]=/usr/sbin/sshd -t ; ignore_errors=no ; \
start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }
ExecStart={ path=/usr/sbin/sshd ; argv[]=/usr/sbin/sshd -D $SSHD_OPTS ; ignore_errors=no ;
 start_time=[Thu 2026-12-03 20:00:01 UTC] ; stop_time=[n/a] ; pid=612 ; code=(null) ; status=0/0 }
Id=ssh.service
Names=ssh.service
Description=OpenBSD Secure Shell server
LoadState=loaded
ActiveState=active
SubState=running
FragmentPath=/lib/systemd/system/ssh.service
UnitFileState=enabled
UnitFilePreset=enabled
"""

SHOW_MISSING = """\
Id=nosuch.service
Names=nosuch.service
LoadState=not-found
ActiveState=inactive
SubState=dead
LoadError=org.freedesktop.systemd1.NoSuchUnit "Unit nosuch.service not found."
"""


def test_parser_keeps_values_and_joins_multiline_ones() -> None:
    props = parse_systemctl_show(SHOW_SSH)
    assert props["ActiveState"] == "active" and props["MainPID"] == "612"
    assert props["ExecStart"].startswith("{ path=/usr/sbin/sshd")
    assert props["ExecStart"].endswith("status=0/0 }") and "\n" in props["ExecStart"]
    assert props["ExecReload"].endswith("}") and "\n" not in props["ExecReload"]
    assert props["Description"] == "OpenBSD Secure Shell server"
    assert props["Id"] == "ssh.service"


@pytest.mark.parametrize(
    ("wanted", "active", "verb"),
    [
        ("started", "active", None),
        ("started", "activating", None),
        ("started", "inactive", "start"),
        ("started", "failed", "start"),
        ("stopped", "active", "stop"),
        ("stopped", "deactivating", "stop"),
        ("stopped", "inactive", None),
        ("restarted", "active", "restart"),
        ("restarted", "inactive", "start"),
        ("reloaded", "active", "reload"),
        ("reloaded", "inactive", "start"),
        (None, "active", None),
    ],
)
def test_state_actions_follow_ansible(wanted: str | None, active: str, verb: str | None) -> None:
    assert state_action(wanted, {"ActiveState": active}) == verb


class ReadConn:
    def __init__(self, stdout: str) -> None:
        self.host = SimpleNamespace(name="srv1")
        self.stdout = stdout
        self.ran: list[str] = []

    def run(self, command: Any, **_: Any) -> CommandResult:
        text = command_text(command)
        self.ran.append(text)
        return CommandResult("srv1", text, 0, self.stdout, "", 0.0)


def plan_for(action: type[ServiceAction], stdout: str, **raw: Any) -> Any:
    conn = ReadConn(stdout)
    ctx = TaskContext(conn=conn, vars={}, base_dir=Path("."))  # type: ignore[arg-type]
    return action().plan(ctx, build_args(action, raw))


def read(show: str, enabled: str) -> str:
    return f"{show}LabctlIsEnabled={enabled}\n"


def test_plans() -> None:
    ssh = read(SHOW_SSH, "enabled")
    assert not plan_for(ServiceAction, ssh, name="ssh", state="started", enabled=True).steps
    stop = plan_for(ServiceAction, ssh, name="ssh", state="stopped", enabled=False)
    assert stop.steps == [
        Run(["systemctl", "disable", "--", "ssh"]),
        Run(["systemctl", "stop", "--", "ssh"]),
    ]
    assert stop.output["status"]["ActiveState"] == "active"
    assert stop.output["enabled"] is False and stop.output["state"] == "stopped"
    reload = plan_for(SystemdAction, ssh, name="ssh", daemon_reload=True, state="started")
    assert reload.steps == [DaemonReload(["systemctl", "daemon-reload"])]
    off = read(SHOW_SSH.replace("=active", "=inactive"), "disabled")
    assert len(plan_for(ServiceAction, off, name="ssh", state="started", enabled=True).steps) == 2


def test_only_a_daemon_reload_is_not_a_change() -> None:
    conn = ReadConn(read(SHOW_SSH, "enabled"))
    ctx = TaskContext(conn=conn, vars={}, base_dir=Path("."))  # type: ignore[arg-type]
    result = run_action(SystemdAction(), ctx, {"name": "ssh", "daemon_reload": True})
    assert not result.changed and not result.failed
    assert conn.ran[-1] == "systemctl daemon-reload"


def test_no_systemd_fails_in_one_line() -> None:
    assert parse_read("nosystemd\n") is None
    for action in (ServiceAction, SystemdAction):
        with pytest.raises(ValueError) as info:
            plan_for(action, "nosystemd\n", name="ssh", state="started")
        message = str(info.value)
        assert message == (
            f"srv1: systemd is not running on this host (no /run/systemd/system): "
            f"{action.name} needs systemd"
        )


def test_a_missing_unit_fails_like_ansible() -> None:
    missing = read(SHOW_MISSING, "")
    with pytest.raises(ValueError, match="Could not find the requested service nosuch: host"):
        plan_for(ServiceAction, missing, name="nosuch", state="started")
    broken = read(SHOW_SSH + 'LoadError=org.x.BadUnitSetting "bad"\n', "enabled")
    with pytest.raises(ValueError, match="Error loading unit file 'ssh'"):
        plan_for(ServiceAction, broken, name="ssh", state="started")


def test_arguments() -> None:
    with pytest.raises(ArgsError, match="unknown argument 'daemon_reload'"):
        build_args(ServiceAction, {"name": "ssh", "daemon_reload": True})
    with pytest.raises(ArgsError, match="not a unit name"):
        build_args(ServiceAction, {"name": "ssh; reboot"})
    with pytest.raises(ArgsError, match="state must be"):
        build_args(SystemdAction, {"name": "ssh", "state": "running"})
    assert build_args(SystemdAction, {"name": "getty@tty1", "enabled": "yes"}).enabled
