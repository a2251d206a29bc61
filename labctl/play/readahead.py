"""Reads taken ahead: one round trip per host for the state several tasks' plans read.

Before a task runs on a host, the play tells the host's connection the read-only commands
that this task's plan and the plans of the tasks after it start with (`Action.reads`). The
first of them that a plan asks for is sent with the others in one script; each of the
others is then answered from what that script printed, as long as nothing else ran on the
host in between (HostConnection.expect says exactly when a kept read is used). On a run
that changes nothing, a row of file, copy and template tasks costs one round trip per
host instead of one per task.

Nothing here decides what a task does: a read is only ever answered with the output of
the very same command, so a plan sees what it would have read itself. A guess that turns
out wrong (a task's arguments read a value an earlier task registers) costs one wasted
read, never a wrong answer.

Reads are taken ahead only up to the next task whose commands are not known ahead (a
`command`, an action that declares no reads): what it runs may change what they would read,
so its own first command carries the reads of the tasks after it, read once it is done.

A window of tasks read together ends where time may pass or another machine may act
without a command on this host showing it: a block or an include, a `meta` task, a task
delegated to the controller, one that retries (`until`) or pauses between loop items.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from labctl.actions import ACTIONS
from labctl.actions.base import build_args
from labctl.errors import LabctlError
from labctl.play.control import ON_CONTROLLER
from labctl.play.model import Item, Task
from labctl.remote import command_text
from labctl.templating import OMIT, render_value, without_omitted

MAX_TASKS = 64  # tasks in one window: bounds the script and the work done ahead


def ends_window(task: Task) -> bool:
    """True when reads taken before `task` may not hold after it (see the module's doc)."""
    return (
        task.action == "meta"
        or task.delegate_to is not None
        or task.until is not None
        or task.retries is not None
        or task.loop_control.pause > 0
    )


def window(items: Sequence[Item], start: int, selected: Callable[[Task], bool]) -> list[int]:
    """The indexes of the tasks from `items[start]` whose reads may be taken together."""
    found: list[int] = []
    for index in range(start, len(items)):
        item = items[index]
        if not isinstance(item, Task) or ends_window(item) or len(found) >= MAX_TASKS:
            break
        if selected(item) and item.action not in ON_CONTROLLER:
            found.append(index)
    return found


def task_reads(task: Task, variables: Mapping[str, Any]) -> list[str]:
    """The read-only commands `task`'s plan starts with on a host whose variables are
    `variables` (their exact text), or [] when they cannot be known now: a loop, an
    `environment` or `become_user` (its commands are wrapped), arguments that do not
    render yet (they read what an earlier task registers) or do not check."""
    if task.loop is not None or task.environment or task.become_user or task.action not in ACTIONS:
        return []
    action = ACTIONS[task.action]
    try:
        raw = without_omitted(render_value(dict(task.args), {**variables, "omit": OMIT}))
        args = build_args(action, raw)
        return [command_text(c) for c in action().reads(args)]
    except (LabctlError, ValueError, TypeError):
        return []  # the task itself will say what is wrong, when it runs


@dataclass
class HostWindow:
    """One host's window: in which items list, the indexes it spans, and the reads of each
    task in it by index ([] for a task whose commands are not known ahead: a `command`, an
    action that declares no reads)."""

    items: Sequence[Item]
    scope: object  # the loop variables the window was read with (an include's round)
    start: int
    end: int
    reads: dict[int, list[str]] = field(default_factory=dict)

    def covers(self, items: Sequence[Item], scope: object, index: int) -> bool:
        return self.items is items and self.scope is scope and self.start <= index <= self.end

    def after(self, index: int) -> list[str]:
        """The reads of the tasks after `index`, up to the next task whose commands are not
        known ahead (that one would change what they read: its own first command carries
        the reads after it)."""
        out: list[str] = []
        for i in sorted(self.reads):
            if i <= index:
                continue
            if not self.reads[i]:
                break
            out += self.reads[i]
        return out
