"""qdisc.show: every interface's root qdisc and its counters, per host, as a table or JSON.

One read-only command per host (`ip -j link show` and `tc -s -j qdisc show`), parsed by the
qdisc action's parser, so the table shows exactly what the action compares against.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from rich import box
from rich.markup import escape
from rich.table import Table

from labctl.actions.qdisc import QdiscState, parse_qdisc_states
from labctl.facts import facts_script, split_sections
from labctl.remote import CommandFailed, HostConnection, ShellScript

SHOW_COMMANDS = {"link": "ip -j link show", "qdisc": "tc -s -j qdisc show"}


@dataclass(frozen=True)
class QdiscStat:
    """One interface's root qdisc with the counters tc keeps for it."""

    interface: str
    kind: str
    handle: str  # "0:" or "": the kernel's default, not one set by anyone
    parent: str  # always "root": only root qdiscs are listed
    options: str  # `limit 100`, `rate 12500000 burst 4087 lat 50000`, or ""
    txqueuelen: int
    bytes: int
    packets: int
    drops: int
    overlimits: int
    requeues: int
    backlog: int  # bytes queued now
    qlen: int  # packets queued now

    @classmethod
    def from_state(cls, state: QdiscState) -> QdiscStat:
        return cls(
            interface=state.interface,
            kind=state.kind,
            handle=state.handle,
            parent="root",
            options=state.summary().removeprefix(state.kind).strip(),
            txqueuelen=state.txqueuelen,
            bytes=state.bytes,
            packets=state.packets,
            drops=state.drops,
            overlimits=state.overlimits,
            requeues=state.requeues,
            backlog=state.backlog,
            qlen=state.qlen,
        )


def parse_qdisc_stats(stdout: str) -> list[QdiscStat]:
    """The show command's output → one QdiscStat per interface, in link order."""
    sections = split_sections(stdout)
    for name, command in SHOW_COMMANDS.items():
        sec = sections.get(name)
        if sec is None or sec.exit_status != 0:
            why = "no output" if sec is None else f"exit status {sec.exit_status}"
            raise ValueError(f"`{command}` failed ({why})")
    states = parse_qdisc_states(sections["link"].output, sections["qdisc"].output)
    return [QdiscStat.from_state(s) for s in states.values()]


def qdisc_stats(conn: HostConnection) -> list[QdiscStat]:
    """Every interface's root qdisc on one host (no root needed: reading only)."""
    res = conn.run(ShellScript(facts_script(SHOW_COMMANDS)), timeout=30, become=False)
    if not res.ok:
        raise CommandFailed(res)
    try:
        return parse_qdisc_stats(res.stdout)
    except ValueError as exc:
        raise CommandFailed(res) from exc


HostStats = Sequence[QdiscStat] | BaseException  # a host's stats, or why it has none


def render_table(results_by_host: Mapping[str, HostStats]) -> Table:
    """One row per host and interface; a host that failed gets one row with its reason."""
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
