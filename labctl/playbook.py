"""Playbooks: Ansible-shaped plays and tasks, loaded and checked before any host is touched.

Everything a user can get wrong in the file is found here, with file, line and task name:
YAML syntax, unknown keys and actions, missing or unknown arguments, template syntax, and
variables that no host, play, `-e`, fact or earlier `register` defines.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labctl.actions import ACTIONS
from labctl.actions.base import ArgsError, build_args, check_arg_names
from labctl.errors import InputError
from labctl.inventory import Host
from labctl.templating import (
    TemplateError,
    builtin_names,
    is_templated,
    names_tested_defined,
    names_used,
)
from labctl.yamlfile import LineList, LineMap, line_of, load_yaml

PLAY_KEYS = {"name", "hosts", "vars", "become", "gather_facts", "any_errors_fatal", "tasks", "tags"}
TASK_KEYS = {"name", "when", "register", "loop", "tags", "ignore_errors"}
# Names every task may read besides the host's variables (see runner.host_variables).
MAGIC_NAMES = {"facts", "inventory_hostname", "group_names", "groups", "play_hosts"}


class PlaybookError(InputError):
    """A playbook that cannot run; its message names file, line and task."""


@dataclass(frozen=True)
class Task:
    name: str
    action: str
    args: Mapping[str, Any]  # unrendered
    when: tuple[str, ...]
    register: str | None
    loop: Any  # None, a list, or a template string that renders to a list
    tags: frozenset[str]
    ignore_errors: bool
    line: int


@dataclass(frozen=True)
class Play:
    name: str
    hosts: str
    vars: Mapping[str, Any]
    become: bool | None
    gather_facts: bool
    any_errors_fatal: bool
    tasks: tuple[Task, ...]
    line: int


@dataclass(frozen=True)
class Playbook:
    path: str
    plays: tuple[Play, ...]

    @property
    def base_dir(self) -> Path:
        return Path(self.path).resolve().parent

    @property
    def tags(self) -> frozenset[str]:
        """Every tag a task of this playbook has (its own or its play's)."""
        return frozenset().union(*(t.tags for p in self.plays for t in p.tasks))


def _fail(path: str, line: int | None, message: str, task: str | None = None) -> PlaybookError:
    return PlaybookError(f"task {task!r}: {message}" if task else message, path, line)


def _bool(value: Any, what: str, path: str, line: int | None) -> bool:
    if isinstance(value, bool):
        return value
    raise _fail(path, line, f"{what} must be true or false, not {value!r}")


def _strings(value: Any, what: str, path: str, line: int | None, task: str) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(v, str | int | float | bool) for v in items):
        raise _fail(path, line, f"{what} must be a string or a list of strings", task)
    return tuple(str(v) for v in items)


def load_playbook(path: str | Path) -> Playbook:
    path = str(path)
    doc = load_yaml(path)
    if doc is None:
        raise _fail(path, None, "empty playbook")
    if not isinstance(doc, LineList):
        raise _fail(path, line_of(doc, default=1), "a playbook is a list of plays")
    return Playbook(path, tuple(_play(path, p) for p in doc))


def _play(path: str, raw: Any) -> Play:
    if not isinstance(raw, LineMap):
        raise _fail(path, line_of(raw), "a play is a mapping with `hosts` and `tasks`")
    for key in raw:
        if key not in PLAY_KEYS:
            raise _fail(path, line_of(raw, key), f"unknown play keyword {key!r}")
    if "hosts" not in raw or not isinstance(raw["hosts"], str) or not raw["hosts"].strip():
        raise _fail(path, raw.line, "a play needs `hosts:` (a host pattern)")
    variables = raw.get("vars") or {}
    if not isinstance(variables, dict):
        raise _fail(path, line_of(raw, "vars"), "`vars` must be a mapping")
    tasks_raw = raw.get("tasks") or []
    if not isinstance(tasks_raw, list):
        raise _fail(path, line_of(raw, "tasks"), "`tasks` must be a list")
    play_tags = (
        frozenset(_strings(raw.get("tags", []), "tags", path, raw.line, ""))
        if raw.get("tags")
        else frozenset()
    )
    become = raw.get("become")
    return Play(
        name=str(raw.get("name") or raw["hosts"]),
        hosts=raw["hosts"],
        vars=dict(variables),
        become=None if become is None else _bool(become, "become", path, line_of(raw, "become")),
        gather_facts=_bool(
            raw.get("gather_facts", True), "gather_facts", path, line_of(raw, "gather_facts")
        ),
        any_errors_fatal=_bool(
            raw.get("any_errors_fatal", False),
            "any_errors_fatal",
            path,
            line_of(raw, "any_errors_fatal"),
        ),
        tasks=tuple(_task(path, t, play_tags) for t in tasks_raw),
        line=raw.line,
    )


