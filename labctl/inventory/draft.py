"""The format-neutral half of reading an inventory: the groups, hosts and variables a reader
(YAML or INI) finds, then Ansible's merge of them, with the group_vars/ and host_vars/ files,
into an Inventory. The order of that merge is in docs/inventory.md."""

from __future__ import annotations

import ipaddress
import os
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from labctl.errors import InventoryError
from labctl.inventory.model import Group, Host, Inventory

if TYPE_CHECKING:
    from labctl.inventory.vars_dirs import VarsDir


@dataclass
class Layer:
    """Variables from one definition site, plus the connection settings read from them."""

    path: str  # the file they are written in
    line: int  # where the host or group is first defined (0: a whole vars file)
    base_dir: str  # a relative key path in these variables is taken from here
    vars: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def add(
        self,
        variables: Mapping[str, Any],
        where: str,
        line: int,
        key_lines: Mapping[str, int] | None = None,
    ) -> None:
        """Merge one block of variables; a bad connection setting names ``line`` or, if
        known, the line of its own key."""
        self.vars.update(variables)
        for setting, names in _SETTINGS.items():
            var = next((name for name in names if name in variables), None)
            if var is None:
                continue
            try:
                self.settings[setting] = _convert(setting, variables[var], self.base_dir)
            except ValueError as exc:
                at = (key_lines or {}).get(var, line)
                message = f"{where}: {var} {exc}, not {variables[var]!r}"
                raise InventoryError(message, self.path, at or None) from None


@dataclass
class GroupDraft(Layer):
    parents: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)

    def add(
        self,
        variables: Mapping[str, Any],
        where: str,
        line: int,
        key_lines: Mapping[str, int] | None = None,
    ) -> None:
        super().add(variables, where, line, key_lines)
        # As Ansible: a group's priority orders the merge; it is no variable of its hosts.
        self.vars.pop("ansible_group_priority", None)


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


class Draft:
    """An inventory being read: groups and hosts in the order the file defines them."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.base_dir = os.path.dirname(os.path.abspath(path))
        self.groups: dict[str, GroupDraft] = {}
        self.hosts: dict[str, Layer] = {}

    def error(self, message: str, line: int | None) -> InventoryError:
        return InventoryError(message, path=self.path, line=line)

    def group(self, name: str, line: int) -> GroupDraft:
        if name not in self.groups:
            self.groups[name] = GroupDraft(self.path, line, self.base_dir)
        return self.groups[name]

    def host(self, name: str, line: int, group: GroupDraft) -> Layer:
        """The host (made on first sight) as a member of ``group``."""
        if name not in self.hosts:
            self.hosts[name] = Layer(self.path, line, self.base_dir)
        if name not in group.hosts:
            group.hosts.append(name)
        return self.hosts[name]

    def link(self, parent: str, child: str, line: int) -> None:
        if child in ("all", parent) or child in self.ancestors(parent):
            raise self.error(f"group {child!r} is its own ancestor (via {parent!r})", line)
        if child not in self.groups[parent].children:
            self.groups[parent].children.append(child)
            self.groups[child].parents.append(parent)

    def ancestors(self, name: str) -> set[str]:
        parents = self.groups[name].parents
        return set(parents).union(*(self.ancestors(p) for p in parents))

    def finish(self, dirs: Sequence[VarsDir] = ()) -> Inventory:
        """The inventory, each host's variables merged with those of ``dirs`` (the
        inventory's own directory first, then the playbook's)."""
        for implicit in ("all", "ungrouped"):
            self.group(implicit, 0)
        for name, draft in self.groups.items():
            if name != "all" and not draft.parents:
                draft.parents.append("all")
                self.groups["all"].children.append(name)
        member_of: dict[str, set[str]] = {name: set() for name in self.hosts}
        for name, draft in self.groups.items():
            for host_name in draft.hosts:
                member_of[host_name] |= {name} | self.ancestors(name)
        # As Ansible: "ungrouped" holds exactly the hosts that are in no other group.
        ungrouped = [h for h, names in member_of.items() if names <= {"all", "ungrouped"}]
        self.groups["ungrouped"].hosts = ungrouped
        for host_name, names in member_of.items():
            names.discard("ungrouped")
            if host_name in ungrouped:
                names.add("ungrouped")
        hosts = {name: self._host_of(name, member_of[name], dirs) for name in self.hosts}
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

    def _host_of(self, name: str, group_names: set[str], dirs: Sequence[VarsDir]) -> Host:
        others = sorted(
            group_names - {"all"},
            key=lambda g: (self._depth(g), self.groups[g].settings.get("priority", 1), g),
        )
        # Ansible's default precedence (VariableManager.get_vars), checked against
        # ansible-inventory 2.17: every group's vars from the inventory file come before any
        # group_vars/ file, so group_vars/all.yml beats [web:vars] (docs/inventory.md).
        layers: list[Layer] = [self.groups["all"], *(self.groups[g] for g in others)]
        layers += [layer for d in dirs for layer in d.group("all")]
        layers += [layer for d in dirs for g in others for layer in d.group(g)]
        layers.append(self.hosts[name])
        layers += [layer for d in dirs for layer in d.host(name)]
        variables: dict[str, Any] = {}
        settings: dict[str, Any] = {}
        for layer in layers:
            variables.update(layer.vars)
            settings.update(layer.settings)
        if "address" not in settings and not _is_address(name):
            message = f"host {name!r} has no ansible_host and its name is not an address"
            raise self.error(message, self.hosts[name].line)
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


def _convert(setting: str, value: Any, base_dir: str) -> Any:
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
        return os.path.join(base_dir, os.path.expanduser(value))
    return value


def expand_range(name: str) -> list[str]:
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
    return [head + item + rest for item in items for rest in expand_range(tail)]


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return len(name) <= 253 and _HOSTNAME.fullmatch(name) is not None
    return True
