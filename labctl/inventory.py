"""Ansible YAML inventories, read as Ansible reads them, with file:line on every error."""

from __future__ import annotations

import fnmatch
import ipaddress
import os
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode

from labctl.errors import InventoryError
from labctl.yamlfile import compose, refuse_duplicate_keys, yaml_error


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    port: int
    user: str
    key_file: str | None
    known_hosts_file: str | None  # None means ~/.ssh/known_hosts
    become: bool
    groups: tuple[str, ...]  # "all" first, then sorted; ancestors included
    vars: Mapping[str, Any]


@dataclass(frozen=True)
class Group:
    name: str
    parents: tuple[str, ...]
    children: tuple[str, ...]
    hosts: tuple[str, ...]  # direct members only
    vars: Mapping[str, Any]
    line: int  # 0 for the implicit groups "all" and "ungrouped" when the file omits them


@dataclass(frozen=True)
class Inventory:
    path: str
    hosts: Mapping[str, Host]
    groups: Mapping[str, Group]

    def host(self, name: str) -> Host:
        if name not in self.hosts:
            raise InventoryError(f"unknown host {name!r}", path=self.path)
        return self.hosts[name]

    def select(self, pattern: str) -> list[Host]:
        """Hosts matching an Ansible host pattern, in file order."""
        terms = _split_pattern(pattern, self.hosts)
        if not terms:
            raise InventoryError(f"empty host pattern {pattern!r}", path=self.path)
        regular = [t for t in terms if t[0] not in "&!"] or ["all"]
        chosen = set().union(*(self._match(t, pattern) for t in regular))
        # "&" and "!" commute with each other, so only the union has to come first.
        for term in terms:
            if term[0] == "&":
                chosen &= self._match(term[1:].strip(), pattern)
            elif term[0] == "!":
                chosen -= self._match(term[1:].strip(), pattern)
        return [host for name, host in self.hosts.items() if name in chosen]

    def _match(self, term: str, pattern: str) -> set[str]:
        if any(c in term for c in "*?"):
            found = {h for g in fnmatch.filter(self.groups, term) for h in self._members(g)}
            found |= set(fnmatch.filter(self.hosts, term))
            if found or fnmatch.filter(self.groups, term):
                return found
        elif term in self.groups:  # like Ansible, a group shadows a host of the same name
            return self._members(term)
        elif term in self.hosts:
            return {term}
        raise InventoryError(f"unknown host or group {term!r} in pattern {pattern!r}", self.path)

    def _members(self, group: str) -> set[str]:
        children = self.groups[group].children
        return set(self.groups[group].hosts).union(*(self._members(c) for c in children))


def load_inventory(path: str | os.PathLike[str]) -> Inventory:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError(f"cannot read inventory: {exc}", path=os.fspath(path)) from exc
    return parse_inventory(text, os.fspath(path))


def parse_inventory(text: str, path: str = "<inventory>") -> Inventory:
    """Parse inventory text; relative key paths resolve against ``path``'s directory."""
    root = compose(text, path, InventoryError)
    try:
        return _Parser(path).parse(root)
    except yaml.YAMLError as exc:  # e.g. a value of a tag no safe loader constructs
        raise yaml_error(exc, path, InventoryError) from exc


@dataclass
class _Layer:
    """Variables from one definition site, plus the connection settings read from them."""

    line: int
    vars: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class _GroupDraft(_Layer):
    parents: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)


# Host field -> variables that set it; in one vars block the first name present wins.
_SETTINGS = {
    "address": ("ansible_host",),
    "port": ("ansible_port", "ansible_ssh_port"),
    "user": ("ansible_user", "ansible_ssh_user"),
    "key_file": ("ansible_ssh_private_key_file",),
    "known_hosts_file": ("labctl_known_hosts_file",),
    "become": ("ansible_become",),
    "priority": ("ansible_group_priority",),
}
_TRUE, _FALSE = {"yes", "true", "on", "1"}, {"no", "false", "off", "0"}
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
_RANGE = re.compile(r"\[([^\]]*)\]")


