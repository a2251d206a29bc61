"""What every action is: typed arguments, a plan made from facts, steps that apply it.

An action reads the host (read-only commands only) and returns a `Plan`: the steps that
would bring the host to the wanted state, and a line per change. An empty plan means "ok,
nothing to do" — that is where idempotency and check mode come from (pyinfra's habit):
check mode shows the plan, apply runs its steps. Nothing is faked in check mode: the plan
comes from the real state of the host.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import shlex
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from labctl.errors import LabctlError
from labctl.failures import explain, full_output
from labctl.remote import (
    DEFAULT_COMMAND_TIMEOUT,
    Command,
    CommandResult,
    HostConnection,
    ShellScript,
    command_text,
)


class ArgsError(LabctlError):
    """An action's arguments are wrong (unknown, missing or of the wrong type)."""


class ActionFailed(LabctlError):
    """The action could not reach the wanted state on this host; `result` may hold output."""


# ---------------------------------------------------------------------------- steps


@dataclass(frozen=True)
class Run:
    """Run a command that changes the host; a non-zero exit fails the task."""

    command: Command
    timeout: float | None = DEFAULT_COMMAND_TIMEOUT
    # A long step's name, told to the user while it runs (`ctx.say`): "apt-get install gcc".
    # Not part of what the step is: plans that differ only in it are equal.
    label: str = field(default="", compare=False)

    def describe(self) -> str:
        return command_text(self.command)


@dataclass(frozen=True)
class Upload:
    """Write `content` to `dest` atomically (temp file + rename), then set mode/owner."""

    content: bytes
    dest: str
    mode: str | None = None
    owner: str | None = None
    group: str | None = None

    def describe(self) -> str:
        return f"write {self.dest} ({len(self.content)} bytes)"


Step = Run | Upload


@dataclass(frozen=True)
class Undo:
    """How to put one thing back as a plan found it: an action and its arguments, so that
    putting back is planned and idempotent like any task. `target` names the thing (a sysctl,
    an interface's qdisc): of several changes to one target in a run, the first one's undo
    is the state before the run."""

    target: str  # e.g. "sysctl net.core.somaxconn", "qdisc eth0"
    action: str
    args: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "action": self.action, "args": dict(self.args)}


@dataclass
class Plan:
    steps: list[Step] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)  # what would change, one line each
    diff: str | None = None
    skipped: str | None = None  # why nothing needs doing although steps were expected
    # (e.g. a `creates` path exists): reported as ok with this message, like Ansible
    output: dict[str, Any] = field(default_factory=dict)  # values to `register` when unchanged
    # What puts back the state the plan found, for what it changes (see Undo).
    undo: list[Undo] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.steps)


@dataclass(frozen=True)
class ActionResult:
    """One task's outcome on one host; `output` is what `register` stores."""

    changed: bool = False
    failed: bool = False
    skipped: bool = False
    msg: str = ""
    changes: tuple[str, ...] = ()
    diff: str | None = None
    output: Mapping[str, Any] = field(default_factory=dict)
    log: str = ""  # a failed step's whole output, for the host's log file
    undo: tuple[Undo, ...] = ()  # what puts back what this result changed

    def registered(self) -> dict[str, Any]:
        # A message that is a value (debug's `msg: {a: 1}`) is registered as that value, as
        # Ansible does; `msg` (the line shown) is its text.
        given = self.output.get("msg")
        return {
            **self.output,
            "changed": self.changed,
            "failed": self.failed,
            "skipped": self.skipped,
            "msg": given if given is not None and not isinstance(given, str) else self.msg,
        }


@dataclass(frozen=True)
class TaskContext:
    """What an action may use on one host: its connection, its variables, where files live."""

    conn: HostConnection
    vars: Mapping[str, Any]
    base_dir: Path  # the playbook's directory (or the task's role's)
    want_diff: bool = False
    # What a long action is doing now ("netmap make on srv1 (2 of 3)"), told to whoever
    # shows the run: a plain callable here; views/ decide how it looks (`say`).
    progress: Callable[[str], None] | None = None
    # Where templates/ and files/ are looked up, in order: the task's role, its playbook's
    # directory, the project's top level (docs/playbooks.md).
    search_dirs: tuple[Path, ...] = ()

    def say(self, text: str) -> None:
        """Tell the user what this long action is doing now (its current sub-step)."""
        if self.progress is not None:
            self.progress(text)

    def find_file(self, kind: str, name: str) -> Path:
        """A controller file a task names (`kind` is "templates" or "files"): an absolute
        path as is, else `<dir>/<kind>/<name>` then `<dir>/<name>` for each search dir."""
        path = Path(name).expanduser()
        if path.is_absolute():
            if path.is_file():
                return path
            raise ValueError(f"{name!r} not found")
        dirs = self.search_dirs or (self.base_dir,)
        for d in dirs:
            for candidate in (d / kind / path, d / path):
                if candidate.is_file():
                    return candidate
        looked = ", ".join(str(d / kind) for d in dirs)
        raise ValueError(f"{name!r} not found in {looked}")


