"""netmap, built once per (source, kernel release, drivers, configure flags), installed many.

What is built (`NetmapSpec`, its `key`), the three scripts that build it (`configure_script`,
`make_script`, `collect_script`: the same text runs on the controller and on a host), what a
build yields (`Artifact`, `NetmapBuild`, kept in the controller's cache as `manifest.json`),
and the parsers of their output. docs/provisioning.md tells the whole path.

Facts that shaped it (measured, docs/netmap.md):
- configure runs in the build directory and must get `--no-ext-drivers` (else it downloads
  Intel's driver, and offline drops it with exit status 0) and `--fail-on-driver-errors`
  (a dropped driver is then exit status 1);
- Kbuild refuses a module directory whose path holds `%`: build paths here are made of the
  key (hex) and fixed names only;
- outputs are `netmap.ko`, `<drv>/<drv>.ko` (`veth.c` → `veth.ko` at the top) and
  `build-apps/pkt-gen/pkt-gen`; each .ko must carry the target release in its vermagic.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from labctl.builds.kmod import vermagic_check_script
from labctl.digests import file_sha256
from labctl.failures import CONFIG_LOG_MARK, OWN_MARK

KEY_VERSION = "labctl-netmap-v1"  # bump to invalidate every cached build
CONFIG_LOG_TAIL = 40  # lines of config.log a failed configure appends to its output
ARTIFACT_MARK = "@@artifact"
PATCH_MARK = "@@patch"
_DRIVER = re.compile(r"^[A-Za-z0-9_-]+(\.c)?$")
_RELEASE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+~-]*$")
_MARK = OWN_MARK


@dataclass(frozen=True)
class NetmapSpec:
    """What one build makes: its identity is `key`."""

    source: str  # "git <url> <commit>" or "sha256:<tree or tarball hash>"
    release: str
    drivers: tuple[str, ...]
    configure_extra: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _RELEASE.match(self.release):
            raise ValueError(f"netmap: kernel_release {self.release!r} is not a release")
        if not self.drivers:
            raise ValueError("netmap: name at least one driver (netmap_drivers)")
        bad = [d for d in self.drivers if not _DRIVER.match(d)]
        if bad:
            raise ValueError(f"netmap: bad driver name(s) {bad!r}")
        bad = [a for a in self.configure_extra if not a or "\n" in a or "\0" in a]
        if bad:
            raise ValueError(f"netmap: configure_extra must be one-line words, not {bad!r}")

    @property
    def key(self) -> str:
        """24 hex digits: a build directory name Kbuild accepts, one per distinct build."""
        material = "\n".join(
            [KEY_VERSION, self.source, self.release, ",".join(self.drivers), *self.configure_extra]
        )
        return hashlib.sha256(material.encode("utf-8", "surrogateescape")).hexdigest()[:24]

    @property
    def series(self) -> str:
        """Debian's linux-source package series of the release: 6.1.0-57-amd64 → 6.1."""
        return ".".join(self.release.split(".")[:2])


def module_name(driver: str) -> str:
    """The module a netmap driver name builds: `veth.c` → veth, `ixgbe` → ixgbe."""
    return driver.removesuffix(".c")


def build_outputs(drivers: Sequence[str]) -> dict[str, str]:
    """Artifact name → its path relative to the build directory."""
    outputs = {"netmap.ko": "netmap.ko"}
    for d in drivers:
        name = module_name(d)
        outputs[f"{name}.ko"] = f"{name}.ko" if d.endswith(".c") else f"{d}/{d}.ko"
    outputs["pkt-gen"] = "build-apps/pkt-gen/pkt-gen"
    return outputs


# ---------------------------------------------------------------------------- the scripts