def _task(path: str, raw: Any, play_tags: frozenset[str]) -> Task:
    if not isinstance(raw, LineMap):
        raise _fail(path, line_of(raw), "a task is a mapping with a name and one action")
    actions = [k for k in raw if k not in TASK_KEYS]
    name = str(raw.get("name") or (actions[0] if actions else "unnamed"))
    if not actions:
        raise _fail(path, raw.line, "no action (one of: " + ", ".join(sorted(ACTIONS)) + ")", name)
    unknown = [k for k in actions if k not in ACTIONS]
    if unknown:
        raise _fail(
            path,
            line_of(raw, unknown[0]),
            f"unknown action {unknown[0]!r} (known: {', '.join(sorted(ACTIONS))})",
            name,
        )
    if len(actions) > 1:
        raise _fail(path, line_of(raw, actions[1]), f"one action per task, not {actions}", name)
    action = actions[0]
    line = line_of(raw, action) or raw.line
    args = raw[action]
    free_form = ACTIONS[action].free_form
    if isinstance(args, str) and free_form:
        args = {free_form: args}
    elif args is None:
        args = {}
    if not isinstance(args, dict):
        raise _fail(path, line, f"{action}: arguments must be a mapping", name)
    try:
        args = ACTIONS[action].prepare_args(dict(args))
        check_arg_names(ACTIONS[action], args)
        if not is_templated(args):
            # Nothing to render: the typed arguments and their checks can run right now.
            build_args(ACTIONS[action], args)
    except (ArgsError, ValueError) as exc:
        raise _fail(path, line, str(exc), name) from exc
    except TemplateError:
        pass  # reported below with the other template errors
    when = raw.get("when")
    register = raw.get("register")
    if register is not None and (not isinstance(register, str) or not register.isidentifier()):
        raise _fail(path, line_of(raw, "register"), "register needs a variable name", name)
    tags = (
        frozenset(_strings(raw["tags"], "tags", path, line_of(raw, "tags"), name))
        if "tags" in raw
        else frozenset()
    )
    task = Task(
        name=name,
        action=action,
        args=dict(args),
        when=() if when is None else _strings(when, "when", path, line_of(raw, "when"), name),
        register=register,
        loop=raw.get("loop"),
        tags=tags | play_tags,
        ignore_errors=_bool(
            raw.get("ignore_errors", False), "ignore_errors", path, line_of(raw, "ignore_errors")
        ),
        line=raw.line,
    )
    try:  # template syntax errors, found now rather than on a host
        names_used(task.args)
        names_used(task.loop)
        for cond in task.when:
            names_used(cond, expression=True)
    except TemplateError as exc:
        raise _fail(path, line, str(exc), name) from exc
    return task


def check_names(
    playbook: Playbook,
    hosts_by_play: Sequence[Iterable[Host]],
    extra_vars: Mapping[str, Any],
) -> None:
    """Every variable a template reads must be defined for every host it runs on.

    Checked statically, before any connection: a typo fails in one line, not half-way
    through a run with some hosts changed and others not.
    """
    registered: dict[str, set[str]] = {}  # host -> names registered by earlier tasks
    always = MAGIC_NAMES | builtin_names() | set(extra_vars)
    for play, play_hosts in zip(playbook.plays, hosts_by_play, strict=True):
        hosts = list(play_hosts)
        play_names = set(play.vars)
        for key, value in play.vars.items():
            _check(
                playbook.path,
                play.line,
                f"play {play.name!r} var {key!r}",
                names_used(value),
                hosts,
                always | play_names,
                registered,
            )
        for task in play.tasks:
            used = names_used(task.args) | names_used(task.loop)
            for cond in task.when:
                used |= names_used(cond, expression=True)
            local = {"item"} if task.loop is not None else set()
            for cond in task.when:  # `when: x is defined` guards the task's own use of x
                local |= names_tested_defined(cond)
            _check(
                playbook.path,
                task.line,
                f"task {task.name!r}",
                used,
                hosts,
                always | play_names | local,
                registered,
            )
            if task.register:
                for h in hosts:
                    registered.setdefault(h.name, set()).add(task.register)


def _check(
    path: str,
    line: int,
    what: str,
    used: set[str],
    hosts: list[Host],
    known: set[str],
    registered: Mapping[str, set[str]],
) -> None:
    for name in sorted(used - known):
        missing = [
            h.name
            for h in hosts
            if name not in h.vars and name not in registered.get(h.name, set())
        ]
        if missing:
            raise PlaybookError(
                f"{what}: undefined variable {name!r} (for {', '.join(missing)})", path, line
            )
