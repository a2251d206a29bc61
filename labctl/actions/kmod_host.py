"""The kmod action's arguments, what it runs on a host (shell text built from quoted
pieces) and how it reads the answers: the read-only probe (kernel, headers, the source's hash
and the cache, computed on the host), the build in a scratch copy, storing a checked .ko in
its cache entry, and checking a copy built on the controller. The action
(labctl/actions/kmod.py) decides which of them to run.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from labctl.builds.kmod import kernel_dir_script
from labctl.facts.host import parse_key_values
from labctl.facts.modules import record_modules_script, sysfs_name
from labctl.failures import OWN_MARK
from labctl.paths import HOST_DIR

STATES = ("built", "loaded", "unloaded")
BUILD_ON = ("host", "controller", "auto")
BUILD_TIMEOUT = 1800.0  # netmap-sized trees take ~1 min on 2 cores; leave room for slow hosts
PROBE_TIMEOUT = 120.0
KEY_VERSION = "labctl-kmod-v1"  # bump to invalidate every cache entry
STAMP_NAME = ".labctl-kmod"
SOURCE_PATTERNS = ("*.[chS]", "Kbuild", "Makefile", "*.mk")  # what a Kbuild module is made of
_MODULE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")
_RELEASE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+~-]*$")
_MARK = OWN_MARK  # prefix of this action's own error lines in a step's output
VERMAGIC_MARK = "@@vermagic "


@dataclass(frozen=True)
class KmodArgs:
    name: str
    kernel_release: str
    src: str | None = None  # a directory on the host holding the Kbuild module
    kernel_dir: str | None = None  # default /usr/src/linux-headers-<rel>, then /lib/modules/…
    make_args: tuple[str, ...] = ()
    state: str = "built"
    depends: tuple[str, ...] = ()  # modprobe'd before insmod
    cache_dir: str = f"{HOST_DIR}/kmod-cache"
    build_on: str = "host"  # host, controller or auto (see the module's docstring)
    controller_src: str | None = None  # the source on the controller (relative: playbook dir)

    def __post_init__(self) -> None:
        if not _MODULE_NAME.match(self.name):
            raise ValueError(
                f"kmod: name {self.name!r} must be letters, digits, _ and - (not first)"
            )
        where = f"kmod {self.name}"
        if not _RELEASE.match(self.kernel_release):
            raise ValueError(f"{where}: kernel_release {self.kernel_release!r} is not a release")
        if self.state not in STATES:
            raise ValueError(
                f"{where}: state must be one of {', '.join(STATES)}, not {self.state!r}"
            )
        if self.state != "unloaded" and self.src is None:
            raise ValueError(f"{where}: state {self.state} needs `src` (the module's directory)")
        for label, path in (
            ("src", self.src),
            ("kernel_dir", self.kernel_dir),
            ("cache_dir", self.cache_dir),
        ):
            if path is not None and (not path.startswith("/") or "\n" in path or path == "/"):
                raise ValueError(f"{where}: {label} must be an absolute path, not {path!r}")
        bad = [a for a in self.make_args if "\n" in a or "\0" in a or not a]
        if bad:
            raise ValueError(f"{where}: make_args must be non-empty one-line words, not {bad!r}")
        bad = [d for d in self.depends if not _MODULE_NAME.match(d)]
        if bad:
            raise ValueError(f"{where}: bad module name(s) in depends: {bad!r}")
        if self.build_on not in BUILD_ON:
            raise ValueError(f"{where}: build_on must be one of {', '.join(BUILD_ON)}")
        if self.build_on != "host" and not self.controller_src:
            raise ValueError(f"{where}: build_on {self.build_on} needs `controller_src`")


# ---------------------------------------------------------------------------- pure pieces


def cache_key(src_hash: str, release: str, kernel_dir: str, make_args: Sequence[str]) -> str:
    """The cache entry's name; `probe_script` computes the same bytes on the host."""
    material = "".join(f"{part}\n" for part in (KEY_VERSION, src_hash, release, kernel_dir))
    material += "".join(f"{a}\n" for a in make_args)
    return hashlib.sha256(material.encode("utf-8", "surrogateescape")).hexdigest()


