"""The jinja2 filters and tests Ansible playbooks use every day, written for labctl:
`result is changed`, `x | bool`, `regex_replace`, `to_json`, `basename`, `combine`, ...
(a filter a playbook names that is not here fails when the playbook loads)."""

from __future__ import annotations

import base64
import hashlib
import json
import os.path
import re
import shlex
from collections.abc import Mapping
from typing import Any

import jinja2
import yaml


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("yes", "on", "1", "true", "y", "t")


def _ternary(value: Any, yes: Any, no: Any, none: Any = None) -> Any:
    if value is None and none is not None:
        return none
    return yes if value else no


def _regex_replace(
    value: Any, pattern: str, replacement: str = "", ignorecase: bool = False
) -> str:
    flags = re.I if ignorecase else 0
    return re.sub(pattern, replacement, str(value), flags=flags)


def _regex_search(value: Any, pattern: str, *groups: str, ignorecase: bool = False) -> Any:
    found = re.search(pattern, str(value), flags=re.I if ignorecase else 0)
    if found is None:
        return None
    if not groups:
        return found.group(0)
    out = []
    for g in groups:
        key = g[1:] if g.startswith("\\") else g
        out.append(found.group(int(key) if key.isdigit() else key))
    return out


def _combine(*dicts: Mapping[str, Any], recursive: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for d in dicts:
        for k, v in d.items():
            if recursive and isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
                out[k] = _combine(out[k], v, recursive=True)
            else:
                out[k] = v
    return out


def _flatten(value: list[Any], levels: int | None = None) -> list[Any]:
    out: list[Any] = []
    for v in value:
        if isinstance(v, list) and (levels is None or levels > 0):
            out += _flatten(v, None if levels is None else levels - 1)
        else:
            out.append(v)
    return out


def _mandatory(value: Any, msg: str | None = None) -> Any:
    if isinstance(value, jinja2.Undefined):
        raise jinja2.UndefinedError(msg or "Mandatory variable not defined.")
    return value


def _version(value: Any, other: Any, op: str = "eq") -> bool:
    def key(v: Any) -> list[Any]:
        return [int(p) if p.isdigit() else p for p in re.split(r"[.+~-]", str(v))]

    a, b = key(value), key(other)
    ops = {
        "eq": a == b,
        "==": a == b,
        "ne": a != b,
        "!=": a != b,
        "lt": a < b,
        "<": a < b,
        "le": a <= b,
        "<=": a <= b,
        "gt": a > b,
        ">": a > b,
        "ge": a >= b,
        ">=": a >= b,
    }
    if op not in ops:
        raise jinja2.TemplateRuntimeError(f"version: unknown operator {op!r}")
    return ops[op]


def _result(key: str, want: bool) -> Any:
    def test(value: Any) -> bool:
        if not isinstance(value, Mapping):
            raise jinja2.TemplateRuntimeError(f"the `{key}` test needs a task result")
        return bool(value.get(key, False)) is want

    return test


FILTERS = {
    "quote": lambda v: shlex.quote(str(v)),
    "bool": _bool,
    "ternary": _ternary,
    "regex_replace": _regex_replace,
    "regex_search": _regex_search,
    "regex_findall": lambda v, p: re.findall(p, str(v)),
    "to_json": lambda v, **kw: json.dumps(v, **kw),
    "to_nice_json": lambda v, indent=4: json.dumps(v, indent=indent, sort_keys=True),
    "from_json": lambda v: json.loads(v),
    "to_yaml": lambda v: yaml.safe_dump(v, default_flow_style=None),
    "to_nice_yaml": lambda v, indent=4: yaml.safe_dump(v, indent=indent, default_flow_style=False),
    "from_yaml": lambda v: yaml.safe_load(v),
    "basename": lambda v: os.path.basename(str(v)),
    "dirname": lambda v: os.path.dirname(str(v)),
    "expanduser": lambda v: os.path.expanduser(str(v)),
    "splitext": lambda v: list(os.path.splitext(str(v))),
    "b64encode": lambda v: base64.b64encode(str(v).encode()).decode(),
    "b64decode": lambda v: base64.b64decode(str(v)).decode(),
    "hash": lambda v, algo="sha1": hashlib.new(algo, str(v).encode()).hexdigest(),
    "checksum": lambda v: hashlib.sha1(str(v).encode()).hexdigest(),
    "combine": _combine,
    "dict2items": lambda d, key_name="key", value_name="value": [
        {key_name: k, value_name: v} for k, v in d.items()
    ],
    "items2dict": lambda items, key_name="key", value_name="value": {
        i[key_name]: i[value_name] for i in items
    },
    "flatten": _flatten,
    "mandatory": _mandatory,
    "zip": lambda *lists: [list(t) for t in zip(*lists, strict=False)],
}
TESTS = {
    "changed": _result("changed", True),
    "failed": _result("failed", True),
    "succeeded": _result("failed", False),
    "success": _result("failed", False),
    "skipped": _result("skipped", True),
    "match": lambda v, p, ignorecase=False: (
        re.match(p, str(v), re.I if ignorecase else 0) is not None
    ),
    "search": lambda v, p, ignorecase=False: (
        re.search(p, str(v), re.I if ignorecase else 0) is not None
    ),
    "regex": lambda v, p, ignorecase=False: (
        re.search(p, str(v), re.I if ignorecase else 0) is not None
    ),
    "version": _version,
    "version_compare": _version,
    "truthy": lambda v: bool(v),
    "falsy": lambda v: not v,
    "abs": lambda v: os.path.isabs(str(v)),
}


def add_ansible_names(env: jinja2.Environment) -> None:
    env.filters.update(FILTERS)
    env.tests.update(TESTS)
