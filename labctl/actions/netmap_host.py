"""The netmap action's arguments, what it runs on a host (shell text built from quoted pieces)
and how it reads the answers: one read-only probe (what is installed, loaded, held and by whom), the
install (checked there before it is swapped in), netmap.ko's load, and putting the modules
loaded before back. The action (labctl/actions/netmap.py) decides which of them to run.
"""

from __future__ import annotations

import posixpath
import shlex
from dataclasses import dataclass

from labctl.actions.process import parse_pidfile
from labctl.actions.source import is_git_url
from labctl.builds.builder import DEFAULT_CACHE
from labctl.builds.kmod import kernel_dir_script, vermagic_check_script
from labctl.builds.netmap import NetmapBuild, NetmapSpec, module_name
from labctl.facts.host import parse_key_values
from labctl.facts.modules import (
    file_module_id,
    loaded_module_id,
    record_modules_script,
    sysfs_name,
)
from labctl.failures import OWN_MARK
from labctl.paths import HOST_BIN_DIR, HOST_DIR, HOST_EXPERIMENT_RUN_DIR, HOST_RUN_DIR
from labctl.remote import wait_until_script

DEVICE_WAIT = 10  # seconds for udev to make /dev/netmap after insmod
_MARK = OWN_MARK
STATES = ("installed", "loaded", "unloaded")
BUILD_ON = ("auto", "controller", "host")
RUN_DIRS = (HOST_EXPERIMENT_RUN_DIR, HOST_RUN_DIR)  # where pidfiles of ours are


@dataclass(frozen=True)
class NetmapArgs:
    state: str = "installed"
    src: str | None = None  # git URL (with `ref`), a controller directory or tarball
    ref: str | None = None
    kernel_release: str | None = None  # needed to install or load
    drivers: tuple[str, ...] = ("ixgbe",)
    configure_extra: tuple[str, ...] = ()
    build_on: str = "auto"  # controller, host, or auto: the controller when it can
    jobs: int = 0  # make -j; 0: the builder's CPUs
    root: str = f"{HOST_DIR}/netmap"
    bin_dir: str = HOST_BIN_DIR
    cache_dir: str = str(DEFAULT_CACHE)  # on the controller
    force_mgmt_driver_swap: bool = False
    revert_after: int = 60
    run_dirs: tuple[str, ...] = RUN_DIRS

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"netmap: state must be one of {', '.join(STATES)}")
        if self.state != "unloaded" and not self.src:
            raise ValueError(f"netmap: state {self.state} needs `src` (netmap_src)")
        if self.state != "unloaded" and not self.kernel_release:
            raise ValueError(f"netmap: state {self.state} needs `kernel_release`")
        if self.build_on not in BUILD_ON:
            raise ValueError(f"netmap: build_on must be one of {', '.join(BUILD_ON)}")
        if self.jobs < 0:
            raise ValueError("netmap: jobs must be 0 (the builder's CPUs) or more")
        for label, path in (
            ("root", self.root),
            ("bin_dir", self.bin_dir),
            ("cache_dir", self.cache_dir),
            *(("run_dirs", d) for d in self.run_dirs),
        ):
            if not path.startswith("/") or path.rstrip("/") == "" or "\n" in path:
                raise ValueError(f"netmap: {label} must be an absolute path, not {path!r}")
        if self.src and is_git_url(self.src) and not self.ref:
            raise ValueError(f"netmap: {self.src} is a git URL: pin it with `ref` (netmap_ref)")

    def spec(self, source: str) -> NetmapSpec:
        assert self.kernel_release is not None
        return NetmapSpec(source, self.kernel_release, self.drivers, self.configure_extra)

    @property
    def modules(self) -> list[str]:
        return [module_name(d) for d in self.drivers]


def installed_dir(args: NetmapArgs, key: str) -> str:
    return posixpath.join(args.root, "installed", key)


def record_file(args: NetmapArgs) -> str:
    return posixpath.join(args.root, "modules-before.txt")


