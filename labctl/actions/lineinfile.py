"""lineinfile: one line present in (or absent from) a text file, with Ansible's semantics.

The plan reads the file once (type, mode, owner, group and its bytes, base64 so nothing is
lost on the way) and works out the new content in Python with `edit_present` /
`edit_absent`, pure functions that follow Ansible's lineinfile rule by rule: a `regexp`
replaces its last matching line (`firstmatch`: the first); without a match the line is
inserted after the last `insertafter` match (before the last `insertbefore` match), at
BOF/EOF, or at the end; `backrefs` with no match changes nothing. A changed file is written
whole and atomically (Upload).
"""

from __future__ import annotations

import base64
import binascii
import difflib
import os
import re
import shlex
import time
import uuid
from dataclasses import dataclass
from typing import Any

from labctl.actions.base import (
    Action,
    ActionResult,
    Plan,
    Run,
    Step,
    TaskContext,
    Upload,
)
from labctl.actions.files import PathState, attribute_changes, normalize_mode
from labctl.remote import ShellScript

_EOL = b"\n"  # Ansible writes os.linesep of the host: "\n" on every POSIX host


@dataclass(frozen=True)
class Edit:
    """The outcome of an edit: the new lines, whether they differ, Ansible's message."""

    lines: tuple[bytes, ...]
    changed: bool
    msg: str
    found: int = 0  # lines removed (state=absent)


def split_lines(content: bytes) -> list[bytes]:
    """Lines with their endings, like Python's readlines() on a binary file."""
    return content.splitlines(keepends=True)


def _last(
    pattern: re.Pattern[bytes], lines: list[bytes], first: bool
) -> tuple[int, re.Match[bytes] | None]:
    """Index and match of the last (`first`: first) line `pattern` finds, else (-1, None)."""
    index, found = -1, None
    for number, text in enumerate(lines):
        match = pattern.search(text)
        if match:
            index, found = number, match
            if first:
                break
    return index, found


def edit_present(
    content: bytes,
    line: str,
    regexp: str | None = None,
    search_string: str | None = None,
    insertafter: str | None = None,
    insertbefore: str | None = None,
    backrefs: bool = False,
    firstmatch: bool = False,
) -> Edit:
    """`line` present in `content`, as Ansible's lineinfile state=present decides it."""
    lines = split_lines(content)
    wanted = line.encode()
    if insertafter is None and insertbefore is None:
        insertafter = "EOF"
    anchor_text = insertafter if insertafter not in (None, "BOF", "EOF") else None
    if anchor_text is None and insertbefore not in (None, "BOF"):
        anchor_text = insertbefore
    anchor = re.compile(anchor_text.encode()) if anchor_text is not None else None

    # 1. A regexp (or search_string) match decides the line to replace; insertafter and
    # insertbefore only count when nothing matches.
    index = -1
    match: re.Match[bytes] | bool | None = None
    if regexp is not None:
        index, match = _last(re.compile(regexp.encode()), lines, firstmatch)
    elif search_string is not None:
        needle = search_string.encode()
        for number, text in enumerate(lines):
            if needle in text:
                index, match = number, True
                if firstmatch:
                    break
    # 2. Else: the line itself already there (its last copy), and the anchor's position.
    # As in Ansible, `firstmatch` stops this scan at the first anchor, so a copy of the
    # line after it goes unseen.
    insert_at = -1
    if not match:
        for number, text in enumerate(lines):
            if text.rstrip(b"\r\n") == wanted:
                index = number
            elif anchor is not None and anchor.search(text):
                insert_at = number + 1 if insertafter else number
                if firstmatch:
                    break

    if index != -1:
        new = match.expand(wanted) if backrefs and isinstance(match, re.Match) else wanted
        if not new.endswith(_EOL):
            new += _EOL
        if lines[index] == new:
            return Edit(tuple(lines), False, "")
        lines[index] = new
        return Edit(tuple(lines), True, "line replaced")
    if backrefs:
        # No match to fill the backreferences from: Ansible leaves the file alone.
        return Edit(tuple(lines), False, "")
    if "BOF" in (insertafter, insertbefore):
        return Edit((wanted + _EOL, *lines), True, "line added")
    if insertafter == "EOF" or insert_at == -1:
        _end_last_line(lines)
        return Edit((*lines, wanted + _EOL), True, "line added")
    if insertafter:
        # Not twice in a row: the line after the anchor may be this line already (only
        # possible when `firstmatch` stopped the scan above).
        if insert_at < len(lines) and lines[insert_at].rstrip(b"\r\n") == wanted:
            return Edit(tuple(lines), False, "")
        if insert_at == len(lines):
            # Ansible glues the new line onto a last anchor line without a newline; end it.
            _end_last_line(lines)
    lines.insert(insert_at, wanted + _EOL)
    return Edit(tuple(lines), True, "line added")


