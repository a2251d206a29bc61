"""One task on one host, with Ansible's semantics: `when` per item, the loop and its
`loop_control`, `until`/`retries`/`delay`, `changed_when`/`failed_when`, `check_mode`,
`environment`, `become_user`, `delegate_to: localhost`, and the value `register` stores.

Never raises for the task's own failure; a lost connection propagates (the host is then
unreachable).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from labctl.actions import ACTIONS
from labctl.actions.base import ActionResult, TaskContext, run_action
from labctl.errors import HostUnreachable, LabctlError
from labctl.localhost import LocalConnection
from labctl.play.connection import TaskConnection
from labctl.play.control import ON_CONTROLLER, run_control
from labctl.play.model import Task
from labctl.remote import HostConnection
from labctl.templating import OMIT, TemplateError, evaluate, render_value, without_omitted

# Commands run for their effect: in check mode Ansible does not run them and reports them
# unchanged, with empty output (ansible-core 2.17's command module).
_COMMANDS = frozenset({"command", "shell"})
# Modules Ansible skips in check mode (they have no check mode support).
_NO_CHECK_MODE = frozenset({"wait_for", "fetch"})
NO_LOG = (
    "the output has been hidden due to the fact that 'no_log: true' was specified for this result"
)


@dataclass(frozen=True)
class StepOptions:
    check: bool
    diff: bool


@dataclass
class StepOutcome:
    """What the task did on this host: one result per item, and what it registers."""

    results: list[ActionResult] = field(default_factory=list)
    registered: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)  # from set_fact


def run_step(
    conn: HostConnection,
    task: Task,
    variables: dict[str, Any],
    options: StepOptions,
    progress: Callable[[str], None] | None = None,
) -> StepOutcome:
    check = task.check_mode if task.check_mode is not None else options.check
    variables = {**variables, "ansible_check_mode": check}
    outcome = StepOutcome()
    per_item: list[dict[str, Any]] = []
    lazy = _LazyConnection(conn, task)
    try:
        items = _loop_items(task, variables)
        for index in range(len(items)):
            scope = variables if task.loop is None else _item_scope(task, variables, items, index)
            falsy = next((c for c in task.when if not evaluate(c, scope)), None)
            if falsy is not None:
                result, registered = _skipped(falsy)
            else:
                result, registered = _attempts(lazy, task, scope, check, options.diff, progress)
                if task.action == "set_fact" and not result.failed:
                    outcome.facts.update(result.output.get("ansible_facts", {}))
            if task.loop is not None:
                registered = {**registered, **_loop_keys(task, scope)}
            outcome.results.append(result)
            per_item.append(registered)
            if task.loop_control.pause and index + 1 < len(items):
                time.sleep(task.loop_control.pause)
    except _WhenFalse as skip:
        result, registered = _skipped(skip.condition)
        outcome.results.append(result)
        per_item = [registered]
    except HostUnreachable:
        raise
    except (LabctlError, ValueError, OSError) as exc:
        failed = ActionResult(failed=True, msg=str(exc))
        outcome.results.append(failed)
        per_item = (
            per_item + [_registered(failed)] if task.loop is not None else [_registered(failed)]
        )
    outcome.registered = _summary(task, outcome.results, per_item)
    return outcome


class _WhenFalse(Exception):
    def __init__(self, condition: str) -> None:
        self.condition = condition


def _skipped(condition: str) -> tuple[ActionResult, dict[str, Any]]:
    return ActionResult(skipped=True, msg=f"condition false: {condition}"), {
        "changed": False,
        "skipped": True,
        "skip_reason": "Conditional result was False",
        "false_condition": condition,
    }


def _loop_items(task: Task, variables: Mapping[str, Any]) -> list[Any]:
    """The loop's items. A loop that cannot be rendered under a `when` that is false without
    the item (`loop: "{{ pkgs }}"` with `when: pkgs is defined`) skips the task, as Ansible's."""
    if task.loop is None:
        return [None]
    try:
        items = render_value(task.loop, variables)
    except TemplateError:
        for cond in task.when:
            try:
                if not evaluate(cond, variables):
                    raise _WhenFalse(cond) from None
            except TemplateError:
                continue  # reads the item: cannot tell without it
        raise
    if not isinstance(items, list):
        raise LabctlError(f"loop must give a list, not {type(items).__name__}")
    if task.loop_flatten:  # with_items flattens one level, also a rendered list
        items = [x for item in items for x in (item if isinstance(item, list) else [item])]
    return items


class _LazyConnection:
    """The task's connection, made when the first item runs: a task skipped by `when` renders
    no `environment` or `become_user` and connects nowhere, as in Ansible."""

    def __init__(self, conn: HostConnection, task: Task) -> None:
        self.base, self.task = conn, task
        self.made: HostConnection | None = None

    def get(self, variables: Mapping[str, Any]) -> HostConnection:
        if self.made is None:
            self.made = _task_connection(self.base, self.task, variables)
            # Connect first: a plan that reads nothing must not call an unreachable host
            # "changed".
            self.made.open()
        return self.made


def _task_connection(
    conn: HostConnection, task: Task, variables: Mapping[str, Any]
) -> HostConnection:
    if task.delegate_to == "localhost":
        conn = LocalConnection(conn.host)
    environment = {
        str(k): str(v)
        for k, v in without_omitted(render_value(dict(task.environment), variables)).items()
    }
    become = task.become if task.become is not None else conn.become_default
    user = None
    if task.become_user and become:
        user = str(render_value(task.become_user, variables))
    if environment or user or (become and isinstance(conn, LocalConnection)):
        return TaskConnection(conn, environment, user, become=become)
    return conn


