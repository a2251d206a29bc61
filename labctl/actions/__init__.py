"""The actions a task can name, one module each (see labctl/actions/base.py).

`ACTIONS` maps each name to its Action class. It is a mapping that imports an action's
module on its first lookup, so a playbook loads only the actions it uses and `labctl
--version` none (issue 18); naming, testing membership and iterating import nothing.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from labctl.actions.base import Action

# name -> (module under labctl.actions, class): tests/unit/test_actions_registry.py checks
# that each resolves to an Action of that name.
WHERE: Mapping[str, tuple[str, str]] = {
    "command": ("command", "CommandAction"),
    "shell": ("command", "ShellAction"),
    "file": ("files", "FileAction"),
    "copy": ("files", "CopyAction"),
    "template": ("files", "TemplateAction"),
    "packages": ("packages", "PackagesAction"),
    "sysctl": ("sysctl", "SysctlAction"),
    "source": ("source", "SourceAction"),
    "process": ("process", "ProcessAction"),
    "qdisc": ("qdisc", "QdiscAction"),
    "kmod": ("kmod", "KmodAction"),
    "driver": ("driver", "DriverAction"),
    "netmap": ("netmap", "NetmapAction"),
    "modprobe": ("modprobe", "ModprobeAction"),
    "stat": ("stat", "StatAction"),
    "lineinfile": ("lineinfile", "LineinfileAction"),
    "wait_for": ("wait_for", "WaitForAction"),
    "fetch": ("fetch", "FetchAction"),
    "get_url": ("get_url", "GetUrlAction"),
    "unarchive": ("unarchive", "UnarchiveAction"),
    "git": ("git", "GitAction"),
    "service": ("service", "ServiceAction"),
    "systemd": ("service", "SystemdAction"),
}


class ActionRegistry(Mapping[str, "type[Action]"]):
    """Action name -> Action class, each module imported when one of its names is looked up."""

    def __init__(self, where: Mapping[str, tuple[str, str]]) -> None:
        self._where = where
        self._found: dict[str, type[Action]] = {}

    def __getitem__(self, name: str) -> type[Action]:
        found = self._found.get(name)
        if found is None:
            module, cls = self._where[name]  # KeyError for a name no action has
            found = getattr(importlib.import_module(f"{__name__}.{module}"), cls)
            self._found[name] = found
        return found

    def __contains__(self, name: object) -> bool:
        return name in self._where

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


ACTIONS: Mapping[str, type[Action]] = ActionRegistry(WHERE)
