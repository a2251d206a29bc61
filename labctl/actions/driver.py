"""driver: swap a NIC's kernel driver (rmmod the stock one, load a replacement) safely.

docs/netmap.md, "never cut the branch you sit on". Before anything is unloaded the plan
reads the host's facts afresh (an earlier task may have changed them) and asks
`provision.mgmt_driver_guard`: if the interface carrying the SSH session uses the driver, the
task fails with the guard's one-line reason unless `force_mgmt_driver_swap` is set.

Apply, in this order:
1. record the modules loaded before (`<record_dir>/modules-before-<driver>.txt`, and the
   task's output), so they can be put back;
2. arm a revert on the host: in `revert_after` seconds rmmod whatever has the driver's name
   and modprobe the stock one (a systemd timer, else a detached sleep; provision.py);
3. swap, detached from the SSH session (`setsid`), since the session may ride on the NIC:
   rmmod the driver, modprobe `depends`, then insmod the replacement .ko (or modprobe the
   stock driver again when no replacement is given); its exit status goes to a file;
4. reconnect (bounded), read that status;
5. verify: the module is in /sys/module (with the replacement's identity) and every
   interface the driver drove before is back with it;
6. cancel the revert (unless `cancel_revert: false`). A failed swap or verify leaves the
   revert armed: that is what brings the stock driver back, and the message says when.

A module's identity is its GNU build-id, read from sysfs for the loaded one and from the
file for a .ko (srcversion where there is no build-id; kmod.loaded_module_id). A replacement
.ko already loaded (same identity) is ok, nothing to do; reloading the stock
driver (no `replacement`) is a change every time, like a service restart. `state: stock` puts
the stock driver (the one in /lib/modules) back where another module of its name is loaded,
with the same guard, revert and checks; where the stock one, or none, is loaded it is ok.
"""

from __future__ import annotations

import contextlib
import logging
import posixpath
import re
import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from labctl.actions.base import (
    Action,
    ActionFailed,
    ActionResult,
    Plan,
    Run,
    TaskContext,
    failed_result,
)
from labctl.actions.driver_guard import cancel_revert_command, mgmt_driver_guard, revert_command
from labctl.errors import CommandTimeout, HostUnreachable
from labctl.facts.host import gather_facts, parse_key_values
from labctl.facts.modules import (
    explain_insmod_failure,
    file_module_id,
    loaded_module_id,
    record_modules_script,
    same_module,
    sysfs_name,
    vermagic_matches,
)
from labctl.paths import HOST_DIR
from labctl.remote import ShellScript, wait_until_script

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")
STATES = ("swapped", "stock")
SWAP_TIMEOUT = 120.0  # seconds for rmmod + insmod on a slow (TCG) host
VERIFY_SECONDS = 20  # for udev to bring the interfaces back and rename them


@dataclass(frozen=True)
class DriverArgs:
    driver: str  # the stock module now driving the NIC(s), e.g. e1000e
    replacement: str | None = None  # a .ko on the host; none: modprobe the stock driver again
    depends: tuple[str, ...] = ()  # modprobe'd before the replacement is loaded
    force_mgmt_driver_swap: bool = False
    revert_after: int = 60  # seconds until the armed revert puts the stock driver back
    cancel_revert: bool = True  # false: leave the revert armed (it then fires)
    reconnect_timeout: float = 120.0
    record_dir: str = HOST_DIR
    state: str = "swapped"  # swapped: as above; stock: the stock driver back, if not loaded

    def __post_init__(self) -> None:
        where = f"driver {self.driver}"
        if not _NAME.match(self.driver):
            raise ValueError(f"driver: bad module name {self.driver!r}")
        if self.state not in STATES:
            raise ValueError(f"{where}: state must be one of {', '.join(STATES)}")
        if self.state == "stock" and self.replacement is not None:
            raise ValueError(f"{where}: state stock takes no `replacement`")
        bad = [d for d in self.depends if not _NAME.match(d)]
        if bad:
            raise ValueError(f"{where}: bad module name(s) in depends: {bad!r}")
        for label, path in (("replacement", self.replacement), ("record_dir", self.record_dir)):
            if path is not None and (not path.startswith("/") or "\n" in path or path == "/"):
                raise ValueError(f"{where}: {label} must be an absolute path, not {path!r}")
        if self.replacement is not None and not self.replacement.endswith(".ko"):
            raise ValueError(f"{where}: replacement must be a .ko file, not {self.replacement!r}")
        if self.revert_after < 5:
            raise ValueError(f"{where}: revert_after must be at least 5 seconds")
        if not 5 <= self.reconnect_timeout <= 1800:
            raise ValueError(f"{where}: reconnect_timeout must be 5 to 1800 seconds")


