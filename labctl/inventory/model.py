"""What an inventory is once read, whatever its format: hosts, groups, host patterns."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from labctl.errors import InventoryError


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
    vars: Mapping[str, Any]  # merged by Ansible's precedence, vars files included


@dataclass(frozen=True)
class Group:
    name: str
    parents: tuple[str, ...]
    children: tuple[str, ...]
    hosts: tuple[str, ...]  # direct members only
    vars: Mapping[str, Any]  # from the inventory file only (group_vars/ files are in Host.vars)
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
