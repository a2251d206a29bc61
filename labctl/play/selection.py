"""Which hosts and tasks a run takes: `--limit`, `--tags` (Ansible's rules), a play's
`serial` batches, and each group's members."""

from __future__ import annotations

import math

from labctl.inventory import Host, Inventory


def select_hosts(inventory: Inventory, pattern: str, limit: str | None) -> list[Host]:
    hosts = inventory.select(pattern)
    if limit is not None:  # `--limit ''` is an empty pattern (refused), not "no limit"
        allowed = {h.name for h in inventory.select(limit)}
        hosts = [h for h in hosts if h.name in allowed]
    return hosts


SPECIAL_TAGS = frozenset({"always", "never", "all", "tagged", "untagged"})


def task_selected(task_tags: frozenset[str], wanted: frozenset[str]) -> bool:
    """Ansible's rule: with no --tags every task runs but those tagged `never`; with --tags,
    a task runs when it has one of them, or `always` (and is not `never`)."""
    if "never" in task_tags:
        return bool(task_tags & wanted)
    if not wanted or "always" in task_tags or task_tags & wanted or "all" in wanted:
        return True
    own = task_tags - {"always"}
    return ("tagged" in wanted and bool(own)) or ("untagged" in wanted and not own)


def group_members(inventory: Inventory) -> dict[str, list[str]]:
    """Every group's hosts, children included, in inventory order."""
    return {
        g: [h.name for h in inventory.hosts.values() if g in h.groups] for g in inventory.groups
    }


def batches(names: list[str], serial: tuple[int | str, ...]) -> list[list[str]]:
    """`serial: [1, 2, "50%"]`: batch sizes in turn, the last repeated (Ansible's)."""
    if not serial:
        return [names] if names else []
    out, start, i = [], 0, 0
    while start < len(names):
        size = serial[min(i, len(serial) - 1)]
        if isinstance(size, str):
            size = max(1, math.floor(len(names) * int(size.rstrip("%").strip()) / 100))
        out.append(names[start : start + size])
        start, i = start + size, i + 1
    return out
