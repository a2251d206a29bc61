"""What `ansible-inventory --list`, `--graph` and `--host` print, for an Inventory (compared
with ansible-inventory 2.17 by tests/unit/test_inventory_ansible.py)."""

from __future__ import annotations

import json
from typing import Any

from labctl.errors import InventoryError
from labctl.inventory.model import Inventory


def as_list(inventory: Inventory) -> dict[str, Any]:
    """`--list`: each group's hosts and children (a group with neither is left out, "all"
    lists no hosts), and every host's merged variables under `_meta.hostvars`."""
    doc: dict[str, Any] = {}
    _list_group(inventory, "all", doc)
    hostvars = {name: dict(host.vars) for name, host in inventory.hosts.items() if host.vars}
    doc["_meta"] = {"hostvars": hostvars}
    return doc


def _list_group(inventory: Inventory, name: str, doc: dict[str, Any]) -> None:
    entry: dict[str, Any] = {}
    if name != "all":
        entry["hosts"] = list(inventory.groups[name].hosts)
    entry["children"] = _children(inventory, name)
    for child in entry["children"]:
        if child not in doc:
            _list_group(inventory, child, doc)
    entry = {key: value for key, value in entry.items() if value}
    if entry:
        doc[name] = entry


def _children(inventory: Inventory, name: str) -> list[str]:
    children = list(inventory.groups[name].children)
    # Ansible makes "ungrouped" the first child of "all", before any group the file names.
    if name == "all" and "ungrouped" in children:
        children.remove("ungrouped")
        children.insert(0, "ungrouped")
    return children


def graph(inventory: Inventory, group: str = "all") -> str:
    """`--graph [GROUP]`: the tree of groups from ``group``, each group's hosts after its
    child groups."""
    if group not in inventory.groups:
        raise InventoryError(f"--graph: no group {group!r}", inventory.path)
    lines: list[str] = []
    _graph_group(inventory, group, 0, lines)
    return "\n".join(lines)


def _graph_group(inventory: Inventory, name: str, depth: int, lines: list[str]) -> None:
    lines.append(_indent(f"@{name}:", depth))
    for child in _children(inventory, name):
        _graph_group(inventory, child, depth + 1, lines)
    if name != "all":
        lines += [_indent(host, depth + 1) for host in inventory.groups[name].hosts]


def _indent(text: str, depth: int) -> str:
    return "  |" * depth + "--" + text if depth else text


def host_vars(inventory: Inventory, name: str) -> dict[str, Any]:
    """`--host NAME`: the host's variables, merged as for a play."""
    return dict(inventory.host(name).vars)


def to_json(value: Any) -> str:
    """JSON laid out as ansible-inventory prints it: keys sorted, four spaces."""
    return json.dumps(value, sort_keys=True, indent=4, ensure_ascii=False, default=_plain)


def _plain(value: Any) -> Any:
    # Values YAML or a Python literal can make that JSON has no word for.
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)
