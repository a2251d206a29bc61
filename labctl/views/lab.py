"""A lab's state in the terminal: `labctl lab.status` and what `lab.up` says it did."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from rich.table import Table


def netns_status_table(name: str, subnet: str, bridge: str, rows: Sequence[Any]) -> Table:
    table = Table(title=f"lab {name} ({subnet}, bridge {bridge})")
    for col in ("host", "address", "namespace", "sshd pid", "ssh"):
        table.add_column(col)
    for r in rows:
        ssh = "[green]open[/]" if r.ssh_port_open else "[red]down[/]"
        ns = r.netns if r.netns_exists else f"[red]{r.netns} (missing)[/]"
        table.add_row(r.name, r.address, ns, str(r.sshd_pid or "-"), ssh)
    return table


def vm_status_table(name: str, link_port: int, rows: Sequence[Any]) -> Table:
    accel = rows[0].accel if rows and rows[0].accel else "-"
    table = Table(title=f"VM lab {name} (accel {accel}, link 127.0.0.1:{link_port})")
    for col in ("host", "ssh", "qemu pid", "RSS", "kernel"):
        table.add_column(col)
    for v in rows:
        ssh = f"127.0.0.1:{v.ssh_port} " + ("[green]open[/]" if v.ssh_open else "[red]down[/]")
        pid = str(v.qemu_pid or "-") + ("" if v.running or not v.qemu_pid else " (gone)")
        rss = f"{v.rss_mib:.0f} MiB" if v.rss_mib else "-"
        table.add_row(v.name, ssh, pid, rss, v.kernel_release or "-")
    return table


def changes_line(changes: Sequence[Any]) -> str:
    """ "2 netns, 2 veth, 1 bridge": what a lab change report made or removed, by kind."""
    kinds = Counter(ch.what.split()[0] for ch in changes)
    return ", ".join(f"{count} {kind}" for kind, count in kinds.items())
