"""stat: what a path on the host is, registered as Ansible's `stat` module returns it.

One read-only command prints `key=value` lines (GNU stat's raw fields, access tests, the
link target and the checksum); the Ansible-shaped dictionary is built here in Python, so
the mapping is unit-testable without a host. Never changes anything.
"""

from __future__ import annotations

import shlex
import stat as st
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from labctl.actions.base import Action, Plan, TaskContext
from labctl.remote import Command, ShellScript

# Ansible's choices; each is a coreutils `<name>sum` program on the host.
CHECKSUM_ALGORITHMS = ("md5", "sha1", "sha224", "sha256", "sha384", "sha512")

# GNU stat fields, one `key=value` line each. %f is the raw st_mode in hex: type and
# permission bits both come from it, so nothing depends on stat's localised type names.
# Times with nanoseconds, as Ansible's floats from os.stat.
_STAT_FORMAT = (
    "rawmode=%f\\nuid=%u\\ngid=%g\\npw_name=%U\\ngr_name=%G\\nsize=%s\\ninode=%i\\n"
    "dev=%d\\nnlink=%h\\natime=%.9X\\nmtime=%.9Y\\nctime=%.9Z\\nblocks=%b\\nblock_size=%o\\n"
)


def stat_script(path: str, follow: bool, checksum_algorithm: str | None) -> ShellScript:
    """`exists=0`, or the fields of `path` (of its target when `follow`)."""
    p = shlex.quote(path)
    exists = f"[ -e {p} ]" if follow else f"{{ [ -e {p} ] || [ -L {p} ]; }}"
    lines = [
        f"if ! {exists}; then echo exists=0; exit 0; fi",
        "echo exists=1",
        f"stat {'-L ' if follow else ''}--printf {shlex.quote(_STAT_FORMAT)} -- {p}",
        # access as the connecting user, which is what Ansible's os.access answers too
        f"if [ -r {p} ]; then echo readable=1; fi",
        f"if [ -w {p} ]; then echo writeable=1; fi",
        f"if [ -x {p} ]; then echo executable=1; fi",
    ]
    if not follow:
        lines.append(
            f"if [ -L {p} ]; then printf 'lnk_target=%s\\n' \"$(readlink -- {p})\"; "
            f"printf 'lnk_source=%s\\n' \"$(realpath -- {p})\"; fi"
        )
    if checksum_algorithm:
        # Only a regular file (the link itself is not one unless followed); read through
        # stdin so that the output never carries the file name.
        is_reg = f"[ -f {p} ]" if follow else f"[ -f {p} ] && [ ! -L {p} ]"
        lines.append(
            f"if {is_reg} && [ -r {p} ]; then "
            f"printf 'checksum=%s\\n' \"$({checksum_algorithm}sum < {p} | cut -d' ' -f1)\"; fi"
        )
    return ShellScript("\n".join(lines))


def _number(text: str) -> int | float:
    value = float(text)
    return int(value) if value.is_integer() and "." not in text else value


def parse_stat(text: str, path: str) -> dict[str, Any]:
    """The script's output → Ansible's `stat` dictionary."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key] = value
    if fields.get("exists") != "1":
        return {"exists": False}
    raw = int(fields["rawmode"], 16)
    perm = st.S_IMODE(raw)
    out: dict[str, Any] = {
        "exists": True,
        "path": path,
        "mode": f"{perm:04o}",
        "isdir": st.S_ISDIR(raw),
        "ischr": st.S_ISCHR(raw),
        "isblk": st.S_ISBLK(raw),
        "isreg": st.S_ISREG(raw),
        "isfifo": st.S_ISFIFO(raw),
        "islnk": st.S_ISLNK(raw),
        "issock": st.S_ISSOCK(raw),
        "uid": int(fields["uid"]),
        "gid": int(fields["gid"]),
        "size": int(fields["size"]),
        "inode": int(fields["inode"]),
        "dev": int(fields["dev"]),
        "nlink": int(fields["nlink"]),
        "atime": _number(fields["atime"]),
        "mtime": _number(fields["mtime"]),
        "ctime": _number(fields["ctime"]),
        "blocks": int(fields["blocks"]),
        # st_blksize (stat's %o), as Ansible reports it; `blocks` counts 512-byte units
        "block_size": int(fields["block_size"]),
        "wusr": bool(perm & st.S_IWUSR),
        "rusr": bool(perm & st.S_IRUSR),
        "xusr": bool(perm & st.S_IXUSR),
        "wgrp": bool(perm & st.S_IWGRP),
        "rgrp": bool(perm & st.S_IRGRP),
        "xgrp": bool(perm & st.S_IXGRP),
        "woth": bool(perm & st.S_IWOTH),
        "roth": bool(perm & st.S_IROTH),
        "xoth": bool(perm & st.S_IXOTH),
        "isuid": bool(perm & st.S_ISUID),
        "isgid": bool(perm & st.S_ISGID),
        "readable": fields.get("readable") == "1",
        "writeable": fields.get("writeable") == "1",
        "executable": fields.get("executable") == "1",
    }
    # stat prints UNKNOWN for an id without a name; Ansible leaves the key out then.
    for key in ("pw_name", "gr_name"):
        if fields.get(key, "UNKNOWN") != "UNKNOWN":
            out[key] = fields[key]
    for key in ("lnk_target", "lnk_source", "checksum"):
        if key in fields:
            out[key] = fields[key]
    return out


@dataclass(frozen=True)
class StatArgs:
    path: str
    follow: bool = False
    get_checksum: bool = True
    checksum_algorithm: str = "sha1"

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ValueError(f"path {self.path!r} must be absolute")
        if self.checksum_algorithm not in CHECKSUM_ALGORITHMS:
            raise ValueError(
                f"checksum_algorithm must be one of {', '.join(CHECKSUM_ALGORITHMS)}, "
                f"not {self.checksum_algorithm!r}"
            )


def host_stat(
    ctx: TaskContext, path: str, follow: bool = False, checksum: str | None = "sha1"
) -> Mapping[str, Any]:
    """Ansible's stat dictionary for `path` on the host (for other actions too)."""
    res = ctx.conn.run(stat_script(path, follow, checksum), check=True)
    return parse_stat(res.stdout, path)


class StatAction(Action):
    name = "stat"
    Args = StatArgs

    def reads(self, args: StatArgs) -> list[Command]:
        algorithm = args.checksum_algorithm if args.get_checksum else None
        return [stat_script(args.path, args.follow, algorithm)]

    def plan(self, ctx: TaskContext, args: StatArgs) -> Plan:
        algorithm = args.checksum_algorithm if args.get_checksum else None
        return Plan(output={"stat": dict(host_stat(ctx, args.path, args.follow, algorithm))})
