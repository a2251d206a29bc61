"""Runs a playbook: plays in order, each task on all its hosts at once, results as values.

A failed host leaves the rest of its play (the others go on); `any_errors_fatal` stops all.
An unreachable host is reported as unreachable, not failed. Check mode plans every task
from the real state of each host and changes nothing.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from labctl.actions import ACTIONS
from labctl.actions.base import ActionResult, TaskContext, Undo, run_action
from labctl.errors import HostUnreachable, InputError, LabctlError
from labctl.facts.host import HostFacts, gather_facts
from labctl.inventory import Host, Inventory
from labctl.playbook import Play, Playbook, Task, check_names
from labctl.remote import Connections, HostConnection
from labctl.templating import evaluate, render_value

Status = Literal["ok", "changed", "failed", "skipped", "unreachable"]


@dataclass(frozen=True)
class RunOptions:
    check: bool = False
    diff: bool = False
    limit: str | None = None
    tags: frozenset[str] = frozenset()
    extra_vars: Mapping[str, Any] = field(default_factory=dict)
    forks: int = 32
    log_dir: Path | None = None  # a failed step's whole output goes to <log_dir>/<run>/<host>.log


@dataclass(frozen=True)
class TaskHostResult:
    play: str
    task: str
    host: str
    status: Status
    msg: str = ""
    changes: tuple[str, ...] = ()
    diff: str | None = None
    output: Mapping[str, Any] = field(default_factory=dict)
    duration: float = 0.0
    ignored: bool = False  # failed, but the task has ignore_errors
    log: str = ""  # a failed step's whole output
    log_file: str | None = None  # where that output was written
    undo: tuple[Undo, ...] = ()  # what puts back what this task changed on this host


@dataclass
class HostRecap:
    ok: int = 0
    changed: int = 0
    unreachable: int = 0
    failed: int = 0
    skipped: int = 0
    ignored: int = 0


@dataclass
class PlaybookRun:
    results: list[TaskHostResult] = field(default_factory=list)
    recap: dict[str, HostRecap] = field(default_factory=dict)

    def undo_by_host(self) -> dict[str, list[Undo]]:
        """What puts back the run's changes, per host, in the order they were made."""
        out: dict[str, list[Undo]] = {}
        for r in self.results:
            if r.undo:
                out.setdefault(r.host, []).extend(r.undo)
        return out

    @property
    def exit_status(self) -> int:
        """0 all well, 2 a host failed, 4 a host was unreachable (Ansible's codes)."""
        if any(r.failed for r in self.recap.values()):
            return 2
        if any(r.unreachable for r in self.recap.values()):
            return 4
        return 0


class Reporter(Protocol):
    def play_start(self, play: Play, hosts: list[str]) -> None: ...
    def task_start(self, play: Play, task_name: str, hosts: list[str]) -> None: ...
    def host_progress(self, host: str, text: str) -> None: ...
    def host_done(self, result: TaskHostResult) -> None: ...
    def task_done(self) -> None: ...


class QuietReporter:
    """Says nothing while a run goes (--json, a nightly's provisioning)."""

    def play_start(self, play: Play, hosts: list[str]) -> None: ...
    def task_start(self, play: Play, task_name: str, hosts: list[str]) -> None: ...
    def host_progress(self, host: str, text: str) -> None: ...
    def host_done(self, result: TaskHostResult) -> None: ...
    def task_done(self) -> None: ...


class HostLogs:
    """One log file per host for this run, written only when a step fails: its command and
    whole output, which the task's message then names."""

    def __init__(self, log_dir: Path | None) -> None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.dir = log_dir / f"{stamp}-{os.getpid()}" if log_dir is not None else None
        self._lock = threading.Lock()

    def keep(self, result: TaskHostResult) -> TaskHostResult:
        if self.dir is None or not result.log:
            return result
        path = self.dir / f"{result.host}.log"
        header = f"=== {time.strftime('%F %T')} play [{result.play}] task [{result.task}]\n"
        try:
            with self._lock:
                self.dir.mkdir(parents=True, exist_ok=True)
                with path.open("a", encoding="utf-8", errors="replace") as fh:
                    fh.write(header + result.log + "\n")
        except OSError as exc:
            note = f"\n(the whole output could not be written to {path}: {exc.strerror})"
            return replace(result, msg=result.msg + note)
        return replace(result, msg=f"{result.msg}\nfull output: {path}", log_file=str(path))


@dataclass
class _HostState:
    host: Host
    facts: HostFacts | None = None
    registered: dict[str, Any] = field(default_factory=dict)
    out: bool = False  # failed or unreachable: no more tasks this run


