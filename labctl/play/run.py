"""Runs a playbook: plays in order, each in batches (`serial`), each task on all the batch's
hosts at once; blocks with rescue and always; includes; handlers at each flush.

A failed host leaves the rest of its play (the others go on) unless a block's rescue takes
it; `any_errors_fatal` stops all. An unreachable host is reported as unreachable, not failed.
Check mode plans every task from the real state of each host and changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl.errors import HostUnreachable, InputError, LabctlError
from labctl.inventory import Host, Inventory
from labctl.play import readahead
from labctl.play.model import Block, Include, Item, Play, Playbook, Task
from labctl.play.names import check_names
from labctl.play.outcome import (
    HostLogs,
    HostRecap,
    PlaybookRun,
    QuietReporter,
    Reporter,
    Status,
    TaskHostResult,
)
from labctl.play.selection import (
    SPECIAL_TAGS,
    batches,
    group_members,
    select_hosts,
    task_selected,
)
from labctl.play.step import NO_LOG, StepOptions, StepOutcome, run_step
from labctl.play.variables import HostState, HostVars, PlayContext, task_variables
from labctl.remote import DEFAULT_POOL_SIZE, Connections, HostConnection
from labctl.templating import evaluate, render_value

__all__ = [
    "HostLogs",
    "batches",
    "PlaybookRun",
    "QuietReporter",
    "Reporter",
    "RunOptions",
    "TaskHostResult",
    "prepare",
    "run_playbook",
    "task_selected",
]


@dataclass(frozen=True)
class RunOptions:
    check: bool = False
    diff: bool = False
    limit: str | None = None
    tags: frozenset[str] = frozenset()
    extra_vars: Mapping[str, Any] = field(default_factory=dict)
    forks: int = DEFAULT_POOL_SIZE
    log_dir: Path | None = None  # a failed step's whole output goes to <log_dir>/<run>/<host>.log
    # Send the reads of several coming tasks in one round trip per host (readahead.py).
    read_ahead: bool = True


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


def run_playbook(
    playbook: Playbook, inventory: Inventory, options: RunOptions, reporter: Reporter
) -> PlaybookRun:
    hosts_by_play = prepare(playbook, inventory, options)
    run = PlaybookRun()
    all_hosts = {h.name: h for hosts in hosts_by_play for h in hosts}
    states = {name: HostState(h) for name, h in all_hosts.items()}
    for name in all_hosts:
        run.recap[name] = HostRecap()
    # hostvars reads any inventory host, also one no play targets
    everyone = {n: states.get(n) or HostState(h) for n, h in inventory.hosts.items()}
    with Connections(all_hosts.values()) as conns:
        for play, hosts in zip(playbook.plays, hosts_by_play, strict=True):
            runner = _PlayRunner(
                play,
                hosts,
                playbook,
                inventory,
                options,
                reporter,
                conns,
                states,
                run,
                HostVars(everyone),
            )
            if not runner.run():
                break
    return run


@dataclass
class _PlayRunner:
    play: Play
    hosts: list[Host]
    playbook: Playbook
    inventory: Inventory
    options: RunOptions
    reporter: Reporter
    conns: Connections
    states: dict[str, HostState]
    run_: PlaybookRun
    hostvars: HostVars
    fatal: bool = False
    end_play: bool = False
    batch_failed: set[str] = field(default_factory=set)
    # Each host's reads taken ahead: the window of tasks they cover (readahead.py).
    windows: dict[str, readahead.HostWindow] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.logs = HostLogs(self.options.log_dir)
        self.groups = group_members(self.inventory)
        self.check = (
            self.play.check_mode if self.play.check_mode is not None else self.options.check
        )

    def run(self) -> bool:
        """False when the whole run must stop (any_errors_fatal)."""
        active = [h.name for h in self.hosts if not self.states[h.name].out]
        self.reporter.play_start(self.play, active)
        for batch in batches(active, self.play.serial):
            self.ctx = PlayContext(
                self.play,
                self.groups,
                active,
                batch,
                self.options.extra_vars,
                self.hostvars,
                self.playbook.base_dir,
                self.inventory.path,
                self.check,
                self.options.tags,
            )
            self.batch_failed = set()
            for name in batch:
                self.states[name].ended = False
                # A play's become holds for this play only; else the inventory's.
                become = self.play.become
                self.conns[name].become_default = (
                    become if become is not None else self.states[name].host.become
                )
            self._gather(batch)
            failed = self.items(self.play.tasks, self._live(batch), False, {})
            for name in failed:
                self.states[name].out = True
            if self.fatal:
                return False
            if self.end_play:
                break
            if batch and all(self.states[n].out for n in batch) and self.play.serial:
                break  # a whole batch failed: Ansible stops the play here
        return True

    def _live(self, names: list[str]) -> list[str]:
        return [n for n in names if not self.states[n].out and not self.states[n].ended]

    def _gather(self, batch: list[str]) -> None:
        need = [n for n in self._live(batch) if self.states[n].facts is None]
        if not self.play.gather_facts or not need:
            return
        from labctl.facts.host import gather_facts  # only a play that gathers them

        self.reporter.task_start(self.play, "Gathering Facts", need)
        try:
            got_all = self.conns.run_on_hosts(
                gather_facts, names=need, pool_size=self.options.forks
            )
        finally:  # the reporter's live display ends with the task, also on Ctrl-C
            self.reporter.task_done()
        for got in got_all:
            if got.value is not None:
                self.states[got.host].facts = got.value
                self._record(
                    TaskHostResult(
                        self.play.name, "Gathering Facts", got.host, "ok", duration=got.duration
                    )
                )
            else:
                self._mark_out("Gathering Facts", got.host, got.error)

    # ------------------------------------------------------------------ items

    def items(
        self,
        items: tuple[Item, ...],
        names: list[str],
        rescuable: bool,
        extra: Mapping[str, Mapping[str, Any]],
    ) -> set[str]:
        """Run `items` on `names`; the hosts that failed (and were not rescued)."""
        failed: set[str] = set()
        for index, item in enumerate(items):
            live = [n for n in self._live(names) if n not in failed]
            if not live or self.fatal:
                break
            if isinstance(item, Block):
                failed |= self._block(item, live, rescuable, extra)
            elif isinstance(item, Include):
                failed |= self._include(item, live, rescuable, extra)
            else:
                self._read_ahead(items, index, live, extra)
                failed |= self._task(item, live, rescuable, extra)
        return failed

    def _read_ahead(
        self,
        items: tuple[Item, ...],
        index: int,
        names: list[str],
        extra: Mapping[str, Mapping[str, Any]],
    ) -> None:
        """Tell each host's connection the reads of this task and the tasks after it that
        it may take in one round trip (labctl/play/readahead.py)."""
        task = items[index]
        assert isinstance(task, Task)
        if not self.options.read_ahead or readahead.ends_window(task):
            for name in names:
                self.conns[name].forget()
            return
        for name in names:
            known = self.windows.get(name)
            if known is None or not known.covers(items, extra, index):
                known = self._window(items, index, name, extra)
                self.windows[name] = known
            self.conns[name].expect(known.reads.get(index, []), known.after(index))

    def _window(
        self,
        items: tuple[Item, ...],
        index: int,
        name: str,
        extra: Mapping[str, Mapping[str, Any]],
    ) -> readahead.HostWindow:
        indexes = readahead.window(items, index, lambda t: self._selected(t.tags))
        found = readahead.HostWindow(items, extra, index, indexes[-1] if indexes else index)
        state = self.states[name]
        bare: dict[str, Any] | None = None  # a task with no vars of its own sees these
        for i in indexes:
            task = items[i]
            assert isinstance(task, Task)
            if task.vars or task.defaults or task.params:
                variables = {**task_variables(state, task, self.ctx), **extra.get(name, {})}
            else:
                if bare is None:
                    bare = {**task_variables(state, None, self.ctx), **extra.get(name, {})}
                variables = bare
            found.reads[i] = readahead.task_reads(task, variables)
        return found

    def _block(
        self,
        block: Block,
        names: list[str],
        rescuable: bool,
        extra: Mapping[str, Mapping[str, Any]],
    ) -> set[str]:
        failed = self.items(block.block, names, rescuable or bool(block.rescue), extra)
        if failed and block.rescue:
            rescue = [n for n in names if n in failed and not self.states[n].out]
            failed = (failed - set(rescue)) | self.items(block.rescue, rescue, rescuable, extra)
        if block.always:
            failed |= self.items(
                block.always, [n for n in names if not self.states[n].out], rescuable, extra
            )
        return failed

    def _include(
        self,
        inc: Include,
        names: list[str],
        rescuable: bool,
        extra: Mapping[str, Mapping[str, Any]],
    ) -> set[str]:
        if not self._selected(inc.tags):
            return set()
        per_host: dict[str, list[Any]] = {}
        failed: set[str] = set()
        for name in names:
            scope = {**task_variables(self.states[name], inc, self.ctx), **extra.get(name, {})}
            try:
                if not all(evaluate(c, scope) for c in inc.when):
                    continue
                items = [None] if inc.loop is None else render_value(inc.loop, scope)
                if not isinstance(items, list):
                    raise LabctlError(f"loop must give a list, not {type(items).__name__}")
            except LabctlError as exc:
                self._record(TaskHostResult(self.play.name, inc.name, name, "failed", msg=str(exc)))
                failed.add(name)
                continue
            per_host[name] = items
        rounds = max((len(v) for v in per_host.values()), default=0)
        var = inc.loop_control.loop_var
        for i in range(rounds):
            here = [n for n in names if n in per_host and i < len(per_host[n]) and n not in failed]
            bound = {
                n: {**extra.get(n, {}), **({var: per_host[n][i]} if inc.loop is not None else {})}
                for n in here
            }
            failed |= self.items(inc.items, here, rescuable, bound)
        return failed

    def _selected(self, tags: frozenset[str]) -> bool:
        return task_selected(tags, self.options.tags)

    # ------------------------------------------------------------------ tasks

    def _task(
        self,
        task: Task,
        names: list[str],
        rescuable: bool,
        extra: Mapping[str, Mapping[str, Any]],
        handler: bool = False,
    ) -> set[str]:
        # A notified handler runs whatever --tags says (Ansible's); a meta task obeys them.
        if not handler and not self._selected(task.tags):
            return set()
        if task.action == "meta":
            return self._meta(task, names, extra)
        targets = names[:1] if task.run_once else names
        self.reporter.task_start(self.play, task.name, targets)
        step_options = StepOptions(self.check, self.options.diff)

        def step(conn: HostConnection) -> tuple[TaskHostResult, StepOutcome]:
            state = self.states[conn.host.name]
            variables = {**task_variables(state, task, self.ctx), **extra.get(conn.host.name, {})}

            def progress(text: str, host: str = conn.host.name) -> None:
                self.reporter.host_progress(host, text)

            try:
                outcome = run_step(conn, task, variables, step_options, progress)
            finally:  # its result line waits for the other hosts; the live line need not
                self.reporter.host_finished(conn.host.name)
            return self.logs.keep(self._result(task, conn.host.name, outcome, rescuable)), outcome

        try:  # the reporter's live display ends with the task's steps, also on Ctrl-C
            outcomes = self.conns.run_on_hosts(step, names=targets, pool_size=self.options.forks)
        finally:
            self.reporter.task_done()
        failed: set[str] = set()
        for got in outcomes:
            if got.value is None:
                self._mark_out(task.name, got.host, got.error)
                failed.add(got.host)
                continue
            result, outcome = got.value
            for name in names if task.run_once else [got.host]:
                state = self.states[name]
                if task.register:
                    state.registered[task.register] = outcome.registered
                state.registered.update(outcome.facts)
                if result.status == "changed":
                    state.notified += [n for n in task.notify if n not in state.notified]
            self._record(result)
            if result.status == "failed" and not result.ignored:
                failed |= set(names) if task.run_once else {result.host}
                if rescuable:
                    for name in failed:
                        self.states[name].registered.update(
                            ansible_failed_task={"name": task.name, "action": task.action},
                            ansible_failed_result=outcome.registered,
                        )
        if not rescuable:  # a failure a rescue may still take is not a failed host yet
            self._count_failed(failed, task.any_errors_fatal)
        return failed

    def _count_failed(self, failed: set[str], fatal: bool = False) -> None:
        """`any_errors_fatal` and `max_fail_percentage`, on hosts that failed for good."""
        self.batch_failed |= failed
        if failed and (fatal or self.play.any_errors_fatal):
            self.fatal = True
        limit = self.play.max_fail_percentage
        if limit is not None and len(self.batch_failed) * 100 > limit * len(self.ctx.batch):
            self.fatal = True

    def _result(
        self, task: Task, host: str, outcome: StepOutcome, rescuable: bool
    ) -> TaskHostResult:
        results = outcome.results
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
        msg = (
            next((r.msg for r in results if r.failed), "")
            or next((r.msg for r in results if r.skipped), "")
            or next((r.msg for r in results if r.msg), "")
        )
        hidden = task.no_log or self.play.no_log
        return TaskHostResult(
            self.play.name,
            task.name,
            host,
            status,
            msg=NO_LOG if hidden and msg else msg,
            changes=() if hidden else tuple(c for r in results for c in r.changes),
            diff=None if hidden else "".join(r.diff for r in results if r.diff) or None,
            output={"censored": NO_LOG} if hidden else outcome.registered,
            ignored=failed and task.ignore_errors,
            rescued=failed and rescuable and not task.ignore_errors,
            log="" if hidden else "".join(r.log for r in results if r.log),
            undo=tuple(u for r in results for u in r.undo),
            delegated=task.delegate_to,
        )

    def _meta(
        self, task: Task, names: list[str], extra: Mapping[str, Mapping[str, Any]]
    ) -> set[str]:
        what = task.args["_raw"]
        if what == "flush_handlers":
            self._flush(names)
            return set()
        failed: set[str] = set()
        if what in ("end_host", "end_play"):
            for name in names:
                scope = {**task_variables(self.states[name], task, self.ctx), **extra.get(name, {})}
                try:
                    ends = all(evaluate(c, scope) for c in task.when)
                except LabctlError as exc:
                    self._record(
                        TaskHostResult(self.play.name, task.name, name, "failed", msg=str(exc))
                    )
                    failed.add(name)
                    continue
                if ends and what == "end_play":
                    for other in self.ctx.batch:
                        self.states[other].ended = True
                    self.end_play = True
                    break
                if ends:
                    self.states[name].ended = True
        return failed

    def _flush(self, names: list[str]) -> None:
        for handler in self.play.handlers:
            wanted = {handler.name, *handler.listen}
            targets = [n for n in self._live(names) if wanted & set(self.states[n].notified)]
            if not targets:
                continue
            failed = self._task(handler, targets, False, {}, handler=True)
            for name in targets:
                notified = self.states[name].notified
                self.states[name].notified = [n for n in notified if n not in wanted]
            for name in failed:
                self.states[name].out = True

    def _record(self, result: TaskHostResult) -> None:
        self.run_.record(result)
        self.reporter.host_done(result)

    def _mark_out(self, task: str, host: str, error: LabctlError | None) -> None:
        status: Status = "unreachable" if isinstance(error, HostUnreachable) else "failed"
        self.states[host].out = True
        self._record(TaskHostResult(self.play.name, task, host, status, msg=str(error)))
