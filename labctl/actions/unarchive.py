"""unarchive: a tar or zip archive unpacked into a directory on the host (Ansible's unarchive).

The archive is read on the controller with Python's tarfile/zipfile (with `remote_src` it is
first copied from the host to a controller temp file), which gives its member list. One
`find` over `dest` on the host gives what is there. The archive counts as unpacked when
every member is there with its type, and every regular file with its size and (tar only)
its mtime to the second, plus the wanted mode/owner/group: then nothing happens. Zip
members are compared by size only: a zip's times are local times of an unknown zone.
Ansible compares more (tar --diff, zip CRCs); this is the cheaper check its docs allow.

Otherwise the archive is uploaded to a temp file on the host (unless remote_src), unpacked
with the host's tar (compression detected by tar) or unzip, and the temp file removed.
Members with absolute paths or `..` are refused before anything runs.
"""

from __future__ import annotations

import posixpath
import shlex
import tarfile
import tempfile
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labctl.actions.base import Action, Plan, Run, Step, TaskContext, Upload, chown_spec
from labctl.actions.files import normalize_mode
from labctl.remote import ShellScript

# Ansible's handler names, by the first bytes of the archive
_MAGIC = (
    (b"PK\x03\x04", "ZipArchive"),
    (b"\x1f\x8b", "TgzArchive"),
    (b"\xfd7zXZ\x00", "TarXzArchive"),
    (b"BZh", "TarBzipArchive"),
    (b"\x28\xb5\x2f\xfd", "TarZstdArchive"),
)


# tar member types as find's %y letters (anything else unpacks as a regular file)
_TAR_KINDS = {
    tarfile.DIRTYPE: "d",
    tarfile.SYMTYPE: "l",
    tarfile.FIFOTYPE: "p",
    tarfile.CHRTYPE: "c",
    tarfile.BLKTYPE: "b",
}


@dataclass(frozen=True)
class Member:
    path: str  # relative, normalised, no trailing slash
    kind: str  # find's %y letter: "f" file, "d" directory, "l" symlink, "p", "c", "b"
    size: int = 0  # -1: not known (a hard link), not compared
    mtime: int | None = None  # None: not compared (zip)


@dataclass(frozen=True)
class Found:
    kind: str
    size: int
    mtime: float
    mode: str  # octal, as find's %m: "644"
    owner: str
    group: str


def handler_for(head: bytes) -> str:
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return "TarArchive"


def _clean(name: str) -> str:
    path = posixpath.normpath(name.rstrip("/"))
    if name.startswith("/") or path == ".." or path.startswith("../"):
        raise ValueError(f"archive member {name!r} would land outside dest: refused")
    return path


def read_members(archive: Path) -> tuple[str, list[Member]]:
    """The archive's handler name and members (the controller reads it, no host needed)."""
    with archive.open("rb") as f:
        handler = handler_for(f.read(8))
    members: list[Member] = []
    if handler == "ZipArchive":
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                kind = "d" if info.is_dir() else "f"
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    kind = "l"
                members.append(Member(_clean(info.filename), kind, info.file_size))
        return handler, members
    if handler == "TarZstdArchive":
        raise ValueError("zstd-compressed tar archives are not supported (Python cannot read them)")
    try:
        with tarfile.open(archive, "r:*") as t:
            for entry in t.getmembers():
                path = _clean(entry.name)
                if path == ".":
                    continue
                if entry.islnk():
                    # a hard link's header has no size: compared by presence only
                    members.append(Member(path, "f", -1))
                    continue
                kind = _TAR_KINDS.get(entry.type, "f")
                members.append(Member(path, kind, entry.size, int(entry.mtime)))
    except tarfile.TarError as exc:
        raise ValueError(f"{archive.name}: not a tar or zip archive ({exc})") from None
    return handler, members


def find_script(dest: str) -> ShellScript:
    """`notdir`, or every path under dest: type, size, mtime, mode, owner, group, name (NUL
    ended: names may hold anything but NUL)."""
    d = shlex.quote(dest)
    return ShellScript(
        f"if [ ! -d {d} ]; then echo notdir; exit 0; fi; "
        f"find {d} -mindepth 1 -printf '%y\\t%s\\t%T@\\t%m\\t%u\\t%g\\t%P\\0'"
    )


def parse_find(text: str) -> dict[str, Found]:
    found: dict[str, Found] = {}
    for record in text.split("\0"):
        if not record.strip():
            continue
        kind, size, mtime, mode, owner, group, path = record.split("\t", 6)
        found[path] = Found(kind, int(size), float(mtime), mode, owner, group)
    return found


