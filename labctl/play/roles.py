"""Roles: `roles/NAME/{tasks,handlers,defaults,vars,templates,files}` read into tasks whose
scope carries the role's defaults, vars, params and file search path (docs/playbooks.md)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from labctl.paths import ROLES
from labctl.play.model import Item
from labctl.play.tasks import Scope, TaskReader, search_dirs, vars_mapping
from labctl.yamlfile import LineMap, line_of, load_yaml

ROLE_KEYS = {"role", "name", "vars", "tags", "when", "become", "become_user", "environment"}


def read_roles(
    reader: TaskReader, raw: Any, scope: Scope, line: int | None
) -> tuple[list[Item], list[Item]]:
    path = reader.playbook_path
    if raw is None:
        return [], []
    if not isinstance(raw, list):
        raise reader.error("roles must be a list", path, line)
    tasks: list[Item] = []
    handlers: list[Item] = []
    for entry in raw:
        more, more_handlers = _role(reader, entry, scope)
        tasks += more
        handlers += more_handlers
    return tasks, handlers


def _role(reader: TaskReader, entry: Any, scope: Scope) -> tuple[list[Item], list[Item]]:
    path = reader.playbook_path
    if isinstance(entry, str):
        entry = LineMap({"role": entry})
        entry.line, entry.key_lines = 0, {}
    if not isinstance(entry, LineMap):
        raise reader.error("a role is a name or a mapping with `role:`", path, line_of(entry))
    name = entry.get("role") or entry.get("name")
    if not isinstance(name, str):
        raise reader.error("a role entry needs `role: NAME`", path, entry.line)
    role_dir = next(
        (d for d in (reader.playbook_dir / "roles" / name, ROLES / name) if d.is_dir()),
        None,
    )
    if role_dir is None:
        raise reader.error(
            f"role {name!r} not found (looked in {reader.playbook_dir / 'roles'})",
            path,
            entry.line or None,
        )
    params = {k: v for k, v in entry.items() if k not in ROLE_KEYS}
    keywords = entry.subset(lambda k: k in ROLE_KEYS - {"role", "name"})
    if (role_dir / "meta" / "main.yml").is_file():
        meta = load_yaml(role_dir / "meta" / "main.yml")
        if isinstance(meta, dict) and meta.get("dependencies"):
            raise reader.error(
                f"role {name!r}: meta dependencies are not supported (list the roles in "
                "the play instead)",
                str(role_dir / "meta" / "main.yml"),
                line_of(meta, "dependencies"),
            )
    role_vars = _role_vars(reader, role_dir, "vars")
    inner = reader.scope(
        replace(
            scope,
            defaults={**scope.defaults, **_role_vars(reader, role_dir, "defaults")},
            vars={**scope.vars, **role_vars},
            params={**scope.params, **params},
            search_dirs=search_dirs(role_dir, reader.playbook_dir),
            role=name,
            tasks_dir=role_dir / "tasks",
        ),
        keywords,
        path,
        f"role {name}",
    )
    inner = replace(inner, vars={**inner.vars, "role_path": str(role_dir), "role_name": name})
    tasks = _role_file(reader, role_dir, "tasks", inner)
    handlers = _role_file(reader, role_dir, "handlers", inner)
    return tasks, handlers


def _role_file(reader: TaskReader, role_dir: Path, part: str, scope: Scope) -> list[Item]:
    found = _main_file(role_dir / part)
    if found is None:
        return []
    doc = load_yaml(found)
    return reader.items(doc, str(found), scope, 1, (str(found),))


def _role_vars(reader: TaskReader, role_dir: Path, part: str) -> dict[str, Any]:
    found = _main_file(role_dir / part)
    if found is None:
        return {}
    doc = load_yaml(found)
    return vars_mapping(doc, str(found), 1, reader.error)


def _main_file(directory: Path) -> Path | None:
    return next(
        (directory / n for n in ("main.yml", "main.yaml") if (directory / n).is_file()), None
    )
