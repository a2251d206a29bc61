"""netmap: built once per kernel release, installed on each host, loaded, unloaded.

States (docs/provisioning.md tells the whole path, docs/netmap.md the facts behind it):
- `installed`: the build of (source, kernel release, drivers, configure flags) is in
  `<root>/installed/<key>` on the host, checked there by sha256 and vermagic; `<root>/current`
  points at it and `<bin_dir>/pkt-gen` at its pkt-gen. The build runs once, on the controller
  or on one host (`build_on`), and lands in the controller's cache; every host of that
  release installs it from there. A second run with nothing changed builds and copies nothing.
- `loaded`: installed, `netmap.ko` loaded (`/dev/netmap` appears), then each driver swapped for
  its patched .ko by the `driver` action (the SSH interface's driver is never touched unless
  forced; a revert is armed before and cancelled after the NIC is back with its address).
  The modules loaded before are recorded in `<root>/modules-before.txt`.
- `unloaded`: labctl's own processes holding `/dev/netmap` (pkt-gen) stopped by pidfile PID,
  each patched driver replaced by the stock one (the `driver` action again), `netmap.ko`
  removed, and every module recorded as loaded before put back. A process labctl did not
  start that holds `/dev/netmap` stops it with its PID named: it is not ours to kill.

On a kernel without module support (the namespace lab) `loaded` and `unloaded` say so in one
line and report ok; `installed` still installs.

Why one module of ~550 lines: the three states share one probe and one plan, and a build
(on the controller or on a host) is one path with two places to run; the arguments and the
shell it runs on a host are in labctl/actions/netmap_host.py, the build in labctl/builds/.
"""

from __future__ import annotations

import os
import posixpath
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl.actions.base import (
    Action,
    ActionFailed,
    ActionResult,
    Plan,
    TaskContext,
    failed_result,
    run_action,
)
from labctl.actions.driver import DriverAction
from labctl.actions.netmap_host import (
    NetmapArgs,
    NetmapProbe,
    install_script,
    installed_dir,
    load_script,
    parse_probe,
    probe_script,
    restore_script,
)
from labctl.actions.packages import PackagesAction
from labctl.actions.process import ProcessAction
from labctl.actions.source import (
    FULL_COMMIT,
    SourceAction,
    controller_path,
    directory_digest,
    is_git_url,
    parse_ls_remote,
    short_stamp,
    tarball_suffix,
)
from labctl.builds.builder import (
    BuildError,
    BuildPlace,
    HostShell,
    LocalShell,
    controller_kernel_sources,
    controller_tree,
    fetch_build,
    install_tarball,
    run_build,
    store_build,
    unpack_kernel_sources,
)
from labctl.builds.kmod import headers_dir
from labctl.builds.netmap import NetmapBuild, NetmapSpec, load_cached, read_manifest
from labctl.digests import file_sha256
from labctl.facts.modules import explain_insmod_failure, same_module, sysfs_name
from labctl.filelock import exclusive
from labctl.remote import ShellScript

# ---------------------------------------------------------------------------- the source


def source_identity(ctx: TaskContext, args: NetmapArgs) -> str:
    """What the build is made from, as the source action stamps it: `git <url> <commit>` or
    `sha256:<content hash>` (a tree's .git left out: a fetch is not a change)."""
    assert args.src is not None
    if is_git_url(args.src):
        assert args.ref is not None
        if FULL_COMMIT.match(args.ref):
            return f"git {args.src} {args.ref.lower()}"
        argv = ["git", "ls-remote", "--", args.src, args.ref, f"{args.ref}^{{}}"]
        commit = _ls_remote_controller(argv, args.ref)
        if commit is None:  # the controller may not reach it; the host may
            res = ctx.conn.run(argv, timeout=120)
            commit = parse_ls_remote(res.stdout, args.ref) if res.ok else None
        if commit is None:
            raise ActionFailed(f"netmap: ref {args.ref!r} not found in {args.src}")
        return f"git {args.src} {commit}"
    path = controller_path(ctx.base_dir, args.src)
    if path.is_dir():
        if not (path / "LINUX" / "configure").is_file():
            raise ActionFailed(f"netmap: {path} has no LINUX/configure: not a netmap tree")
        return "sha256:" + directory_digest(path, exclude=(".git",))
    if path.is_file() and tarball_suffix(path.name):
        return f"sha256:{file_sha256(path)}"
    raise ActionFailed(f"netmap: src {path} is not a directory, a tarball or a git URL")


