"""Where a netmap build runs and how its results reach the controller's cache.

A builder is a shell: the controller's own (`LocalShell`, a subprocess in a session of its
own, killed as a group on timeout) or a host's (`HostShell`, over its SSH connection). Both run
the same scripts (labctl/builds/netmap.py) and give `CommandResult`s, so a build reads the
same on either. `run_build` runs configure, make and collect, timing each; a host's results
are then fetched into the controller's cache, so the next host of that release installs them
without building (docs/provisioning.md, "Build once, install many").

The controller also prepares what a build needs: the source tree (a directory as it is, a
tarball unpacked, a git URL cloned at the pinned commit, each into the cache) and the full
kernel sources (`linux-source-<series>`, unpacked into the cache, used only when the package
is the same Debian version as the release's headers: a patched driver must be built from the
sources of the kernel it will drive).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from labctl.builds.netmap import (
    INFO,
    MANIFEST,
    SUMS,
    NetmapBuild,
    NetmapSpec,
    collect_script,
    configure_script,
    make_script,
    parse_collected,
)
from labctl.digests import file_sha256
from labctl.errors import LabctlError
from labctl.filelock import exclusive
from labctl.remote import CommandResult, HostConnection, ShellScript

DEFAULT_CACHE = Path("/var/cache/labctl/netmap")
STEP_TIMEOUT = {"configure": 900.0, "make": 3600.0, "collect": 300.0}  # TCG hosts are slow
GIT_TIMEOUT = 900.0

Progress = Callable[[str], None]


class BuildError(LabctlError):
    """A build step failed; `result` is its CommandResult (the whole output)."""

    def __init__(self, message: str, result: CommandResult | None = None, step: str = "") -> None:
        super().__init__(message, result)
        self.step = step


class Shell(Protocol):
    name: str  # "controller" or the host's name

    def run(self, script: str, timeout: float) -> CommandResult: ...


class LocalShell:
    """The controller's shell: `sh -c` in a session of its own, killed as a group on timeout."""

    name = "controller"

    def run(self, script: str, timeout: float) -> CommandResult:
        started = time.monotonic()
        proc = subprocess.Popen(
            ["sh", "-c", script],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # our own child's group, by its PID
            out, err = proc.communicate()
            err += f"\nlabctl: timed out after {timeout:g} s"
            return CommandResult("controller", script, 124, out, err, time.monotonic() - started)
        return CommandResult(
            "controller", script, proc.returncode, out, err, time.monotonic() - started
        )


class HostShell:
    """A host's shell, over its connection."""

    def __init__(self, conn: HostConnection) -> None:
        self.conn = conn
        self.name = conn.host.name

    def run(self, script: str, timeout: float) -> CommandResult:
        return self.conn.run(ShellScript(script), timeout=timeout)


@dataclass(frozen=True)
class BuildPlace:
    """Where one build runs: its shell and the paths on that side."""

    shell: Shell
    src_dir: str
    kernel_dir: str
    kernel_sources: str
    work_dir: str  # the build directory; `<work_dir>.out` receives the artifacts
    jobs: int


def run_build(spec: NetmapSpec, place: BuildPlace, progress: Progress | None = None) -> NetmapBuild:
    """configure, make, collect on `place`; raises BuildError naming the failed step."""
    say = progress or (lambda _text: None)
    out_dir = f"{place.work_dir}.out"
    steps = [
        (
            "configure",
            configure_script(
                place.src_dir, place.work_dir, place.kernel_dir, place.kernel_sources, spec
            ),
        ),
        ("make", make_script(place.work_dir, place.jobs)),
        ("collect", collect_script(place.work_dir, out_dir, spec)),
    ]
    seconds: dict[str, float] = {}
    result: CommandResult | None = None
    for i, (step, script) in enumerate(steps, 1):
        say(f"netmap {step} on {place.shell.name} ({i} of {len(steps)})")
        result = place.shell.run(script, STEP_TIMEOUT[step])
        seconds[step] = round(result.duration, 1)
        if not result.ok:
            raise BuildError(
                f"netmap {step} failed on {place.shell.name}", result=result, step=step
            )
        say(f"netmap {step} on {place.shell.name}: done in {result.duration:.0f} s")
    assert result is not None
    artifacts, patches = parse_collected(result.stdout)
    return NetmapBuild(
        key=spec.key,
        spec=spec,
        artifacts=artifacts,
        patches=patches,
        built_on=place.shell.name,
        seconds=seconds,
        built_at=time.time(),
    )


# ---------------------------------------------------------------------------- the cache


def store_build(cache: Path, build: NetmapBuild, files_dir: Path) -> None:
    """Move a build's artifacts (in `files_dir`, checked against their hashes) into the cache
    entry `<cache>/<key>`, with its manifest; the entry appears whole."""
    for a in build.artifacts:
        path = files_dir / a.name
        if not path.is_file():
            raise BuildError(f"netmap: {a.name} missing from the build's outputs")
        if file_sha256(path) != a.sha256:
            raise BuildError(f"netmap: {a.name} changed on its way to the controller (sha256)")
    (files_dir / MANIFEST).write_text(build.to_json())
    (files_dir / SUMS).write_text(build.sha256sums())
    (files_dir / INFO).write_text(build.build_info())
    entry = cache / build.key
    shutil.rmtree(entry, ignore_errors=True)
    files_dir.rename(entry)


def fetch_build(conn: HostConnection, remote_out: str, build: NetmapBuild, cache: Path) -> None:
    """A host's build results into the controller's cache (SFTP, then checked by sha256)."""
    staging = Path(tempfile.mkdtemp(prefix=f"{build.key}.", dir=cache))
    try:
        for a in build.artifacts:
            conn.get(f"{remote_out}/{a.name}", str(staging / a.name))
        store_build(cache, build, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def install_tarball(cache: Path, build: NetmapBuild, out: Path) -> None:
    """What is uploaded to a host: the artifacts, SHA256SUMS and build.txt, as one .tar.gz."""
    entry = cache / build.key
    with tarfile.open(out, "w:gz", compresslevel=6) as tar:
        for name in [*(a.name for a in build.artifacts), SUMS, INFO]:
            info = tar.gettarinfo(str(entry / name), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with (entry / name).open("rb") as fh:
                tar.addfile(info, fh)


# ---------------------------------------------------------------------------- the controller


def debian_version(package: str) -> str | None:
    """The installed version of a Debian package on the controller, or None."""
    try:
        proc = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status} ${Version}", package],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    words = proc.stdout.split()
    if proc.returncode != 0 or words[:3] != ["install", "ok", "installed"] or len(words) < 4:
        return None
    return words[3]


@dataclass(frozen=True)
class KernelSources:
    """The controller's tarball of full kernel sources, and its Debian package version."""

    tarball: Path
    version: str


def controller_kernel_sources(spec: NetmapSpec) -> tuple[KernelSources | None, str]:
    """(the full sources matching the release's headers, or None; why not)."""
    headers = f"linux-headers-{spec.release}"
    source = f"linux-source-{spec.series}"
    tarball = Path(f"/usr/src/{source}.tar.xz")
    hv, sv = debian_version(headers), debian_version(source)
    if hv is None:
        return None, f"no {headers} package on the controller"
    if sv is None or not tarball.is_file():
        return None, f"no {source} on the controller (apt install {source})"
    if hv != sv:
        return None, f"the controller's {source} is {sv}, its {headers} {hv}"
    return KernelSources(tarball, sv), ""


def unpack_kernel_sources(tarball: Path, version: str, cache: Path) -> Path:
    """The full kernel sources unpacked into the cache, once per package version (~20 s)."""
    root = cache / "kernel-sources" / version
    with exclusive(cache / "kernel-sources" / f"{version}.lock"):
        name = tarball.name.removesuffix(".tar.xz")
        tree = root / name
        if (tree / "Makefile").is_file():
            return tree
        scratch = Path(tempfile.mkdtemp(prefix=".unpack.", dir=root.parent))
        try:
            subprocess.run(
                ["tar", "-C", str(scratch), "-xaf", str(tarball)],
                check=True,
                capture_output=True,
                timeout=1800,
            )
            shutil.rmtree(root, ignore_errors=True)
            scratch.rename(root)
        except subprocess.CalledProcessError as exc:
            raise BuildError(f"unpacking {tarball}: {exc.stderr.decode().strip()}") from exc
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return tree


def controller_tree(src: str, identity: str, cache: Path) -> Path:
    """The netmap source tree on the controller for `src`: a directory as it is; a tarball
    unpacked, or a git URL cloned at the commit `identity` names, into the cache."""
    path = Path(src)
    if path.is_dir():
        return path
    digest = hashlib.sha256(identity.encode()).hexdigest()[:24]
    tree = cache / "src" / digest
    with exclusive(cache / "src" / f"{digest}.lock"):
        if (tree / ".labctl-complete").is_file():
            return _single_top(tree)
        scratch = Path(tempfile.mkdtemp(prefix=".fetch.", dir=tree.parent))
        try:
            if identity.startswith("git "):
                _, url, commit = identity.split(" ", 2)
                for argv in (
                    ["git", "clone", "--quiet", "--no-checkout", "--", url, str(scratch / "t")],
                    ["git", "-C", str(scratch / "t"), "checkout", "--quiet", "--detach", commit],
                ):
                    _run_git(argv)
                (scratch / "t" / ".labctl-complete").touch()
                shutil.rmtree(tree, ignore_errors=True)
                (scratch / "t").rename(tree)
            else:
                (scratch / "t").mkdir()
                subprocess.run(
                    ["tar", "-C", str(scratch / "t"), "-xaf", str(path)],
                    check=True,
                    capture_output=True,
                    timeout=600,
                )
                (scratch / "t" / ".labctl-complete").touch()
                shutil.rmtree(tree, ignore_errors=True)
                (scratch / "t").rename(tree)
        except subprocess.CalledProcessError as exc:
            raise BuildError(f"unpacking {src}: {exc.stderr.decode().strip()}") from exc
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return _single_top(tree)


def _single_top(tree: Path) -> Path:
    """A tarball's one top directory (netmap-master/), else the tree itself."""
    entries = [p for p in tree.iterdir() if p.name != ".labctl-complete"]
    if len(entries) == 1 and entries[0].is_dir() and not (tree / "LINUX").exists():
        return entries[0]
    return tree


def _run_git(argv: list[str]) -> None:
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=GIT_TIMEOUT, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"`{' '.join(argv[:3])}` ran past {GIT_TIMEOUT:g} s") from exc
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise BuildError(f"{' '.join(argv[:2])}: {why}")
