"""kmod: build an out-of-tree Kbuild module for a kernel release, cached; load it; unload it.

A build is cached on the host under `<cache_dir>/<key>/<name>.ko`, the key a sha256 over the
module's source files (hashed on the host, so an edit made there counts too), the kernel
release, the kernel headers directory and the make arguments (`cache_key`). The plan is one
read-only round trip (`probe_script`) that also computes the key on the host; a hit is ok.
A build runs in a scratch copy beside the cache entry and only a .ko whose vermagic names the
target release is stored.

Loading needs a kernel with module support: where /proc/modules is missing (this machine's
kernel, the namespace lab) `loaded` and `unloaded` say so in one line and report ok, so a
provision run goes on; building for a named release still works there (docs/netmap.md).
Unsigned modules are refused under Secure Boot lockdown: the failure says so.

Build once, install many (`build_on`): `controller` builds the module on the controller
(labctl/kbuild.py, cached there by the same key) and copies the .ko into the host's cache
entry, checked there by its sha256 and its vermagic; `auto` does so when the controller has
the headers of the host's target release and the same source (`controller_src`), else builds
on the host; `host` (the default) always builds on the host.
"""

from __future__ import annotations

import dataclasses
import posixpath
import shlex
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
    Undo,
    Upload,
    failed_result,
    step_failed,
    upload,
)
from labctl.actions.kmod_host import (
    BUILD_TIMEOUT,
    PROBE_TIMEOUT,
    SOURCE_PATTERNS,
    CacheEntry,
    KmodArgs,
    KmodProbe,
    build_script,
    cache_key,
    check_copy_script,
    parse_probe,
    parse_vermagic,
    prepare_script,
    probe_script,
    record_loaded_script,
    store_script,
    verify_loaded_script,
)
from labctl.actions.source import controller_path
from labctl.builds.kmod import ControllerBuildError, build_on_controller, headers_dir, source_hash
from labctl.facts.modules import explain_insmod_failure, lockdown_mode, vermagic_matches
from labctl.failures import OWN_MARK
from labctl.remote import CommandResult, ShellScript

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
                label = f"building {args.name}.ko for {rel} on the controller"
                plan.add("controller", Run(ShellScript(prepare_script(entry)), label=label))
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
        script = ShellScript(build_script(args, entry, probe.kernel_dir))
        label = f"make {args.name}.ko for {rel}"
        plan.add("build", Run(script, BUILD_TIMEOUT, label=label))
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
        if args.src:  # loading it again needs its source (a module labctl did not build: no)
            again = {**dataclasses.asdict(args), "state": "loaded"}
            plan.undo.append(Undo(f"module {args.name}", "kmod", again))
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
        unload = {"name": args.name, "kernel_release": args.kernel_release, "state": "unloaded"}
        plan.undo.append(Undo(f"module {args.name}", "kmod", unload))
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
            if step.label:
                ctx.say(step.label)
            if role == "controller":
                res = self._install_from_controller(ctx, args, plan, step, output)
            else:
                res = ctx.conn.run(step.command, timeout=step.timeout)
            if role in ("build", "controller"):
                if not res.ok:
                    what = f"{host}: building {args.name} for {args.kernel_release}"
                    return failed_result(plan.changes, output, res, what)
                vermagic = parse_vermagic(res.stdout)
                if not vermagic_matches(vermagic, args.kernel_release):
                    entry = posixpath.dirname(str(output["ko"]))
                    ctx.conn.run(["rm", "-rf", f"{entry}.build"])
                    return failed_result(
                        plan.changes,
                        output,
                        what=f"{host}: {args.name}.ko has vermagic {vermagic!r}, "
                        f"not kernel release {args.kernel_release}",
                    )
                output["vermagic"] = vermagic
            elif role == "insmod" and not res.ok:
                ko = str(output.get("ko"))
                msg = explain_insmod_failure(host, ko, res.stderr + res.stdout, plan.lockdown)
                return failed_result(plan.changes, output, res, msg, explained=True)
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
                ctx.conn.host.name, "build on the controller", 1, "", f"{OWN_MARK}{exc}", 0.0
            )
        ctx.conn.run(prepare.command, check=True)
        dest = posixpath.join(f"{entry_dir}.build", f"{args.name}.ko")
        upload(ctx.conn, Upload(module.ko.read_bytes(), dest, mode="644"))
        output.update(
            {"built_on": "controller", "sha256": module.sha256, "controller_built_now": built}
        )
        return ctx.conn.run(ShellScript(check_copy_script(dest, module.sha256)))


def _controller_path(ctx: TaskContext, args: KmodArgs) -> Path:
    assert args.controller_src is not None
    return controller_path(ctx.base_dir, args.controller_src).resolve()