def _item_scope(
    task: Task, variables: Mapping[str, Any], items: list[Any], index: int
) -> dict[str, Any]:
    control = task.loop_control
    scope = {**variables, control.loop_var: items[index], "ansible_loop_var": control.loop_var}
    if control.index_var:
        scope[control.index_var] = index
    if control.extended:
        scope["ansible_loop"] = {
            "index": index + 1,
            "index0": index,
            "first": index == 0,
            "last": index == len(items) - 1,
            "length": len(items),
            "revindex": len(items) - index,
            "revindex0": len(items) - index - 1,
            "allitems": items,
        }
    return scope


def _loop_keys(task: Task, scope: Mapping[str, Any]) -> dict[str, Any]:
    """What a loop item's result carries of its scope (`_item_scope` made them)."""
    control = task.loop_control
    names = [control.loop_var, "ansible_loop_var", control.index_var]
    keys = {n: scope[n] for n in names if n is not None}
    if control.extended:
        keys["ansible_loop"] = scope["ansible_loop"]
    if control.label is not None:
        keys["_ansible_item_label"] = render_value(control.label, scope)
    return keys


def _bound(task: Task, scope: dict[str, Any], registered: dict[str, Any]) -> dict[str, Any]:
    """`scope` with the task's own result under its `register` name, for until/*_when."""
    return {**scope, task.register: registered} if task.register else scope


def _attempts(
    conn: _LazyConnection,
    task: Task,
    scope: dict[str, Any],
    check: bool,
    diff: bool,
    progress: Callable[[str], None] | None,
) -> tuple[ActionResult, dict[str, Any]]:
    """The action, tried until `until` holds (or `retries` are used up)."""
    attempts = task.attempts
    result = ActionResult()
    registered: dict[str, Any] = {}
    for attempt in range(1, attempts + 1):
        result = _once(conn, task, scope, check, diff, progress)
        registered = _registered(result)
        if attempts > 1:
            registered["attempts"] = attempt
        result, registered = _conditions(task, scope, result, registered)
        if attempts == 1:
            break
        bound = _bound(task, scope, registered)
        until = task.until or ("not " + repr(bool(registered.get("failed"))),)
        if all(evaluate(c, bound) for c in until):
            break
        if attempt < attempts:
            if progress is not None:
                progress(f"FAILED - RETRYING ({attempts - attempt} retries left)")
            time.sleep(task.delay)
    else:
        registered["attempts"] = attempts - 1
        registered["failed"] = True
        result = replace(result, failed=True, msg=result.msg or "retries exhausted")
    return result, registered


def _once(
    lazy: _LazyConnection,
    task: Task,
    scope: dict[str, Any],
    check: bool,
    diff: bool,
    progress: Callable[[str], None] | None,
) -> ActionResult:
    if task.action in ON_CONTROLLER:
        return run_control(task.action, task.args, scope)
    if check and task.action in _NO_CHECK_MODE:
        return ActionResult(skipped=True, msg=f"{task.action} does not run in check mode")
    raw = without_omitted(render_value(dict(task.args), {**scope, "omit": OMIT}))
    ctx = TaskContext(lazy.get(scope), scope, _base_dir(task), diff, progress, task.search_dirs)
    result = run_action(ACTIONS[task.action](), ctx, raw, check=check)
    if check and task.action in _COMMANDS and result.changed and not result.failed:
        # What Ansible's command module returns in check mode: not run, rc 0, no output;
        # skipped unless `creates`/`removes` was given (then "changed", as there).
        guarded = bool(raw.get("creates") or raw.get("removes"))
        return ActionResult(
            changed=guarded,
            skipped=not guarded,
            msg="Command would have run if not in check mode",
            changes=result.changes,
            output={"rc": 0, "stdout": "", "stderr": "", "stdout_lines": [], "stderr_lines": []},
        )
    return result


def _base_dir(task: Task) -> Path:
    return next(iter(task.search_dirs), Path(task.path).resolve().parent)


def _conditions(
    task: Task, scope: dict[str, Any], result: ActionResult, registered: dict[str, Any]
) -> tuple[ActionResult, dict[str, Any]]:
    """`changed_when` then `failed_when`, read with the task's own result registered (not
    for a skipped result, as Ansible)."""
    if result.skipped or (task.changed_when is None and task.failed_when is None):
        return result, registered
    bound = _bound(task, scope, registered)
    if task.changed_when is not None:
        changed = all(evaluate(c, bound) for c in task.changed_when)
        registered = {**registered, "changed": changed}
        result = replace(result, changed=changed)
        bound = _bound(task, scope, registered)
    if task.failed_when is not None:
        failed = all(evaluate(c, bound) for c in task.failed_when)
        registered = {**registered, "failed": failed, "failed_when_result": failed}
        msg = result.msg if failed else ("" if result.failed else result.msg)
        if failed and not msg:
            msg = "failed_when: " + " and ".join(task.failed_when)
        result = replace(result, failed=failed, msg=msg)
    return result, registered


def _registered(result: ActionResult) -> dict[str, Any]:
    out = dict(result.registered())
    if not result.skipped:
        out.pop("skipped", None)
    if not out.get("msg"):
        out.pop("msg", None)
    if "stderr" in out and "stderr_lines" not in out:
        out["stderr_lines"] = str(out["stderr"]).splitlines()
    return out


def _summary(
    task: Task, results: list[ActionResult], per_item: list[dict[str, Any]]
) -> dict[str, Any]:
    if task.loop is None:
        return per_item[0] if per_item else {"changed": False}
    failed = any(r.failed for r in results)
    out: dict[str, Any] = {
        "results": per_item,
        "changed": any(r.changed for r in results),
        "msg": "One or more items failed" if failed else "All items completed",
        "skipped": bool(results) and all(r.skipped for r in results),
    }
    if failed:
        out["failed"] = True
    return out
