"""process: start, stop or restart a background program on a host, tracked by a pidfile.

The program runs in a session of its own (`setsid`), stdin from /dev/null and output to
`<run_dir>/<name>.log`, so it outlives the SSH channel and can be stopped as a group. The
pidfile holds one line of JSON: the PID, its start time (field 22 of /proc/PID/stat) and the
argv. PIDs are reused, so a PID counts as ours only while its start time matches; nothing is
signalled otherwise. A zombie counts as dead: on hosts whose PID 1 does not reap (this
machine's does not), a stopped program stays a zombie for good.

Stopping stops the whole session the program started (its children too), also when the
program itself has died and left children running (an OOM-killed server's workers keep its
port). Linux never hands out a PID while a session of that ID has members, so the session's
members are ours as long as the recorded PID is not held by another process; each must also
have started no earlier than the program. (Not `kill -- -PGID`: dash's kill takes no `--`.)

Plan and apply are one round trip each: a small sh script made from quoted pieces.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field

from labctl.actions.base import Action, ActionResult, Plan, Run, TaskContext, step_failed
from labctl.paths import HOST_RUN_DIR
from labctl.remote import HostConnection, ShellScript

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
STATES = ("started", "stopped", "restarted")
STOP_SIGNALS = ("TERM", "INT", "HUP", "QUIT", "USR1", "USR2")
STOP_GRACE_TICKS = 50  # x 0.1 s between SIGTERM and SIGKILL
LOG_TAIL_LINES = 10


@dataclass(frozen=True)
class ProcessArgs:
    name: str
    argv: tuple[str, ...] | None = None
    state: str = "started"
    chdir: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    run_dir: str = HOST_RUN_DIR
    startup_wait: float = 0.3
    stop_signal: str = "TERM"  # sent first (pkt-gen prints its summary on INT); KILL after 5 s


def check_args(args: ProcessArgs) -> None:
    """Everything that can be wrong before the host is asked (ValueError, like other actions)."""
    if not _NAME.match(args.name):
        raise ValueError(f"process: name {args.name!r} must match [A-Za-z0-9_.-]+")
    if args.state not in STATES:
        raise ValueError(f"process: state must be one of {', '.join(STATES)}, not {args.state!r}")
    if args.state != "stopped" and not args.argv:
        raise ValueError(f"process {args.name}: state {args.state} needs `argv`")
    if not args.run_dir.startswith("/"):
        raise ValueError(f"process {args.name}: run_dir must be absolute, not {args.run_dir!r}")
    if args.chdir is not None and not args.chdir:
        raise ValueError(f"process {args.name}: chdir is empty")
    bad = sorted(k for k in args.env if not _ENV_NAME.match(k))
    if bad:
        raise ValueError(f"process {args.name}: bad environment variable name(s) {bad}")
    if not 0 <= args.startup_wait <= 600:
        raise ValueError(f"process {args.name}: startup_wait must be 0..600 s")
    if args.stop_signal not in STOP_SIGNALS:
        raise ValueError(
            f"process {args.name}: stop_signal must be one of {', '.join(STOP_SIGNALS)}"
        )


# ---------------------------------------------------------------------------- facts


@dataclass(frozen=True)
class PidRecord:
    pid: int
    start: int  # clock ticks after boot, field 22 of /proc/PID/stat
    argv: tuple[str, ...]


def parse_pidfile(text: str) -> PidRecord | None:
    """The pidfile's one JSON line, or None if it is not one we wrote."""
    try:
        doc = json.loads(text.strip().splitlines()[0] if text.strip() else "")
    except (ValueError, IndexError):
        return None
    if not isinstance(doc, dict):
        return None
    pid, start, argv = doc.get("pid"), doc.get("start"), doc.get("argv")
    if not (isinstance(pid, int) and not isinstance(pid, bool) and pid > 1):
        return None
    if not (isinstance(start, int) and not isinstance(start, bool) and start >= 0):
        return None
    if not (isinstance(argv, list) and all(isinstance(a, str) for a in argv)):
        return None
    return PidRecord(pid, start, tuple(argv))


def format_pidfile(record: PidRecord) -> str:
    """The exact layout the start script writes (pid first: the shell finds it with sed)."""
    return (
        f'{{"pid": {record.pid}, "start": {record.start}, '
        f'"argv": {json.dumps(list(record.argv))}}}\n'
    )


