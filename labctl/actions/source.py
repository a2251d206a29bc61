"""source: put a source tree on a host — a git checkout pinned to a ref, or a controller tree.

A stamp file `<dest>/.labctl-source` says what was put there (`git <url> <commit>`, or
`sha256:<hash>` of a directory's or tarball's content), so the plan costs one read of the
stamp: same stamp, nothing to do. Directories travel as one tar stream: `scp -r` fails on
netmap's non-regular file in LINUX/dkms (docs/netmap.md), and one stream is one round
trip. A new tree is unpacked beside `dest` and swapped in, so a failed extract or checkout
never leaves half a tree, and a directory labctl did not put there is never replaced.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import posixpath
import re
import shlex
import stat
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from labctl.actions.base import (
    Action,
    ActionFailed,
    ActionResult,
    Plan,
    Run,
    TaskContext,
    step_failed,
)
from labctl.digests import file_sha256
from labctl.remote import CommandResult, ShellScript

STAMP_NAME = ".labctl-source"
TARBALL_SUFFIXES = {".tar": "", ".tar.gz": "-z", ".tgz": "-z", ".tar.xz": "-J"}
_SCP_LIKE_URL = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9._-]+:")
FULL_COMMIT = re.compile(r"^[0-9a-fA-F]{40}$")
_SHORT_COMMIT = re.compile(r"^[0-9a-fA-F]{4,39}$")
APPLY_TIMEOUT = 1800.0  # a clone or a large upload; the plan's reads use the default


@dataclass(frozen=True)
class SourceArgs:
    src: str
    dest: str
    ref: str | None = None
    exclude: tuple[str, ...] = ()


# ---------------------------------------------------------------------------- classification


def is_git_url(src: str) -> bool:
    """`scheme://…`, `….git` or scp-like `user@host:path`: a git remote, not a controller path."""
    return "://" in src or src.rstrip("/").endswith(".git") or bool(_SCP_LIKE_URL.match(src))


def tarball_suffix(path: str) -> str | None:
    """The tarball suffix `path` ends with (longest first), or None."""
    for suffix in sorted(TARBALL_SUFFIXES, key=len, reverse=True):
        if path.endswith(suffix):
            return suffix
    return None


def _check_dest(dest: str) -> str:
    if not dest.startswith("/"):
        raise ValueError(f"source: dest must be an absolute path, not {dest!r}")
    norm = posixpath.normpath(dest)
    # dest is replaced as a whole (rm -rf): never a top-level directory such as / or /root.
    if len([p for p in norm.split("/") if p]) < 2:
        raise ValueError(f"source: dest {dest!r} is too close to / to be replaced as a whole")
    return norm


def _check_git_words(url: str, ref: str) -> None:
    # Both reach git as arguments: a leading '-' would be read as an option.
    if url.startswith("-"):
        raise ValueError(f"source: git url {url!r} must not start with '-'")
    if ref.startswith("-") or any(c.isspace() or ord(c) < 32 for c in ref) or ".." in ref:
        raise ValueError(f"source: {ref!r} is not a usable git ref")


# ---------------------------------------------------------------------------- trees


@dataclass(frozen=True)
class TreeEntry:
    relpath: str  # POSIX, relative to the tree's root
    kind: str  # "dir", "file" or "link"
    mode: int  # permission bits (0 for links: Linux ignores a link's mode)
    path: Path  # where it is on the controller
    target: str = ""  # a link's target


@dataclass(frozen=True)
class Tree:
    entries: tuple[TreeEntry, ...]  # sorted by relpath
    special: tuple[str, ...] = ()  # FIFOs, sockets, devices: left out (runtime objects, not source)


def _excluded(relpath: str, name: str, exclude: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(relpath, g) or fnmatch.fnmatchcase(name, g) for g in exclude)


def scan_tree(root: Path, exclude: Sequence[str] = ()) -> Tree:
    """What of `root` is put on the host. A glob in `exclude` matches a relative path
    (`LINUX/build`) or any single name (`*.o`, `.git`); an excluded directory is pruned."""
    entries: list[TreeEntry] = []
    special: list[str] = []

    def walk(directory: Path, prefix: str) -> None:
        with os.scandir(directory) as it:
            children = sorted(it, key=lambda e: e.name)
        for child in children:
            rel = f"{prefix}{child.name}"
            if _excluded(rel, child.name, exclude):
                continue
            st = child.stat(follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                entries.append(TreeEntry(rel, "link", 0, Path(child.path), os.readlink(child.path)))
            elif stat.S_ISDIR(st.st_mode):
                entries.append(TreeEntry(rel, "dir", stat.S_IMODE(st.st_mode), Path(child.path)))
                walk(Path(child.path), rel + "/")
            elif stat.S_ISREG(st.st_mode):
                entries.append(TreeEntry(rel, "file", stat.S_IMODE(st.st_mode), Path(child.path)))
            else:
                special.append(rel)

    walk(root, "")
    entries.sort(key=lambda e: e.relpath.encode("utf-8", "surrogateescape"))
    return Tree(tuple(entries), tuple(sorted(special)))


def _entry_record(entry: TreeEntry, content_sha256: str) -> bytes:
    """One entry's contribution to the tree hash; NUL-separated, so no two trees collide."""
    payload = {"file": content_sha256, "link": entry.target, "dir": ""}[entry.kind]
    text = f"{entry.kind}\0{entry.relpath}\0{entry.mode:o}\0{payload}\n"
    return text.encode("utf-8", "surrogateescape")


