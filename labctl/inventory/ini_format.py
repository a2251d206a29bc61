"""Ansible INI inventories, read with the semantics of Ansible's ini inventory plugin (checked
against ansible-inventory 2.17; docs/inventory.md):

- `[group]` lists hosts, `[group:children]` groups, `[group:vars]` `key = value` lines; hosts
  before the first section are in `ungrouped`; `#` and `;` start a comment line;
- a host line is split like a shell line (`#` starts a comment): `name[:port] key=value ...`,
  with ranges `node[01:08]`, `rack[a:c]`;
- every value, inline or in a :vars section, is a Python literal if it reads as one
  (`42`, `[1, 'a']`, `True`, `'quoted'`), else the text as written: `yes` stays a string;
- a group named in a :children section before its own section is linked when its section
  comes; a group that never gets one, or a :vars section for such a group, is an error.

Every bad line is one InventoryError naming the file and the line.
"""

from __future__ import annotations

import ast
import re
import shlex
import warnings
from dataclasses import dataclass, field
from typing import Any

from labctl.inventory.draft import Draft, expand_range

_SECTION = re.compile(r"\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?")
_GROUP_NAME = re.compile(r"([^:\]\s]+)\s*(?:#.*)?")
_BRACKETS = re.compile(r"\[[^\]]*\]")
_IMPLICIT = ("all", "ungrouped")  # groups every inventory has, written or not


def parse_ini(text: str, path: str) -> Draft:
    """The groups and hosts of an INI inventory's text."""
    reader = _Reader(path)
    reader.read(text)
    return reader.draft


def literal(text: str) -> Any:
    """A value as Ansible's ini plugin reads it: a Python literal if the text is one, else the
    text itself."""
    try:
        with warnings.catch_warnings():  # "\d" in a string literal warns; it is still text
            warnings.simplefilter("ignore")
            value = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return text
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


@dataclass
class _Pending:
    """A group named in a :children section (or given :vars) before its own section."""

    kind: str  # "children" or "vars"
    line: int
    parents: list[tuple[str, int]] = field(default_factory=list)  # (parent, line)


