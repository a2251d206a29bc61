"""`labctl facts` as two tables: one row per host, one per interface."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich import box
from rich.table import Table

from labctl.facts.host import HostFacts


def _netmap_cell(status: str | None) -> str:
    if status is None:
        return "-"
    if status.startswith("unavailable"):
        return "[yellow]unavailable[/]"  # the reason is on the modules column's "no"
    return "[green]loaded[/]" if status == "loaded" else status


def _table(title: str) -> Table:
    return Table(
        title=title, box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, collapse_padding=True
    )


def facts_tables(outcomes: Sequence[Any]) -> list[Table]:
    """`outcomes`: HostOutcome[HostFacts] per host, as Connections.run_on_hosts gives them."""
    hosts = _table("hosts")
    columns = ("host", "kernel", "os", "cpu/mem", "ssh", "modules", "netmap", "somaxconn", "qdisc")
    for col in columns:
        hosts.add_column(col, no_wrap=True)
    nics = _table("interfaces")
    for col in ("host", "interface", "driver", "state", "addresses", "root qdisc"):
        nics.add_column(col)
    for o in outcomes:
        f: HostFacts | None = o.value
        if f is None:
            status = "unreachable" if o.unreachable else "failed"
            hosts.add_row(o.host, f"[red]{status}[/]", str(o.error).split(": ", 2)[-1])
            continue
        modules = "yes" if f.modules_supported else "[yellow]no[/]"
        os_name = " ".join(x for x in (f.distro_id, f.distro_version) if x) or "-"
        mem = f"{f.mem_total_mib / 1024:.1f}G" if f.mem_total_mib else "-"
        name = f.host if f.hostname == f.host else f"{f.host} ({f.hostname})"
        hosts.add_row(
            name,
            f.kernel_release or "-",
            os_name,
            f"{f.cpus or '-'}/{mem}",
            f.ssh_interface or "-",
            modules,
            _netmap_cell(f.netmap.status if f.netmap else None),
            str(f.somaxconn or "-"),
            f.default_qdisc or "-",
        )
        for i in f.interfaces:
            if i.name == "lo":
                continue
            nics.add_row(
                f.host,
                i.name,
                i.driver or "-",
                i.state or "-",
                " ".join(i.addresses) or "-",
                i.root_qdisc or "-",
            )
    return [hosts, nics]
