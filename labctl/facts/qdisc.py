"""Qdiscs as facts: every interface's root qdisc, queue length and counters, read with one
command per host (`ip -j link show`, `tc -s -j qdisc show`) and a pure parser. The qdisc action
plans from the same parser, so `labctl qdisc.show` shows exactly what the action compares
against, and experiments store the same counters before and after a trial.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from labctl.facts.host import facts_script, split_sections
from labctl.remote import CommandFailed, HostConnection, ShellScript

SHOW_COMMANDS = {"link": "ip -j link show", "qdisc": "tc -s -j qdisc show"}
STAT_FIELDS = ("bytes", "packets", "drops", "overlimits", "requeues", "backlog", "qlen")

# ---------------------------------------------------------------------------- state


@dataclass(frozen=True)
class QdiscState:
    """One interface's root qdisc and queue length, as `tc -s -j` and `ip -j link` report them.

    `handle` "0:" is a qdisc the kernel attached by itself (its default: noqueue on a veth,
    pfifo_fast or mq on a NIC); an interface tc lists no root qdisc for (a down veth) gets
    the kind `ip -j link` names (noop) or noqueue, and no handle.
    """

    interface: str
    kind: str
    handle: str
    txqueuelen: int
    options: Mapping[str, Any] = field(default_factory=dict)
    master: str | None = None
    bytes: int = 0
    packets: int = 0
    drops: int = 0
    overlimits: int = 0
    requeues: int = 0
    backlog: int = 0
    qlen: int = 0

    @property
    def is_default(self) -> bool:
        return self.handle in ("", "0:")

    def summary(self) -> str:
        """`pfifo limit 100`, `noqueue`, `tbf rate 12500000 burst 4087 lat 50000`."""
        words = [self.kind]
        for key, value in self.options.items():
            if isinstance(value, bool | int | float | str):
                words += [key, str(value).lower() if isinstance(value, bool) else str(value)]
        return " ".join(words)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "options": dict(self.options), "default": self.is_default}


def _objects(text: str, tool: str) -> list[dict[str, Any]]:
    """`tool`'s JSON: a list of objects, else ValueError (one line) naming the tool."""
    try:
        doc = json.loads(text or "[]")
    except ValueError as exc:
        raise ValueError(f"`{tool}` gave no JSON: {exc}") from None
    if not isinstance(doc, list) or not all(isinstance(o, dict) for o in doc):
        raise ValueError(f"`{tool}` gave JSON that is not a list of objects")
    return doc


def parse_root_qdisc_entries(text: str) -> dict[str, dict[str, Any]]:
    """`tc -s -j qdisc show` → {device: its root qdisc's JSON object}; child and ingress
    qdiscs are left out (they have a `parent`, not `root`)."""
    roots: dict[str, dict[str, Any]] = {}
    for q in _objects(text, "tc -s -j qdisc show"):
        if q.get("root") and isinstance(q.get("dev"), str):
            roots[q["dev"]] = q
    return roots


def parse_qdisc_states(link_json: str, qdisc_json: str) -> dict[str, QdiscState]:
    """`ip -j link show` and `tc -s -j qdisc show` → every interface's state, in link order.

    `ip -j` leaves `txqlen` out when it is 0 (measured: iproute2 6.1 after
    `ip link set X txqueuelen 0`), so a missing key is 0, not unknown.
    """
    roots = parse_root_qdisc_entries(qdisc_json)
    states: dict[str, QdiscState] = {}
    for link in _objects(link_json, "ip -j link show"):
        name = str(link.get("ifname", ""))
        q = roots.get(name)
        if q is None:
            # tc lists no root for a down veth; `ip -j link` calls it noop.
            q = {"kind": link.get("qdisc") or "noqueue", "handle": ""}
        options = q.get("options") or {}
        master = link.get("master")
        try:
            if not isinstance(options, dict) or not isinstance(master, str | None):
                raise TypeError("options or master of an unexpected type")
            states[name] = QdiscState(
                interface=name,
                kind=str(q.get("kind", "")),
                handle=str(q.get("handle", "")),
                txqueuelen=int(link.get("txqlen", 0)),
                options=dict(options),
                master=master,
                **{k: int(q.get(k, 0) or 0) for k in STAT_FIELDS},
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"`ip -j link`/`tc -j qdisc` for {name!r}: {exc}") from None
    return states


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