# ---------------------------------------------------------------------------- pure pieces


@dataclass(frozen=True)
class DriverProbe:
    release: str
    modules_supported: bool
    modules: tuple[str, ...]
    loaded: bool
    loaded_id: str | None
    ko_exists: bool = False
    ko_name: str | None = None
    ko_vermagic: str | None = None
    ko_id: str | None = None
    lockdown: str | None = None
    stock_id: str | None = None  # of the module in /lib/modules/<release>


def probe_script(args: DriverArgs) -> str:
    """Read-only: the release, the loaded modules, the driver's and the replacement's ids."""
    q = shlex.quote
    mod = f"/sys/module/{sysfs_name(args.driver)}"
    lines = [
        'printf "release=%s\\n" "$(uname -r)"',
        "if [ -e /proc/modules ]; then echo modules_supported=yes; "
        'printf "modules=%s\\n" "$(cut -d" " -f1 /proc/modules | tr "\\n" " ")"; fi',
        'printf "lockdown=%s\\n" "$(cat /sys/kernel/security/lockdown 2>/dev/null)"',
        f"if [ -d {q(mod)} ]; then echo loaded=yes; "
        f'printf "loaded_id=%s\\n" "{loaded_module_id(args.driver)}"; fi',
    ]
    if args.state == "stock":
        stock = file_module_id(f'"$(modinfo -n {q(args.driver)} 2>/dev/null)"')
        lines.append(f'printf "stock_id=%s\\n" "{stock}"')
    if args.replacement:
        ko = q(args.replacement)
        lines.append(
            f"if [ -f {ko} ]; then echo ko_exists=yes; "
            f'printf "ko_name=%s\\n" "$(modinfo -F name {ko})"; '
            f'printf "ko_vermagic=%s\\n" "$(modinfo -F vermagic {ko})"; '
            f'printf "ko_id=%s\\n" "{file_module_id(ko)}"; fi'
        )
    return "\n".join(lines) + "\n"


def parse_probe(text: str) -> DriverProbe:
    values = parse_key_values(text)
    return DriverProbe(
        release=values.get("release", ""),
        modules_supported=values.get("modules_supported") == "yes",
        modules=tuple(values.get("modules", "").split()),
        loaded=values.get("loaded") == "yes",
        loaded_id=values.get("loaded_id") or None,
        ko_exists=values.get("ko_exists") == "yes",
        ko_name=values.get("ko_name") or None,
        ko_vermagic=values.get("ko_vermagic") or None,
        ko_id=values.get("ko_id") or None,
        lockdown=values.get("lockdown") or None,
        stock_id=values.get("stock_id") or None,
    )


def record_path(args: DriverArgs) -> str:
    return posixpath.join(args.record_dir, f"modules-before-{args.driver}.txt")


def status_path(args: DriverArgs) -> str:
    return posixpath.join(args.record_dir, f"driver-swap-{args.driver}.status")


def record_script(args: DriverArgs) -> str:
    q = shlex.quote
    path = record_path(args)
    return f"mkdir -p {q(args.record_dir)} && {record_modules_script(path)}"


def swap_script(args: DriverArgs, loaded: bool) -> str:
    """The swap itself, run detached: its exit status and first error go to the status file."""
    q = shlex.quote
    steps = []
    if loaded:
        steps.append(shlex.join(["rmmod", args.driver]))
    steps += [shlex.join(["modprobe", d]) for d in args.depends]
    if args.replacement:
        steps.append(shlex.join(["insmod", args.replacement]))
    else:
        steps.append(shlex.join(["modprobe", args.driver]))
    status = status_path(args)
    body = " && ".join(f"{{ {s} 2>>{q(status + '.err')}; }}" for s in steps)
    return (
        f"rm -f {q(status)} {q(status + '.err')}; ( {body} ); rc=$?; "
        f"echo $rc > {q(status + '.tmp')} && mv {q(status + '.tmp')} {q(status)}"
    )


def launch_script(args: DriverArgs, loaded: bool) -> str:
    """Start the swap in a session of its own: it survives this SSH session going down."""
    q = shlex.quote
    status = status_path(args)
    return (
        f"mkdir -p {q(args.record_dir)} && rm -f {q(status)} && "
        f"setsid sh -c {q(swap_script(args, loaded))} </dev/null >/dev/null 2>&1 &"
    )


