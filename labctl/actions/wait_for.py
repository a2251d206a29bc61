"""wait_for: wait on the host for a port, a file or a string in a file (Ansible's wait_for).

The wait is one sh loop run on the host, so `host` (default 127.0.0.1) and `path` are seen
from the host, as Ansible sees them. Waiting changes nothing: the task is never "changed",
and the wait happens while planning (it only observes). The loop is bounded by the host's
clock: `timeout` counts from the start, `delay` included, as in Ansible; the connection's
own command timeout is set a little beyond it.

Ansible's wait_for does not run in check mode (check_mode support: none, so a check run
reports it skipped). A TaskContext has no check flag yet; if one appears as `ctx.check`,
the task is skipped in check mode, else it waits then too.
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass
from typing import Any

from labctl.actions.base import Action, ActionFailed, Plan, TaskContext
from labctl.remote import ShellScript

# A TCP connect from sh: bash's /dev/tcp (Debian's sh is dash, which has none), bounded
# by coreutils timeout. Host and port are bash's $1 and $2, never part of the script text.
_CONNECT = 'exec 3<>"/dev/tcp/$1/$2"'
_HOST = re.compile(r"^[A-Za-z0-9.:_-]+$")


@dataclass(frozen=True)
class WaitForArgs:
    host: str = "127.0.0.1"
    port: int | None = None
    path: str | None = None
    state: str = "started"  # started | stopped | present | absent
    timeout: int = 300
    delay: int = 0
    sleep: int = 1
    connect_timeout: int = 5
    search_regex: str | None = None
    msg: str | None = None

    def __post_init__(self) -> None:
        if self.state not in ("started", "stopped", "present", "absent"):
            raise ValueError(
                f"state must be started, stopped, present or absent, not {self.state!r}"
            )
        if self.port is not None and self.path is not None:
            raise ValueError("port and path parameter can not both be passed to wait_for")
        if self.path is not None and self.state == "stopped":
            raise ValueError(
                "state=stopped should only be used for checking a port in the wait_for module"
            )
        if self.search_regex is not None and self.path is None:
            # Ansible also reads a port's banner; labctl does not (yet): refused, not ignored
            raise ValueError("search_regex needs path (labctl does not read from a port)")
        if self.port is not None and not 0 < self.port < 65536:
            raise ValueError(f"port {self.port} is out of range")
        if not _HOST.match(self.host):
            raise ValueError(f"host {self.host!r} is not a host name or address")
        if min(self.timeout, self.delay, self.sleep, self.connect_timeout) < 0:
            raise ValueError("timeout, delay, sleep and connect_timeout must not be negative")


def condition(args: WaitForArgs) -> str | None:
    """sh text that holds when the wait is over, or None for a plain sleep of `timeout`."""
    if args.port is not None:
        connect = (
            f"timeout {args.connect_timeout} bash -c {shlex.quote(_CONNECT)} _ "
            f"{shlex.quote(args.host)} {args.port} 2>/dev/null"
        )
        return connect if args.state in ("started", "present") else f"! {connect}"
    if args.path is not None:
        p = shlex.quote(args.path)
        if args.state == "absent":
            return f"[ ! -e {p} ]"
        if args.search_regex is not None:
            # grep -P: Perl-compatible, the nearest grep has to Python's re (line by line)
            return f"grep -qP -e {shlex.quote(args.search_regex)} -- {p} 2>/dev/null"
        return f"[ -e {p} ]"
    return None


def failure_message(args: WaitForArgs) -> str:
    """Ansible's messages for a timeout (or the task's own `msg`)."""
    if args.msg:
        return args.msg
    if args.port is not None:
        where = f"{args.host}:{args.port}"
        if args.state in ("stopped", "absent"):
            return f"Timeout when waiting for {where} to stop."
        return f"Timeout when waiting for {where}"
    if args.state == "absent":
        return f"Timeout when waiting for {args.path} to be absent."
    if args.search_regex is not None:
        return f"Timeout when waiting for search string {args.search_regex} in {args.path}"
    return f"Timeout when waiting for file {args.path}"


def wait_script(args: WaitForArgs) -> ShellScript:
    """The whole wait: delay, then poll every `sleep` s until the condition or the deadline."""
    cond = condition(args)
    start = f"end=$(($(date +%s) + {args.timeout}))"
    delay = f"sleep {args.delay}" if args.delay else "true"
    if cond is None:
        return ShellScript(f"{delay}; sleep {args.timeout}")  # Ansible: a plain sleep
    return ShellScript(
        f"{start}; {delay}; until {cond}; do "
        f'if [ "$(date +%s)" -ge "$end" ]; then echo {shlex.quote(failure_message(args))} >&2; '
        f"exit 1; fi; sleep {args.sleep}; done"
    )


class WaitForAction(Action):
    name = "wait_for"
    Args = WaitForArgs

    def plan(self, ctx: TaskContext, args: WaitForArgs) -> Plan:
        started = time.monotonic()
        budget = args.timeout + args.delay + args.connect_timeout + 10
        res = ctx.conn.run(wait_script(args), timeout=budget)
        elapsed = int(time.monotonic() - started)
        output: dict[str, Any] = {
            "elapsed": elapsed,
            "state": args.state,
            "port": args.port,
            "path": args.path,
            "search_regex": args.search_regex,
        }
        if not res.ok:
            raise ActionFailed(f"{res.first_error_line()} (after {elapsed} s)", res)
        return Plan(output=output)