class _Reader:
    def __init__(self, path: str) -> None:
        self.draft = Draft(path)
        self.pending: dict[str, _Pending] = {}
        # group -> its :vars and each key's line; applied once the whole file is read
        self.group_vars: dict[str, tuple[dict[str, Any], dict[str, int]]] = {}

    def read(self, text: str) -> None:
        group, kind = "ungrouped", "hosts"
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            section = _SECTION.fullmatch(line)
            if section:
                group, kind = section[1], section[2] or "hosts"
                self._section(group, kind, number)
            elif line.startswith("[") and line.endswith("]"):
                raise self.draft.error(
                    f"invalid section {line!r}: a group name has no spaces, ':' or ']'", number
                )
            elif kind == "hosts":
                self._hosts(line, group, number)
            elif kind == "vars":
                self._var(line, group, number)
            else:
                self._child(line, group, number)
        for name, pending in self.pending.items():
            if pending.kind == "vars":
                message = f"section [{name}:vars] is for group {name!r}, which has no section"
            else:
                parent = pending.parents[0][0]
                message = f"section [{parent}:children] names group {name!r}, which has no section"
            raise self.draft.error(message, pending.line)
        for name, (variables, key_lines) in self.group_vars.items():
            group_draft = self.draft.groups[name]
            group_draft.add(variables, f"group {name!r}", group_draft.line, key_lines)

    def _section(self, name: str, kind: str, number: int) -> None:
        if kind not in ("hosts", "children", "vars"):
            raise self.draft.error(
                f"section [{name}:{kind}] has unknown type {kind!r}"
                " (expected hosts, children or vars)",
                number,
            )
        known = name in self.draft.groups or name in _IMPLICIT
        if not known and kind == "vars" and name not in self.pending:
            self.pending[name] = _Pending("vars", number)
        self.draft.group(name, number)
        pending = self.pending.get(name)
        if pending is not None and kind != "vars":
            if pending.kind == "children":
                self._link_pending(name)
            else:
                del self.pending[name]

    def _link_pending(self, name: str) -> None:
        for parent, line in self.pending.pop(name).parents:
            self.draft.link(parent, name, line)
            if parent in self.pending and self.pending[parent].kind == "children":
                self._link_pending(parent)

    def _child(self, line: str, group: str, number: int) -> None:
        match = _GROUP_NAME.fullmatch(line)
        if match is None:
            raise self.draft.error(f"expected a group name, not {line!r}", number)
        child = match[1]
        if child in self.draft.groups or child in _IMPLICIT:
            self.draft.group(child, 0)
            self.draft.link(group, child, number)
        elif child in self.pending:
            self.pending[child].parents.append((group, number))
        else:
            self.pending[child] = _Pending("children", number, [(group, number)])

    def _var(self, line: str, group: str, number: int) -> None:
        if "=" not in line:
            raise self.draft.error(f"expected key=value, not {line!r}", number)
        key, value = (part.strip() for part in line.split("=", 1))
        if not key:
            raise self.draft.error(f"no variable name before '=' in {line!r}", number)
        variables, key_lines = self.group_vars.setdefault(group, ({}, {}))
        variables[key] = literal(value)
        key_lines[key] = number

    def _hosts(self, line: str, group: str, number: int) -> None:
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError as exc:
            raise self.draft.error(f"cannot split host line {line!r}: {exc}", number) from None
        if not tokens or not tokens[0]:
            raise self.draft.error(f"expected a host name, not {line!r}", number)
        pattern = tokens[0]
        names, port = self._host_pattern(pattern, number)
        # As Ansible: a port given as host:port is ansible_port; key=value may override it.
        variables: dict[str, Any] = {} if port is None else {"ansible_port": port}
        for token in tokens[1:]:
            key, eq, value = token.partition("=")
            if not eq or not key:
                message = f"host {pattern!r}: expected key=value, not {token!r}"
                raise self.draft.error(message, number)
            variables[key] = literal(value)
        members = self.draft.group(group, 0)
        for name in names:
            self.draft.host(name, number, members).add(variables, f"host {pattern!r}", number)

    def _host_pattern(self, pattern: str, number: int) -> tuple[list[str], int | None]:
        """Host names and port of `name`, `name:port`, `[v6addr]:port`, `node[01:08]:port`."""
        if pattern == "---":
            raise self.draft.error(
                "host '---': a YAML file read as INI? (docs/inventory.md)", number
            )
        name, port_text = pattern, ""
        bracketed = re.fullmatch(r"\[([^\]]*:[^\]]*:[^\]]*)\](?::(.*))?", pattern)
        if bracketed:  # an IPv6 address in brackets, maybe with a port
            name, port_text = bracketed[1], bracketed[2] or ""
            if bracketed[2] is None:
                return [name], None
        else:
            # Colons inside [...] are ranges; one colon outside them sets the port, several
            # mean an IPv6 address.
            masked = _BRACKETS.sub(lambda m: "_" * len(m[0]), pattern)
            if masked.count(":") == 1:
                cut = masked.index(":")
                name, port_text = pattern[:cut], pattern[cut + 1 :]
            elif masked.count(":") > 1:
                return [pattern], None
        has_port = name != pattern or port_text
        if has_port and (not port_text.isdigit() or not 1 <= int(port_text) <= 65535):
            message = f"host {pattern!r}: port must be an integer in 1..65535"
            raise self.draft.error(message + f", not {port_text!r}", number)
        try:
            names = expand_range(name) if not bracketed else [name]
        except ValueError as exc:
            raise self.draft.error(f"host {pattern!r}: bad range: {exc}", number) from None
        return names, int(port_text) if port_text else None