def select_hosts(inventory: Inventory, pattern: str, limit: str | None) -> list[Host]:
    hosts = inventory.select(pattern)
    if limit is not None:  # `--limit ''` is an empty pattern (refused), not "no limit"
        allowed = {h.name for h in inventory.select(limit)}
        hosts = [h for h in hosts if h.name in allowed]
    return hosts


SPECIAL_TAGS = frozenset({"always", "never"})


def task_selected(task_tags: frozenset[str], wanted: frozenset[str]) -> bool:
    """Ansible's rule: with no --tags every task runs but those tagged `never`; with --tags,
    a task runs when it has one of them, or `always` (and is not `never`)."""
    if "never" in task_tags:
        return bool(task_tags & wanted)
    return not wanted or bool(task_tags & wanted) or "always" in task_tags


def prepare(playbook: Playbook, inventory: Inventory, options: RunOptions) -> list[list[Host]]:
    """Resolve every play's hosts and check every variable and tag: all before any connection."""
    known = SPECIAL_TAGS | playbook.tags
    unknown = sorted(options.tags - known)
    if unknown:
        raise InputError(
            f"{playbook.path}: no task has tag {', '.join(map(repr, unknown))} "
            f"(its tags: {', '.join(sorted(known - SPECIAL_TAGS)) or 'none'})"
        )
    hosts_by_play = [select_hosts(inventory, p.hosts, options.limit) for p in playbook.plays]
    check_names(playbook, hosts_by_play, options.extra_vars)
    return hosts_by_play