def probe_script(args: NetmapArgs, key: str | None) -> str:
    """Read-only, one round trip: the kernel, what is installed and loaded, netmap's users."""
    q = shlex.quote
    current = posixpath.join(args.root, "current")
    lines = [
        'printf "release=%s\\n" "$(uname -r)"',
        "[ -e /proc/modules ] && echo modules=yes",
        'printf "lockdown=%s\\n" "$(cat /sys/kernel/security/lockdown 2>/dev/null)"',
        'printf "cpus=%s\\n" "$(nproc 2>/dev/null)"',
        f'printf "current=%s\\n" "$(readlink {q(current)} 2>/dev/null)"',
        f'printf "pktgen_link=%s\\n" "$(readlink {q(args.bin_dir + "/pkt-gen")} 2>/dev/null)"',
        "if [ -d /sys/module/netmap ]; then echo loaded=yes",
        '  printf "holders=%s\\n" "$(ls /sys/module/netmap/holders 2>/dev/null | tr "\\n" " ")"',
        "fi",
        f"if [ -f {q(record_file(args))} ]; then echo record=yes",
        f'  printf "missing=%s\\n" "$(for m in $(cat {q(record_file(args))}); do '
        '[ -d "/sys/module/$m" ] || printf "%s " "$m"; done)"',
        "fi",
    ]
    if args.state == "unloaded":
        # every process holding /dev/netmap open (one `find`, not a fork per process: TCG
        # hosts are slow), and the pidfiles that may name them
        lines.append(
            'printf "users=%s\\n" "$(find /proc/[0-9]*/fd -lname /dev/netmap 2>/dev/null '
            '| cut -d/ -f3 | sort -un | tr "\\n" " ")"'
        )
        for d in args.run_dirs:
            lines.append(
                f'for f in {q(d)}/*.pid; do [ -f "$f" ] && '
                'printf "pidfile %s %s\\n" "$f" "$(head -n 1 "$f")"; done'
            )
    for m in [*args.modules, "netmap"]:
        ko = q(posixpath.join(current, f"{m}.ko"))
        lines += [
            f'printf "sys_{sysfs_name(m)}=%s\\n" "{loaded_module_id(m)}"',
            f'[ -f {ko} ] && printf "ko_{sysfs_name(m)}=%s\\n" "{file_module_id(ko)}"',
        ]
    if key is not None:
        inst = installed_dir(args, key)
        lines += [
            f"i={q(inst)}",
            'if [ -f "$i/SHA256SUMS" ] && (cd "$i" && sha256sum -c --quiet --status SHA256SUMS)'
            "; then echo installed=yes; fi",
        ]
        assert args.kernel_release is not None
        lines.append(kernel_dir_script(args.kernel_release))
    lines.append("true")  # a test that failed last is no failure of the probe
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class NetmapProbe:
    release: str
    modules_supported: bool
    lockdown: str | None
    cpus: int
    current: str
    pktgen_link: str
    loaded: bool
    holders: tuple[str, ...]
    record: bool
    missing: tuple[str, ...]  # recorded as loaded before, not loaded now
    users: tuple[int, ...]  # PIDs holding /dev/netmap
    pidfiles: dict[int, tuple[str, str]]  # PID → (process name, run dir), start time checked
    module_ids: dict[str, str]  # module (sysfs name) → identity of what is loaded now
    installed_ids: dict[str, str]  # module (sysfs name) → identity of <root>/current/<m>.ko
    installed: bool
    kernel_dir: str | None


