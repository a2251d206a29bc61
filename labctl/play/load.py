"""Playbooks as Ansible users write them, loaded and checked before any host is touched.

Everything a user can get wrong in the files is found here, with file, line and task name:
YAML syntax, unknown keywords, modules and arguments, template syntax, a handler nobody
defines, a role or a file that is not there. `import_playbook`, `import_tasks`,
`include_tasks`, `vars_files` and roles are all read now, so a typo in any of them fails
before the first connection. Keywords a block or role gives its tasks are folded into each
task (tasks.py); the runner gets plain data (model.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labctl.play.model import Item, Play, Playbook, PlaybookError, Task
from labctl.play.names import check_names
from labctl.play.roles import read_roles
from labctl.play.tasks import TaskReader, flush_handlers, vars_mapping
from labctl.yamlfile import LineList, LineMap, line_of, load_yaml

__all__ = [
    "Play",
    "Playbook",
    "PlaybookError",
    "Task",
    "check_names",
    "load_playbook",
    "playbook_of",
]

PLAY_KEYS = {
    "name",
    "hosts",
    "vars",
    "vars_files",
    "become",
    "become_user",
    "gather_facts",
    "any_errors_fatal",
    "pre_tasks",
    "roles",
    "tasks",
    "post_tasks",
    "handlers",
    "tags",
    "serial",
    "max_fail_percentage",
    "check_mode",
    "no_log",
    "environment",
}
IMPORT_PLAYBOOK = ("import_playbook", "ansible.builtin.import_playbook")


def load_playbook(path: str | Path) -> Playbook:
    path = str(path)
    return Playbook(path, tuple(_Loader(Path(path).resolve().parent).plays(path, ())))


def playbook_of(path: str, plays: list[LineMap]) -> Playbook:
    """Plays read from part of another file (an experiment file's setup), checked as a
    playbook's are, errors naming that file and its lines."""
    loader = _Loader(Path(path).resolve().parent)
    return Playbook(path, tuple(loader._play(path, raw) for raw in plays))


@dataclass
class _Loader:
    playbook_dir: Path

    def plays(self, path: str, seen: tuple[str, ...]) -> list[Play]:
        real = str(Path(path).resolve())
        if real in seen:
            raise PlaybookError("imports itself (via " + " -> ".join(seen) + ")", path)
        doc = load_yaml(path)
        if doc is None:
            raise PlaybookError("empty playbook", path)
        if not isinstance(doc, LineList):
            raise PlaybookError("a playbook is a list of plays", path, line_of(doc, default=1))
        out: list[Play] = []
        for raw in doc:
            imported = next(
                (k for k in IMPORT_PLAYBOOK if isinstance(raw, dict) and k in raw), None
            )
            if imported is not None:
                out += self._import_playbook(path, raw, imported, (*seen, real))
            else:
                out.append(self._play(path, raw))
        return out

    def _import_playbook(
        self, path: str, raw: LineMap, key: str, seen: tuple[str, ...]
    ) -> list[Play]:
        extra = sorted(set(raw) - {key, "name"})
        if extra:
            raise PlaybookError(
                f"import_playbook: {extra[0]!r} is not supported here", path, line_of(raw, extra[0])
            )
        target = raw[key]
        if not isinstance(target, str) or "{{" in target:
            raise PlaybookError(
                "import_playbook takes a file name (not a template)", path, line_of(raw, key)
            )
        found = Path(path).resolve().parent / target
        if not found.is_file():
            raise PlaybookError(f"import_playbook: {target!r} not found", path, line_of(raw, key))
        return self.plays(str(found), seen)

    def _play(self, path: str, raw: Any) -> Play:
        if not isinstance(raw, LineMap):
            raise PlaybookError("a play is a mapping with `hosts` and `tasks`", path, line_of(raw))
        for key in raw:
            if key not in PLAY_KEYS:
                raise PlaybookError(f"unknown play keyword {key!r}", path, line_of(raw, key))
        hosts = raw.get("hosts")
        if isinstance(hosts, list) and all(isinstance(h, str) for h in hosts):
            hosts = ",".join(hosts)
        if not isinstance(hosts, str) or not hosts.strip():
            raise PlaybookError("a play needs `hosts:` (a host pattern)", path, raw.line)
        reader = TaskReader(path, self.playbook_dir, PlaybookError)
        variables = dict(vars_mapping(raw.get("vars"), path, line_of(raw, "vars"), PlaybookError))
        files = self._vars_files(path, raw)
        for _name, values in files:
            variables.update(values)
        scope = reader.play_scope(raw)
        pre = reader.items(raw.get("pre_tasks"), path, scope, line_of(raw, "pre_tasks"))
        roles, role_handlers = read_roles(reader, raw.get("roles"), scope, line_of(raw, "roles"))
        tasks = reader.items(raw.get("tasks"), path, scope, line_of(raw, "tasks"))
        post = reader.items(raw.get("post_tasks"), path, scope, line_of(raw, "post_tasks"))
        handlers = [
            *role_handlers,
            *reader.items(raw.get("handlers"), path, scope, line_of(raw, "handlers")),
        ]
        handler_tasks = tuple(_handlers(handlers, path))
        # Ansible flushes handlers after pre_tasks, after roles and tasks, and at the end.
        flush = [flush_handlers(path, raw.line)] if handler_tasks else []
        items: list[Item] = [*pre, *flush, *roles, *tasks, *flush, *post, *flush]
        reader.check_notify(items, handler_tasks)
        return Play(
            name=str(raw.get("name") or hosts),
            hosts=hosts,
            vars=variables,
            become=scope.become,
            gather_facts=reader.boolean(raw, "gather_facts", True, path),
            any_errors_fatal=scope.any_errors_fatal,
            tasks=tuple(items),
            handlers=handler_tasks,
            line=raw.line,
            path=path,
            serial=_serial(raw.get("serial"), path, line_of(raw, "serial")),
            max_fail_percentage=_percentage(raw, path),
            check_mode=scope.check_mode,
            no_log=scope.no_log,
            environment=scope.environment,
            vars_files=tuple(name for name, _ in files),
        )

    def _vars_files(self, path: str, raw: LineMap) -> list[tuple[str, Mapping[str, Any]]]:
        names = raw.get("vars_files") or []
        line = line_of(raw, "vars_files")
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list):
            raise PlaybookError("vars_files must be a list of file names", path, line)
        out: list[tuple[str, Mapping[str, Any]]] = []
        for name in names:
            if not isinstance(name, str) or "{{" in name:
                raise PlaybookError(
                    f"vars_files: {name!r}: a file name (templated names are not supported)",
                    path,
                    line,
                )
            found = Path(path).resolve().parent / name
            if not found.is_file():
                raise PlaybookError(f"vars_files: {name!r} not found", path, line)
            doc = load_yaml(found)
            out.append(
                (name, vars_mapping(doc, str(found), line_of(doc, default=1), PlaybookError))
            )
        return out


def _handlers(items: list[Item], path: str) -> list[Task]:
    out = []
    for item in items:
        if not isinstance(item, Task):
            raise PlaybookError("a handler is a task (not a block or include)", path, item.line)
        out.append(item)
    return out


def _serial(value: Any, path: str, line: int | None) -> tuple[int | str, ...]:
    if value is None:
        return ()
    values = value if isinstance(value, list) else [value]
    out: list[int | str] = []
    for v in values:
        if (isinstance(v, int) and not isinstance(v, bool) and v > 0) or (
            isinstance(v, str) and v.endswith("%") and v[:-1].strip().isdigit()
        ):
            out.append(v)
        elif isinstance(v, str) and v.isdigit() and int(v) > 0:
            out.append(int(v))
        else:
            raise PlaybookError(
                f"serial: {v!r} is not a positive number or a percentage", path, line
            )
    return tuple(out)


def _percentage(raw: LineMap, path: str) -> float | None:
    value = raw.get("max_fail_percentage")
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 100:
        return float(value)
    raise PlaybookError(
        "max_fail_percentage must be a number in 0..100", path, line_of(raw, "max_fail_percentage")
    )