def host_variables(
    state: _HostState,
    play: Play,
    groups: Mapping[str, list[str]],
    hosts: list[Host],
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    """inventory < play vars < facts and registered results < -e (Ansible's order, simplified)."""
    host = state.host
    base: dict[str, Any] = {
        **host.vars,
        "inventory_hostname": host.name,
        "group_names": [g for g in host.groups if g != "all"],
        "groups": groups,
        "play_hosts": [h.name for h in hosts],
        "facts": state.facts.to_dict() if state.facts else {},
    }
    for key, value in play.vars.items():
        base[key] = render_value(value, {**base, **extra})
    return {**base, **state.registered, **extra}


def group_members(inventory: Inventory) -> dict[str, list[str]]:
    """Every group's hosts, children included, in inventory order."""
    return {
        g: [h.name for h in inventory.hosts.values() if g in h.groups] for g in inventory.groups
    }


def run_playbook(
    playbook: Playbook, inventory: Inventory, options: RunOptions, reporter: Reporter
) -> PlaybookRun:
    hosts_by_play = prepare(playbook, inventory, options)
    run = PlaybookRun()
    logs = HostLogs(options.log_dir)
    all_hosts = {h.name: h for hosts in hosts_by_play for h in hosts}
    states = {name: _HostState(h) for name, h in all_hosts.items()}
    for name in all_hosts:
        run.recap[name] = HostRecap()
    with Connections(all_hosts.values()) as conns:
        for play, hosts in zip(playbook.plays, hosts_by_play, strict=True):
            if not _run_play(
                play, hosts, playbook, inventory, options, reporter, conns, states, run, logs
            ):
                break
    return run


def _record(run: PlaybookRun, result: TaskHostResult, reporter: Reporter) -> None:
    run.results.append(result)
    recap = run.recap[result.host]
    if result.ignored:
        recap.ignored += 1
    elif result.status == "changed":
        recap.changed += 1
        recap.ok += 1
    else:
        setattr(recap, result.status, getattr(recap, result.status) + 1)
    reporter.host_done(result)


def _run_play(
    play: Play,
    hosts: list[Host],
    playbook: Playbook,
    inventory: Inventory,
    options: RunOptions,
    reporter: Reporter,
    conns: Connections,
    states: dict[str, _HostState],
    run: PlaybookRun,
    logs: HostLogs,
) -> bool:
    """Returns False when the run must stop (any_errors_fatal)."""
    active = [h.name for h in hosts if not states[h.name].out]
    groups = group_members(inventory)
    reporter.play_start(play, active)
    if play.become is not None:
        for name in active:
            conns[name].become_default = play.become
    if play.gather_facts:
        need = [n for n in active if states[n].facts is None]
        if need:
            reporter.task_start(play, "Gathering Facts", need)
            for gathered in conns.run_on_hosts(gather_facts, names=need, pool_size=options.forks):
                if gathered.value is not None:
                    states[gathered.host].facts = gathered.value
                    _record(
                        run,
                        TaskHostResult(
                            play.name,
                            "Gathering Facts",
                            gathered.host,
                            "ok",
                            duration=gathered.duration,
                        ),
                        reporter,
                    )
                else:
                    _mark_out(
                        states,
                        run,
                        reporter,
                        play,
                        "Gathering Facts",
                        gathered.host,
                        gathered.error,
                    )
            reporter.task_done()
    for task in play.tasks:
        if not task_selected(task.tags, options.tags):
            continue
        active = [h.name for h in hosts if not states[h.name].out]
        if not active:
            break
        reporter.task_start(play, task.name, active)

        def step(conn: HostConnection, task: Task = task) -> TaskHostResult:
            state = states[conn.host.name]
            variables = host_variables(state, play, groups, hosts, options.extra_vars)

            def progress(text: str, host: str = conn.host.name) -> None:
                reporter.host_progress(host, text)

            result = run_task(conn, task, play, variables, playbook, options, state, progress)
            return logs.keep(result)

        failed_now = False
        for outcome in conns.run_on_hosts(step, names=active, pool_size=options.forks):
            if outcome.value is None:
                _mark_out(states, run, reporter, play, task.name, outcome.host, outcome.error)
                failed_now = True
                continue
            result = outcome.value
            _record(run, result, reporter)
            if result.status == "failed" and not result.ignored:
                states[result.host].out = True
                failed_now = True
        reporter.task_done()
        if failed_now and play.any_errors_fatal:
            return False
    return True


def _mark_out(
    states: dict[str, _HostState],
    run: PlaybookRun,
    reporter: Reporter,
    play: Play,
    task: str,
    host: str,
    error: LabctlError | None,
) -> None:
    status: Status = "unreachable" if isinstance(error, HostUnreachable) else "failed"
    states[host].out = True
    _record(run, TaskHostResult(play.name, task, host, status, msg=str(error)), reporter)


def run_task(
    conn: HostConnection,
    task: Task,
    play: Play,
    variables: dict[str, Any],
    playbook: Playbook,
    options: RunOptions,
    state: _HostState,
    progress: Callable[[str], None] | None = None,
) -> TaskHostResult:
    """One task on one host: `when`, `loop`, the action, `register`. Never raises for the
    task's own failure; a lost connection propagates (the host is then unreachable)."""
    started = time.monotonic()
    action = ACTIONS[task.action]()
    results: list[ActionResult] = []
    # Connect first: a plan that reads nothing (`command` in check mode) must not call an
    # unreachable host "changed".
    conn.open()
    try:
        items = [None] if task.loop is None else render_value(task.loop, variables)
        if not isinstance(items, list):
            raise LabctlError(f"loop must give a list, not {type(items).__name__}")
        for item in items:
            scope = variables if task.loop is None else {**variables, "item": item}
            falsy = next((c for c in task.when if not evaluate(c, scope)), None)
            if falsy is not None:
                results.append(ActionResult(skipped=True, msg=f"condition false: {falsy}"))
                continue
            ctx = TaskContext(conn, scope, playbook.base_dir, options.diff, progress)
            raw = render_value(task.args, scope)
            results.append(run_action(action, ctx, raw, check=options.check))
            if results[-1].failed:
                break
    except HostUnreachable:
        raise
    except (LabctlError, ValueError, OSError) as exc:
        results.append(ActionResult(failed=True, msg=str(exc)))
    return _summarize(task, play, conn.host.name, results, state, time.monotonic() - started)


def _summarize(
    task: Task,
    play: Play,
    host: str,
    results: list[ActionResult],
    state: _HostState,
    duration: float,
) -> TaskHostResult:
    failed = any(r.failed for r in results)
    changed = any(r.changed for r in results)
    skipped = bool(results) and all(r.skipped for r in results)
    status: Status = (
        "failed"
        if failed
        else "changed"
        if changed
        else "skipped"
        if skipped or not results
        else "ok"
    )
    if task.loop is None and len(results) == 1:
        output: dict[str, Any] = results[0].registered()
    else:
        output = {
            "results": [r.registered() for r in results],
            "changed": changed,
            "failed": failed,
            "skipped": skipped,
            "msg": next((r.msg for r in results if r.failed), ""),
        }
    if task.register:
        state.registered[task.register] = output
    msg = (
        next((r.msg for r in results if r.failed), "")
        or next((r.msg for r in results if r.skipped), "")
        or next((r.msg for r in results if r.msg), "")  # an ok result's note
    )
    changes = tuple(c for r in results for c in r.changes)
    diffs = [r.diff for r in results if r.diff]
    log = "".join(r.log for r in results if r.log)
    undo = tuple(u for r in results for u in r.undo)
    return TaskHostResult(
        play.name,
        task.name,
        host,
        status,
        msg=msg,
        changes=changes,
        diff="".join(diffs) or None,
        output=output,
        duration=duration,
        ignored=failed and task.ignore_errors,
        log=log,
        undo=undo,
    )
