"""fetch: a host's file copied to the controller, as Ansible's fetch does.

`dest` is a directory on the controller and the file lands at
`dest/<inventory_hostname>/<src path>`, or (with `flat`) at `dest` itself (`dest/` ending in
a slash: the file's name inside it). A relative `dest` is relative to the playbook's
directory, as Ansible's path_dwim makes it. The plan compares the host file's sha1 with the
local copy's: only a different content is copied, through a temp file renamed into place,
and checked against the host's sha1 afterwards (`validate_checksum`).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labctl.actions.base import Action, ActionFailed, ActionResult, Plan, Run, TaskContext
from labctl.remote import ShellScript

MISSING = "the remote file does not exist"
IS_DIR = "remote file is a directory, fetch cannot work on directories"


@dataclass(frozen=True)
class FetchArgs:
    src: str
    dest: str
    flat: bool = False
    fail_on_missing: bool = True
    validate_checksum: bool = True

    def __post_init__(self) -> None:
        if not self.src.startswith("/"):
            raise ValueError(f"src {self.src!r} must be absolute")
        if not self.dest:
            raise ValueError("dest must not be empty")


@dataclass(frozen=True)
class FetchStep(Run):
    """Copy the host's `src` to `local` (a controller path): done by FetchAction.apply; the
    command is what it reads on the host, for the plan's display."""

    src: str = ""
    local: str = ""

    def describe(self) -> str:
        return f"fetch {self.src} to {self.local}"


def local_dest(base_dir: Path, dest: str, src: str, host: str, flat: bool) -> Path:
    """Where the file lands on the controller (Ansible's rules, see the module's doc)."""
    root = Path(os.path.normpath(base_dir / os.path.expanduser(dest)))
    if flat:
        target = root / os.path.basename(src) if dest.endswith("/") else root
        if target.is_dir():
            raise ValueError(
                f"dest {target} is an existing directory, use a trailing slash if you want "
                "to fetch src into that directory"
            )
        return target
    target = Path(os.path.normpath(root / host / src.lstrip("/")))
    if not target.is_relative_to(root / host):
        raise ValueError(f"detected directory traversal: {target} is not under {root / host}")
    return target


def remote_script(src: str) -> ShellScript:
    """`absent`, `directory`, or the sha1 of the file (followed, as Ansible's stat does)."""
    s = shlex.quote(src)
    return ShellScript(
        f"if [ -d {s} ]; then echo directory; elif [ -e {s} ]; then "
        f"sha1sum < {s} | cut -d' ' -f1; else echo absent; fi"
    )


def _digest(path: Path, algorithm: str) -> str | None:
    if not path.is_file():
        return None
    h = hashlib.new(algorithm)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class FetchAction(Action):
    name = "fetch"
    Args = FetchArgs

    def plan(self, ctx: TaskContext, args: FetchArgs) -> Plan:
        host = str(ctx.vars.get("inventory_hostname") or ctx.conn.host.name)
        dest = local_dest(ctx.base_dir, args.dest, args.src, host, args.flat)
        found = ctx.conn.run(remote_script(args.src), check=True).stdout.strip()
        if found in ("absent", "directory"):
            why = MISSING if found == "absent" else IS_DIR
            if args.fail_on_missing:
                raise ValueError(f"{why}: {args.src}")
            return Plan(skipped=f"{why}, not transferring, ignored", output={"file": args.src})
        remote_checksum = found
        local_checksum = _digest(dest, "sha1")
        if local_checksum == remote_checksum:
            return Plan(
                output={
                    "file": args.src,
                    "dest": str(dest),
                    "checksum": local_checksum,
                    "md5sum": _digest(dest, "md5"),
                }
            )
        step = FetchStep(["cat", "--", args.src], src=args.src, local=str(dest))
        what = "create" if local_checksum is None else "update"
        return Plan(
            [step],
            [f"{what} {dest} from {host}:{args.src}"],
            output={"dest": str(dest), "remote_checksum": remote_checksum, "remote_md5sum": None},
        )

    def apply(self, ctx: TaskContext, args: FetchArgs, plan: Plan) -> ActionResult:
        (step,) = plan.steps
        assert isinstance(step, FetchStep)
        dest = Path(step.local)
        dest.parent.mkdir(parents=True, exist_ok=True)
        # A temp file beside dest, renamed over it: a reader never sees half a file.
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
        os.close(fd)
        try:
            ctx.conn.get(args.src, tmp)
            checksum = _digest(Path(tmp), "sha1")
            remote = plan.output["remote_checksum"]
            if args.validate_checksum and checksum != remote:
                raise ActionFailed(f"checksum mismatch: {args.src} is {remote}, got {checksum}")
            os.chmod(tmp, 0o644)  # mkstemp's 0600 is not what a plain write would give
            os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        output: dict[str, Any] = {
            **plan.output,
            "checksum": checksum,
            "md5sum": _digest(dest, "md5"),
        }
        return ActionResult(changed=True, changes=tuple(plan.changes), output=output)
