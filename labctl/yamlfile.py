"""YAML with line numbers: every mapping and list remembers where it starts, and each key's line.

Used for playbooks and suites, so every error names file and line (the inventory walks nodes
itself, through `compose`). Parsed by libyaml's C parser. Refused, in one line with file and
line: text that is not UTF-8, a key given twice in one mapping (YAML would silently keep the
last), and a document whose aliases expand past `MAX_VALUES` values or `MAX_DEPTH` levels
(a few hundred bytes of nested aliases otherwise expand to billions of values).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from labctl.errors import InputError

MAX_VALUES = 100_000  # values in a document, each alias counted as what it expands to
MAX_DEPTH = 64  # nesting of mappings and lists

_BaseLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE_TAG = "tag:yaml.org,2002:merge"


class LineMap(dict[str, Any]):
    line: int = 0
    key_lines: dict[str, int]

    def subset(self, keep: Any) -> LineMap:
        """The entries whose key `keep(key)` accepts, their lines kept."""
        out = LineMap({k: v for k, v in self.items() if keep(k)})
        out.line = self.line
        out.key_lines = {k: n for k, n in getattr(self, "key_lines", {}).items() if k in out}
        return out


class LineList(list[Any]):
    line: int = 0


class _Loader(_BaseLoader):
    pass


def refuse_duplicate_keys(node: MappingNode) -> None:
    """A key written twice in one mapping is an error (keys that `<<` merges in may repeat)."""
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG or not isinstance(key_node, ScalarNode):
            continue
        line = key_node.start_mark.line + 1
        if key_node.value in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key_node.value!r} (first on line {seen[key_node.value]})",
                key_node.start_mark,
            )
        seen[key_node.value] = line


def _children(node: Node) -> list[Node]:
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, SequenceNode):
        return list(node.value)
    return []


def check_expansion(root: Node) -> None:
    """Refuse a document that expands (aliases counted in full) past MAX_VALUES values or
    nests past MAX_DEPTH, or whose aliases loop. Linear in the document's own nodes."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[Node, int, bool]] = [(root, 0, False)]
    while stack:
        node, depth, finished = stack.pop()
        key = id(node)
        if finished:
            open_nodes.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in _children(node))
            if sizes[key] > MAX_VALUES:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"expands to more than {MAX_VALUES} values (nested aliases?)",
                    node.start_mark,
                )
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise yaml.constructor.ConstructorError(
                None, None, "an alias refers to a value that contains it", node.start_mark
            )
        if depth > MAX_DEPTH:
            raise yaml.constructor.ConstructorError(
                None, None, f"nested deeper than {MAX_DEPTH} levels", node.start_mark
            )
        open_nodes.add(key)
        stack.append((node, depth, True))
        stack.extend((c, depth + 1, False) for c in _children(node) if id(c) not in sizes)


def _mapping(loader: _Loader, node: MappingNode) -> LineMap:
    refuse_duplicate_keys(node)
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


def _sequence(loader: _Loader, node: SequenceNode) -> LineList:
    out = LineList(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)


def read_text(path: str | Path) -> str:
    """A file's text; unreadable or not UTF-8 is one InputError naming the file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", str(path)) from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(
            f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})", str(path), line
        ) from exc


def yaml_error(exc: yaml.YAMLError, path: str, error: type[InputError] = InputError) -> InputError:
    """One line, with file and line, for any YAML error."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
        return error(f"invalid YAML: {problem}", path, line)
    return error(f"invalid YAML: {' '.join(str(exc).split())}", path)


def compose(text: str, path: str, error: type[InputError] = InputError) -> Node | None:
    """The document's node tree (for callers that walk nodes), checked by check_expansion."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is not None:
            check_expansion(root)
        return root
    except yaml.YAMLError as exc:
        raise yaml_error(exc, path, error) from exc
    finally:
        loader.dispose()


def load_yaml(path: str | Path) -> Any:
    """Parse a YAML file; every fault in it becomes one InputError line with file and line."""
    return load_yaml_text(read_text(path), path)


def load_yaml_text(text: str, path: str | Path) -> Any:
    """Parse YAML text that came from `path` (a file as it was, e.g. stored with a run)."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        check_expansion(root)
        return loader.construct_document(root)
    except yaml.YAMLError as exc:
        raise yaml_error(exc, str(path)) from exc
    except RecursionError as exc:
        raise InputError("invalid YAML: nested too deeply", str(path)) from exc
    finally:
        loader.dispose()


def line_of(value: Any, key: str | None = None, default: int | None = None) -> int | None:
    """The line of a loaded mapping or list (or of one of its keys)."""
    if key is not None and isinstance(value, LineMap):
        return value.key_lines.get(key, value.line)
    return getattr(value, "line", default)


def refuse_unknown_keys(
    doc: LineMap, allowed: set[str], path: str, what: str, error: type[InputError] = InputError
) -> None:
    """A key the file format does not have: one line, with the file, the key's line and the
    keys it has."""
    for key in doc:
        if key not in allowed:
            raise error(
                f"{what}: unknown key {key!r} (known: {', '.join(sorted(allowed))})",
                path,
                line_of(doc, key),
            )