def differences(
    members: list[Member],
    found: dict[str, Found],
    mode: str | None,
    owner: str | None,
    group: str | None,
) -> list[str]:
    """What is not as the archive (and the attributes) say, one line each."""
    out = []
    for m in members:
        there = found.get(m.path)
        if there is None:
            out.append(f"{m.path}: missing")
        elif there.kind != m.kind:
            out.append(f"{m.path}: is a {there.kind}, the archive has a {m.kind}")
        elif m.kind == "f" and m.size >= 0 and there.size != m.size:
            out.append(f"{m.path}: size {there.size}, the archive's {m.size}")
        elif m.kind == "f" and m.mtime is not None and int(there.mtime) != m.mtime:
            out.append(f"{m.path}: modified at another time than the archive's")
        elif m.kind in ("f", "d") and mode and there.mode != mode:
            out.append(f"{m.path}: mode {there.mode}, wanted {mode}")
        elif (owner and there.owner != owner) or (group and there.group != group):
            out.append(f"{m.path}: owner {there.owner}:{there.group}")
    return out


@dataclass(frozen=True)
class UnarchiveArgs:
    src: str
    dest: str
    remote_src: bool = False
    creates: str | None = None
    list_files: bool = False
    mode: Any = None
    owner: str | None = None
    group: str | None = None

    def __post_init__(self) -> None:
        if not self.dest.startswith("/"):
            raise ValueError(f"dest {self.dest!r} must be absolute")
        if self.remote_src and not self.src.startswith("/"):
            raise ValueError(f"src {self.src!r} must be absolute with remote_src")
        normalize_mode(self.mode)


def find_src(ctx: TaskContext, src: str) -> Path:
    """The controller's archive: looked up as `copy` looks up its src (files/ first)."""
    return ctx.find_file("files", src)


def extract_command(handler: str, archive: str, dest: str, remove: bool) -> ShellScript:
    a, d = shlex.quote(archive), shlex.quote(dest)
    if handler == "ZipArchive":
        run = (
            "if ! command -v unzip >/dev/null 2>&1; then echo 'unzip is not on the host' >&2; "
            f"rc=1; else unzip -o -q {a} -d {d}; rc=$?; fi"
        )
    else:
        run = f"tar -xf {a} -C {d}; rc=$?"
    cleanup = f"; rm -f {a}" if remove else ""
    return ShellScript(f"{run}{cleanup}; exit $rc")


class UnarchiveAction(Action):
    name = "unarchive"
    Args = UnarchiveArgs

    def plan(self, ctx: TaskContext, args: UnarchiveArgs) -> Plan:
        if args.creates and ctx.conn.run(["test", "-e", args.creates]).ok:
            return Plan(skipped=f"skipped, since {args.creates} exists")
        mode = normalize_mode(args.mode)
        if args.remote_src:
            if not ctx.conn.run(["test", "-f", args.src]).ok:
                raise ValueError(f"Source '{args.src}' does not exist")
            with tempfile.TemporaryDirectory() as tmp:
                local = Path(tmp) / "archive"
                ctx.conn.get(args.src, str(local))
                handler, members = read_members(local)
            data = None
        else:
            local = find_src(ctx, args.src)
            handler, members = read_members(local)
            data = local.read_bytes()
        listing = ctx.conn.run(find_script(args.dest), check=True).stdout
        if listing.strip() == "notdir":
            raise ValueError(f"Destination '{args.dest}' is not a directory")
        output: dict[str, Any] = {"dest": args.dest, "src": args.src, "handler": handler}
        if args.list_files:
            output["files"] = [m.path + ("/" if m.kind == "d" else "") for m in members]
        diff = differences(members, parse_find(listing), mode, args.owner, args.group)
        if not diff:
            return Plan(output=output)
        steps: list[Step] = []
        if data is None:
            archive = args.src
        else:
            archive = f"/tmp/labctl-unarchive-{uuid.uuid4().hex[:12]}"
            steps.append(Upload(data, archive, mode="600"))
        steps.append(Run(extract_command(handler, archive, args.dest, remove=data is not None)))
        paths = [posixpath.join(args.dest, m.path) for m in members]
        if args.owner or args.group:
            # -h: a link's own owner, never its target's (it may point outside dest)
            steps.append(Run(["chown", "-h", chown_spec(args.owner, args.group), "--", *paths]))
        if mode:
            not_links = [p for p, m in zip(paths, members, strict=True) if m.kind in ("f", "d")]
            steps.append(Run(["chmod", mode, "--", *not_links]))
        more = f" (and {len(diff) - 3} more)" if len(diff) > 3 else ""
        changes = [f"unpack {args.src} into {args.dest}: {'; '.join(diff[:3])}{more}"]
        return Plan(steps, changes, output=output)
