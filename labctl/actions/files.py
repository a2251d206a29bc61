"""file, copy and template: paths, contents, modes and owners, changed only where they differ.

One read-only command per task tells what is there (type, mode, owner, group, sha256);
content is fetched only to show a diff.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import shlex
from dataclasses import dataclass
from typing import Any

from labctl.actions.base import Action, Plan, Run, Step, TaskContext, Upload, chown_spec
from labctl.remote import Command, ShellScript
from labctl.templating import render_file

_MODE = re.compile(r"^0?[0-7]{3,4}$")
MAX_DIFF_BYTES = 256 * 1024


@dataclass(frozen=True)
class PathState:
    kind: str  # "absent", "file", "directory", "link", "other"
    mode: str | None = None  # octal, no leading zero: "644"
    owner: str | None = None
    group: str | None = None
    sha256: str | None = None


def parse_path_state(text: str) -> PathState:
    """Output of `_stat_script`: `absent`, or `TYPE|MODE|OWNER|GROUP` then a sha256 line."""
    lines = text.strip().splitlines()
    if not lines or lines[0] == "absent":
        return PathState("absent")
    kind_text, mode_text, owner_text, group_text = lines[0].split("|")
    # empty when not read (`_stat_script` without attributes)
    mode, owner, group = mode_text or None, owner_text or None, group_text or None
    kind = {
        "regular file": "file",
        "regular empty file": "file",
        "directory": "directory",
        "symbolic link": "link",
    }.get(kind_text, "other")
    digest = lines[1].split()[0] if len(lines) > 1 and kind == "file" else None
    return PathState(kind, mode, owner, group, digest)


def _stat_script(path: str, attributes: bool = True) -> ShellScript:
    """What is at `path`: its type, mode, owner and group (`stat`), and a file's sha256.
    Without `attributes` (a task that sets no mode, owner or group) the type comes from the
    shell's own tests, and mode, owner and group stay empty: one process fewer per file."""
    p = shlex.quote(path)
    kind = f"stat -c '%F|%a|%U|%G' {p}"
    if not attributes:
        kind = (
            f"if [ -L {p} ]; then echo 'symbolic link|||'; "
            f"elif [ -f {p} ]; then echo 'regular file|||'; "
            f"elif [ -d {p} ]; then echo 'directory|||'; else echo 'other|||'; fi"
        )
    return ShellScript(
        f"if [ -e {p} ] || [ -L {p} ]; then {kind}; "
        f"if [ -f {p} ] && [ ! -L {p} ]; then sha256sum {p}; fi; else echo absent; fi"
    )


def _wants_attributes(args: FileArgs | CopyArgs | TemplateArgs) -> bool:
    return args.mode is not None or args.owner is not None or args.group is not None


def normalize_mode(mode: Any) -> str | None:
    if mode is None:
        return None
    if not isinstance(mode, str):
        # YAML reads 0644 as the integer 420: refuse rather than guess.
        raise ValueError(f"mode must be a quoted octal string like '0644', not {mode!r}")
    if not _MODE.match(mode):
        raise ValueError(f"mode {mode!r} is not an octal mode like '0644'")
    return format(int(mode, 8), "o")


def attribute_changes(
    path: str, state: PathState, mode: str | None, owner: str | None, group: str | None
) -> tuple[list[str], list[Run]]:
    changes, steps = [], []
    if mode and state.mode != mode:
        changes.append(f"{path}: mode {state.mode or '-'} -> {mode}")
        steps.append(Run(["chmod", mode, path]))
    if (owner and state.owner != owner) or (group and state.group != group):
        was = f"{state.owner}:{state.group}"
        changes.append(f"{path}: owner {was} -> {owner or state.owner}:{group or state.group}")
        steps.append(Run(["chown", chown_spec(owner, group), path]))
    return changes, steps


def _require_absolute(path: str) -> None:
    if not path.startswith("/"):
        raise ValueError(f"path {path!r} must be absolute")


# ---------------------------------------------------------------------------- file


@dataclass(frozen=True)
class FileArgs:
    path: str
    state: str = "file"  # file | directory | absent | touch
    mode: Any = None
    owner: str | None = None
    group: str | None = None

    def __post_init__(self) -> None:
        if self.state not in ("file", "directory", "absent", "touch"):
            raise ValueError(f"state must be file, directory, absent or touch, not {self.state!r}")
        _require_absolute(self.path)
        normalize_mode(self.mode)