def tree_digest(tree: Tree) -> str:
    """Hash over sorted relative paths, kinds, modes, file contents and link targets.
    Times and owners are left out: a touch or a fresh clone of the same content is no change."""
    h = hashlib.sha256()
    for entry in tree.entries:
        h.update(_entry_record(entry, file_sha256(entry.path) if entry.kind == "file" else ""))
    return h.hexdigest()


def directory_digest(root: Path, exclude: Sequence[str] = ()) -> str:
    return tree_digest(scan_tree(root, exclude))


class _HashingReader:
    """Hands tarfile a file's bytes and hashes exactly those bytes on the way."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self.sha256 = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._f.read(size)
        self.sha256.update(data)
        return data


def pack_tree(tree: Tree, out: IO[bytes]) -> str:
    """Write `tree` as a .tar.gz to `out`; return the tree hash of exactly what was packed
    (a file edited between plan and apply is stamped as it was sent)."""
    h = hashlib.sha256()
    with tarfile.open(fileobj=out, mode="w:gz", compresslevel=6) as tar:
        for entry in tree.entries:
            info = tarfile.TarInfo(entry.relpath)
            info.mtime = int(entry.path.lstat().st_mtime)
            info.mode = entry.mode
            # Owners are the host user's (tar --no-same-owner), not the controller's uid.
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if entry.kind == "file":
                info.type = tarfile.REGTYPE
                with entry.path.open("rb") as f:
                    info.size = os.fstat(f.fileno()).st_size
                    reader = _HashingReader(f)
                    tar.addfile(info, reader)
                h.update(_entry_record(entry, reader.sha256.hexdigest()))
                continue
            if entry.kind == "link":
                info.type = tarfile.SYMTYPE
                info.linkname = entry.target
                info.mode = 0o777
            else:
                info.type = tarfile.DIRTYPE
            tar.addfile(info)
            h.update(_entry_record(entry, ""))
    return h.hexdigest()


# ---------------------------------------------------------------------------- host state


@dataclass(frozen=True)
class DestState:
    kind: str  # "absent", "empty", "stamped" or "foreign" (something labctl did not put)
    stamp: str | None = None


def _state_script(dest: str) -> str:
    d = shlex.quote(dest)
    s = shlex.quote(f"{dest}/{STAMP_NAME}")
    return (
        f"if [ -f {s} ]; then printf 'stamped '; head -n 1 {s}; echo; "
        f"elif [ ! -e {d} ] && [ ! -L {d} ]; then echo absent; "
        f'elif [ -d {d} ] && [ -z "$(ls -A {d})" ]; then echo empty; '
        "else echo foreign; fi"
    )


def parse_dest_state(line: str) -> DestState:
    line = line.strip()
    if line.startswith("stamped "):
        return DestState("stamped", line[len("stamped ") :].strip())
    if line in ("absent", "empty"):
        return DestState(line)
    return DestState("foreign")


def parse_ls_remote(text: str, ref: str) -> str | None:
    """The commit `ref` names in `git ls-remote` output, as git itself would pick it: a full
    ref name, then a tag (peeled, for an annotated tag), then a branch."""
    shas: dict[str, str] = {}
    for line in text.splitlines():
        sha, _, name = line.partition("\t")
        if sha and name:
            shas[name.strip()] = sha.strip().lower()
    candidates = [ref] if ref == "HEAD" or ref.startswith("refs/") else []
    candidates += [f"refs/tags/{ref}", f"refs/heads/{ref}"]
    for name in candidates:
        if f"{name}^{{}}" in shas:
            return shas[f"{name}^{{}}"]
        if name in shas:
            return shas[name]
    return None


def _foreign(ctx: TaskContext, dest: str) -> ActionFailed:
    return ActionFailed(
        f"{ctx.conn.host.name}: {dest} exists and was not put there by labctl "
        f"(no {STAMP_NAME}): remove it or choose another dest"
    )


# ---------------------------------------------------------------------------- scripts


def _git_script(url: str, dest: str, target: str) -> str:
    """Checkout `target` (a commit, or an abbreviated one) at dest; prints the new stamp."""
    q = shlex.quote
    return "\n".join(
        [
            "set -e",
            "command -v git >/dev/null 2>&1 || { echo 'git is not installed' >&2; exit 127; }",
            f"d={q(dest)}; n={q(dest + '.labctl-new')}; url={q(url)}; target={q(target)}",
            "trap 'rm -rf \"$n\"' EXIT",
            'if [ -d "$d/.git" ]; then fresh=; cd "$d"; git remote set-url origin "$url"',
            'else fresh=1; rm -rf "$n"; mkdir -p "$(dirname "$d")"',
            '  git clone -q --no-checkout -- "$url" "$n"; cd "$n"; fi',
            'if ! git cat-file -e "$target^{commit}" 2>/dev/null; then',
            "  git fetch -q --force --tags origin",
            '  git cat-file -e "$target^{commit}" 2>/dev/null || git fetch -q origin "$target"',
            "fi",
            'git -c advice.detachedHead=false checkout -q --force --detach "$target^{commit}"',
            f"grep -qx {q(STAMP_NAME)} .git/info/exclude 2>/dev/null"
            f" || echo {q(STAMP_NAME)} >> .git/info/exclude",
            f'printf \'git %s %s\\n\' "$url" "$(git rev-parse HEAD)" > {q(STAMP_NAME)}',
            'if [ -n "$fresh" ]; then cd /; rm -rf "$d"; mv "$n" "$d"; fi',
            f'cat "$d"/{q(STAMP_NAME)}',
        ]
    )


def _extract_script(upload: str, dest: str, tar_flag: str, stamp: str) -> str:
    """Unpack the upload into a fresh dir beside dest, stamp it, swap it in; prints the stamp."""
    q = shlex.quote
    flags = " ".join(f for f in ("--no-same-owner", "-p", tar_flag) if f)
    return "\n".join(
        [
            "set -e",
            f"u={q(upload)}; n={q(dest + '.labctl-new')}; d={q(dest)}",
            'trap \'rm -rf "$n" "$u"\' EXIT',
            'rm -rf "$n"; mkdir "$n"',
            f'tar -x {flags} -f "$u" -C "$n"',
            f"printf '%s\\n' {q(stamp)} > \"$n\"/{q(STAMP_NAME)}",
            'rm -rf "$d"; mv "$n" "$d"',
            f'cat "$d"/{q(STAMP_NAME)}',
        ]
    )


# ---------------------------------------------------------------------------- the action


@dataclass(frozen=True)
class _LocalSource:
    path: Path
    stamp: str
    tree: Tree | None  # None for a tarball
    tar_suffix: str  # ".tar.gz" for a packed directory


def controller_path(base_dir: Path, src: str) -> Path:
    """A path on the controller, `~` expanded: a relative one beside the playbook
    (`base_dir`), else in the current directory (where `-e src=...` was typed)."""
    path = Path(src).expanduser()
    if path.is_absolute():
        return path
    beside = base_dir / path
    return beside if beside.exists() else Path.cwd() / path


def short_stamp(stamp: str) -> str:
    """A stamp for a change line: `sha256:abcd1234abcd…`, or a git stamp's commit."""
    if stamp.startswith("sha256:"):
        digest = stamp[len("sha256:") :]
        return f"sha256:{digest[:12]}…" if len(digest) > 12 else stamp
    if stamp.startswith("git "):
        return f"git {stamp.rsplit(' ', 1)[-1][:12]}"
    return stamp