def verify_script(
    name: str,
    module_id: str | None,
    interfaces: tuple[str, ...],
    addresses: tuple[tuple[str, str], ...] = (),
) -> str:
    """Wait (bounded) until the module is loaded, every interface is back with it, and has
    its IPv4 addresses again (whatever configured them before must have done so again)."""
    q = shlex.quote
    mod = f"/sys/module/{sysfs_name(name)}"
    checks = [f"[ -d {q(mod)} ]"]
    if module_id:
        checks.append(f'[ "{loaded_module_id(name)}" = {q(module_id)} ]')
    for iface in interfaces:
        link = f"/sys/class/net/{iface}/device/driver"
        checks.append(f'[ "$(basename "$(readlink {q(link)})" 2>/dev/null)" = {q(name)} ]')
    for iface, cidr in addresses:
        show = shlex.join(["ip", "-o", "-4", "addr", "show", "dev", iface])
        checks.append(f"{show} 2>/dev/null | grep -qF {q(' ' + cidr + ' ')}")
    cond = " && ".join(checks)
    what = ", ".join(
        [mod, *(f"{i} on {name}" for i in interfaces), *(f"{c} on {i}" for i, c in addresses)]
    )
    return wait_until_script(cond, VERIFY_SECONDS, f"not back after {VERIFY_SECONDS} s: {what}")


# ---------------------------------------------------------------------------- the action


@dataclass
class DriverPlan(Plan):
    loaded: bool = False
    name: str = ""  # the module name to find in /sys/module afterwards
    module_id: str | None = None
    interfaces: tuple[str, ...] = ()
    addresses: tuple[tuple[str, str], ...] = ()  # (interface, IPv4 CIDR) to see again
    modules_before: tuple[str, ...] = ()
    guard: str = ""
    lockdown: str | None = None