def _end_last_line(lines: list[bytes]) -> None:
    if lines and not lines[-1].endswith((b"\n", b"\r")):
        lines[-1] += _EOL


def edit_absent(
    content: bytes,
    line: str | None = None,
    regexp: str | None = None,
    search_string: str | None = None,
) -> Edit:
    """Every line matching `regexp` (else containing `search_string`, else equal to `line`)
    removed, as Ansible's lineinfile state=absent does."""
    pattern = re.compile(regexp.encode()) if regexp is not None else None

    def matches(text: bytes) -> bool:
        if pattern is not None:
            return bool(pattern.search(text))
        if search_string is not None:
            return search_string.encode() in text
        return text.rstrip(b"\r\n") == (line or "").encode()

    lines = split_lines(content)
    kept = tuple(text for text in lines if not matches(text))
    found = len(lines) - len(kept)
    return Edit(kept, found > 0, f"{found} line(s) removed" if found else "", found)


# ---------------------------------------------------------------------------- the action


@dataclass(frozen=True)
class FileRead:
    state: PathState
    content: bytes = b""
    real_path: str | None = None  # a symlink's target: written there, as Ansible does


def read_script(path: str) -> ShellScript:
    """`absent`, `directory`, or `file|MODE|OWNER|GROUP`, the real path and the content
    (both base64: any byte, newlines in names included, comes through unchanged)."""
    p = shlex.quote(path)
    return ShellScript(
        f"if [ -d {p} ]; then echo directory; elif [ -e {p} ]; then "
        f"stat -L -c 'file|%a|%U|%G' -- {p} && realpath -z -- {p} | base64 -w0 && echo "
        f"&& base64 -w0 < {p}; else echo absent; fi"
    )


def parse_read(text: str) -> FileRead:
    head, _, rest = text.partition("\n")
    if head in ("absent", "directory"):
        return FileRead(PathState(head))
    kind, mode, owner, group = head.split("|")
    real, _, body = rest.partition("\n")
    try:
        content = base64.b64decode(body.strip(), validate=True)
        real_path = base64.b64decode(real.strip(), validate=True).rstrip(b"\0").decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"unreadable file from the host: {exc}") from None
    return FileRead(PathState(kind, mode, owner, group), content, real_path)


@dataclass(frozen=True)
class LineinfileArgs:
    path: str
    line: str | None = None
    regexp: str | None = None
    search_string: str | None = None
    state: str = "present"
    insertafter: str | None = None
    insertbefore: str | None = None
    backrefs: bool = False
    firstmatch: bool = False
    create: bool = False
    backup: bool = False
    validate: str | None = None  # a command with %s for the new file, e.g. visudo -cf %s
    mode: Any = None
    owner: str | None = None
    group: str | None = None

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ValueError(f"path {self.path!r} must be absolute")
        if self.state not in ("present", "absent"):
            raise ValueError(f"state must be present or absent, not {self.state!r}")
        for a, b in (
            ("insertbefore", "insertafter"),
            ("regexp", "search_string"),
            ("backrefs", "search_string"),
        ):
            if getattr(self, a) not in (None, False) and getattr(self, b) is not None:
                raise ValueError(f"parameters are mutually exclusive: {a}|{b}")
        if self.state == "present":
            if self.line is None:
                raise ValueError("line is required with state=present")
            if self.backrefs and self.regexp is None:
                raise ValueError("regexp is required with backrefs=true")
        elif (self.line, self.regexp, self.search_string) == (None, None, None):
            raise ValueError("one of line, search_string, or regexp is required with state=absent")
        for name in ("regexp", "insertafter", "insertbefore"):
            value = getattr(self, name)
            if value is not None and value not in ("BOF", "EOF"):
                try:
                    re.compile(value)
                except re.error as exc:
                    raise ValueError(
                        f"{name} {value!r} is not a regular expression: {exc}"
                    ) from None
        if self.validate is not None and "%s" not in self.validate:
            raise ValueError(f"validate must contain %s: {self.validate}")
        normalize_mode(self.mode)


