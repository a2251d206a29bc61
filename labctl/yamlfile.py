"""YAML with line numbers: every mapping and list remembers where it starts, and each key's line.

Used for playbooks, so every error names file and line (the inventory walks nodes itself).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from labctl.errors import InputError


class LineMap(dict[str, Any]):
    line: int = 0
    key_lines: dict[str, int]


class LineList(list[Any]):
    line: int = 0


class _Loader(yaml.SafeLoader):
    pass


def _mapping(loader: _Loader, node: yaml.MappingNode) -> LineMap:
    out = LineMap()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | float | bool):
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", key_node.start_mark
            )
        out[str(key)] = loader.construct_object(value_node, deep=True)
        out.key_lines[str(key)] = key_node.start_mark.line + 1
    return out


def _sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    out = LineList(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)


def load_yaml(path: str | Path) -> Any:
    """Parse a YAML file; a syntax error becomes one InputError line with file and line."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", str(path)) from exc
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
        raise InputError(f"invalid YAML: {problem}", str(path), line) from exc
    except yaml.YAMLError as exc:
        raise InputError(f"invalid YAML: {exc}", str(path)) from exc


def line_of(value: Any, key: str | None = None, default: int | None = None) -> int | None:
    """The line of a loaded mapping or list (or of one of its keys)."""
    if key is not None and isinstance(value, LineMap):
        return value.key_lines.get(key, value.line)
    return getattr(value, "line", default)