# ---------------------------------------------------------------------------- the probe


@dataclass(frozen=True)
class KmodProbe:
    """What the plan read on the host in one round trip."""

    running: str
    modules_supported: bool
    lockdown: str | None
    loaded: bool
    kernel_dir: str | None = None  # the first candidate with a Makefile
    src: str | None = None  # "ok", "missing" or "nokbuild"
    src_hash: str | None = None
    key: str | None = None
    cache_hit: bool = False
    vermagic: str | None = None  # from the cache entry's stamp


def _src_hash_script(src: str) -> str:
    """sha256 over `sha256sum` lines of the source files, by relative path in C order."""
    names = " -o ".join(f"-name {shlex.quote(p)}" for p in SOURCE_PATTERNS)
    return (
        f"cd {shlex.quote(src)} && find . -type f \\( {names} \\) -print0 | LC_ALL=C sort -z "
        "| xargs -0 -r sha256sum | sha256sum | cut -d' ' -f1"
    )


def probe_script(args: KmodArgs) -> str:
    """Read-only: kernel facts, then (to build) headers, the source's hash and the cache."""
    q = shlex.quote
    lines = [
        'printf "running=%s\\n" "$(uname -r)"',
        "if [ -e /proc/modules ]; then echo modules=yes; else echo modules=no; fi",
        'printf "lockdown=%s\\n" "$(cat /sys/kernel/security/lockdown 2>/dev/null)"',
        f"if [ -d {q('/sys/module/' + sysfs_name(args.name))} ]; then echo loaded=yes; "
        "else echo loaded=no; fi",
    ]
    if args.src is not None and args.state != "unloaded":
        src = args.src
        key_parts = " ".join(
            [q(KEY_VERSION), '"$h"', q(args.kernel_release), '"$k"', *map(q, args.make_args)]
        )
        lines += [
            kernel_dir_script(args.kernel_release, args.kernel_dir),
            f"if [ ! -d {q(src)} ]; then echo src=missing; "
            f"elif [ ! -f {q(src + '/Kbuild')} ] && [ ! -f {q(src + '/Makefile')} ]; then "
            "echo src=nokbuild; else echo src=ok",
            f"  h=$({_src_hash_script(src)})",
            '  printf "src_hash=%s\\n" "$h"',
            '  if [ -n "$k" ]; then',
            f"    key=$(printf '%s\\n' {key_parts} | sha256sum | cut -d' ' -f1)",
            '    printf "key=%s\\n" "$key"',
            f'    e={q(args.cache_dir)}/"$key"',
            f'    if [ -f "$e"/{q(args.name + ".ko")} ] && [ -f "$e"/{STAMP_NAME} ]; then',
            f'      echo cache=hit; sed -n "s/^vermagic=/vermagic=/p" "$e"/{STAMP_NAME}',
            "    else echo cache=miss; fi",
            "  fi",
            "fi",
        ]
    return "\n".join(lines) + "\n"


def parse_probe(text: str) -> KmodProbe:
    values = parse_key_values(text)
    return KmodProbe(
        running=values.get("running", ""),
        modules_supported=values.get("modules") == "yes",
        lockdown=values.get("lockdown") or None,
        loaded=values.get("loaded") == "yes",
        kernel_dir=values.get("kernel_dir") or None,
        src=values.get("src") or None,
        src_hash=values.get("src_hash") or None,
        key=values.get("key") or None,
        cache_hit=values.get("cache") == "hit",
        vermagic=values.get("vermagic") or None,
    )


# ---------------------------------------------------------------------------- step scripts


@dataclass(frozen=True)
class CacheEntry:
    cache_dir: str
    key: str
    name: str

    @property
    def dir(self) -> str:
        return posixpath.join(self.cache_dir, self.key)

    @property
    def ko(self) -> str:
        return posixpath.join(self.dir, f"{self.name}.ko")

    @property
    def build_dir(self) -> str:
        return f"{self.dir}.build"