class FileAction(Action):
    name = "file"
    Args = FileArgs

    def reads(self, args: FileArgs) -> list[Command]:
        return [_stat_script(args.path, _wants_attributes(args))]

    def plan(self, ctx: TaskContext, args: FileArgs) -> Plan:
        mode = normalize_mode(args.mode)
        read = _stat_script(args.path, _wants_attributes(args))
        state = parse_path_state(ctx.conn.run(read, check=True).stdout)
        out = {"path": args.path, "state": state.kind}
        if args.state == "absent":
            if state.kind == "absent":
                return Plan(output=out)
            return Plan([Run(["rm", "-rf", "--", args.path])], [f"remove {args.path}"], output=out)
        steps: list[Step] = []
        changes: list[str] = []
        if state.kind == "absent":
            if args.state == "file":
                raise ValueError(f"{args.path} does not exist (state=file only changes attributes)")
            create = ["mkdir", "-p", "--"] if args.state == "directory" else ["touch", "--"]
            steps.append(Run([*create, args.path]))
            changes.append(f"create {args.state} {args.path}")
            state = PathState(args.state if args.state == "directory" else "file")
        elif args.state == "directory" and state.kind != "directory":
            raise ValueError(f"{args.path} exists and is a {state.kind}, not a directory")
        more_changes, more_steps = attribute_changes(args.path, state, mode, args.owner, args.group)
        return Plan([*steps, *more_steps], changes + more_changes, output=out)


# ---------------------------------------------------------------------------- copy / template


def content_plan(
    ctx: TaskContext, dest: str, content: bytes, mode: Any, owner: str | None, group: str | None
) -> Plan:
    """Plan for a file whose whole content is known on the controller."""
    _require_absolute(dest)
    mode = normalize_mode(mode)
    read = _stat_script(dest, bool(mode or owner or group))
    state = parse_path_state(ctx.conn.run(read, check=True).stdout)
    digest = hashlib.sha256(content).hexdigest()
    out = {"dest": dest, "checksum": digest}
    if state.kind not in ("absent", "file"):
        raise ValueError(f"{dest} exists and is a {state.kind}, not a file")
    if state.sha256 != digest:
        diff = _diff(ctx, dest, state, content) if ctx.want_diff else None
        what = "create" if state.kind == "absent" else "update"
        upload = Upload(content, dest, mode=mode, owner=owner, group=group)
        return Plan([upload], [f"{what} {dest} ({len(content)} bytes)"], diff=diff, output=out)
    changes, steps = attribute_changes(dest, state, mode, owner, group)
    return Plan(list(steps), changes, output=out)


def _diff(ctx: TaskContext, dest: str, state: PathState, content: bytes) -> str:
    before = ""
    if state.kind == "file":
        res = ctx.conn.run(["head", "-c", str(MAX_DIFF_BYTES), dest], check=True)
        before = res.stdout
    after = content.decode(errors="replace")
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        f"{dest} (before)",
        f"{dest} (after)",
    )
    return "".join(lines)


@dataclass(frozen=True)
class CopyArgs:
    dest: str
    content: str | None = None
    src: str | None = None  # a file on the controller: files/ beside the playbook, role, project
    mode: Any = None
    owner: str | None = None
    group: str | None = None

    def __post_init__(self) -> None:
        if (self.content is None) == (self.src is None):
            raise ValueError("copy: give exactly one of 'content' or 'src'")
        _require_absolute(self.dest)
        normalize_mode(self.mode)


class CopyAction(Action):
    name = "copy"
    Args = CopyArgs

    def reads(self, args: CopyArgs) -> list[Command]:
        return [_stat_script(args.dest, _wants_attributes(args))]

    def plan(self, ctx: TaskContext, args: CopyArgs) -> Plan:
        if args.content is not None:
            data = args.content.encode()
        else:
            data = ctx.find_file("files", str(args.src)).read_bytes()
        return content_plan(ctx, args.dest, data, args.mode, args.owner, args.group)


@dataclass(frozen=True)
class TemplateArgs:
    src: str  # under templates/ (next to the playbook, or the project's), or a path
    dest: str
    mode: Any = None
    owner: str | None = None
    group: str | None = None

    def __post_init__(self) -> None:
        _require_absolute(self.dest)
        normalize_mode(self.mode)


class TemplateAction(Action):
    name = "template"
    Args = TemplateArgs

    def reads(self, args: TemplateArgs) -> list[Command]:
        return [_stat_script(args.dest, _wants_attributes(args))]

    def plan(self, ctx: TaskContext, args: TemplateArgs) -> Plan:
        text = render_file(ctx.find_file("templates", args.src), ctx.vars)
        return content_plan(ctx, args.dest, text.encode(), args.mode, args.owner, args.group)
