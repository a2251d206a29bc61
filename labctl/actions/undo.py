"""Putting back what a run changed (what LNST does): each change's `Undo` (actions/base.py)
is a task of the same kind with the state the plan found, so a put-back is planned like any
task: it changes only what still differs, and a second one changes nothing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labctl.actions import ACTIONS
from labctl.actions.base import ActionResult, TaskContext, run_action
from labctl.errors import LabctlError
from labctl.remote import HostConnection


@dataclass(frozen=True)
class PutBack:
    host: str
    target: str
    result: ActionResult


def put_back(conn: HostConnection, entries: Sequence[Mapping[str, Any]]) -> list[PutBack]:
    """Apply one host's undo entries in the order given (the last change first). An entry
    that fails is reported and the others still run: each puts back a thing of its own."""
    ctx = TaskContext(conn, {}, Path("."))
    done = []
    for entry in entries:
        action = ACTIONS.get(str(entry["action"]))
        try:
            if action is None:
                raise LabctlError(f"no action {entry['action']!r} to put it back with")
            result = run_action(action(), ctx, entry["args"])
        except (LabctlError, ValueError) as exc:
            result = ActionResult(failed=True, msg=str(exc))
        done.append(PutBack(conn.host.name, str(entry["target"]), result))
    return done