@dataclass(frozen=True)
class ProcStat:
    state: str  # R, S, D, Z, …
    pgrp: int
    start: int


def parse_proc_stat(text: str) -> ProcStat | None:
    """/proc/PID/stat; the command name (field 2) may hold spaces, ')' or newlines, so the
    fields are counted from the last ')'."""
    head, paren, rest = text.rpartition(")")
    fields = rest.split()
    if not paren or not head or len(fields) < 20:
        return None
    try:
        return ProcStat(fields[0], int(fields[2]), int(fields[19]))
    except ValueError:
        return None


@dataclass(frozen=True)
class ProcessState:
    record: PidRecord | None
    pidfile: bool  # a pidfile exists (maybe unreadable or stale)
    stat: ProcStat | None  # of the recorded PID, if that PID exists
    orphans: tuple[int, ...] = ()  # live members of its session, the program itself not one

    @property
    def running(self) -> bool:
        return (
            self.record is not None
            and self.stat is not None
            and self.stat.state not in ("Z", "X")
            and self.stat.start == self.record.start
        )

    @property
    def reused(self) -> bool:
        """The recorded PID is now another process's: nothing of that PID is ours."""
        return (
            self.record is not None
            and self.stat is not None
            and self.stat.start != self.record.start
        )

    def gone_reason(self) -> str:
        """Why a pidfile does not describe a running program of ours."""
        if self.record is None:
            return "the pidfile was unreadable"
        if self.reused:
            return f"pid {self.record.pid} now belongs to another process"
        return f"pid {self.record.pid} had exited"


def parse_probe(text: str) -> ProcessState:
    """Output of `_probe_script`: `nopidfile`, or `pidfile` and its JSON line, then
    `member PID STATE START` lines for the processes of the session the program started,
    then optionally `stat` and the raw /proc/PID/stat (last: a command name may hold a
    newline)."""
    first, _, rest = text.partition("\n")
    if first.strip() != "pidfile":
        return ProcessState(None, False, None)
    line, _, rest = rest.partition("\n")
    record = parse_pidfile(line)
    if record is None:
        return ProcessState(None, True, None)
    members, _, raw_stat = ("\n" + rest).partition("\nstat\n")
    stat = parse_proc_stat(raw_stat) if raw_stat else None
    orphans: list[int] = []
    if stat is None or stat.start == record.start:  # else the PID is reused: none are ours
        for member in members.splitlines():
            fields = member.split()
            if len(fields) != 4 or fields[0] != "member" or not fields[1].isdigit():
                continue
            pid, state, start = int(fields[1]), fields[2], fields[3]
            alive = state not in ("Z", "X") and start.isdigit()
            if pid != record.pid and alive and int(start) >= record.start:
                orphans.append(pid)
    return ProcessState(record, True, stat, tuple(sorted(orphans)))


# ---------------------------------------------------------------------------- scripts

# `s=$(cat …)` and not `read`: the command name in /proc/PID/stat may contain a newline.
_ALIVE = (
    'alive() { s=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1; r=${s##*)}; '
    'set -- $r; [ "$1" != Z ] && [ "$1" != X ] && [ "${20}" = "$start" ]; }'
)


def process_paths(run_dir: str, name: str) -> tuple[str, str]:
    """(pidfile, log) of the program `name` in `run_dir`."""
    base = run_dir.rstrip("/") or "/"
    return f"{base}/{name}.pid", f"{base}/{name}.log"


def probe_process(conn: HostConnection, name: str, run_dir: str = HOST_RUN_DIR) -> ProcessState:
    """The state of the program `name` started by this action: one round trip, no change."""
    return _read_state(conn, process_paths(run_dir, name)[0])


def _read_state(conn: HostConnection, pidfile: str) -> ProcessState:
    return parse_probe(conn.run(ShellScript(_probe_script(pidfile)), check=True).stdout)


