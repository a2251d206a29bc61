"""`labctl lab.up`, `lab.down`, `lab.status`: the local namespace lab or a VM lab."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

from invoke import Collection, Context, Exit, task

from labctl.cli.common import INVENTORY_HELP, console, errors_as_exit, inventory, json_dumps
from labctl.errors import InputError
from labctl.paths import EXIT_ERROR

if TYPE_CHECKING:
    from labctl.labs.netns import LocalLab
    from labctl.labs.vm import VmLab
    from labctl.views.lab import LabProgress


def _lab(
    inventory_path: str | None,
    hosts: int,
    progress: bool = True,
    vms: int = 0,
    live: LabProgress | None = None,
) -> LocalLab | VmLab:
    """The inventory's lab: the namespace lab, or a VM lab (`labctl_lab_kind: vm`); `live`
    shows a VM lab's image build and boots as they go."""
    from labctl.labs.netns import LocalLab
    from labctl.labs.netns_spec import LabSpec
    from labctl.labs.steps import no_steps
    from labctl.labs.vm import VmLab
    from labctl.labs.vm_spec import VmLabSpec, is_vm_inventory

    inv = inventory(inventory_path)
    say = _say(live) if progress else None
    if is_vm_inventory(inv):
        if hosts:
            raise InputError(f"{inv.path}: a VM lab: use --vms N, not --hosts")
        vm_spec = VmLabSpec.from_inventory(inv)
        return VmLab(
            vm_spec.resized(vms) if vms else vm_spec, progress=say, on_step=live or no_steps
        )
    if vms:
        raise InputError(f"{inv.path}: --vms needs a VM lab inventory (labctl_lab_kind: vm)")
    spec = LabSpec.from_inventory(inv)
    if hosts:
        spec = LabSpec.generated(spec.name, str(spec.subnet), hosts, spec.state_dir)
    return LocalLab(spec, progress=say)


def _say(live: LabProgress | None) -> Callable[[str], None]:
    """Progress lines, on the live display's console when there is one (lines above it)."""
    con = live.console if live is not None else console()
    return lambda msg: con.print(f"  {msg}")


@task(
    help={
        "inventory": INVENTORY_HELP,
        "hosts": "make N hosts (srv1, cli1..) instead of the inventory's, for scale tests; "
        "writes their inventory into the lab's state directory",
        "vms": "a VM lab (inventory with labctl_lab_kind: vm, e.g. hosts/vm.yml): make N VMs "
        "(srv1, cli1) instead of the inventory's; writes their inventory into the state dir",
    }
)
@errors_as_exit
def up(c: Context, inventory: str | None = None, hosts: int = 0, vms: int = 0) -> None:
    """Bring the lab up: namespaces, or QEMU VMs for a VM lab (idempotent)."""
    from labctl.labs.vm import VmLab
    from labctl.views.lab import LabProgress, changes_line

    con = console()
    with LabProgress(con) as live:
        lab = _lab(inventory, hosts, vms=vms, live=live)
        report = lab.up()
    if isinstance(lab, VmLab):
        image = lab.image
        if image is not None:
            how = f"built in {image.build_seconds:.0f} s" if lab.image_built else "cached"
            con.print(
                f"image {image.dir.name[:12]} ({how}, in {image.dir.parent}), "
                f"kernel {image.kernel_release}"
            )
        if lab.accel:
            con.print(f"accel: {lab.accel}")
        for host, seconds in lab.boot_seconds.items():
            con.print(f"{host}: boot to SSH {seconds:.1f} s")
        for row in lab.status():
            rss = f"{row.rss_mib:.0f} MiB" if row.rss_mib else "-"
            con.print(f"{row.name}: qemu pid {row.qemu_pid}, RSS {rss}")
    if hosts or vms:
        path = lab.write_inventory(lab.spec.name, lab.spec.inventory_yaml())
        con.print(f"inventory: {path} (pass it with -i)")
    n = len(lab.spec.hosts)
    if report.changed:
        made = changes_line([ch for ch in report.changes if ch.changed])
        con.print(f"lab {lab.spec.name}: {n} hosts up ({made})")
    else:
        con.print(f"lab {lab.spec.name}: {n} hosts already up, nothing changed")


@task(
    help={
        "inventory": INVENTORY_HELP,
        "purge": "also delete the lab's state directory (keys, host homes)",
    }
)
@errors_as_exit
def down(c: Context, inventory: str | None = None, purge: bool = False) -> None:
    """Take the lab down: exactly the namespaces, links and sshd or QEMU PIDs `up` made."""
    from labctl.views.lab import changes_line

    lab = _lab(inventory, 0)
    report = lab.down(purge=purge)
    what = changes_line(report.changes) or "nothing was up"
    console().print(f"lab {lab.spec.name} down: removed {what}")


@task(help={"inventory": INVENTORY_HELP, "json": "print JSON"})
@errors_as_exit
def status(c: Context, inventory: str | None = None, json: bool = False) -> None:
    """Show the lab's hosts: namespace and sshd PID, or VM's QEMU PID, memory; SSH port."""
    from labctl.labs.vm import VmLab

    lab = _lab(inventory, 0, progress=False)
    if json:
        print(json_dumps([dataclasses.asdict(r) for r in lab.status()]))
        return
    from labctl.views.lab import netns_status_table, vm_status_table

    if isinstance(lab, VmLab):
        vm_rows = lab.status()
        console().print(vm_status_table(lab.spec.name, lab.spec.link_port, vm_rows))
        if not all(v.ssh_open for v in vm_rows):
            raise Exit(code=EXIT_ERROR)
        return
    rows = lab.status()
    console().print(netns_status_table(lab.spec.name, str(lab.spec.subnet), lab.spec.bridge, rows))
    if not all(r.ssh_port_open for r in rows):
        raise Exit(code=EXIT_ERROR)


def collection() -> Collection:
    lab = Collection("lab")
    for t in (up, down, status):
        lab.add_task(t)
    return lab