class _Parser:
    def __init__(self, path: str) -> None:
        self.path = path
        self.base_dir = os.path.dirname(os.path.abspath(path))
        self.loader = yaml.SafeLoader("")
        self.groups: dict[str, _GroupDraft] = {}
        self.hosts: dict[str, _Layer] = {}

    def parse(self, root: Node | None) -> Inventory:
        for key, value in self._pairs(root, "the inventory"):
            self._group(self._name(key), key, value, parent=None)
        return self._finish()

    def _error(self, message: str, node_or_line: Node | int) -> InventoryError:
        line = node_or_line if isinstance(node_or_line, int) else node_or_line.start_mark.line + 1
        return InventoryError(message, path=self.path, line=line)

    def _pairs(self, node: Node | None, what: str) -> list[tuple[Node, Node]]:
        if node is None or (isinstance(node, ScalarNode) and node.tag.endswith(":null")):
            return []
        if not isinstance(node, MappingNode):
            kind = "a list" if isinstance(node, yaml.SequenceNode) else f"{node.value!r}"
            raise self._error(f"{what} must be a mapping, not {kind}", node)
        try:
            refuse_duplicate_keys(node)  # a host or key written twice is a mistake
        except yaml.MarkedYAMLError as exc:
            at = exc.problem_mark.line + 1 if exc.problem_mark else node
            raise self._error(f"{what}: {exc.problem}", at) from None
        self.loader.flatten_mapping(node)  # resolve "<<" merge keys as safe_load would
        # Keys a "<<" merge brings in come first; the mapping's own keys win over them.
        unique = {k.value if isinstance(k, ScalarNode) else k: (k, v) for k, v in node.value}
        return list(unique.values())

    def _name(self, node: Node) -> str:
        if not isinstance(node, ScalarNode) or not node.value:
            raise self._error("expected a host or group name", node)
        return str(node.value)

    def _group(self, name: str, key: Node, node: Node, parent: str | None) -> None:
        group = self.groups.setdefault(name, _GroupDraft(line=key.start_mark.line + 1))
        if parent is not None:
            self._link(parent, name, key)
        for section_key, section in self._pairs(node, f"group {name!r}"):
            section_name = self._name(section_key)
            if section_name == "hosts":
                for host_key, host_vars in self._pairs(section, f"hosts of group {name!r}"):
                    self._host(host_key, host_vars, group)
            elif section_name == "vars":
                variables = self._vars(section, f"vars of group {name!r}")
                group.vars.update(variables)
                group.settings.update(self._settings(variables, f"group {name!r}", key))
            elif section_name == "children":
                for child_key, child in self._pairs(section, f"children of group {name!r}"):
                    self._group(self._name(child_key), child_key, child, parent=name)
            else:
                raise self._error(
                    f"group {name!r} has unknown key {section_name!r}"
                    " (expected hosts, vars or children)",
                    section_key,
                )

    def _link(self, parent: str, child: str, key: Node) -> None:
        if child in ("all", parent) or child in self._ancestors(parent):
            raise self._error(f"group {child!r} is its own ancestor (via {parent!r})", key)
        if child not in self.groups[parent].children:
            self.groups[parent].children.append(child)
            self.groups[child].parents.append(parent)

    def _ancestors(self, name: str) -> set[str]:
        parents = self.groups[name].parents
        return set(parents).union(*(self._ancestors(p) for p in parents))

    def _host(self, key: Node, node: Node, group: _GroupDraft) -> None:
        pattern = self._name(key)
        variables = self._vars(node, f"host {pattern!r}")
        settings = self._settings(variables, f"host {pattern!r}", key)
        try:
            names = _expand_range(pattern)
        except ValueError as exc:
            raise self._error(f"host {pattern!r}: bad range: {exc}", key) from None
        for name in names:
            # Ansible merges a host listed in several places; later definitions win.
            host = self.hosts.setdefault(name, _Layer(line=key.start_mark.line + 1))
            host.vars.update(variables)
            host.settings.update(settings)
            if name not in group.hosts:
                group.hosts.append(name)

    def _vars(self, node: Node, what: str) -> dict[str, Any]:
        self._pairs(node, what)  # type check only
        return dict(self.loader.construct_object(node, deep=True) or {})

    def _settings(self, variables: dict[str, Any], where: str, key: Node) -> dict[str, Any]:
        settings = {}
        for setting, names in _SETTINGS.items():
            var = next((name for name in names if name in variables), None)
            if var is not None:
                try:
                    settings[setting] = self._convert(setting, variables[var])
                except ValueError as exc:
                    message = f"{where}: {var} {exc}, not {variables[var]!r}"
                    raise self._error(message, key) from None
        return settings

    def _convert(self, setting: str, value: Any) -> Any:
        if setting == "port":
            port = int(value) if isinstance(value, str) and value.isdigit() else value
            if type(port) is not int or not 1 <= port <= 65535:
                raise ValueError("must be an integer in 1..65535")
            return port
        if setting == "priority":
            if type(value) is not int:
                raise ValueError("must be an integer")
            return value
        if setting == "become":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
                return value.lower() in _TRUE
            raise ValueError("must be a boolean (yes/no/true/false)")
        if not isinstance(value, str) or not value:
            raise ValueError("must be a non-empty string")
        if setting in ("key_file", "known_hosts_file"):
            return os.path.join(self.base_dir, os.path.expanduser(value))
        return value

    def _finish(self) -> Inventory:
        for implicit in ("all", "ungrouped"):
            self.groups.setdefault(implicit, _GroupDraft(line=0))
        for name, draft in self.groups.items():
            if name != "all" and not draft.parents:
                draft.parents.append("all")
                self.groups["all"].children.append(name)
        member_of: dict[str, set[str]] = {name: set() for name in self.hosts}
        for name, draft in self.groups.items():
            for host_name in draft.hosts:
                member_of[host_name] |= {name} | self._ancestors(name)
        # As Ansible: "ungrouped" holds exactly the hosts that are in no other group.
        ungrouped = [h for h, names in member_of.items() if names <= {"all", "ungrouped"}]
        self.groups["ungrouped"].hosts = ungrouped
        for host_name, names in member_of.items():
            names.discard("ungrouped")
            if host_name in ungrouped:
                names.add("ungrouped")
        hosts = {name: self._host_of(name, member_of[name]) for name in self.hosts}
        groups = {
            name: Group(
                name,
                tuple(g.parents),
                tuple(g.children),
                tuple(g.hosts),
                MappingProxyType(dict(g.vars)),
                g.line,
            )
            for name, g in self.groups.items()
        }
        return Inventory(self.path, MappingProxyType(hosts), MappingProxyType(groups))

    def _depth(self, group: str) -> int:
        """Longest path from "all", as Ansible counts it: deeper groups override."""
        return max((self._depth(p) + 1 for p in self.groups[group].parents), default=0)

    def _host_of(self, name: str, group_names: set[str]) -> Host:
        order = sorted(
            group_names,
            key=lambda g: (self._depth(g), self.groups[g].settings.get("priority", 1), g),
        )
        variables: dict[str, Any] = {}
        settings: dict[str, Any] = {}
        for layer in [*(self.groups[g] for g in order), self.hosts[name]]:
            variables.update(layer.vars)
            settings.update(layer.settings)
        if "address" not in settings and not _is_address(name):
            message = f"host {name!r} has no ansible_host and its name is not an address"
            raise self._error(message, self.hosts[name].line)
        return Host(
            name=name,
            address=settings.get("address", name),
            port=settings.get("port", 22),
            user=settings.get("user", "root"),
            key_file=settings.get("key_file"),
            known_hosts_file=settings.get("known_hosts_file"),
            become=settings.get("become", False),
            groups=("all", *sorted(group_names - {"all"})),
            vars=MappingProxyType(variables),
        )


