"""Every variable a playbook reads must be defined for every host it runs on: checked
statically, before any connection, so a typo fails in one line and not half-way through a
run with some hosts changed and others not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from labctl.inventory import Host
from labctl.play.control import _that
from labctl.play.model import Block, Include, Item, Play, PlaybookError, Task, walk_tasks
from labctl.templating import builtin_names, names_tested_defined, names_used

# Names every task may read besides the host's variables (see run.py: task_variables).
MAGIC_NAMES = frozenset(
    {
        "facts",
        "ansible_facts",
        "inventory_hostname",
        "inventory_hostname_short",
        "inventory_dir",
        "inventory_file",
        "group_names",
        "groups",
        "hostvars",
        "play_hosts",
        "ansible_play_hosts",
        "ansible_play_hosts_all",
        "ansible_play_batch",
        "playbook_dir",
        "ansible_check_mode",
        "ansible_run_tags",
        "omit",
    }
)
# Ansible's fact variables labctl fills from its own facts (run.py: ansible_fact_vars).
FACT_NAMES = frozenset(
    {
        "ansible_hostname",
        "ansible_nodename",
        "ansible_kernel",
        "ansible_architecture",
        "ansible_machine",
        "ansible_distribution",
        "ansible_distribution_release",
        "ansible_distribution_version",
        "ansible_distribution_major_version",
        "ansible_os_family",
        "ansible_processor_vcpus",
        "ansible_memtotal_mb",
        "ansible_interfaces",
    }
)
RESCUE_NAMES = frozenset({"ansible_failed_task", "ansible_failed_result"})


class _Book(Protocol):
    @property
    def path(self) -> str: ...
    @property
    def plays(self) -> tuple[Play, ...]: ...


def check_names(
    playbook: _Book, hosts_by_play: Sequence[Iterable[Host]], extra_vars: Mapping[str, Any]
) -> None:
    registered: dict[str, set[str]] = {}  # host -> names registered or set by earlier tasks
    always = MAGIC_NAMES | FACT_NAMES | builtin_names() | set(extra_vars)
    for play, play_hosts in zip(playbook.plays, hosts_by_play, strict=True):
        hosts = list(play_hosts)
        known = always | set(play.vars)
        for key, value in play.vars.items():
            _check(
                play.path,
                play.line,
                f"play {play.name!r} var {key!r}",
                names_used(value),
                hosts,
                known,
                registered,
            )
        _walk(play.tasks, hosts, known, registered, frozenset())
        # A handler runs after the tasks that notify it: it may read what any of them set.
        later = {name for t in walk_tasks(play.tasks) for name in _sets(t)}
        for h in hosts:
            registered.setdefault(h.name, set()).update(later)
        _walk(play.handlers, hosts, known, registered, frozenset())


def _sets(task: Task) -> set[str]:
    names = {task.register} if task.register else set()
    if task.action == "set_fact":
        names |= {k for k in task.args if k != "cacheable"}
    return names


def _walk(
    items: Sequence[Item],
    hosts: list[Host],
    known: frozenset[str] | set[str],
    registered: dict[str, set[str]],
    local: frozenset[str],
) -> None:
    for item in items:
        if isinstance(item, Block):
            _walk(item.block, hosts, known, registered, local)
            _walk(item.rescue, hosts, known, registered, local | RESCUE_NAMES)
            _walk(item.always, hosts, known, registered, local | RESCUE_NAMES)
        elif isinstance(item, Include):
            used: set[str] = names_used(item.loop)
            for cond in item.when:
                used |= names_used(cond, expression=True)
            mine = set(local) | set(item.vars) | set(item.defaults) | set(item.params)
            for cond in item.when:
                mine |= names_tested_defined(cond)
            _check(
                item.path,
                item.line,
                f"task {item.name!r}",
                used,
                hosts,
                set(known) | mine,
                registered,
            )
            inner = local | {item.loop_control.loop_var} if item.loop is not None else local
            _walk(item.items, hosts, known, registered, frozenset(inner))
        else:
            _task(item, hosts, known, registered, local)


def _task(
    task: Task,
    hosts: list[Host],
    known: frozenset[str] | set[str],
    registered: dict[str, set[str]],
    local: frozenset[str],
) -> None:
    args = dict(task.args)
    exprs = [*task.when, *(task.changed_when or ()), *(task.failed_when or ()), *(task.until or ())]
    if task.action == "debug" and "var" in args:
        exprs.append(str(args.pop("var")))
    if task.action == "assert":
        exprs += _that(args.pop("that"))
    used = names_used(args) | names_used(task.loop) | names_used(dict(task.environment))
    used |= names_used(task.become_user)
    used |= names_used(dict(task.vars)) | names_used(dict(task.params))
    for cond in exprs:
        used |= names_used(cond, expression=True)
    mine = set(local) | set(task.vars) | set(task.defaults) | set(task.params)
    if task.loop is not None:
        mine |= {task.loop_control.loop_var, "ansible_loop_var", "ansible_loop"}
        mine |= {task.loop_control.index_var} if task.loop_control.index_var else set()
    if task.register:  # changed_when, failed_when and until read the task's own result
        mine.add(task.register)
    for cond in task.when:  # `when: x is defined` guards the task's own use of x
        mine |= names_tested_defined(cond)
    _check(task.path, task.line, f"task {task.name!r}", used, hosts, set(known) | mine, registered)
    for h in hosts:
        registered.setdefault(h.name, set()).update(_sets(task))


def _check(
    path: str,
    line: int,
    what: str,
    used: set[str],
    hosts: list[Host],
    known: frozenset[str] | set[str],
    registered: Mapping[str, set[str]],
) -> None:
    for name in sorted(used - set(known)):
        missing = [
            h.name
            for h in hosts
            if name not in h.vars and name not in registered.get(h.name, set())
        ]
        if missing:
            raise PlaybookError(
                f"{what}: undefined variable {name!r} (for {', '.join(missing)})", path, line
            )
