"""The driver action's safety, as pure functions of facts: whether a driver may be unloaded
without cutting the SSH session (`mgmt_driver_guard`), and the commands that arm and cancel a
revert when it is forced ("never cut the branch you sit on": docs/netmap.md, "Loading").

Commands are argument lists; the only shell text is inside `sh -c` scripts built from
quoted pieces.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass

from labctl.facts.host import HostFacts

# A module or driver name; safe in a systemd unit name too.
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")

# Drivers of stacked devices whose lower device the facts do not name: with the SSH session
# on one of them, which NIC carries it cannot be proven.
_STACKED_DRIVERS = frozenset({"802.1Q VLAN Support", "macvlan", "ipvlan", "team"})


# ---------------------------------------------------------------------------- mgmt guard


@dataclass(frozen=True)
class GuardDecision:
    allowed: bool
    reason: str  # one line, for the task's message
    arm_revert: bool  # allowed only because forced: arm a revert before unloading


def _check_name(kind: str, name: str) -> None:
    if not _NAME.match(name):
        raise ValueError(f"bad {kind} name {name!r} (letters, digits, _ and -, not first)")


def _ports(facts: HostFacts, master: str) -> list[str]:
    """Interfaces enslaved to `master`, transitively (bond under bridge)."""
    out: list[str] = []
    todo = [master]
    while todo:
        current = todo.pop()
        for iface in facts.interfaces:
            if iface.master == current and iface.name not in out and iface.name != master:
                out.append(iface.name)
                todo.append(iface.name)
    return out


def mgmt_driver_guard(facts: HostFacts, driver: str, force: bool) -> GuardDecision:
    """May `driver` be unloaded on this host without cutting the SSH session?

    The session's interface, and the ports under it if it is a bridge or bond, must not use
    the driver. When that cannot be proven (no SSH interface found, or a VLAN or macvlan
    whose lower device the facts do not name) the answer is no as well. `force` turns every
    no into "yes, with a revert armed first".
    """
    _check_name("driver", driver)
    host = facts.host
    how = "set force_mgmt_driver_swap: true to swap it anyway, with a revert armed"
    ssh_if = facts.ssh_interface
    iface = facts.interface(ssh_if) if ssh_if else None
    if ssh_if is None or iface is None:
        if force:
            return GuardDecision(
                True,
                f"{host}: the interface carrying the SSH session is unknown; unloading "
                f"{driver} anyway (forced), with a revert armed",
                True,
            )
        return GuardDecision(
            False,
            f"{host}: cannot tell which interface carries the SSH session, so unloading "
            f"{driver} may cut it off: {how}",
            False,
        )
    carriers = [ssh_if, *_ports(facts, ssh_if)]
    hit = [n for n in carriers if (i := facts.interface(n)) is not None and i.driver == driver]
    unprovable = iface.driver in _STACKED_DRIVERS
    if hit or unprovable:
        why = (
            f"{', '.join(hit)} carries the SSH session and uses {driver}"
            if hit
            else f"the SSH session is on {ssh_if} ({iface.driver}), whose lower device is unknown"
        )
        if force:
            return GuardDecision(
                True, f"{host}: {why}: unloading it anyway (forced), with a revert armed", True
            )
        return GuardDecision(False, f"{host}: {why}: refusing to unload {driver}: {how}", False)
    others = [i.name for i in facts.interfaces if i.driver == driver]
    uses = f"{driver} drives {', '.join(others)}" if others else f"no interface uses {driver}"
    return GuardDecision(
        True,
        f"{host}: {uses}; the SSH session is on {ssh_if} ({iface.driver or 'no driver'})",
        False,
    )


# ---------------------------------------------------------------------------- revert


def revert_unit(driver: str) -> str:
    return f"labctl-revert-{driver}"


def revert_pidfile(driver: str, run_dir: str = "/run") -> str:
    return posixpath.join(run_dir, f"{revert_unit(driver)}.pid")


def revert_command(driver: str, seconds: int, run_dir: str = "/run") -> list[str]:
    """Arm, on the host, "in `seconds` s put the stock `driver` back" (rmmod whatever module
    has its name, then modprobe it). A systemd timer where systemd runs (it survives the SSH
    session and labctl); else a `sleep` in a session of its own, whose PID and start time
    (field 22 of /proc/PID/stat) go in a pidfile. Cancelled by `cancel_revert_command` once
    the host answers again after the swap."""
    _check_name("driver", driver)
    if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds < 1:
        raise ValueError(f"revert delay must be a positive number of seconds, not {seconds!r}")
    q = shlex.quote
    unit, pidfile = revert_unit(driver), revert_pidfile(driver, run_dir)
    put_back = f"rmmod {q(driver)} 2>/dev/null; modprobe {q(driver)}"
    fallback = f"sleep {seconds}; rm -f {q(pidfile)}; {put_back}"
    script = "\n".join(
        [
            "if command -v systemd-run >/dev/null 2>&1 && [ -d /run/systemd/system ]; then",
            f"  exec systemd-run --quiet --collect --on-active={seconds} --unit={q(unit)} "
            f"sh -c {q(put_back)}",
            "fi",
            f"setsid sh -c {q(fallback)} </dev/null >/dev/null 2>&1 &",
            'p=$!; s=$(cat "/proc/$p/stat"); r=${s##*)}; set -- $r',
            f'echo "$p ${{20}}" > {q(pidfile)}',
        ]
    )
    return ["sh", "-c", script]


def cancel_revert_command(driver: str, run_dir: str = "/run") -> list[str]:
    """Disarm a revert armed by `revert_command` (either kind). Prints `cancelled` when a
    pending revert was stopped, `absent` when none was pending: never armed, or it has
    fired already. The fallback's process group is signalled only while its leader is the
    process recorded (same start time; a pidfile naming PID 0 or 1 is refused), so a reused
    PID is never hit. (`kill -TERM -PID`, not `kill -- -PID`: dash's kill takes no `--`.)"""
    _check_name("driver", driver)
    q = shlex.quote
    unit, pidfile = revert_unit(driver), revert_pidfile(driver, run_dir)
    timer = q(unit + ".timer")
    script = "\n".join(
        [
            "how=absent",
            "if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then",
            f"  if systemctl is-active --quiet {timer}; then",
            f"    systemctl stop {timer} && how=cancelled",
            "  fi",
            "fi",
            f"if [ -f {q(pidfile)} ]; then",
            f"  read -r p t < {q(pidfile)} || true",
            '  case "$p$t" in *[!0-9]*|"") p=0 ;; esac',
            '  if [ "$p" -gt 1 ] && s=$(cat "/proc/$p/stat" 2>/dev/null); then',
            "    r=${s##*)}; set -- $r",
            '    if [ "${20}" = "$t" ] && [ "$1" != Z ]; then',
            '      kill -TERM "-$p" && how=cancelled',
            "    fi",
            "  fi",
            f"  rm -f {q(pidfile)}",
            "fi",
            'echo "$how"',
        ]
    )
    return ["sh", "-c", script]
