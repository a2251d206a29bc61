"""Module names and arguments as Ansible writes them, turned into labctl's actions.

A task may name a module `ansible.builtin.apt`, `apt`, `package` or labctl's own `packages`;
all reach the same action. Where Ansible's argument names or values differ from the action's
(apt's `name`/`state: installed`), they are translated here, once, before anything is
checked; an argument neither side knows is an error naming the task, file and line (in
load.py), never dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Tasks the engine runs itself: they read or set variables, or steer the run, on the
# controller. Their arguments are checked in load.py.
CONTROL = frozenset(
    {"debug", "set_fact", "assert", "fail", "meta", "include_tasks", "import_tasks"}
)
# Collections whose modules keep their short name here.
_PREFIXES = ("ansible.builtin.", "ansible.legacy.", "ansible.posix.", "community.general.")


@dataclass(frozen=True)
class Alias:
    """An Ansible module that is a labctl action under other argument names."""

    action: str
    renames: Mapping[str, str] = field(default_factory=dict)  # Ansible's name -> the action's
    values: Mapping[str, Mapping[Any, Any]] = field(default_factory=dict)  # per argument
    fixed: Mapping[str, Any] = field(default_factory=dict)  # set unless the task sets it
    dropped: frozenset[str] = frozenset()  # accepted, meaning what labctl always does


_SYSTEMD = Alias(
    "systemd", renames={"service": "name", "unit": "name", "daemon-reload": "daemon_reload"}
)
_APT = Alias(
    "packages",
    renames={"name": "names", "pkg": "names", "update-cache": "update_cache"},
    values={"state": {"installed": "present", "removed": "absent"}},
)
ALIASES: dict[str, Alias] = {
    "apt": _APT,
    "package": _APT,
    # ansible.posix.sysctl writes the value to a file (/etc/sysctl.conf) and sets it now;
    # labctl's own `sysctl` sets it now and persists only when asked (README, playbooks).
    "ansible.posix.sysctl": Alias(
        "sysctl",
        renames={"sysctl_file": "file"},
        fixed={"persist": True, "file": "/etc/sysctl.conf"},
        values={"state": {"present": "present"}},
        dropped=frozenset({"reload", "sysctl_set", "state"}),
    ),
    "file": Alias("file", renames={"dest": "path", "name": "path"}),
    "stat": Alias("stat", renames={"dest": "path", "name": "path"}),
    "lineinfile": Alias(
        "lineinfile",
        renames={
            "dest": "path",
            "destfile": "path",
            "name": "path",
            "regex": "regexp",
            "value": "line",
        },
    ),
    "git": Alias("git", renames={"name": "repo"}),
    "systemd": _SYSTEMD,
    "systemd_service": _SYSTEMD,
}


def short_name(module: str) -> str:
    """`ansible.builtin.copy` -> `copy`; `ansible.posix.sysctl` keeps its name (its meaning
    differs from labctl's own `sysctl`)."""
    if module in ALIASES:
        return module
    for prefix in _PREFIXES:
        if module.startswith(prefix):
            return module[len(prefix) :]
    return module


def translate(module: str, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The action a module name means and the task's arguments in that action's names."""
    name = short_name(module)
    alias = ALIASES.get(name)
    if alias is None:
        return name, args
    out: dict[str, Any] = {}
    for key, value in args.items():
        if key in alias.dropped:
            continue
        target = alias.renames.get(key, key)
        value_map = alias.values.get(key)
        if value_map is not None and isinstance(value, str | bool) and value in value_map:
            value = value_map[value]
        if target in out:
            raise ValueError(f"{module}: {key!r} and another argument both set {target!r}")
        out[target] = value
    for key, value in alias.fixed.items():
        out.setdefault(key, value)
    return alias.action, out


_KV = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.S)


def split_kv(text: str, free_form: str | None, known: Callable[[str], bool]) -> dict[str, Any]:
    """Ansible's `module: key=value key2=value2` one-line form. For a module with a free-form
    argument (`command: ls -l chdir=/tmp`) the words that are not a known `key=` are the free
    form, kept as written; for any other module every word must be `key=value`."""
    words = _split_keep_quotes(text)
    args: dict[str, Any] = {}
    rest: list[str] = []
    for word in words:
        found = _KV.match(word)
        if found and known(found[1]):
            args[found[1]] = _unquote(found[2])
        elif free_form is not None:
            rest.append(word)
        else:
            raise ValueError(f"expected key=value, not {word!r}")
    if rest:
        args[free_form or "cmd"] = " ".join(rest)
    return args


_WORD = re.compile(r"""(?:\{\{.*?\}\}|\{%.*?%\}|"(?:\\.|[^"\\])*"|'[^']*'|\{(?![{%])|[^\s"'{])+""")


def _split_keep_quotes(text: str) -> list[str]:
    """Words as a shell splits them, each kept as written (quotes included), so a free-form
    command is passed on exactly as the user wrote it; a `{{ ... }}` stays in its word, spaces
    and all, as Ansible's parse_kv keeps it. ValueError for an unclosed quote."""
    outside = re.sub(r"\{\{.*?\}\}|\{%.*?%\}", "", text, flags=re.S)
    if "{{" in outside or "{%" in outside:
        raise ValueError(f"template syntax error: a tag is not closed in {text!r}")
    if _WORD.sub("", text).strip():
        raise ValueError(f"unclosed quote in {text!r}")
    return _WORD.findall(text)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value