def parse_probe(text: str) -> NetmapProbe:
    values = parse_key_values(text)
    pidfiles: dict[int, tuple[str, str]] = {}
    for line in text.splitlines():
        if not line.startswith("pidfile "):
            continue
        path, _, record_text = line[len("pidfile ") :].partition(" ")
        record = parse_pidfile(record_text)
        if record is not None:
            name = posixpath.basename(path).removesuffix(".pid")
            pidfiles[record.pid] = (name, posixpath.dirname(path))
    return NetmapProbe(
        release=values.get("release", ""),
        modules_supported=values.get("modules") == "yes",
        lockdown=values.get("lockdown") or None,
        cpus=int(values.get("cpus") or 1) if (values.get("cpus") or "1").isdigit() else 1,
        current=values.get("current", ""),
        pktgen_link=values.get("pktgen_link", ""),
        loaded=values.get("loaded") == "yes",
        holders=tuple(values.get("holders", "").split()),
        record=values.get("record") == "yes",
        missing=tuple(values.get("missing", "").split()),
        users=tuple(int(p) for p in values.get("users", "").split() if p.isdigit()),
        pidfiles=pidfiles,
        module_ids={k[len("sys_") :]: v for k, v in values.items() if k.startswith("sys_") and v},
        installed_ids={k[len("ko_") :]: v for k, v in values.items() if k.startswith("ko_") and v},
        installed=values.get("installed") == "yes",
        kernel_dir=values.get("kernel_dir") or None,
    )


def install_script(args: NetmapArgs, build: NetmapBuild, upload: str) -> str:
    """Unpack the upload beside its place, check every file there (sha256, each module's
    vermagic, pkt-gen's libraries), swap it in, point `current` and pkt-gen at it."""
    q = shlex.quote
    inst = installed_dir(args, build.key)
    rel = build.spec.release
    return "\n".join(
        [
            "set -u",
            f"u={q(upload)}; i={q(inst)}; n={q(inst + '.new')}",
            'trap \'rm -rf "$n" "$u"\' EXIT',
            'rm -rf "$n" && mkdir -p "$n" && tar -xzf "$u" --no-same-owner -C "$n" || exit 1',
            '(cd "$n" && sha256sum -c --quiet SHA256SUMS) || '
            f'{{ echo "{_MARK}the copy in $n does not match the build (sha256)" >&2; exit 1; }}',
            vermagic_check_script('"$n"', rel),
            'if ldd "$n/pkt-gen" 2>/dev/null | grep -q "not found"; then '
            f'echo "{_MARK}pkt-gen cannot run here: $(ldd "$n/pkt-gen" | grep "not found" '
            '| head -n 1)" >&2; exit 1; fi',
            'rm -rf "$i" && mv "$n" "$i" || exit 1',
            f"ln -sfn {q('installed/' + build.key)} {q(args.root + '/current')}",
            f"mkdir -p {q(args.bin_dir)} && "
            f"ln -sfn {q(args.root + '/current/pkt-gen')} {q(args.bin_dir + '/pkt-gen')}",
        ]
    )


def load_script(args: NetmapArgs) -> str:
    """Record the modules loaded now (before netmap), insmod netmap.ko, wait for its device."""
    q = shlex.quote
    ko = posixpath.join(args.root, "current", "netmap.ko")
    rec = record_file(args)
    return "\n".join(
        [
            f"{record_modules_script(rec)} || exit 1",
            f"insmod {q(ko)} || exit 1",
            wait_until_script(
                "[ -c /dev/netmap ]",
                DEVICE_WAIT,
                f"{_MARK}netmap.ko loaded but /dev/netmap did not appear in {DEVICE_WAIT} s",
            ),
        ]
    )


def restore_script(args: NetmapArgs, missing: tuple[str, ...]) -> str:
    """modprobe each module recorded as loaded before netmap and missing now; forget the
    record once all are back."""
    q = shlex.quote
    rec = record_file(args)
    lines = ["failed="]
    for m in missing:
        lines.append(f'modprobe {q(m)} 2>/dev/null || failed="$failed {m}"')
    lines += [
        'if [ -n "$failed" ]; then',
        f'  echo "{_MARK}could not put back:$failed" >&2; exit 1',
        "fi",
        f"rm -f {q(rec)}",
    ]
    return "\n".join(lines)