class DriverAction(Action):
    name = "driver"
    Args = DriverArgs

    def plan(self, ctx: TaskContext, args: DriverArgs) -> DriverPlan:
        host = ctx.conn.host.name
        res = ctx.conn.run(ShellScript(probe_script(args)), timeout=60)
        if not res.ok:
            raise ActionFailed(f"{host}: driver {args.driver}: {res.first_error_line()}", res)
        probe = parse_probe(res.stdout)
        if not probe.modules_supported:
            return DriverPlan(
                skipped=f"{host}: kernel {probe.release} cannot load modules (no /proc/modules):"
                f" {args.driver} not swapped",
                output={"unsupported": True},
            )
        name, module_id = args.driver, None
        if args.state == "stock":
            if not probe.loaded or same_module(probe.loaded_id, probe.stock_id):
                return DriverPlan(output={"stock": True, "loaded": probe.loaded})
            if probe.stock_id is None:
                raise ActionFailed(
                    f"{host}: no stock {args.driver} in /lib/modules/{probe.release} to put back"
                )
            module_id = probe.stock_id
        if args.replacement:
            if not probe.ko_exists:
                raise ActionFailed(f"{host}: driver {args.driver}: no {args.replacement}")
            if not vermagic_matches(probe.ko_vermagic or "", probe.release):
                raise ActionFailed(
                    f"{host}: {args.replacement} has vermagic {probe.ko_vermagic!r}, "
                    f"the host runs {probe.release}: not loading it"
                )
            name, module_id = probe.ko_name or args.driver, probe.ko_id
            if probe.loaded and name == args.driver and same_module(module_id, probe.loaded_id):
                return DriverPlan(output={"swapped": True, "module_id": module_id})
        facts = gather_facts(ctx.conn)  # afresh: an earlier task may have changed the NICs
        decision = mgmt_driver_guard(facts, args.driver, args.force_mgmt_driver_swap)
        if not decision.allowed:
            raise ActionFailed(decision.reason)
        interfaces = tuple(i.name for i in facts.interfaces if i.driver == args.driver)
        addresses = tuple(
            (i.name, a)
            for i in facts.interfaces
            if i.driver == args.driver
            for a in i.addresses
            if ":" not in a
        )
        plan = DriverPlan(
            loaded=probe.loaded,
            name=name,
            module_id=module_id,
            interfaces=interfaces,
            addresses=addresses,
            modules_before=probe.modules,
            guard=decision.reason,
            lockdown=probe.lockdown,
        )
        plan.steps = [
            Run(ShellScript(record_script(args))),
            Run(revert_command(args.driver, args.revert_after)),
            Run(ShellScript(launch_script(args, probe.loaded))),
            Run(ShellScript(verify_script(name, module_id, interfaces, addresses))),
        ]
        if args.cancel_revert:
            plan.steps.append(Run(cancel_revert_command(args.driver)))
        new = f"insmod {args.replacement}" if args.replacement else f"modprobe {args.driver}"
        drives = f" (drives {', '.join(interfaces)})" if interfaces else ""
        plan.changes.append(
            f"swap {args.driver}{drives}: rmmod, {new}; stock {args.driver} back in "
            f"{args.revert_after} s unless "
            + ("verified and cancelled" if args.cancel_revert else "... never cancelled")
        )
        plan.output.update({"guard": decision.reason, "interfaces": list(interfaces)})
        return plan

    def apply(self, ctx: TaskContext, args: DriverArgs, plan: Plan) -> ActionResult:
        assert isinstance(plan, DriverPlan)
        conn, host = ctx.conn, ctx.conn.host.name
        output: dict[str, Any] = {
            **plan.output,
            "modules_before": list(plan.modules_before),
            "modules_before_file": record_path(args),
            "revert_armed": False,
            "revert_cancelled": False,
        }

        def failed(msg: str) -> ActionResult:
            return failed_result(plan.changes, output, what=msg)

        conn.run(ShellScript(record_script(args)), check=True)
        conn.run(cancel_revert_command(args.driver), check=True)  # an old one: one timer only
        conn.run(revert_command(args.driver, args.revert_after), check=True)
        armed_at = time.monotonic()
        output["revert_armed"] = True
        conn.run(ShellScript(launch_script(args, plan.loaded)), check=True)
        conn.close()  # the session may have ridden on the NIC just unloaded
        rc, err = self._wait_for_status(ctx, args)

        def revert_note() -> str:
            left = int(args.revert_after - (time.monotonic() - armed_at))
            if left > 0:
                return f"the revert puts stock {args.driver} back in ~{left} s"
            return f"the revert armed for {args.revert_after} s has put stock {args.driver} back"

        if rc is None:
            return failed(
                f"{host}: no answer within {args.reconnect_timeout:g} s of the swap; "
                + revert_note()
            )
        if rc != 0:
            why = err or f"exit {rc}"
            if args.replacement and "insmod" in err:  # Secure Boot / signatures: say so
                why = explain_insmod_failure(host, args.replacement, err, plan.lockdown)
                why = why.removeprefix(f"{host}: ")
            return failed(f"{host}: swapping {args.driver} failed: {why}; {revert_note()}")
        verify = verify_script(plan.name, plan.module_id, plan.interfaces, plan.addresses)
        try:
            check = conn.run(ShellScript(verify), timeout=VERIFY_SECONDS + 30)
        except CommandTimeout:
            return failed(
                f"{host}: {plan.name} swapped in but the check that it drives "
                f"{', '.join(plan.interfaces) or 'its interfaces'} did not answer within "
                f"{VERIFY_SECONDS + 30} s; {revert_note()}"
            )
        if not check.ok:
            return failed(
                f"{host}: {plan.name} swapped in but {check.first_error_line()}; {revert_note()}"
            )
        if args.cancel_revert:
            cancel = conn.run(cancel_revert_command(args.driver), check=True)
            if cancel.stdout.split()[-1:] != ["cancelled"]:
                # Nothing was pending: the revert fired while we reconnected and verified.
                output["revert_fired"] = True
                return failed(
                    f"{host}: {plan.name} was swapped in and verified, but the revert armed "
                    f"for {args.revert_after} s fired first and put stock {args.driver} back "
                    f"(the host took {time.monotonic() - armed_at:.0f} s to answer and "
                    "verify): raise revert_after"
                )
            output["revert_cancelled"] = True
        output.update({"swapped": True, "module_id": plan.module_id})
        if args.state == "stock":
            output["stock"] = True
        return ActionResult(changed=True, changes=tuple(plan.changes), output=output)

    @staticmethod
    def _wait_for_status(ctx: TaskContext, args: DriverArgs) -> tuple[int | None, str]:
        """Reconnect until the swap's status file exists (bounded): (exit status, error)."""
        status = status_path(args)
        deadline = time.monotonic() + args.reconnect_timeout
        script = ShellScript(
            f"cat {shlex.quote(status)} 2>/dev/null && "
            f"head -n1 {shlex.quote(status + '.err')} 2>/dev/null; true"
        )
        with _quiet_paramiko():
            while time.monotonic() < deadline:
                try:
                    res = ctx.conn.run(script, timeout=5)  # a stale session: drop it soon
                except (HostUnreachable, CommandTimeout):
                    time.sleep(1.0)
                    continue
                lines = res.stdout.splitlines()
                if lines and lines[0].strip().lstrip("-").isdigit():
                    return int(lines[0]), (lines[1].strip() if len(lines) > 1 else "")
                time.sleep(0.5)
        return None, ""


@contextlib.contextmanager
def _quiet_paramiko() -> Iterator[None]:
    """While the host is expected to be away, paramiko's transport thread would print a
    traceback for every refused attempt ("Error reading SSH protocol banner")."""
    logger = logging.getLogger("paramiko")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)