# ---------------------------------------------------------------------------- actions


class Action(ABC):
    """One kind of task. Subclasses set `name`, `Args` (a dataclass) and write `plan`."""

    name: ClassVar[str]
    Args: ClassVar[type[Any]]
    # Arguments whose string value is the action's "free form" (`command: ls -l`).
    free_form: ClassVar[str | None] = None

    @classmethod
    def prepare_args(cls, raw: dict[str, Any]) -> dict[str, Any]:
        """The task's arguments as written, before any rendering (a ValueError is the file's
        error): an action whose arguments must be shaped before templates fill them."""
        return raw

    def reads(self, args: Any) -> list[Command]:
        """The read-only commands `plan` starts with, known from the arguments alone (none
        by default). A play sends those of several coming tasks in one round trip
        (HostConnection.expect); the plan then gets their results without asking again."""
        return []

    @abstractmethod
    def plan(self, ctx: TaskContext, args: Any) -> Plan:
        """Read the host (read-only) and say what would change."""

    def apply(self, ctx: TaskContext, args: Any, plan: Plan) -> ActionResult:
        """Run the plan's steps in order; stop at the first that fails."""
        last: CommandResult | None = None
        for step in plan.steps:
            if isinstance(step, Upload):
                upload(ctx.conn, step)
            else:
                if step.label:
                    ctx.say(step.label)
                last = ctx.conn.run(step.command, timeout=step.timeout)
                if not last.ok:
                    return step_failed(plan, last, {**plan.output, **result_output(last)})
        output = result_output(last) if last is not None else {}
        return ActionResult(
            changed=plan.changed,
            changes=tuple(plan.changes),
            diff=plan.diff,
            output={**plan.output, **output},
        )


def chown_spec(owner: str | None, group: str | None) -> str:
    """chown's argument for what is given: `user` alone keeps the group (`user:` would set
    the user's login group), `:group` keeps the owner."""
    if owner and group:
        return f"{owner}:{group}"
    return owner or f":{group}"


def step_failed(plan: Plan, res: CommandResult, output: Mapping[str, Any]) -> ActionResult:
    """A plan's step exited non-zero: failed, with the lines that say why."""
    return failed_result(plan.changes, output, res)


def failed_result(
    changes: Sequence[str],
    output: Mapping[str, Any],
    res: CommandResult | None = None,
    what: str = "",
    *,
    explained: bool = False,
) -> ActionResult:
    """Failed: `what` (if given), then the lines of the step's output `res` that explain it
    (labctl/failures.py), unless `explained` (`what` already says why); the whole output
    goes to `log`, for the host's log file. Without `res`, `what` is the whole story."""
    if res is None:
        return ActionResult(
            changed=True, failed=True, msg=what, changes=tuple(changes), output=output
        )
    lines = [] if explained else explain(res.stdout, res.stderr, res.exit_status)
    first = f"{what}: {lines[0]}" if what and lines else (what or lines[0])
    return ActionResult(
        changed=True,
        failed=True,
        msg="\n".join([first, *lines[1:]]),
        changes=tuple(changes),
        output=output,
        log=full_output(res.command, res.exit_status, res.stdout, res.stderr),
    )


def result_output(res: CommandResult) -> dict[str, Any]:
    """What a command's task registers, as Ansible's command module does (its trailing
    newline taken off stdout and stderr)."""
    stdout, stderr = res.stdout.rstrip("\r\n"), res.stderr.rstrip("\r\n")
    return {
        "rc": res.exit_status,
        "stdout": stdout,
        "stderr": stderr,
        "stdout_lines": stdout.splitlines(),
        "stderr_lines": stderr.splitlines(),
        "cmd": res.command,
    }


# Files up to this size travel inside the command that writes them (base64, one round
# trip); larger ones through SFTP. A command is one argument to the remote shell, which
# Linux caps at 128 KiB (MAX_ARG_STRLEN): base64 of 32 KiB stays well under it.
INLINE_UPLOAD_MAX = 32 * 1024