class SourceAction(Action):
    name = "source"
    Args = SourceArgs

    def plan(self, ctx: TaskContext, args: SourceArgs) -> Plan:
        dest = _check_dest(args.dest)
        if is_git_url(args.src):
            if tarball_suffix(args.src):
                raise ValueError(
                    f"source: {args.src} looks like a tarball URL; fetch it to the controller "
                    "and give its path"
                )
            return self._plan_git(ctx, args, dest)
        return self._plan_local(ctx, args, dest)

    # -- git

    def _plan_git(self, ctx: TaskContext, args: SourceArgs, dest: str) -> Plan:
        url, ref = args.src, args.ref
        if not ref:
            raise ValueError(
                f"source: {url} is a git url: give `ref` (branch, tag or commit) "
                "so the checkout is pinned"
            )
        if args.exclude:
            raise ValueError("source: `exclude` applies to a directory src only")
        _check_git_words(url, ref)
        full = bool(FULL_COMMIT.match(ref))
        script = _state_script(dest)
        if not full:
            # The one network read of the plan: what the ref names upstream now. An annotated
            # tag's commit (`v1^{}`) is listed only when asked for by name.
            script += f"\ngit ls-remote -- {shlex.join([url, ref, ref + '^{}'])}"
        res = ctx.conn.run(ShellScript(script), timeout=120)
        if not res.ok:
            raise ActionFailed(
                f"{ctx.conn.host.name}: git ls-remote {url}: {res.first_error_line()}", res
            )
        first, _, rest = res.stdout.partition("\n")
        state = parse_dest_state(first)
        if state.kind == "foreign":
            raise _foreign(ctx, dest)
        commit = ref.lower() if full else parse_ls_remote(rest, ref)
        if commit is None and not _SHORT_COMMIT.match(ref):
            raise ActionFailed(f"{ctx.conn.host.name}: ref {ref!r} not found in {url}", res)
        target = commit or ref.lower()  # an abbreviated commit is resolved by git on the host
        have = state.stamp or ""
        want = f"git {url} {commit}" if commit else None
        if have == want or (
            want is None
            and have.startswith(f"git {url} ")
            and have.rsplit(" ", 1)[-1].startswith(target)
        ):
            return Plan(output={"dest": dest, "version": have})
        change = f"checkout {ref} ({target[:12]}) at {dest}"
        if have:
            change += f", was {have.rsplit(' ', 1)[-1][:12]}"
        return Plan(
            steps=[Run(ShellScript(_git_script(url, dest, target)))],
            changes=[change],
            output={"dest": dest, "version": want},
        )

    # -- directory or tarball on the controller

    def _local_source(
        self, ctx: TaskContext, args: SourceArgs, digest: bool = True
    ) -> _LocalSource:
        """The controller's side; `digest=False` skips hashing a tree (apply hashes as it packs)."""
        path = controller_path(ctx.base_dir, args.src)
        if path.is_dir():
            tree = scan_tree(path, args.exclude)
            return _LocalSource(
                path, f"sha256:{tree_digest(tree)}" if digest else "", tree, ".tar.gz"
            )
        if args.exclude:
            raise ValueError("source: `exclude` applies to a directory src only")
        suffix = tarball_suffix(path.name)
        if path.is_file() and suffix:
            return _LocalSource(path, f"sha256:{file_sha256(path)}", None, suffix)
        if path.exists():
            raise ValueError(
                f"source: {path} is neither a directory nor a tarball "
                f"({', '.join(TARBALL_SUFFIXES)})"
            )
        raise ValueError(f"source: {path} does not exist on the controller")

    def _plan_local(self, ctx: TaskContext, args: SourceArgs, dest: str) -> Plan:
        local = self._local_source(ctx, args)
        state = parse_dest_state(ctx.conn.run(ShellScript(_state_script(dest)), check=True).stdout)
        if state.kind == "foreign":
            raise _foreign(ctx, dest)
        output: dict[str, Any] = {"dest": dest, "version": local.stamp}
        if local.tree is not None and local.tree.special:
            output["left_out"] = list(local.tree.special)
        if state.stamp == local.stamp:
            return Plan(output=output)
        change = f"put {local.path} ({short_stamp(local.stamp)}) at {dest}"
        if state.stamp:
            change += f", was {short_stamp(state.stamp)}"
        if local.tree is not None and local.tree.special:
            n = len(local.tree.special)
            change += (
                f", leaving out {n} special file{'s' if n > 1 else ''} "
                f"({', '.join(local.tree.special[:3])}{', …' if n > 3 else ''})"
            )
        upload = f"{dest}.labctl-upload{local.tar_suffix}"
        script = _extract_script(upload, dest, TARBALL_SUFFIXES[local.tar_suffix], local.stamp)
        return Plan(steps=[Run(ShellScript(script))], changes=[change], output=output)

    # -- apply

    def apply(self, ctx: TaskContext, args: SourceArgs, plan: Plan) -> ActionResult:
        if is_git_url(args.src):
            step = plan.steps[0]
            assert isinstance(step, Run)
            res = ctx.conn.run(step.command, timeout=APPLY_TIMEOUT)
            return self._result(plan, res)
        dest = plan.output["dest"]
        local = self._local_source(ctx, args, digest=False)
        upload = f"{dest}.labctl-upload{local.tar_suffix}"
        made_parent = ctx.conn.run(["mkdir", "-p", posixpath.dirname(dest)])
        if not made_parent.ok:
            return self._result(plan, made_parent)
        with tempfile.NamedTemporaryFile(suffix=local.tar_suffix) as packed:
            stamp = local.stamp
            if local.tree is not None:
                stamp = f"sha256:{pack_tree(local.tree, packed)}"
                packed.flush()
                sent = packed.name
            else:
                sent = str(local.path)
            try:
                ctx.conn.put(sent, upload)
            except OSError as exc:
                ctx.conn.run(["rm", "-f", upload])
                raise ActionFailed(f"{ctx.conn.host.name}: uploading to {upload}: {exc}") from exc
        script = _extract_script(upload, dest, TARBALL_SUFFIXES[local.tar_suffix], stamp)
        res = ctx.conn.run(ShellScript(script), timeout=APPLY_TIMEOUT)
        return self._result(plan, res)

    @staticmethod
    def _result(plan: Plan, res: CommandResult) -> ActionResult:
        if not res.ok:
            return step_failed(plan, res, dict(plan.output))
        lines = res.stdout.strip().splitlines()
        version = lines[-1] if lines else plan.output.get("version")
        return ActionResult(
            changed=True, changes=tuple(plan.changes), output={**plan.output, "version": version}
        )
