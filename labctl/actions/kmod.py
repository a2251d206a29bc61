"""kmod: build an out-of-tree Kbuild module for a kernel release, cached; load it; unload it.

A build is cached on the host under `<cache_dir>/<key>/<name>.ko`, the key a sha256 over the
module's source files (hashed on the host, so an edit made there counts too), the kernel
release, the kernel headers directory and the make arguments (`cache_key`). The plan is one
read-only round trip (`probe_script`) that also computes the key on the host; a hit is ok.
A build runs in a scratch copy beside the cache entry and only a .ko whose vermagic names the
target release is stored.

Loading needs a kernel with module support: where /proc/modules is missing (this machine's
kernel, the namespace lab) `loaded` and `unloaded` say so in one line and report ok, so a
provision run goes on; building for a named release still works there (DESIGN.md section 2).
Unsigned modules are refused under Secure Boot lockdown: the failure says so.

Build once, install many (`build_on`): `controller` builds the module on the controller
(labctl/kbuild.py, cached there by the same key) and copies the .ko into the host's cache
entry, checked there by its sha256 and its vermagic; `auto` does so when the controller has
the headers of the host's target release and the same source (`controller_src`), else builds
on the host; `host` (the default) always builds on the host.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl.actions.base import (
    Action,
    ActionFailed,
    ActionResult,
    Plan,
    Run,
    TaskContext,
    Upload,
    failed_result,
    step_failed,
    upload,
)
from labctl.builds.kmod import (
    ControllerBuildError,
    build_on_controller,
    headers_dir,
    kernel_dir_candidates,
    source_hash,
)
from labctl.facts.host import parse_key_values
from labctl.facts.modules import explain_insmod_failure, lockdown_mode, sysfs_name, vermagic_matches
from labctl.failures import OWN_MARK
from labctl.remote import CommandResult, ShellScript

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
_VERMAGIC_MARK = "@@vermagic "


@dataclass(frozen=True)
class KmodArgs:
    name: str
    kernel_release: str
    src: str | None = None  # a directory on the host holding the Kbuild module
    kernel_dir: str | None = None  # default /usr/src/linux-headers-<rel>, then /lib/modules/…
    make_args: tuple[str, ...] = ()
    state: str = "built"
    depends: tuple[str, ...] = ()  # modprobe'd before insmod
    cache_dir: str = "/root/labctl/kmod-cache"
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
        cands = " ".join(q(d) for d in kernel_dir_candidates(args.kernel_release, args.kernel_dir))
        key_parts = " ".join(
            [q(KEY_VERSION), '"$h"', q(args.kernel_release), '"$k"', *map(q, args.make_args)]
        )
        lines += [
            f'k=; for d in {cands}; do if [ -f "$d/Makefile" ]; then k=$d; break; fi; done',
            'printf "kernel_dir=%s\\n" "$k"',
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
            f'printf "{_VERMAGIC_MARK}%s\\n" "$(modinfo -F vermagic "$b"/{q(ko)})"',
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
        f"mkdir -p {q(cache_dir)} && if [ ! -e {q(path)} ]; then "
        f"cut -d' ' -f1 /proc/modules | LC_ALL=C sort > {q(path + '.tmp')} && "
        f"mv {q(path + '.tmp')} {q(path)}; fi"
    )


def verify_loaded_script(name: str) -> str:
    path = f"/sys/module/{sysfs_name(name)}"
    return (
        f"[ -d {shlex.quote(path)} ] || "
        f"{{ echo {shlex.quote(f'insmod returned but {path} does not exist')} >&2; exit 1; }}"
    )


# ---------------------------------------------------------------------------- the action


@dataclass
class KmodPlan(Plan):
    """A plan whose steps carry a role each, so apply can check between them."""

    roles: list[str] = field(default_factory=list)
    lockdown: str | None = None
    controller_src: Path | None = None  # set when the controller builds the module

    def add(self, role: str, step: Run) -> None:
        self.roles.append(role)
        self.steps.append(step)


class KmodAction(Action):
    name = "kmod"
    Args = KmodArgs

    def plan(self, ctx: TaskContext, args: KmodArgs) -> KmodPlan:
        host = ctx.conn.host.name
        res = ctx.conn.run(ShellScript(probe_script(args)), timeout=PROBE_TIMEOUT)
        if not res.ok:
            raise ActionFailed(f"{host}: kmod {args.name}: {res.first_error_line()}", res)
        probe = parse_probe(res.stdout)
        if args.state == "built":
            plan = KmodPlan(lockdown=probe.lockdown)
            self._plan_build(ctx, args, probe, plan)
            return plan
        if not probe.modules_supported:
            verb = "not loaded" if args.state == "loaded" else "not loaded, nothing to unload"
            return KmodPlan(
                skipped=f"{host}: kernel {probe.running} cannot load modules (no /proc/modules): "
                f"{args.name} {verb}",
                output={"loaded": False, "unsupported": True},
            )
        if args.state == "unloaded":
            return self._plan_unload(args, probe)
        return self._plan_load(ctx, args, probe)

    def _plan_build(
        self, ctx: TaskContext, args: KmodArgs, probe: KmodProbe, plan: KmodPlan
    ) -> None:
        """Adds the build to `plan` unless the cache has it; fills the output either way."""
        host = ctx.conn.host.name
        rel = args.kernel_release
        at = f" at {args.kernel_dir}" if args.kernel_dir else ""
        # An earlier task of the same run may be what puts the source or the headers there;
        # in check mode it has not run. So the plan says "would build", and applying it (right
        # after planning, so they are still missing) fails with the reason.
        missing = None
        if probe.src == "missing":
            missing = (
                f"{host}: kmod {args.name}: src {args.src} does not exist "
                "(put it there first, e.g. with the source action)"
            )
        elif probe.kernel_dir is None:
            missing = f"no kernel headers for {rel} on {host}{at}: install linux-headers-{rel}"
        if missing:
            plan.add("missing", Run(ShellScript(f"echo {shlex.quote(missing)} >&2; exit 1")))
            needed = "source is" if probe.src == "missing" else "headers are"
            plan.changes.append(f"build {args.name}.ko for {rel} (once its {needed} there)")
            return
        if probe.src == "nokbuild":
            raise ActionFailed(f"{host}: kmod {args.name}: {args.src} has no Kbuild or Makefile")
        assert probe.kernel_dir is not None
        if probe.src_hash is None or probe.key is None:
            raise ActionFailed(f"{host}: kmod {args.name}: could not hash {args.src}")
        key = cache_key(probe.src_hash, rel, probe.kernel_dir, args.make_args)
        if key != probe.key:  # the shell and cache_key disagree: a labctl bug, not the host's
            raise ActionFailed(
                f"{host}: kmod {args.name}: cache key mismatch ({probe.key} ≠ {key})"
            )
        entry = CacheEntry(args.cache_dir, key, args.name)
        plan.output.update({"ko": entry.ko, "vermagic": probe.vermagic, "cached": probe.cache_hit})
        if probe.cache_hit:
            return
        if args.build_on != "host":
            why_not = self._controller_can_build(ctx, args, probe)
            if why_not is None:
                plan.controller_src = _controller_path(ctx, args)
                plan.add("controller", Run(ShellScript(prepare_script(entry))))
                plan.add("store", Run(ShellScript(store_script(args, entry, probe.kernel_dir))))
                plan.changes.append(
                    f"build {args.name}.ko for {rel} on the controller and install it "
                    f"(cache {key[:12]}…)"
                )
                return
            if args.build_on == "controller":
                raise ActionFailed(
                    f"{host}: kmod {args.name}: cannot build on the controller: {why_not}"
                )
            plan.changes.append(f"not built on the controller: {why_not}")
        plan.add(
            "build", Run(ShellScript(build_script(args, entry, probe.kernel_dir)), BUILD_TIMEOUT)
        )
        plan.add("store", Run(ShellScript(store_script(args, entry, probe.kernel_dir))))
        flags = f" with {shlex.join(args.make_args)}" if args.make_args else ""
        plan.changes.append(
            f"build {args.name}.ko for {rel} against {probe.kernel_dir}{flags} (cache {key[:12]}…)"
        )

    def _plan_unload(self, args: KmodArgs, probe: KmodProbe) -> KmodPlan:
        if not probe.loaded:
            return KmodPlan(output={"loaded": False})
        plan = KmodPlan(output={"loaded": False})
        plan.add("rmmod", Run(["rmmod", args.name]))
        plan.changes.append(f"unload {args.name}")
        return plan

    def _controller_can_build(
        self, ctx: TaskContext, args: KmodArgs, probe: KmodProbe
    ) -> str | None:
        """Why the controller cannot build what this host would, or None if it can."""
        if headers_dir(args.kernel_release) is None:
            return f"no headers for {args.kernel_release} on the controller"
        src = _controller_path(ctx, args)
        if not src.is_dir():
            return f"controller_src {src} is not a directory"
        if source_hash(src, SOURCE_PATTERNS) != probe.src_hash:
            return f"the source at {src} differs from {args.src} on the host"
        return None

    def _plan_load(self, ctx: TaskContext, args: KmodArgs, probe: KmodProbe) -> KmodPlan:
        host = ctx.conn.host.name
        if args.kernel_release != probe.running:
            raise ActionFailed(
                f"{host}: kmod {args.name}: built for {args.kernel_release}, "
                f"running {probe.running}: cannot load it"
            )
        if probe.loaded:
            return KmodPlan(output={"loaded": True})
        plan = KmodPlan(lockdown=probe.lockdown)
        self._plan_build(ctx, args, probe, plan)
        if "ko" not in plan.output:  # no source or headers yet: the build step will say so
            return plan
        ko = plan.output["ko"]
        plan.output["loaded"] = True
        plan.add("record", Run(ShellScript(record_loaded_script(args.cache_dir))))
        for dep in args.depends:
            plan.add("modprobe", Run(["modprobe", dep]))
        plan.add("insmod", Run(["insmod", ko]))
        plan.add("verify", Run(ShellScript(verify_loaded_script(args.name))))
        deps = f" after modprobe {' '.join(args.depends)}" if args.depends else ""
        change = f"load {args.name} (insmod {ko}){deps}"
        mode = lockdown_mode(probe.lockdown)
        if mode:
            change += f"; kernel lockdown [{mode}]: an unsigned module will be refused"
        plan.changes.append(change)
        return plan

    def apply(self, ctx: TaskContext, args: KmodArgs, plan: Plan) -> ActionResult:
        assert isinstance(plan, KmodPlan)
        host = ctx.conn.host.name
        output: dict[str, Any] = dict(plan.output)
        for role, step in zip(plan.roles, plan.steps, strict=True):
            assert isinstance(step, Run)
            if role == "controller":
                res = self._install_from_controller(ctx, args, plan, step, output)
            else:
                res = ctx.conn.run(step.command, timeout=step.timeout)
            if role in ("build", "controller"):
                if not res.ok:
                    what = f"{host}: building {args.name} for {args.kernel_release}"
                    return failed_result(plan.changes, output, res, what)
                vermagic = _parse_vermagic(res.stdout)
                if not vermagic_matches(vermagic, args.kernel_release):
                    entry = posixpath.dirname(str(output["ko"]))
                    ctx.conn.run(["rm", "-rf", f"{entry}.build"])
                    return _failed(
                        plan,
                        output,
                        f"{host}: {args.name}.ko has vermagic {vermagic!r}, "
                        f"not kernel release {args.kernel_release}",
                    )
                output["vermagic"] = vermagic
            elif role == "insmod" and not res.ok:
                ko = str(output.get("ko"))
                msg = explain_insmod_failure(host, ko, res.stderr + res.stdout, plan.lockdown)
                return _failed(plan, output, msg)
            elif not res.ok:
                return step_failed(plan, res, output)
        return ActionResult(changed=plan.changed, changes=tuple(plan.changes), output=output)

    def _install_from_controller(
        self, ctx: TaskContext, args: KmodArgs, plan: KmodPlan, prepare: Run, output: dict[str, Any]
    ) -> CommandResult:
        """Build (or take from the controller's cache), copy into the host's scratch entry, and
        check the copy there: its sha256, and its vermagic printed as a build prints it."""
        assert plan.controller_src is not None
        entry_dir = posixpath.dirname(str(output["ko"]))
        key = posixpath.basename(entry_dir)
        kernel_dir = headers_dir(args.kernel_release)
        assert kernel_dir is not None
        try:
            module, built = build_on_controller(
                plan.controller_src,
                args.name,
                args.kernel_release,
                kernel_dir,
                args.make_args,
                key,
            )
        except ControllerBuildError as exc:
            return CommandResult(
                ctx.conn.host.name, "build on the controller", 1, "", f"{_MARK}{exc}", 0.0
            )
        ctx.conn.run(prepare.command, check=True)
        dest = posixpath.join(f"{entry_dir}.build", f"{args.name}.ko")
        upload(ctx.conn, Upload(module.ko.read_bytes(), dest, mode="644"))
        output.update(
            {"built_on": "controller", "sha256": module.sha256, "controller_built_now": built}
        )
        return ctx.conn.run(ShellScript(check_copy_script(dest, module.sha256)))


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
        f'printf "{_VERMAGIC_MARK}%s\\n" "$(modinfo -F vermagic {q(ko)})"'
    )


def _controller_path(ctx: TaskContext, args: KmodArgs) -> Path:
    assert args.controller_src is not None
    path = Path(args.controller_src)
    return path if path.is_absolute() else (ctx.base_dir / path).resolve()


def _parse_vermagic(stdout: str) -> str:
    lines = [line for line in stdout.splitlines() if line.startswith(_VERMAGIC_MARK)]
    return lines[-1][len(_VERMAGIC_MARK) :].strip() if lines else ""


def _failed(plan: Plan, output: dict[str, Any], msg: str) -> ActionResult:
    return ActionResult(
        changed=True, failed=True, msg=msg, changes=tuple(plan.changes), output=output
    )