def upload(conn: HostConnection, step: Upload) -> None:
    """Atomic write: the file is whole or untouched, never half-written.

    Without an explicit mode a file keeps its mode and owner (a new one gets 0644): the
    temp file must not leak its own mode into the result. The temp name is unique per write
    because lab hosts share one filesystem. A small file is written by the one command that
    also sets its mode and renames it; a large one is sent by SFTP first.
    """
    import uuid

    tmp_remote = f"{step.dest}.labctl-{uuid.uuid4().hex[:12]}"
    dest, tmp = shlex.quote(step.dest), shlex.quote(tmp_remote)
    script = []
    inline = len(step.content) <= INLINE_UPLOAD_MAX
    if inline:
        encoded = base64.b64encode(step.content).decode()
        script.append(f"printf %s {encoded} | base64 -d > {tmp}")
    else:
        _sftp_put(conn, step.content, tmp_remote)
    if step.mode:
        script.append(f"chmod {shlex.quote(step.mode)} {tmp}")
    else:
        script.append(
            f"if [ -e {dest} ]; then chmod --reference={dest} {tmp}; else chmod 644 {tmp}; fi"
        )
    if step.owner or step.group:
        script.append(shlex.join(["chown", chown_spec(step.owner, step.group), tmp_remote]))
    else:
        script.append(f"if [ -e {dest} ]; then chown --reference={dest} {tmp}; fi")
    script.append(f"mv -f {tmp} {dest}")
    # On any failure the temp file goes, in the same round trip; the first error is kept.
    text = "{ " + " && ".join(script) + f"; }} || {{ rc=$?; rm -f {tmp}; exit $rc; }}"
    res = conn.run(ShellScript(text))
    if not res.ok:
        raise ActionFailed(f"{conn.host.name}: writing {step.dest}: {res.first_error_line()}", res)


def _sftp_put(conn: HostConnection, content: bytes, remote: str) -> None:
    import tempfile

    with tempfile.NamedTemporaryFile() as local:
        local.write(content)
        local.flush()
        conn.put(local.name, remote)


# ---------------------------------------------------------------------------- arguments


def arg_fields(args_type: type[Any]) -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in dataclasses.fields(args_type)}


def required_args(args_type: type[Any]) -> set[str]:
    return {
        f.name
        for f in dataclasses.fields(args_type)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }


def check_arg_names(action: type[Action], raw: Mapping[str, Any]) -> None:
    """Unknown or missing argument names: checked before anything is rendered or run."""
    known = arg_fields(action.Args)
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ArgsError(
            f"{action.name}: unknown argument {', '.join(map(repr, unknown))} "
            f"(takes {', '.join(sorted(known))})"
        )
    missing = sorted(required_args(action.Args) - set(raw))
    if missing:
        raise ArgsError(f"{action.name}: missing argument {', '.join(map(repr, missing))}")


@functools.cache
def _hints(action: type[Action]) -> dict[str, Any]:
    """An action's Args field types (evaluated once: typing re-reads the annotations' text
    on every call)."""
    return typing.get_type_hints(action.Args)


def build_args(action: type[Action], raw: Mapping[str, Any]) -> Any:
    """Rendered raw values → the action's Args dataclass, each value checked against its type."""
    check_arg_names(action, raw)
    hints = _hints(action)
    values = {name: _coerce(action.name, name, value, hints[name]) for name, value in raw.items()}
    try:
        return action.Args(**values)
    except (TypeError, ValueError) as exc:
        raise ArgsError(f"{action.name}: {exc}") from exc


def _coerce(action: str, name: str, value: Any, hint: Any) -> Any:
    where = f"{action}: argument {name!r}"
    origin = typing.get_origin(hint)
    options = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _coerce(action, name, value, option)
            except ArgsError as exc:
                errors.append(str(exc))
        raise ArgsError(errors[0])
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in (
            "yes",
            "true",
            "on",
            "1",
            "no",
            "false",
            "off",
            "0",
        ):
            return value.lower() in ("yes", "true", "on", "1")
        raise ArgsError(f"{where} must be true or false, not {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        raise ArgsError(f"{where} must be an integer, not {value!r}")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ArgsError(f"{where} must be a number, not {value!r}") from None
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise ArgsError(f"{where} must be a string, not {type(value).__name__}")
    if origin in (list, tuple, Sequence) or hint in (list, tuple):
        inner = options[0] if options else Any
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple):
            raise ArgsError(f"{where} must be a list, not {type(value).__name__}")
        items = [_coerce(action, name, v, inner) for v in value]
        return tuple(items)
    if origin in (dict, Mapping) or hint is dict:
        if not isinstance(value, Mapping):
            raise ArgsError(f"{where} must be a mapping, not {type(value).__name__}")
        inner = options[1] if len(options) == 2 else Any
        return {str(k): _coerce(action, name, v, inner) for k, v in value.items()}
    if typing.get_origin(hint) is typing.Literal:
        if value not in options:
            raise ArgsError(f"{where} must be one of {', '.join(map(str, options))}, not {value!r}")
        return value
    raise ArgsError(f"{where}: unsupported type {hint}")


def run_action(
    action: Action, ctx: TaskContext, raw_args: Mapping[str, Any], check: bool = False
) -> ActionResult:
    """Plan, then apply unless in check mode. The one path every task takes."""
    args = build_args(type(action), raw_args)
    plan = action.plan(ctx, args)
    if plan.skipped:
        return ActionResult(msg=plan.skipped, output=plan.output)
    if check or not plan.changed:
        return ActionResult(
            changed=plan.changed, changes=tuple(plan.changes), diff=plan.diff, output=plan.output
        )
    result = action.apply(ctx, args, plan)
    if result.changed and plan.undo:
        result = dataclasses.replace(result, undo=tuple(plan.undo))
    return result