def backup_name(path: str) -> str:
    """Ansible's backup file name: `<path>.<pid>.<YYYY-MM-DD@HH:MM:SS>~` (local time)."""
    return f"{path}.{os.getpid()}.{time.strftime('%Y-%m-%d@%H:%M:%S~')}"


def validated_write(
    content: bytes, target: str, state: PathState, mode: str | None, args: LineinfileArgs
) -> list[Step]:
    """The new content written beside `target` with its final attributes, checked by
    `validate` (`%s` is that file; run without a shell, as Ansible runs it), then renamed
    over `target`; a rejected file is removed and the task fails."""
    temp = f"{target}.labctl-validate-{uuid.uuid4().hex[:12]}"
    argv = [word.replace("%s", temp) for word in shlex.split(args.validate or "")]
    # The temp file is new, so Upload cannot copy the attributes from it: the file's own
    # are given (none for a new file: Upload's defaults then).
    upload = Upload(
        content,
        temp,
        mode=mode or state.mode,
        owner=args.owner or state.owner,
        group=args.group or state.group,
    )
    check = ShellScript(
        f"{shlex.join(argv)} || {{ rc=$?; rm -f -- {shlex.quote(temp)}; exit $rc; }}"
    )
    return [upload, Run(check), Run(["mv", "-f", "--", temp, target])]


def _diff(path: str, before: bytes, after: bytes) -> str:
    return "".join(
        difflib.unified_diff(
            before.decode(errors="replace").splitlines(keepends=True),
            after.decode(errors="replace").splitlines(keepends=True),
            f"{path} (before)",
            f"{path} (after)",
        )
    )


class LineinfileAction(Action):
    name = "lineinfile"
    Args = LineinfileArgs

    def plan(self, ctx: TaskContext, args: LineinfileArgs) -> Plan:
        mode = normalize_mode(args.mode)
        read = parse_read(ctx.conn.run(read_script(args.path), check=True).stdout)
        if read.state.kind == "directory":
            raise ValueError(f"Path {args.path} is a directory !")
        absent = read.state.kind == "absent"
        if args.state == "absent":
            if absent:
                return Plan(output={"msg": "file not present", "found": 0, "backup": ""})
            edit = edit_absent(read.content, args.line, args.regexp, args.search_string)
        else:
            if absent and not args.create:
                raise ValueError(f"Destination {args.path} does not exist !")
            edit = edit_present(
                read.content,
                args.line or "",
                args.regexp,
                args.search_string,
                args.insertafter,
                args.insertbefore,
                args.backrefs,
                args.firstmatch,
            )
        output: dict[str, Any] = {"msg": edit.msg, "backup": ""}
        if args.state == "absent":
            output["found"] = edit.found
        steps: list[Step] = []
        changes: list[str] = []
        diff = None
        target = read.real_path or args.path
        if edit.changed:
            new = b"".join(edit.lines)
            if absent:
                parent = args.path.rsplit("/", 1)[0] or "/"
                steps.append(Run(["mkdir", "-p", "--", parent]))  # as Ansible does
            if args.backup and not absent:
                output["backup"] = backup_name(target)
                steps.append(Run(["cp", "-p", "--", target, output["backup"]]))
            if args.validate:
                steps.extend(validated_write(new, target, read.state, mode, args))
            else:
                steps.append(Upload(new, target, mode=mode, owner=args.owner, group=args.group))
            changes.append(f"{args.path}: {edit.msg}")
            if ctx.want_diff:
                diff = _diff(args.path, read.content, new)
        elif not absent:
            # (a file `create` would make but the edit leaves empty is not made: Ansible)
            more_changes, more_steps = attribute_changes(
                target, read.state, mode, args.owner, args.group
            )
            steps.extend(more_steps)
            changes.extend(more_changes)
            if more_steps:
                output["msg"] = "ownership, perms or SE linux context changed"
        return Plan(steps, changes, diff=diff, output=output)

    def apply(self, ctx: TaskContext, args: Any, plan: Plan) -> ActionResult:
        # Ansible's message ("line added", ...) as the task's msg, not only in the output.
        result = super().apply(ctx, args, plan)
        if result.failed:
            return result
        return ActionResult(
            changed=result.changed,
            msg=str(plan.output.get("msg", "")),
            changes=result.changes,
            diff=result.diff,
            output={k: v for k, v in plan.output.items() if k != "msg"},
        )