# The live processes of session $pid that started no earlier than $start (the program and
# its children; `ps -s` lists a session). Without ps, the program alone.
# `member PID STATE START` for each process of session $pid (`ps -s` lists a session; each
# one's state and start time from /proc). Nothing without ps.
_SESSION = (
    "session() { command -v ps >/dev/null 2>&1 || return 0; "
    'for m in $(ps -o pid= -s "$pid" 2>/dev/null); do '
    's=$(cat "/proc/$m/stat" 2>/dev/null) || continue; r=${s##*)}; set -- $r; '
    'echo "member $m $1 ${20}"; done; }'
)

# The live processes of session $pid that started no earlier than $start (the program and
# its children). Without ps, the program alone.
_MEMBERS = (
    "members() { if command -v ps >/dev/null 2>&1; then "
    "session | while read -r _ m st t; do "
    '[ "$st" != Z ] && [ "$st" != X ] && [ "$t" -ge "$start" ] && echo "$m"; done; '
    'elif alive; then echo "$pid"; fi; }'
)


def _probe_script(pidfile: str) -> str:
    f = shlex.quote(pidfile)
    return (
        f"if [ -f {f} ]; then echo pidfile; head -n 1 {f}; "
        f"pid=$(sed -n 's/^{{\"pid\": *\\([0-9][0-9]*\\),.*/\\1/p' {f} | head -n 1); "
        f'{_SESSION}; if [ -n "$pid" ]; then session; fi; '
        'if [ -n "$pid" ] && [ -e "/proc/$pid/stat" ]; then echo stat; '
        # `|| true`: the program may exit between the test and the read (it is then gone)
        'cat "/proc/$pid/stat" 2>/dev/null || true; fi; '
        "else echo nopidfile; fi"
    )


def _stop_script(record: PidRecord, pidfile: str, signal: str = "TERM") -> str:
    """`signal` (SIGTERM) to every process of the program's session, up to ~5 s, then
    SIGKILL; nothing if the recorded PID now belongs to another process. Prints
    `stopped term|kill`, or nothing if all had already gone."""
    return "\n".join(
        [
            "set -f",
            f"pid={record.pid}; start={record.start}",
            _ALIVE,
            _SESSION,
            _MEMBERS,
            # A PID held by a process that is not ours: its session is not ours either.
            'if s=$(cat "/proc/$pid/stat" 2>/dev/null); then r=${s##*)}; set -- $r; '
            'if [ "${20}" != "$start" ]; then ' + f"rm -f {shlex.quote(pidfile)}; exit 0; fi; fi",
            "left=$(members)",
            'if [ -n "$left" ]; then',
            f"  kill -s {signal} $left 2>/dev/null; how=term; i=0",
            '  while [ -n "$(members)" ] && [ $i -lt ' + f"{STOP_GRACE_TICKS} ]; do",
            "    sleep 0.1; i=$((i+1)); done",
            '  left=$(members); if [ -n "$left" ]; then how=kill; kill -s KILL $left 2>/dev/null',
            '    i=0; while [ -n "$(members)" ] && [ $i -lt 20 ]; do sleep 0.1; i=$((i+1)); done',
            "  fi",
            '  left=$(members); if [ -n "$left" ]; then',
            '    echo "pids $left of $pid survived SIGKILL" >&2; exit 1; fi',
            '  echo "stopped $how"',
            "fi",
            f"rm -f {shlex.quote(pidfile)}",
        ]
    )


def _start_script(args: ProcessArgs, pidfile: str, log: str) -> str:
    """Start detached, record the pidfile, watch `startup_wait` seconds. Prints
    `started PID START`, or `died STATUS` and the log's last lines (exit 1)."""
    q = shlex.quote
    inner = [f"cd {q(args.chdir)}"] if args.chdir else []
    inner += [f"export {k}={q(v)}" for k, v in sorted(args.env.items())]
    inner.append("exec " + shlex.join(["setsid", "--", *(args.argv or ())]))
    argv_json = json.dumps(list(args.argv or ()))
    return "\n".join(
        [
            "set -f",
            f"f={q(pidfile)}; l={q(log)}",
            f"mkdir -p {q(args.run_dir)} || exit 1",
            'if [ -e "$l" ]; then mv -f "$l" "$l.1"; fi',
            # A background job of a non-interactive sh is no group leader, so setsid does not fork:
            # $! is the program's own PID, and after setsid also its group and session id.
            f'( {" && ".join(inner)} ) </dev/null >>"$l" 2>&1 &',
            "pid=$!",
            _ALIVE,
            # Until it is waited for, our dead child is a zombie whose stat is still readable.
            's=$(cat "/proc/$pid/stat" 2>/dev/null); r=${s##*)}; set -- $r; start=${20:-0}',
            f'printf \'{{"pid": %s, "start": %s, "argv": %s}}\\n\' "$pid" "$start" '
            f'{q(argv_json)} > "$f.tmp" && mv -f "$f.tmp" "$f"',
            f"sleep {args.startup_wait:g}",
            'if alive; then echo "started $pid $start"; exit 0; fi',
            'wait "$pid"; rc=$?',
            'rm -f "$f"',
            'echo "died $rc"',
            f'tail -n {LOG_TAIL_LINES} "$l"',
            "exit 1",
        ]
    )