def build_script(args: KmodArgs, entry: CacheEntry, kernel_dir: str) -> str:
    """Copy the source to a scratch dir and make there; prints the new .ko's vermagic."""
    assert args.src is not None
    q = shlex.quote
    make = ["make", "-C", kernel_dir, f"M={entry.build_dir}", *args.make_args, "modules"]
    ko = f"{args.name}.ko"
    return "\n".join(
        [
            "set -e",
            f"b={q(entry.build_dir)}",
            "for t in make modinfo; do command -v $t >/dev/null 2>&1 || { echo "
            f'"{_MARK}$t not found (install build-essential and kmod)" >&2; exit 127; }}; done',
            f"mkdir -p {q(args.cache_dir)}",
            'rm -rf "$b"; mkdir "$b"',
            "trap 'rm -rf \"$b\"' EXIT",  # a failed build leaves nothing behind
            f'cp -a {q(args.src + "/.")} "$b"/',
            shlex.join(make),
            f'[ -f "$b"/{q(ko)} ] || {{ echo "{_MARK}make built no {ko} '
            f'(does Kbuild say obj-m := {args.name}.o?)" >&2; exit 1; }}',
            f'printf "{VERMAGIC_MARK}%s\\n" "$(modinfo -F vermagic "$b"/{q(ko)})"',
            "trap - EXIT",
        ]
    )


def store_script(args: KmodArgs, entry: CacheEntry, kernel_dir: str) -> str:
    """Move the checked .ko into its cache entry with a stamp; the entry appears whole."""
    q = shlex.quote
    ko = f"{args.name}.ko"
    stamp = [
        f"key={entry.key}",
        f"release={args.kernel_release}",
        f"kernel_dir={kernel_dir}",
        f"make_args={shlex.join(args.make_args)}",
    ]
    return "\n".join(
        [
            "set -e",
            f"b={q(entry.build_dir)}; d={q(entry.dir)}; n={q(entry.dir + '.new')}",
            'trap \'rm -rf "$b" "$n"\' EXIT',
            'rm -rf "$n"; mkdir "$n"',
            f'mv "$b"/{q(ko)} "$n"/{q(ko)}',
            f"{{ printf '%s\\n' {' '.join(q(s) for s in stamp)}; printf \"vermagic=%s\\n\" "
            f'"$(modinfo -F vermagic "$n"/{q(ko)})"; }} > "$n"/{STAMP_NAME}',
            'rm -rf "$d"; mv "$n" "$d"',
        ]
    )


def record_loaded_script(cache_dir: str) -> str:
    """Which modules were loaded before labctl loaded any, written once, to put them back."""
    q = shlex.quote
    path = posixpath.join(cache_dir, "loaded-before.txt")
    return (
        f"mkdir -p {q(cache_dir)} && if [ ! -e {q(path)} ]; then {record_modules_script(path)}; fi"
    )


def verify_loaded_script(name: str) -> str:
    path = f"/sys/module/{sysfs_name(name)}"
    return (
        f"[ -d {shlex.quote(path)} ] || "
        f"{{ echo {shlex.quote(f'insmod returned but {path} does not exist')} >&2; exit 1; }}"
    )


def prepare_script(entry: CacheEntry) -> str:
    """An empty scratch dir beside the cache entry, for a .ko built elsewhere."""
    b = shlex.quote(entry.build_dir)
    return f"mkdir -p {shlex.quote(entry.cache_dir)} && rm -rf {b} && mkdir {b}"


def check_copy_script(ko: str, sha256: str) -> str:
    """The copied .ko is the controller's (sha256), and says its vermagic as a build does."""
    q = shlex.quote
    mismatch = f'echo {q(f"{_MARK}{ko}: sha256")} "$h", {q(f"not the controller copy {sha256}")}'
    return (
        f'h=$(sha256sum {q(ko)} | cut -d" " -f1); [ "$h" = {q(sha256)} ] || '
        f"{{ {mismatch} >&2; exit 1; }}; "
        f'printf "{VERMAGIC_MARK}%s\\n" "$(modinfo -F vermagic {q(ko)})"'
    )


def parse_vermagic(stdout: str) -> str:
    lines = [line for line in stdout.splitlines() if line.startswith(VERMAGIC_MARK)]
    return lines[-1][len(VERMAGIC_MARK) :].strip() if lines else ""
