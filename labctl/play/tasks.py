"""Reading task lists: tasks, blocks, imports, includes and roles, each keyword checked.

A `Scope` is what the enclosing play, role or block passes down; each task is built with its
scope folded in (its `when` after the block's, its tags joined to the block's, its vars over
the block's), so running a task needs nothing but the task.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from labctl.actions import ACTIONS
from labctl.actions.base import ArgsError, arg_fields, build_args, check_arg_names
from labctl.errors import InputError
from labctl.paths import PROJECT_DIR
from labctl.play.control import check_control_args
from labctl.play.keywords import BLOCK_KEYS, TASK_KEYS, UNSUPPORTED_KEYS
from labctl.play.model import Block, Include, Item, LoopControl, Task, walk_tasks
from labctl.play.modules import CONTROL, short_name, split_kv, translate
from labctl.templating import TemplateError, is_templated, names_used
from labctl.yamlfile import LineMap, line_of, load_yaml

_IMPORTS = {"import_tasks", "include_tasks"}


@dataclass(frozen=True)
class Scope:
    """Keywords an enclosing play, role or block gives every task inside it."""

    when: tuple[str, ...] = ()
    tags: frozenset[str] = frozenset()
    become: bool | None = None
    become_user: str | None = None
    vars: Mapping[str, Any] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    environment: Mapping[str, Any] = field(default_factory=dict)
    ignore_errors: bool | None = None
    no_log: bool = False
    check_mode: bool | None = None
    delegate_to: str | None = None
    run_once: bool = False
    any_errors_fatal: bool = False
    search_dirs: tuple[Path, ...] = ()
    role: str | None = None
    tasks_dir: Path | None = None  # a role's tasks/: where its imports are found first


def vars_mapping(
    value: Any, path: str, line: int | None, error: type[InputError]
) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise error("vars must be a mapping of names to values", path, line)
    for key in value:
        if not isinstance(key, str) or not key.isidentifier():
            raise error(f"{key!r} is not a variable name", path, line_of(value, key) or line)
    return dict(value)


def flush_handlers(path: str, line: int) -> Task:
    """Ansible's implicit flush (after pre_tasks, tasks, post_tasks): runs whatever --tags."""
    return Task(
        name="meta: flush_handlers",
        action="meta",
        args={"_raw": "flush_handlers"},
        path=path,
        line=line,
        tags=frozenset({"always"}),
    )