def _expand_range(name: str) -> list[str]:
    """Expand Ansible host ranges: web[01:03], web[1:10:2], rack[a:c]."""
    match = _RANGE.search(name)
    if match is None:
        return [name]
    head, tail = name[: match.start()], name[match.end() :]
    bounds = match.group(1).split(":")
    if len(bounds) not in (2, 3) or not bounds[1]:
        raise ValueError("expected [begin:end] or [begin:end:step]")
    begin, end = bounds[0] or "0", bounds[1]
    step = bounds[2] if len(bounds) == 3 else "1"
    if not step.isdigit() or int(step) == 0:
        raise ValueError(f"step must be a positive integer, not {step!r}")
    letters = string.ascii_letters
    if len(begin) == len(end) == 1 and begin in letters and end in letters:
        items = list(letters[letters.index(begin) : letters.index(end) + 1 : int(step)])
    elif begin.isdigit() and end.isdigit():
        # Ansible keeps zero padding only when the begin bound is written with it.
        width = len(begin) if begin.startswith("0") and len(begin) > 1 else 0
        if width and len(end) != width:
            raise ValueError("zero-padded begin and end must have the same width")
        items = [str(i).zfill(width) for i in range(int(begin), int(end) + 1, int(step))]
    else:
        raise ValueError("bounds must be both numbers or both single letters")
    if not items:
        raise ValueError("range is empty")
    return [head + item + rest for item in items for rest in _expand_range(tail)]


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return len(name) <= 253 and _HOSTNAME.fullmatch(name) is not None
    return True


def _split_pattern(pattern: str, hosts: Mapping[str, Host]) -> list[str]:
    terms: list[str] = []
    for piece in pattern.split(","):
        piece = piece.strip()
        # An IPv6 host name holds ':', so keep a piece whole when it names a host.
        if piece.lstrip("&!").strip() in hosts:
            terms.append(piece)
        else:
            terms.extend(term.strip() for term in piece.split(":"))
    return [term for term in terms if term]
