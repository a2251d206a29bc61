"""get_url: the HOST downloads a URL to a file (Ansible's get_url), with curl, wget or python3,
whichever the host has (in that order; wget is skipped for file:// URLs, it has none).

Idempotency follows Ansible: an existing `dest` whose content matches `checksum` is left
alone; an existing `dest` without a `checksum` is left alone unless `force` (Ansible then
asks the server with If-Modified-Since; labctl does not download at all: the documented
meaning of force=no, "only downloaded if the destination does not exist"). When it does
download, the file goes to a temp file beside `dest`, is checked against `checksum`, and
replaces `dest` only if its content differs: a forced download of the same bytes is "ok".
In check mode nothing is downloaded and the plan says a download would happen (Ansible
reports changed too: its check mode compares against an empty body).
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlparse

from labctl.actions.base import (
    Action,
    ActionResult,
    Plan,
    Run,
    Step,
    TaskContext,
    failed_result,
    result_output,
)
from labctl.actions.files import PathState, attribute_changes, chown_spec, normalize_mode
from labctl.remote import ShellScript

ALGORITHMS = ("md5", "sha1", "sha224", "sha256", "sha384", "sha512")
SCHEMES = ("http", "https", "ftp", "file")
DOWNLOAD_TIMEOUT = 3600.0  # the whole step; `timeout` bounds each connect and each stall

# python3's fallback: urllib, the URL, temp file and timeout as argv (never in the text).
_PY_GET = (
    "import shutil, ssl, sys, urllib.request as u\n"
    "ctx = None if sys.argv[4] == '1' else ssl._create_unverified_context()\n"
    "r = u.urlopen(sys.argv[1], timeout=float(sys.argv[3]), context=ctx)\n"
    "shutil.copyfileobj(r, open(sys.argv[2], 'wb'))\n"
    "print(getattr(r, 'status', None) or 200)\n"
)


@dataclass(frozen=True)
class Checksum:
    algorithm: str
    digest: str


def parse_checksum(text: str) -> Checksum | None:
    """`algorithm:hexdigest` as Ansible takes it (non-word characters dropped), or None."""
    if not text:
        return None
    algorithm, sep, value = text.partition(":")
    if not sep or algorithm not in ALGORITHMS:
        raise ValueError(
            f"checksum must be <algorithm>:<checksum> with algorithm one of "
            f"{', '.join(ALGORITHMS)}, not {text!r}"
        )
    if "://" in value:
        raise ValueError("checksum: a checksum file URL is not supported by labctl")
    digest = re.sub(r"\W+", "", value).lower()
    if not digest or not re.fullmatch(r"[0-9a-f]+", digest):
        raise ValueError("The checksum format is invalid")
    return Checksum(algorithm, digest)


def url_filename(url: str) -> str:
    """The file name a URL names (Ansible's fallback when dest is a directory)."""
    name = unquote(urlparse(url).path.rstrip("/").rsplit("/", 1)[-1])
    return name or "index.html"


@dataclass(frozen=True)
class GetUrlArgs:
    url: str
    dest: str
    checksum: str = ""
    force: bool = False
    timeout: int = 10
    validate_certs: bool = True
    mode: Any = None
    owner: str | None = None
    group: str | None = None

    def __post_init__(self) -> None:
        if urlparse(self.url).scheme not in SCHEMES:
            raise ValueError(f"url {self.url!r}: scheme must be one of {', '.join(SCHEMES)}")
        if not self.dest.startswith("/"):
            raise ValueError(f"dest {self.dest!r} must be absolute")
        parse_checksum(self.checksum)
        normalize_mode(self.mode)


@dataclass(frozen=True)
class DestState:
    state: PathState
    sha1: str | None = None
    digest: str | None = None  # with the checksum's algorithm


def dest_script(dest: str, algorithm: str | None) -> ShellScript:
    d = shlex.quote(dest)
    more = f"; {algorithm}sum < {d} | cut -d' ' -f1" if algorithm else ""
    return ShellScript(
        f"if [ -d {d} ]; then echo directory; elif [ -e {d} ]; then "
        f"stat -L -c 'file|%a|%U|%G' -- {d}; sha1sum < {d} | cut -d' ' -f1{more}; "
        "else echo absent; fi"
    )


def parse_dest(text: str) -> DestState:
    lines = text.strip().splitlines()
    if not lines or lines[0] in ("absent", "directory"):
        return DestState(PathState(lines[0] if lines else "absent"))
    kind, mode, owner, group = lines[0].split("|")
    return DestState(
        PathState(kind, mode, owner, group),
        lines[1] if len(lines) > 1 else None,
        lines[2] if len(lines) > 2 else None,
    )


def download_script(args: GetUrlArgs, dest: str, checksum: Checksum | None) -> ShellScript:
    """Download to a temp file beside `dest`, check it, replace `dest` if it differs.

    Prints `status_code=`, `checksum_src=`, and `unchanged` when dest had these bytes."""
    d, u, t = shlex.quote(dest), shlex.quote(args.url), str(int(args.timeout))
    tmp = '"$tmp"'
    insecure = "" if args.validate_certs else " -k"
    no_check = "" if args.validate_certs else " --no-check-certificate"
    verify = "1" if args.validate_certs else "0"
    lines = [
        f"tmp=$(mktemp {shlex.quote(dest + '.labctl-XXXXXXXX')}) || exit 1",
        "trap 'rm -f \"$tmp\"' EXIT",
        "if command -v curl >/dev/null 2>&1; then "
        f"code=$(curl -sSL --fail{insecure} --connect-timeout {t} --speed-time {t} "
        f"--speed-limit 1 -o {tmp} -w '%{{http_code}}' -- {u}) || exit 1; "
        'echo "status_code=$code"; '
        f"elif command -v wget >/dev/null 2>&1 && [ {shlex.quote(args.url[:7])} != file:// ]; "
        f"then wget -q{no_check} -T {t} -O {tmp} -- {u} || exit 1; "
        "elif command -v python3 >/dev/null 2>&1; then "
        f"code=$(python3 -c {shlex.quote(_PY_GET)} {u} {tmp} {t} {verify}) || exit 1; "
        'echo "status_code=$code"; '
        "else echo 'get_url: the host has none of curl, wget, python3' >&2; exit 1; fi",
        f'echo "checksum_src=$(sha1sum < {tmp} | cut -d" " -f1)"',
    ]
    if checksum:
        lines.append(
            f'got=$({checksum.algorithm}sum < {tmp} | cut -d" " -f1); '
            f'if [ "$got" != {checksum.digest} ]; then echo "The checksum for "{d}" did not '
            f'match {checksum.digest}; it was $got." >&2; exit 1; fi'
        )
    lines.append(f"if [ -f {d} ] && cmp -s {tmp} {d}; then echo unchanged; exit 0; fi")
    if args.mode:
        lines.append(f"chmod {normalize_mode(args.mode)} {tmp}")
    else:
        lines.append(f"if [ -e {d} ]; then chmod --reference={d} {tmp}; else chmod 644 {tmp}; fi")
    if args.owner or args.group:
        lines.append(f"chown {shlex.quote(chown_spec(args.owner, args.group))} {tmp}")
    else:
        lines.append(f"if [ -e {d} ]; then chown --reference={d} {tmp}; fi")
    lines.append(f"mv -f {tmp} {d}")
    return ShellScript("set -e\n" + "\n".join(lines))


@dataclass(frozen=True)
class DownloadStep(Run):
    """The download: a Run whose output says whether `dest` really changed."""


class GetUrlAction(Action):
    name = "get_url"
    Args = GetUrlArgs

    def plan(self, ctx: TaskContext, args: GetUrlArgs) -> Plan:
        checksum = parse_checksum(args.checksum)
        mode = normalize_mode(args.mode)
        algorithm = checksum.algorithm if checksum else None
        dest = args.dest
        found = parse_dest(ctx.conn.run(dest_script(dest, algorithm), check=True).stdout)
        if found.state.kind == "directory":
            dest = f"{dest.rstrip('/')}/{url_filename(args.url)}"
            found = parse_dest(ctx.conn.run(dest_script(dest, algorithm), check=True).stdout)
        if found.state.kind not in ("absent", "file"):
            raise ValueError(f"{dest} exists and is not a file")
        output: dict[str, Any] = {"url": args.url, "dest": dest, "checksum_dest": found.sha1}
        exists = found.state.kind == "file"
        matches = checksum is None or found.digest == checksum.digest
        if exists and not args.force and matches:
            attr_changes, attr_steps = attribute_changes(
                dest, found.state, mode, args.owner, args.group
            )
            msg = "file already exists" + (" but file attributes changed" if attr_steps else "")
            return Plan(list[Step](attr_steps), attr_changes, output={**output, "msg": msg})
        steps: list[Step] = [
            DownloadStep(download_script(args, dest, checksum), timeout=DOWNLOAD_TIMEOUT)
        ]
        changes = [f"download {args.url} to {dest}"]
        if exists:
            # the download keeps dest's own attributes; these set the wanted ones
            more_changes, more_steps = attribute_changes(
                dest, found.state, mode, args.owner, args.group
            )
            steps.extend(more_steps)
            changes.extend(more_changes)
        return Plan(steps, changes, output=output)

    def apply(self, ctx: TaskContext, args: GetUrlArgs, plan: Plan) -> ActionResult:
        started = time.monotonic()
        output = dict(plan.output)
        changed = False
        done: list[str] = []
        for step in plan.steps:
            assert isinstance(step, Run)
            res = ctx.conn.run(step.command, timeout=step.timeout)
            if not res.ok:
                output["elapsed"] = int(time.monotonic() - started)
                return failed_result(plan.changes, {**output, **result_output(res)}, res)
            if isinstance(step, DownloadStep):
                output["elapsed"] = int(time.monotonic() - started)
                for line in res.stdout.splitlines():
                    key, sep, value = line.partition("=")
                    if sep and key in ("status_code", "checksum_src"):
                        output[key] = int(value) if key == "status_code" else value
                if "unchanged" in res.stdout.split():
                    output["msg"] = "file already has this content"
                    continue
                output["msg"] = "OK"
                done.append(plan.changes[0])
            else:
                done.append(step.describe())
            changed = True
        return ActionResult(changed=changed, changes=tuple(done), output=output)