@dataclass
class TaskReader:
    playbook_path: str
    playbook_dir: Path
    error: type[InputError]

    # ------------------------------------------------------------------ shared keywords

    def fail(
        self, path: str, line: int | None, message: str, task: str | None = None
    ) -> InputError:
        return self.error(f"task {task!r}: {message}" if task else message, path, line)

    def boolean(self, raw: LineMap, key: str, default: Any, path: str) -> Any:
        if key not in raw:
            return default
        value = raw[key]
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("yes", "no", "true", "false"):
            return value.lower() in ("yes", "true")
        raise self.error(f"{key} must be true or false, not {value!r}", path, line_of(raw, key))

    def strings(self, raw: LineMap, key: str, path: str, task: str = "") -> tuple[str, ...]:
        value = raw.get(key)
        if value is None:
            return ()
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str | int | float | bool) for v in items):
            raise self.fail(path, line_of(raw, key), f"{key} must be a string or a list", task)
        return tuple(str(v) for v in items)

    def conditions(self, raw: LineMap, key: str, path: str, task: str) -> tuple[str, ...] | None:
        """`when`-like keywords: an expression, a list of them (all must hold), or a bool."""
        if key not in raw:
            return None
        value = raw[key]
        items = value if isinstance(value, list) else [value]
        out = []
        for v in items:
            if isinstance(v, bool):
                out.append("True" if v else "False")
            elif isinstance(v, str | int | float):
                text = str(v).strip()
                if text.startswith("{{") and text.endswith("}}"):
                    text = text[2:-2].strip()  # Ansible warns but accepts it
                out.append(text)
            else:
                raise self.fail(path, line_of(raw, key), f"{key} must be an expression", task)
        for cond in out:
            try:
                names_used(cond, expression=True)
            except TemplateError as exc:
                raise self.fail(path, line_of(raw, key), f"{key}: {exc}", task) from exc
        return tuple(out)

    def play_scope(self, raw: LineMap) -> Scope:
        path = self.playbook_path
        return self.scope(Scope(search_dirs=search_dirs(self.playbook_dir)), raw, path, "")

    def scope(self, outer: Scope, raw: LineMap, path: str, name: str) -> Scope:
        """`outer` with the keywords `raw` (a play, role entry or block) sets folded in."""
        env = vars_mapping(raw.get("environment"), path, line_of(raw, "environment"), self.error)
        become_user = raw.get("become_user")
        if become_user is not None and not isinstance(become_user, str):
            raise self.fail(path, line_of(raw, "become_user"), "become_user must be a name", name)
        return replace(
            outer,
            when=outer.when + (self.conditions(raw, "when", path, name) or ()),
            tags=outer.tags | frozenset(self.strings(raw, "tags", path, name)),
            become=self.boolean(raw, "become", outer.become, path),
            become_user=become_user if become_user is not None else outer.become_user,
            vars={
                **outer.vars,
                **vars_mapping(raw.get("vars"), path, line_of(raw, "vars"), self.error),
            },
            environment={**outer.environment, **env},
            ignore_errors=self.boolean(raw, "ignore_errors", outer.ignore_errors, path),
            no_log=self.boolean(raw, "no_log", outer.no_log, path),
            check_mode=self.boolean(raw, "check_mode", outer.check_mode, path),
            delegate_to=self._delegate(raw, path, name) or outer.delegate_to,
            run_once=self.boolean(raw, "run_once", outer.run_once, path),
            any_errors_fatal=self.boolean(raw, "any_errors_fatal", outer.any_errors_fatal, path),
        )

    def _delegate(self, raw: LineMap, path: str, name: str) -> str | None:
        value = raw.get("delegate_to")
        if value is None:
            return None
        if value not in ("localhost", "127.0.0.1"):
            raise self.fail(
                path,
                line_of(raw, "delegate_to"),
                f"delegate_to {value!r}: only localhost (the controller) is supported",
                name,
            )
        return "localhost"

    # ------------------------------------------------------------------ task lists

    def items(
        self, raw: Any, path: str, scope: Scope, line: int | None, seen: tuple[str, ...] = ()
    ) -> list[Item]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            raise self.error("a task list must be a list of tasks", path, line)
        return [self.item(t, path, scope, seen) for t in raw]

    def item(self, raw: Any, path: str, scope: Scope, seen: tuple[str, ...]) -> Item:
        if not isinstance(raw, LineMap):
            raise self.error("a task is a mapping with a name and one module", path, line_of(raw))
        if "block" in raw:
            return self._block(raw, path, scope, seen)
        modules = [k for k in raw if k not in TASK_KEYS]
        name = str(raw.get("name") or (modules[0] if modules else "unnamed"))
        if len(modules) == 1 and short_name(modules[0]) in _IMPORTS:
            return self._import(raw, modules[0], path, scope, seen, name)
        return self.task(raw, path, scope, name, modules)

    def _block(self, raw: LineMap, path: str, scope: Scope, seen: tuple[str, ...]) -> Block:
        name = str(raw.get("name") or "block")
        for key in raw:
            if key not in BLOCK_KEYS:
                raise self.fail(path, line_of(raw, key), f"unknown block keyword {key!r}", name)
        inner = self.scope(scope, raw, path, name)
        parts = {
            k: tuple(self.items(raw.get(k), path, inner, line_of(raw, k), seen))
            for k in ("block", "rescue", "always")
        }
        return Block(name, parts["block"], parts["rescue"], parts["always"], path, raw.line)

    def _import(
        self, raw: LineMap, key: str, path: str, scope: Scope, seen: tuple[str, ...], name: str
    ) -> Item:
        allowed = {"name", "when", "tags", "vars", "loop", "with_items", "loop_control", key}
        allowed |= {"become", "become_user", "environment", "no_log", "ignore_errors"}
        for k in raw:
            if k not in allowed:
                raise self.fail(path, line_of(raw, k), f"{key}: {k!r} is not supported here", name)
        target = raw[key]
        if isinstance(target, dict):
            target = target.get("file")
        if not isinstance(target, str) or "{{" in target:
            raise self.fail(path, line_of(raw, key), f"{key} takes a file name", name)
        found = self._find_tasks_file(target, path, scope)
        if found is None:
            raise self.fail(path, line_of(raw, key), f"{key}: {target!r} not found", name)
        if str(found) in seen:
            raise self.fail(path, line_of(raw, key), f"{key}: {target!r} includes itself", name)
        loop = self._loop(raw, path, name)
        when = self.conditions(raw, "when", path, name) or ()
        static = short_name(key) == "import_tasks" and loop is None
        # An import's tags go to every imported task; an include's stay on the include
        # (Ansible's: its tasks are selected by their own tags).
        drop = ("when", "loop") if static else ("when", "loop", "tags")
        inner = self.scope(scope, raw.subset(lambda k: k not in drop), path, name)
        own_tags = inner.tags | frozenset(self.strings(raw, "tags", path, name))
        if static:  # the import's `when` is every imported task's own, like Ansible's
            inner = replace(inner, when=inner.when + when)
        doc = load_yaml(found)
        chain = (*seen, str(found))
        items = tuple(self.items(doc, str(found), inner, line_of(doc, default=1), chain))
        if static:
            return Block(name, items, (), (), path, raw.line)
        control = self._loop_control(raw, path, name)
        return Include(
            name,
            items,
            loop,
            control,
            when,
            path,
            raw.line,
            own_tags,
            vars=inner.vars,
            defaults=inner.defaults,
            params=inner.params,
        )

    def _find_tasks_file(self, target: str, path: str, scope: Scope) -> Path | None:
        dirs = [Path(path).resolve().parent]
        if scope.tasks_dir is not None:
            dirs.insert(0, scope.tasks_dir)
        dirs.append(self.playbook_dir)
        return next((d / target for d in dirs if (d / target).is_file()), None)

    def _loop(self, raw: LineMap, path: str, name: str) -> Any:
        if "loop" in raw and "with_items" in raw:
            raise self.fail(
                path, line_of(raw, "with_items"), "loop and with_items both given", name
            )
        if "with_items" in raw:
            return raw["with_items"]  # flattened one level once rendered (step.py)
        return raw.get("loop")

    def _loop_control(self, raw: LineMap, path: str, name: str) -> LoopControl:
        value = raw.get("loop_control")
        if value is None:
            return LoopControl()
        line = line_of(raw, "loop_control")
        if not isinstance(value, dict):
            raise self.fail(path, line, "loop_control must be a mapping", name)
        known = {"loop_var", "index_var", "label", "pause", "extended"}
        for key in value:
            if key not in known:
                raise self.fail(path, line, f"loop_control: {key!r} is not supported", name)
        for key in ("loop_var", "index_var"):
            if key in value and not (isinstance(value[key], str) and value[key].isidentifier()):
                raise self.fail(path, line, f"loop_control: {key} must be a variable name", name)
        pause = value.get("pause", 0)
        if not isinstance(pause, int | float) or isinstance(pause, bool) or pause < 0:
            raise self.fail(path, line, "loop_control: pause must be seconds", name)
        return LoopControl(
            loop_var=value.get("loop_var", "item"),
            index_var=value.get("index_var"),
            label=None if value.get("label") is None else str(value["label"]),
            pause=float(pause),
            extended=bool(value.get("extended", False)),
        )

    def _number(self, raw: LineMap, key: str, default: float, path: str, name: str) -> float:
        value = raw.get(key, default)
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise self.fail(path, line_of(raw, key), f"{key} must be a number", name)
        return float(value)

    def task(self, raw: LineMap, path: str, scope: Scope, name: str, modules: list[str]) -> Task:
        unsupported = next((k for k in modules if k in UNSUPPORTED_KEYS), None)
        if unsupported is not None:
            raise self.fail(
                path,
                line_of(raw, unsupported),
                f"task keyword {unsupported!r} is not supported by labctl (README: Playbooks)",
                name,
            )
        if not modules:
            raise self.fail(path, raw.line, "no module (README: Playbooks lists them)", name)
        if len(modules) > 1:
            raise self.fail(
                path, line_of(raw, modules[1]), f"one module per task, not {modules}", name
            )
        module = modules[0]
        line = line_of(raw, module) or raw.line
        action, args = self._args(raw, module, path, line, name)
        register = raw.get("register")
        if register is not None and (not isinstance(register, str) or not register.isidentifier()):
            raise self.fail(path, line_of(raw, "register"), "register needs a variable name", name)
        inner = self.scope(scope, raw.subset(lambda k: k != "when"), path, name)
        when = scope.when + (self.conditions(raw, "when", path, name) or ())
        until = self.conditions(raw, "until", path, name)
        retries = int(self._number(raw, "retries", 0, path, name)) if "retries" in raw else None
        task = Task(
            name=name,
            action=action,
            args=args,
            path=path,
            line=raw.line,
            when=when,
            register=register,
            loop=self._loop(raw, path, name),
            loop_flatten="with_items" in raw,
            loop_control=self._loop_control(raw, path, name),
            tags=inner.tags,
            ignore_errors=bool(inner.ignore_errors),
            changed_when=self.conditions(raw, "changed_when", path, name),
            failed_when=self.conditions(raw, "failed_when", path, name),
            until=until,
            retries=retries,
            delay=self._number(raw, "delay", 5, path, name),
            notify=self.strings(raw, "notify", path, name),
            listen=self.strings(raw, "listen", path, name),
            delegate_to=inner.delegate_to,
            run_once=inner.run_once,
            environment=inner.environment,
            become=inner.become,
            become_user=inner.become_user,
            no_log=inner.no_log,
            check_mode=inner.check_mode,
            vars=inner.vars,
            defaults=scope.defaults,
            params=scope.params,
            search_dirs=scope.search_dirs,
            role=scope.role,
            any_errors_fatal=inner.any_errors_fatal,
        )
        try:  # template syntax errors, found now rather than on a host
            names_used(task.args)
            names_used(task.loop)
            names_used(dict(task.environment))
        except TemplateError as exc:
            raise self.fail(path, line, str(exc), name) from exc
        return task

    def _args(
        self, raw: LineMap, module: str, path: str, line: int, name: str
    ) -> tuple[str, dict[str, Any]]:
        """The module's arguments in the action's names, checked as far as they can be before
        rendering: unknown or missing names, and every value that holds no template."""
        action = short_name(module)
        value = raw[module]
        extra = raw.get("args") or {}
        if not isinstance(extra, dict):
            raise self.fail(path, line_of(raw, "args"), "args must be a mapping", name)
        try:
            if action in CONTROL:
                return action, check_control_args(action, value, extra)
            target, _ = translate(module, {})
            if target not in ACTIONS:
                raise ValueError(
                    f"unknown module {module!r} (README: Playbooks lists the modules labctl runs)"
                )
            kind = ACTIONS[target]
            if isinstance(value, str):
                fields = set(arg_fields(kind.Args))
                value = split_kv(
                    value,
                    kind.free_form,
                    # Without a free form every word is key=value (a wrong key is refused
                    # below, by name); with one, only the module's own keys are taken out.
                    lambda k: (
                        kind.free_form is None
                        or (k in fields and k not in ("argv", kind.free_form))
                    ),
                )
            elif value is None:
                value = {}
            if not isinstance(value, dict):
                raise ValueError(f"{module}: arguments must be a mapping")
            target, args = translate(module, {**extra, **value})
            args = kind.prepare_args(args)
            check_arg_names(kind, args)
            if not is_templated(args):
                build_args(kind, args)  # typed arguments and their checks, right now
        except TemplateError:
            return translate(module, {**extra, **(value if isinstance(value, dict) else {})})
        except (ArgsError, ValueError) as exc:
            raise self.fail(path, line, str(exc), name) from exc
        return target, args

    # ------------------------------------------------------------------ handlers

    def check_notify(self, items: list[Item], handlers: tuple[Task, ...]) -> None:
        names = {h.name for h in handlers} | {topic for h in handlers for topic in h.listen}
        for task in walk_tasks([*items, *handlers]):
            for wanted in task.notify:
                if wanted not in names and "{{" not in wanted:
                    raise self.fail(
                        task.path,
                        task.line,
                        f"notify {wanted!r}: no handler has that name or listens to it",
                        task.name,
                    )


def search_dirs(*dirs: Path) -> tuple[Path, ...]:
    """Where a task looks for templates/ and files/: its role, its playbook's directory, the
    project's top level (labctl's own templates/ and files/), in that order."""
    return tuple(dict.fromkeys((*dirs, PROJECT_DIR)))