def configure_script(
    src_dir: str,
    build_dir: str,
    kernel_dir: str,
    kernel_sources: str,
    spec: NetmapSpec,
) -> str:
    """A fresh build directory, then configure in it. On failure the tail of config.log
    follows `CONFIG_LOG_MARK` on stderr: Kbuild's reason is only there."""
    q = shlex.quote
    not_netmap = f"{_MARK}no executable {src_dir}/LINUX/configure (is this a netmap source tree?)"
    argv = [
        posixpath.join(src_dir, "LINUX", "configure"),
        f"--kernel-dir={kernel_dir}",
        f"--kernel-sources={kernel_sources}",
        f"--drivers={','.join(spec.drivers)}",
        "--no-ext-drivers",
        "--fail-on-driver-errors",
        *spec.configure_extra,
    ]
    return "\n".join(
        [
            f"b={q(build_dir)}",
            f"[ -x {q(argv[0])} ] || {{ echo {q(not_netmap)} >&2; exit 1; }}",
            'rm -rf "$b" && mkdir -p "$b" && cd "$b" || exit 1',
            f"{shlex.join(argv)} </dev/null",
            "rc=$?",
            'if [ "$rc" -ne 0 ]; then',
            f"  {{ echo {q(CONFIG_LOG_MARK)}; tail -n {CONFIG_LOG_TAIL} config.log; }} >&2",
            '  exit "$rc"',
            "fi",
        ]
    )


def make_script(build_dir: str, jobs: int) -> str:
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ValueError(f"netmap: jobs must be a positive integer, not {jobs!r}")
    return shlex.join(["make", "-C", build_dir, f"-j{jobs}"]) + " </dev/null"


