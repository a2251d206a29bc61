"""Build once, install many: an out-of-tree module built on the controller, for hosts that run
a kernel release whose headers the controller has (docs/labs.md: a module builds ~15x
faster here than inside a TCG VM, and eight identical hosts need one build, not eight).

The build is keyed exactly as the kmod action keys a host's cache entry (`kmod.cache_key`:
the source's hash, the release, the headers dir, the make arguments), so the .ko that lands
in a host's cache is the one the host would have built. The source hash is computed here the
way `kmod.probe_script` computes it on the host (`source_hash`), and a build is used only when
the two agree. Builds are cached under `<cache>/<key>/` and serialized by a lock per key: hosts
provisioned in parallel wait for the first build and then share it.
"""

from __future__ import annotations

import fnmatch
import hashlib
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from labctl.digests import file_sha256
from labctl.errors import LabctlError
from labctl.failures import OWN_MARK, explain
from labctl.filelock import exclusive

DEFAULT_CACHE = Path("/var/cache/labctl/kmod")
BUILD_TIMEOUT = 1800.0


class ControllerBuildError(LabctlError):
    """The controller could not build the module (its output's telling line in the message)."""


@dataclass(frozen=True)
class ControllerModule:
    ko: Path
    sha256: str
    vermagic: str


def source_hash(root: Path, patterns: Sequence[str]) -> str:
    """sha256 over `sha256sum` lines of the source files, by relative path in C order: what
    `find . -type f ... | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum` gives on a host."""
    names = sorted(
        ("./" + p.relative_to(root).as_posix()).encode()
        for p in root.rglob("*")
        if p.is_file() and any(fnmatch.fnmatchcase(p.name, pat) for pat in patterns)
    )
    listing = b"".join(
        hashlib.sha256((root / n.decode()[2:]).read_bytes()).hexdigest().encode()
        + b"  "
        + n
        + b"\n"
        for n in names
    )
    return hashlib.sha256(listing).hexdigest()


def kernel_dir_candidates(release: str, kernel_dir: str | None) -> list[str]:
    """Where a host's (or the controller's) headers for `release` may be, in order."""
    if kernel_dir is not None:
        return [kernel_dir]
    return [f"/usr/src/linux-headers-{release}", f"/lib/modules/{release}/build"]


def kernel_dir_script(release: str, kernel_dir: str | None = None) -> str:
    """sh: `k` set to the host's headers for `release` (the first candidate with a Makefile,
    empty if none), printed as `kernel_dir=...`."""
    cands = " ".join(shlex.quote(d) for d in kernel_dir_candidates(release, kernel_dir))
    return (
        f'k=; for d in {cands}; do if [ -f "$d/Makefile" ]; then k=$d; break; fi; done\n'
        'printf "kernel_dir=%s\\n" "$k"'
    )


def vermagic_check_script(directory: str, release: str) -> str:
    """sh: exit 1, naming the module, if a .ko in `directory` (shell text, such as "$n") was
    built for another kernel release than `release`."""
    want = shlex.quote(release)
    return (
        f'for k in {directory}/*.ko; do [ -e "$k" ] || continue; '
        'v=$(modinfo -F vermagic "$k") || exit 1; '
        f'[ "${{v%% *}}" = {want} ] || '
        f'{{ echo "{OWN_MARK}${{k##*/}} has vermagic $v, not "{want} >&2; exit 1; }}; done'
    )


def headers_dir(release: str) -> Path | None:
    """The controller's headers for `release`, if it has them."""
    for candidate in map(Path, kernel_dir_candidates(release, None)):
        if (candidate / "Makefile").is_file():
            return candidate
    return None


def _vermagic(ko: Path) -> str:
    proc = subprocess.run(
        ["modinfo", "-F", "vermagic", str(ko)], capture_output=True, text=True, timeout=30
    )
    return proc.stdout.strip() if proc.returncode == 0 else ""


def build_on_controller(
    src: Path,
    name: str,
    release: str,
    kernel_dir: Path,
    make_args: Sequence[str],
    key: str,
    cache: Path = DEFAULT_CACHE,
) -> tuple[ControllerModule, bool]:
    """The module built for `release` against `kernel_dir`, from the cache or made now;
    (module, built now)."""
    entry = cache / key
    ko = entry / f"{name}.ko"
    with exclusive(cache / f"{key}.lock"):
        if ko.is_file():
            return ControllerModule(ko, file_sha256(ko), _vermagic(ko)), False
        scratch = Path(tempfile.mkdtemp(prefix=f"{key[:12]}.", dir=cache))
        try:
            work = scratch / "src"
            shutil.copytree(src, work)
            argv = ["make", "-C", str(kernel_dir), f"M={work}", *make_args, "modules"]
            try:
                proc = subprocess.run(
                    argv,
                    capture_output=True,
                    text=True,
                    timeout=BUILD_TIMEOUT,
                    stdin=subprocess.DEVNULL,
                )
            except subprocess.TimeoutExpired as exc:
                raise ControllerBuildError(
                    f"controller: building {name} ran past {BUILD_TIMEOUT:g} s"
                ) from exc
            built = work / f"{name}.ko"
            if proc.returncode != 0 or not built.is_file():
                why = "; ".join(explain(proc.stdout, proc.stderr, proc.returncode))
                raise ControllerBuildError(f"controller: building {name} for {release}: {why}")
            vermagic = _vermagic(built)
            if not vermagic.split() or vermagic.split()[0] != release:
                raise ControllerBuildError(
                    f"controller: {name}.ko has vermagic {vermagic!r}, not {release}"
                )
            staged = scratch / "entry"
            staged.mkdir()
            shutil.copy2(built, staged / ko.name)
            shutil.rmtree(entry, ignore_errors=True)
            staged.rename(entry)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return ControllerModule(ko, file_sha256(ko), vermagic), True