def _ls_remote_controller(argv: list[str], ref: str) -> str | None:
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_ls_remote(proc.stdout, ref) if proc.returncode == 0 else None


# ---------------------------------------------------------------------------- the plan


@dataclass
class NetmapPlan(Plan):
    """`work` lists what apply will do, in order: install, load, swap:<m>, stop:<pid>,
    stock:<m>, rmmod, restore."""

    work: list[str] = field(default_factory=list)
    spec: NetmapSpec | None = None
    probe: NetmapProbe | None = None
    cached: NetmapBuild | None = None
    builder: str = ""  # "controller" or "host" when a build is needed

    @property
    def changed(self) -> bool:
        return bool(self.work)


class NetmapAction(Action):
    name = "netmap"
    Args = NetmapArgs

    def plan(self, ctx: TaskContext, args: NetmapArgs) -> NetmapPlan:
        host = ctx.conn.host.name
        spec = args.spec(source_identity(ctx, args)) if args.state != "unloaded" else None
        res = ctx.conn.run(ShellScript(probe_script(args, spec.key if spec else None)), timeout=120)
        if not res.ok:
            raise ActionFailed(f"{host}: netmap: {res.first_error_line()}", res)
        probe = parse_probe(res.stdout)
        plan = NetmapPlan(spec=spec, probe=probe)
        if args.state == "unloaded":
            self._plan_unload(ctx, args, probe, plan)
            return plan
        assert spec is not None
        self._plan_install(ctx, args, spec, probe, plan)
        if args.state == "loaded":
            self._plan_load(ctx, args, spec, probe, plan)
        return plan

    # -- installed
    def _plan_install(
        self,
        ctx: TaskContext,
        args: NetmapArgs,
        spec: NetmapSpec,
        probe: NetmapProbe,
        plan: NetmapPlan,
    ) -> None:
        key = spec.key
        inst = installed_dir(args, key)
        plan.output.update(
            {
                "key": key,
                "source": spec.source,
                "release": spec.release,
                "drivers": list(spec.drivers),
                "dir": inst,
            }
        )
        current_ok = probe.current == f"installed/{key}"
        link_ok = probe.pktgen_link == posixpath.join(args.root, "current", "pkt-gen")
        if probe.installed and current_ok and link_ok:
            plan.output["installed"] = True
            return
        cache = Path(args.cache_dir)
        plan.cached = load_cached(cache, key)
        what = f"netmap {short_stamp(spec.source)} for {spec.release} ({', '.join(spec.drivers)})"
        if plan.cached is not None:
            plan.changes.append(
                f"install {what} into {inst} (built on {plan.cached.built_on}, "
                f"from the controller's cache)"
            )
        else:
            plan.builder, why_not = self._choose_builder(args, spec, probe, ctx.conn.host.name)
            where = "the controller" if plan.builder == "controller" else ctx.conn.host.name
            line = f"build {what} on {where}, install it into {inst}"
            if why_not:
                line += f" (not on the controller: {why_not})"
            plan.changes.append(line)
        plan.work.append("install")

    @staticmethod
    def _choose_builder(
        args: NetmapArgs, spec: NetmapSpec, probe: NetmapProbe, host: str
    ) -> tuple[str, str]:
        """("controller" or "host", why not the controller)."""
        why_not = ""
        if args.build_on != "host":
            if headers_dir(spec.release) is None:
                why_not = f"no headers for {spec.release} on the controller"
            else:
                why_not = controller_kernel_sources(spec)[1]
            if not why_not:
                return "controller", ""
            if args.build_on == "controller":
                raise ActionFailed(f"{host}: netmap: cannot build on the controller: {why_not}")
        if probe.kernel_dir is None:
            raise ActionFailed(
                f"{host}: netmap: no kernel headers for {spec.release} here"
                + (f" nor on the controller ({why_not})" if why_not else "")
                + f": install linux-headers-{spec.release} (labctl provision --tags headers)"
            )
        return "host", why_not

    # -- loaded
    def _plan_load(
        self,
        ctx: TaskContext,
        args: NetmapArgs,
        spec: NetmapSpec,
        probe: NetmapProbe,
        plan: NetmapPlan,
    ) -> None:
        host = ctx.conn.host.name
        if not probe.modules_supported:
            note = (
                f"{host}: kernel {probe.release} cannot load modules (no /proc/modules): "
                "netmap installed, not loaded"
            )
            plan.output["unsupported"] = True
            if plan.work:
                plan.changes.append(note)
            else:
                plan.skipped = note
            return
        if probe.release != spec.release:
            raise ActionFailed(
                f"{host}: netmap was built for {spec.release}, the host runs {probe.release}: "
                "cannot load it"
            )
        # What each module should be: the installed files (or, before they are, the build).
        if "install" in plan.work:
            build = plan.cached
            wanted = (
                {sysfs_name(a.name.removesuffix(".ko")): a.module_id for a in build.artifacts}
                if build
                else {}
            )
        else:
            wanted = probe.installed_ids
        loaded = probe.loaded
        loaded_id = probe.module_ids.get("netmap")
        if loaded and "netmap" in wanted and not same_module(loaded_id, wanted["netmap"]):
            # Another build is loaded (a new ref, new flags): take it out the way `unloaded`
            # does (stock drivers back first: they hold netmap), then load this one.
            plan.changes.append(
                f"replace the loaded netmap.ko ({loaded_id or 'unknown build'}): "
                + "".join(f"put stock {m} back, " for m in probe.holders)
                + "unload it"
            )
            plan.work += [*(f"stock:{m}" for m in probe.holders), "rmmod"]
            loaded = False
        if not loaded:
            plan.changes.append(f"load netmap.ko (insmod {args.root}/current/netmap.ko)")
            plan.work.append("load")
        for m in args.modules:
            name = sysfs_name(m)
            if loaded and same_module(probe.module_ids.get(name), wanted.get(name)):
                continue
            plan.changes.append(
                f"swap {m} for netmap's {m}.ko (driver action: guard, revert armed first)"
            )
            plan.work.append(f"swap:{m}")
        plan.output["loaded"] = True

    # -- unloaded
    def _plan_unload(
        self, ctx: TaskContext, args: NetmapArgs, probe: NetmapProbe, plan: NetmapPlan
    ) -> None:
        host = ctx.conn.host.name
        if not probe.modules_supported:
            plan.skipped = f"{host}: kernel {probe.release} cannot load modules: nothing to unload"
            plan.output["unsupported"] = True
            return
        foreign = [p for p in probe.users if p not in probe.pidfiles]
        if foreign:
            raise ActionFailed(
                f"{host}: /dev/netmap is held by PID {', '.join(map(str, foreign))}, "
                "which labctl did not start: stop it first"
            )
        for pid in probe.users:
            name, _ = probe.pidfiles[pid]
            plan.changes.append(f"stop {name} (PID {pid}, holds /dev/netmap)")
            plan.work.append(f"stop:{pid}")
        for m in probe.holders:
            plan.changes.append(f"put stock {m} back (driver action)")
            plan.work.append(f"stock:{m}")
        if probe.loaded:
            plan.changes.append("unload netmap.ko")
            plan.work.append("rmmod")
        missing = [m for m in probe.missing if m != "netmap" and m not in probe.holders]
        if probe.record and (missing or plan.work):
            if missing:
                plan.changes.append(
                    f"load again what was loaded before netmap: {', '.join(missing)}"
                )
            plan.work.append("restore")
        plan.output.update({"loaded": False, "modules_put_back": missing})

    # ------------------------------------------------------------------------ apply

    def apply(self, ctx: TaskContext, args: NetmapArgs, plan: Plan) -> ActionResult:
        assert isinstance(plan, NetmapPlan) and plan.probe is not None
        host = ctx.conn.host.name
        output: dict[str, Any] = dict(plan.output)
        changes = list(plan.changes)
        build: NetmapBuild | None = plan.cached
        for item in plan.work:
            kind, _, arg = item.partition(":")
            try:
                if kind == "install":
                    assert plan.spec is not None
                    build = self._install(ctx, args, plan, output)
                elif kind == "load":
                    res = ctx.conn.run(ShellScript(load_script(args)), timeout=60)
                    if not res.ok:
                        msg = explain_insmod_failure(
                            host, "netmap.ko", res.stderr + res.stdout, plan.probe.lockdown
                        )
                        return failed_result(changes, output, res, msg, explained=True)
                elif kind == "swap":
                    build = build or read_manifest(Path(args.cache_dir), plan.output["key"])
                    result = self._swap(ctx, args, arg, build)
                    output.setdefault("drivers_swapped", {})[arg] = result.output
                    if result.failed:
                        return failed_result(changes, output, what=result.msg)
                elif kind == "stop":
                    name, run_dir = plan.probe.pidfiles[int(arg)]
                    result = run_action(
                        ProcessAction(), ctx, {"name": name, "state": "stopped", "run_dir": run_dir}
                    )
                    if result.failed:
                        return failed_result(
                            changes, output, what=f"{host}: stopping {name}: {result.msg}"
                        )
                elif kind == "stock":
                    result = _driver(ctx, args, arg, state="stock")
                    output.setdefault("drivers_restored", {})[arg] = result.output
                    if result.failed:
                        return failed_result(changes, output, what=result.msg)
                elif kind == "rmmod":
                    res = ctx.conn.run(["rmmod", "netmap"], timeout=60)
                    if not res.ok:
                        return failed_result(changes, output, res, f"{host}: rmmod netmap")
                elif kind == "restore":
                    res = ctx.conn.run(
                        ShellScript(restore_script(args, tuple(output["modules_put_back"]))),
                        timeout=120,
                    )
                    if not res.ok:
                        return failed_result(changes, output, res, f"{host}: putting modules back")
            except BuildError as exc:
                return failed_result(changes, output, exc.result, f"{host}: {exc}")
        return ActionResult(changed=True, changes=tuple(changes), output=output)

    def _install(
        self, ctx: TaskContext, args: NetmapArgs, plan: NetmapPlan, output: dict[str, Any]
    ) -> NetmapBuild:
        """Build (once: the first host to take the key's lock builds, the others wait and then
        find it cached), then copy to this host and check it there."""
        assert plan.spec is not None and plan.probe is not None
        spec, cache = plan.spec, Path(args.cache_dir)
        cache.mkdir(parents=True, exist_ok=True)
        with exclusive(cache / f"{spec.key}.lock"):  # checked whole by the plan, or now
            build = plan.cached or load_cached(cache, spec.key)
            output["built_now"] = build is None
            if build is None:
                builder = (
                    plan.builder
                    or self._choose_builder(args, spec, plan.probe, ctx.conn.host.name)[0]
                )
                build = (
                    self._build_on_controller(ctx, args, spec)
                    if builder == "controller"
                    else self._build_on_host(ctx, args, spec, plan.probe)
                )
        ctx.say(f"netmap: copying {len(build.artifacts)} files to {ctx.conn.host.name}")
        upload = posixpath.join(args.root, "installed", f"{spec.key}.upload.tar.gz")
        ctx.conn.run(["mkdir", "-p", posixpath.dirname(upload)], check=True)
        with tempfile.NamedTemporaryFile(suffix=".tar.gz") as packed:
            install_tarball(cache, build, Path(packed.name))
            ctx.conn.put(packed.name, upload)
        res = ctx.conn.run(ShellScript(install_script(args, build, upload)), timeout=300)
        if not res.ok:
            raise BuildError(f"installing netmap into {installed_dir(args, spec.key)}", res)
        output.update(
            {
                "installed": True,
                "built_on": build.built_on,
                "build_seconds": dict(build.seconds),
                "patches": dict(build.patches),
                "files": {a.name: a.sha256 for a in build.artifacts},
                "vermagic": build.artifact("netmap.ko").vermagic,
            }
        )
        return build

    def _build_on_controller(
        self, ctx: TaskContext, args: NetmapArgs, spec: NetmapSpec
    ) -> NetmapBuild:
        cache = Path(args.cache_dir)
        sources, why_not = controller_kernel_sources(spec)
        kernel_dir = headers_dir(spec.release)
        if sources is None or kernel_dir is None:
            raise BuildError(f"cannot build on the controller: {why_not or 'no headers'}")
        assert args.src is not None
        ctx.say(f"netmap: preparing the source and {sources.tarball.name} on the controller")
        local = args.src if is_git_url(args.src) else str(controller_path(ctx.base_dir, args.src))
        src_dir = controller_tree(local, spec.source, cache)
        full = unpack_kernel_sources(sources.tarball, sources.version, cache)
        place = BuildPlace(
            LocalShell(),
            str(src_dir),
            str(kernel_dir),
            str(full),
            str(cache / f"{spec.key}.build"),
            args.jobs or os.cpu_count() or 1,
        )
        try:  # the whole output of a failure is in the result and the host's log: no leftovers
            build = run_build(spec, place, progress=ctx.say)
            store_build(cache, build, Path(f"{place.work_dir}.out"))
        finally:
            for path in (place.work_dir, f"{place.work_dir}.out"):
                shutil.rmtree(path, ignore_errors=True)
        return build

    def _build_on_host(
        self, ctx: TaskContext, args: NetmapArgs, spec: NetmapSpec, probe: NetmapProbe
    ) -> NetmapBuild:
        host = ctx.conn.host.name
        assert args.src is not None and probe.kernel_dir is not None
        src_dir = posixpath.join(args.root, "src")
        ctx.say(f"netmap: source and linux-source-{spec.series} onto {host}")
        for action, raw in (
            (SourceAction(), {"src": args.src, "dest": src_dir, "ref": args.ref}),
            (PackagesAction(), {"names": [f"linux-source-{spec.series}"]}),
        ):
            result = run_action(action, ctx, raw)
            if result.failed:
                raise BuildError(f"{host}: preparing the build: {result.msg}")
        sources = f"/usr/src/linux-source-{spec.series}"
        ctx.say(f"netmap: unpacking {sources}.tar.xz on {host}, if not yet")
        res = ctx.conn.run(
            ShellScript(
                f"[ -f {shlex.quote(sources + '/Makefile')} ] || "
                f"tar -C /usr/src -xaf {shlex.quote(sources + '.tar.xz')}"
            ),
            timeout=1800,
        )
        if not res.ok:
            raise BuildError(f"{host}: unpacking {sources}.tar.xz", res)
        work = posixpath.join(args.root, "build", spec.key)
        place = BuildPlace(
            HostShell(ctx.conn), src_dir, probe.kernel_dir, sources, work, args.jobs or probe.cpus
        )
        try:
            build = run_build(spec, place, progress=ctx.say)
            ctx.say(f"netmap: fetching the build from {host} into the controller's cache")
            fetch_build(ctx.conn, f"{work}.out", build, Path(args.cache_dir))
        finally:
            ctx.conn.run(["rm", "-rf", work, f"{work}.out"])
        return build

    def _swap(
        self, ctx: TaskContext, args: NetmapArgs, module: str, build: NetmapBuild | None
    ) -> ActionResult:
        depends: list[str] = []
        if build is not None:
            depends = [d for d in build.artifact(f"{module}.ko").depends if d != "netmap"]
        replacement = posixpath.join(args.root, "current", f"{module}.ko")
        return _driver(ctx, args, module, replacement=replacement, depends=depends)


def _driver(ctx: TaskContext, args: NetmapArgs, module: str, **how: Any) -> ActionResult:
    """The driver action on `module`, with the guard and revert this netmap task was given."""
    raw = {
        "driver": module,
        "force_mgmt_driver_swap": args.force_mgmt_driver_swap,
        "revert_after": args.revert_after,
        "record_dir": args.root,
        **how,
    }
    return run_action(DriverAction(), ctx, raw)