def collect_script(build_dir: str, out_dir: str, spec: NetmapSpec) -> str:
    """Copy the artifacts out of the build directory (modules stripped of debug info, as
    `INSTALL_MOD_STRIP=1` does), check each module's vermagic against the target release,
    and print one line per artifact and per driver patch; the out dir appears whole."""
    q = shlex.quote
    lines = [
        "set -u",
        f"b={q(build_dir)}; o={q(out_dir)}; n={q(out_dir + '.new')}",
        'rm -rf "$n" && mkdir -p "$n" || exit 1',
        "trap 'rm -rf \"$n\"' EXIT",
    ]
    for name, rel in build_outputs(spec.drivers).items():
        lines.append(
            f'[ -f "$b"/{q(rel)} ] || {{ echo {q(f"{_MARK}make built no {rel}")} >&2; exit 1; }}; '
            f'cp "$b"/{q(rel)} "$n"/{q(name)} || exit 1'
        )
    lines += [
        'for k in "$n"/*.ko; do [ -e "$k" ] || continue; strip --strip-debug "$k" || exit 1; done',
        vermagic_check_script('"$n"', spec.release),
        'for f in "$n"/*; do',
        '  name=${f##*/}; sum=$(sha256sum "$f" | cut -d" " -f1)',
        '  case "$name" in',
        '  *.ko) printf "%s\\t%s\\t%s\\t%s\\t%s\\t%s\\n" '
        f'"{ARTIFACT_MARK}" "$name" "$sum" "$(modinfo -F vermagic "$f")" '
        '"$(modinfo -F depends "$f")" '
        '"$(readelf -n "$f" | sed -n "s/.*Build ID: *//p" | head -n 1)";;',
        f'  *) printf "%s\\t%s\\t%s\\t\\t\\t\\n" "{ARTIFACT_MARK}" "$name" "$sum";;',
        "  esac",
        "done",
        '[ -f "$b/drivers.mak" ] && sed -n '
        f"'s|^\\([^@]*\\)@patch := \\(.*\\)$|{PATCH_MARK}\\t\\1\\t\\2|p' \"$b/drivers.mak\"",
        'rm -rf "$o" && mv "$n" "$o" || exit 1',
        "trap - EXIT",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- what a build is


@dataclass(frozen=True)
class Artifact:
    name: str  # netmap.ko, e1000e.ko, pkt-gen
    sha256: str
    vermagic: str = ""
    depends: tuple[str, ...] = ()
    build_id: str = ""  # the GNU build-id: how a loaded module is told from another

    @property
    def module_id(self) -> str:
        """As labctl.facts.modules.loaded_module_id spells a loaded module's identity."""
        return f"build-id:{self.build_id}" if self.build_id else ""


def parse_collected(stdout: str) -> tuple[tuple[Artifact, ...], dict[str, str]]:
    """`collect_script`'s lines → the artifacts and each driver's patch (its file name)."""
    artifacts: list[Artifact] = []
    patches: dict[str, str] = {}
    for line in stdout.splitlines():
        parts = line.split("\t")
        if parts[0] == ARTIFACT_MARK and len(parts) >= 6:
            depends = tuple(d for d in parts[4].split(",") if d)
            artifacts.append(Artifact(parts[1], parts[2], parts[3].strip(), depends, parts[5]))
        elif parts[0] == PATCH_MARK and len(parts) >= 3:
            patches[parts[1]] = posixpath.basename(parts[2].strip())
    return tuple(sorted(artifacts, key=lambda a: a.name)), patches


@dataclass(frozen=True)
class NetmapBuild:
    """A finished build in the controller's cache."""

    key: str
    spec: NetmapSpec
    artifacts: tuple[Artifact, ...]
    patches: Mapping[str, str] = field(default_factory=dict)
    built_on: str = ""  # "controller" or the host's name
    seconds: Mapping[str, float] = field(default_factory=dict)  # per step
    built_at: float = 0.0

    def artifact(self, name: str) -> Artifact:
        found = next((a for a in self.artifacts if a.name == name), None)
        if found is None:
            raise KeyError(name)
        return found

    def sha256sums(self) -> str:
        """The `sha256sum -c` file installed with the artifacts."""
        return "".join(f"{a.sha256}  {a.name}\n" for a in self.artifacts)

    def build_info(self) -> str:
        """key=value lines installed beside the artifacts (the `netmap` fact reads them)."""
        s = self.spec
        pairs = [
            ("key", self.key),
            ("source", s.source),
            ("release", s.release),
            ("drivers", ",".join(s.drivers)),
            ("configure_extra", shlex.join(s.configure_extra)),
            ("built_on", self.built_on),
            ("patches", ",".join(f"{d}:{p}" for d, p in sorted(self.patches.items()))),
        ]
        return "".join(f"{k}={v}\n" for k, v in pairs)

    def to_json(self) -> str:
        doc = asdict(self)
        return json.dumps(doc, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> NetmapBuild:
        doc: dict[str, Any] = json.loads(text)
        spec = doc["spec"]
        return cls(
            key=doc["key"],
            spec=NetmapSpec(
                spec["source"],
                spec["release"],
                tuple(spec["drivers"]),
                tuple(spec["configure_extra"]),
            ),
            artifacts=tuple(
                Artifact(a["name"], a["sha256"], a["vermagic"], tuple(a["depends"]), a["build_id"])
                for a in doc["artifacts"]
            ),
            patches=dict(doc.get("patches", {})),
            built_on=doc.get("built_on", ""),
            seconds=dict(doc.get("seconds", {})),
            built_at=float(doc.get("built_at", 0.0)),
        )


MANIFEST = "manifest.json"
SUMS = "SHA256SUMS"
INFO = "build.txt"


def read_manifest(cache_dir: Path, key: str) -> NetmapBuild | None:
    """The cached build of `key` as its manifest says, its files unread (None: none)."""
    try:
        return NetmapBuild.from_json((cache_dir / key / MANIFEST).read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None


def load_cached(cache_dir: Path, key: str) -> NetmapBuild | None:
    """The cached build of `key`, if complete: its manifest and every artifact's hash."""
    entry = cache_dir / key
    build = read_manifest(cache_dir, key)
    if build is None:
        return None
    for a in build.artifacts:
        path = entry / a.name
        if not path.is_file() or file_sha256(path) != a.sha256:
            return None
    return build
