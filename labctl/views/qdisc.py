"""`labctl qdisc.show`: every interface's root qdisc with its counters, as a table or JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from labctl.facts.qdisc import QdiscStat

if TYPE_CHECKING:
    from rich.table import Table

HostStats = Sequence[QdiscStat] | BaseException  # a host's stats, or why it has none


def render_table(results_by_host: Mapping[str, HostStats]) -> Table:
    """One row per host and interface; a host that failed gets one row with its reason."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title="root qdiscs", collapse_padding=True)
    for col in ("host", "iface", "qdisc", "options"):
        table.add_column(col, no_wrap=col != "options")
    for col in ("txq", "bytes", "pkts", "drops", "overlim", "requeue", "backlog"):
        table.add_column(col, justify="right", no_wrap=True)
    for host, stats in results_by_host.items():
        if isinstance(stats, BaseException):
            table.add_row(escape(host), f"[red]{escape(str(stats))}[/]")
            continue
        for s in stats:
            default = s.handle in ("", "0:")
            table.add_row(
                escape(host),
                escape(s.interface),
                escape(s.kind) + ("[dim]*[/]" if default else ""),
                escape(s.options),
                str(s.txqueuelen),
                str(s.bytes),
                str(s.packets),
                f"[red]{s.drops}[/]" if s.drops else "0",
                str(s.overlimits),
                str(s.requeues),
                f"{s.backlog}b {s.qlen}p",
            )
    table.caption = "* the kernel's default (no root qdisc of ours)"
    return table


def to_json(results_by_host: Mapping[str, HostStats]) -> str:
    """{host: [stat, ...]} or {host: {"error": reason}} for a host that failed."""
    doc: dict[str, Any] = {}
    for host, stats in results_by_host.items():
        if isinstance(stats, BaseException):
            doc[host] = {"error": str(stats)}
        else:
            doc[host] = [asdict(s) for s in stats]
    return json.dumps(doc, indent=2)