def _exit_reason(status: int) -> str:
    if status > 128:
        return f"was killed by signal {status - 128}"
    return f"exited with status {status}"


# ---------------------------------------------------------------------------- the action


class ProcessAction(Action):
    name = "process"
    Args = ProcessArgs

    def plan(self, ctx: TaskContext, args: ProcessArgs) -> Plan:
        check_args(args)
        pidfile, log = process_paths(args.run_dir, args.name)
        state = _read_state(ctx.conn, pidfile)
        record = state.record
        running = state.running
        output = {"pid": record.pid if running and record else None, "log": log, "running": running}
        argv = tuple(args.argv or ())
        script: list[str] = []
        change = ""
        left = ", ".join(map(str, state.orphans))
        orphans = f"{len(state.orphans)} process(es) it left running ({left})" if left else ""
        if args.state == "stopped":
            if running and record:
                script = [_stop_script(record, pidfile, args.stop_signal)]
                change = f"stop {args.name} (pid {record.pid})"
            elif orphans and record:
                script = [_stop_script(record, pidfile, args.stop_signal)]
                change = f"stop {args.name}'s {orphans}: {state.gone_reason()}"
            elif state.pidfile:
                script = [shlex.join(["rm", "-f", pidfile])]
                change = f"remove {args.name}'s stale pidfile: {state.gone_reason()}"
        elif running and record and args.state == "started" and record.argv == argv:
            pass
        else:
            if running and record:
                script.append(_stop_script(record, pidfile, args.stop_signal))
                why = (
                    "restart"
                    if args.state == "restarted"
                    else f"argv changed from {shlex.join(record.argv)}"
                )
                change = f"restart {args.name} (pid {record.pid}, {why}): {shlex.join(argv)}"
            else:
                change = f"start {args.name}: {shlex.join(argv)}"
                if orphans and record:
                    script.append(_stop_script(record, pidfile, args.stop_signal))
                    change += f" (after stopping the {orphans}: {state.gone_reason()})"
                elif state.pidfile:
                    change += f" (the old one was gone: {state.gone_reason()})"
            script.append(_start_script(args, pidfile, log))
        if not script:
            return Plan(output=output)
        # One script, one round trip; each part is a complete sh snippet.
        return Plan(steps=[Run(ShellScript("\n".join(script)))], changes=[change], output=output)

    def apply(self, ctx: TaskContext, args: ProcessArgs, plan: Plan) -> ActionResult:
        step = plan.steps[0]
        assert isinstance(step, Run)
        res = ctx.conn.run(step.command, timeout=args.startup_wait + 60)
        lines = res.stdout.splitlines()
        output = dict(plan.output)
        died = next((i for i, line in enumerate(lines) if line.startswith("died ")), None)
        if died is not None:
            tail = lines[died + 1 :]
            reason = _exit_reason(int(lines[died].split()[1]))
            msg = (
                f"{args.name} {reason} within {args.startup_wait:g} s; "
                f"the last lines of {output['log']}:\n" + "\n".join(tail)
            )
            return ActionResult(
                changed=True,
                failed=True,
                msg=msg,
                changes=tuple(plan.changes),
                output={**output, "pid": None, "running": False, "log_tail": tail},
            )
        if not res.ok:
            return step_failed(plan, res, output)
        started = next((line.split() for line in lines if line.startswith("started ")), None)
        if started:
            output.update(pid=int(started[1]), running=True)
        else:
            output.update(pid=None, running=False)
        return ActionResult(changed=True, changes=tuple(plan.changes), output=output)
