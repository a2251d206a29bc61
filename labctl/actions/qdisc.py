"""qdisc: the root queueing discipline and txqueuelen of interfaces, and net.core.default_qdisc.

The docker pattern from the blog this project grew from: every veth on docker0 gets `pfifo
limit 100`, then `txqueuelen 0`, then its root qdisc deleted to get back to `noqueue`.
Facts: docs/qdiscs.md (veth is noqueue by default; deleting the default fails with "Cannot
delete qdisc with handle of zero", which means "already at the default").

Plan: one read-only command (`ip -j link show`, `tc -s -j qdisc show`, the default_qdisc
file if asked, and a probe of the wanted qdisc in a private network namespace), pure parsers,
then only what differs. The probe runs `tc qdisc add dev lo root KIND ...` inside
`unshare -n`: a namespace of the probe's own that vanishes with it, so a kind or a parameter
the host's kernel refuses is found before anything changes and in check mode too. Apply runs
every change in one shell script that undoes the changes already made if a later one fails,
so a host is never left half-applied.

Options are compared where tc -j reports them, units normalised (rates in bytes/s, sizes in
bytes, times in µs); a wanted option tc does not report cannot be verified and is replaced on
every run (the change line says so) rather than silently assumed.

Why one module of ~580 lines: the action's arguments, the comparison of wanted and actual
options (tc's units), the probe and the all-or-nothing apply script are one plan; the state it
reads is labctl/facts/qdisc.py.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from labctl.actions.base import (
    Action,
    ActionFailed,
    ActionResult,
    Plan,
    Run,
    Step,
    TaskContext,
    Undo,
)
from labctl.facts.host import Section, facts_script, split_sections
from labctl.facts.qdisc import QdiscState, parse_qdisc_states
from labctl.remote import CommandFailed, CommandResult, ShellScript

DEFAULT_KINDS = frozenset({"noqueue", "default"})  # no root qdisc of ours: delete it
FIFO_KINDS = {"pfifo": "packets", "bfifo": "bytes"}
NOT_ROOT_KINDS = frozenset({"ingress", "clsact"})
# These need a multiqueue device: the probe's single-queue loopback refuses them even where
# the host's devices take them, so for these only "unknown kind" is an answer.
MULTIQUEUE_KINDS = frozenset({"mq", "mqprio", "taprio", "multiq"})
DEFAULT_QDISC_PATH = "/proc/sys/net/core/default_qdisc"
# tc's answers meaning "this kernel has no such qdisc" (modern, then older iproute2).
UNKNOWN_KIND_ERRORS = ("Specified qdisc kind is unknown", "Unknown qdisc")
# `tc qdisc del dev X root` on the kernel's default: "already at the default" (docs/qdiscs.md).
ALREADY_DEFAULT_ERRORS = ("Cannot delete qdisc with handle of zero", "No such file or directory")
MARK = "@@labctl"

_KIND = re.compile(r"^[a-z][a-z0-9_]{0,15}$")
_IFNAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")
_IFPATTERN = re.compile(r"^[A-Za-z0-9_.:@*?!\[\]-]{1,64}$")
_PARAM_KEY = re.compile(r"^[a-z][a-z0-9_]*$")
_PARAM_VALUE = re.compile(r"^[A-Za-z0-9_.:/%+-]+$")

# ---------------------------------------------------------------------------- arguments


@dataclass(frozen=True)
class QdiscArgs:
    interfaces: tuple[str, ...] = ()  # names or globs (`veth*`)
    bridge_ports: str | None = None  # every port of this bridge (the docker0 pattern)
    kind: str | None = None  # noqueue/default = delete the root qdisc; else a tc qdisc kind
    limit: int | None = None  # packets for pfifo, bytes for bfifo: required for both
    params: dict[str, str] = field(default_factory=dict)  # more `key value` words for tc
    txqueuelen: int | None = None
    default_qdisc: str | None = None  # net.core.default_qdisc (initial namespace only)

    def __post_init__(self) -> None:
        for pattern in self.interfaces:
            if not _IFPATTERN.match(pattern):
                raise ValueError(f"interface {pattern!r} is not an interface name or glob")
        if self.bridge_ports is not None and not _IFNAME.match(self.bridge_ports):
            raise ValueError(f"bridge_ports {self.bridge_ports!r} is not an interface name")
        chooses = bool(self.interfaces) or self.bridge_ports is not None
        per_interface = self.kind is not None or self.txqueuelen is not None
        if per_interface and not chooses:
            raise ValueError("give 'interfaces' (names or globs) or 'bridge_ports' (a bridge)")
        if chooses and not per_interface:
            raise ValueError(
                "interfaces chosen but nothing to set on them: give kind or txqueuelen"
            )
        if not per_interface and self.default_qdisc is None:
            raise ValueError("nothing to set: give kind, txqueuelen or default_qdisc")
        if self.txqueuelen is not None and self.txqueuelen < 0:
            raise ValueError(f"txqueuelen must be 0 or more, not {self.txqueuelen}")
        if self.default_qdisc is not None and (
            not _KIND.match(self.default_qdisc) or self.default_qdisc == "default"
        ):
            raise ValueError(f"default_qdisc {self.default_qdisc!r} is not a qdisc kind")
        self._check_kind()

    def _check_kind(self) -> None:
        kind = self.kind
        if kind is None or kind in DEFAULT_KINDS:
            if self.limit is not None or self.params:
                raise ValueError(f"limit and params need a qdisc kind, not {kind or 'none'}")
            return
        if not _KIND.match(kind):
            raise ValueError(f"kind {kind!r} is not a qdisc kind (like pfifo, tbf, htb)")
        if kind in NOT_ROOT_KINDS:
            raise ValueError(f"kind {kind} is not a root qdisc")
        if self.limit is not None and self.limit < 0:
            raise ValueError(f"limit must be 0 or more, not {self.limit}")
        if kind in FIFO_KINDS:
            if self.limit is None:
                raise ValueError(
                    f"kind {kind} needs an explicit limit ({FIFO_KINDS[kind]}): without one a "
                    "fifo takes the interface's txqueuelen as its limit, and txqueuelen may "
                    "be 0 (docs/qdiscs.md)"
                )
            if self.params:
                raise ValueError(f"kind {kind} takes only limit, not {', '.join(self.params)}")
        for key, value in self.params.items():
            if not _PARAM_KEY.match(key):
                raise ValueError(f"params: {key!r} is not a tc parameter name")
            if not _PARAM_VALUE.match(str(value)):
                raise ValueError(f"params: {key} {value!r} is not a safe tc value")
        if self.limit is not None and "limit" in self.params:
            raise ValueError("give limit once: as 'limit' or in params, not both")

    def tc_words(self) -> list[str]:
        """`pfifo limit 100`, `tbf rate 100mbit burst 32kbit latency 50ms` as tc's words."""
        words = [str(self.kind)]
        if self.limit is not None:
            words += ["limit", str(self.limit)]
        for key, value in self.params.items():
            words += [key, str(value)]
        return words


# ---------------------------------------------------------------------------- comparing

# tc's parameter word -> the key `tc -j` reports it under, where they differ.
JSON_KEYS = {"latency": "lat"}
RATE_KEYS = frozenset({"rate", "peakrate", "ceil"})
SIZE_KEYS = frozenset({"burst", "buffer", "maxburst", "minburst", "mtu", "cburst", "quantum"})
TIME_KEYS = frozenset({"latency", "lat", "target", "interval"})
# The kernel keeps burst and latency as clock ticks: `burst 32kbit` (4096 bytes) reads back
# as 4087 (measured, tbf at 100mbit). Sizes and times within 2% are the same.
TICK_TOLERANCE = 0.02

_NUMBER = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([a-z]*)$")
_RATE_UNITS = {  # -> bits per second, as tc(8) reads them; a bare number is bits
    "": 1, "bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12,
    "kibit": 1024, "mibit": 1024**2, "gibit": 1024**3, "tibit": 1024**4,
    "bps": 8, "kbps": 8e3, "mbps": 8e6, "gbps": 8e9, "tbps": 8e12,
    "kibps": 8 * 1024, "mibps": 8 * 1024**2, "gibps": 8 * 1024**3, "tibps": 8 * 1024**4,
}  # fmt: skip
_SIZE_UNITS = {  # -> bytes, as tc's get_size reads them; a bare number is bytes
    "": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2, "g": 1024**3,
    "gb": 1024**3, "kbit": 1024 / 8, "mbit": 1024**2 / 8, "gbit": 1024**3 / 8,
}  # fmt: skip
_TIME_UNITS = {  # -> microseconds, as tc's get_time reads them; a bare number is µs
    "": 1, "us": 1, "usec": 1, "usecs": 1, "ms": 1e3, "msec": 1e3, "msecs": 1e3,
    "s": 1e6, "sec": 1e6, "secs": 1e6,
}  # fmt: skip


def _scaled(value: str, units: Mapping[str, float]) -> float | None:
    m = _NUMBER.match(value.strip().lower())
    if not m or m.group(2) not in units:
        return None
    return float(m.group(1)) * units[m.group(2)]


def normalize_option(key: str, value: str) -> tuple[float | str, float]:
    """A wanted tc value in the unit `tc -j` reports it in, and the tolerance to compare with.

    Rates → bytes/s (`100mbit` → 12500000), sizes → bytes, times → µs; other integers as
    they are, and anything else as lower-case text.
    """
    if key in RATE_KEYS and (bits := _scaled(value, _RATE_UNITS)) is not None:
        return bits / 8, 0.0
    if key in SIZE_KEYS and (size := _scaled(value, _SIZE_UNITS)) is not None:
        return size, TICK_TOLERANCE
    if key in TIME_KEYS and (usec := _scaled(value, _TIME_UNITS)) is not None:
        return usec, TICK_TOLERANCE
    if re.fullmatch(r"[0-9]+", value):
        return float(value), 0.0
    return value.lower(), 0.0


def option_matches(key: str, wanted: str, actual: Any) -> bool:
    if isinstance(actual, str) and actual.lower().startswith("0x"):
        # htb prints `default` in hex, and tc reads it in hex: `default 10` is 0x10.
        try:
            return int(wanted, 16) == int(actual, 16)
        except ValueError:
            return False
    want, tolerance = normalize_option(key, wanted)
    if isinstance(want, float) and isinstance(actual, int | float) and not isinstance(actual, bool):
        return abs(want - actual) <= tolerance * max(abs(want), 1.0)
    return str(want) == str(actual).lower()


def qdisc_difference(state: QdiscState, args: QdiscArgs) -> str | None:
    """Why the root qdisc must change, or None when it already is what `args` want."""
    kind = args.kind
    if kind is None:
        return None
    if kind in DEFAULT_KINDS:
        # Either the kernel's own default (handle 0:) or an explicit noqueue is "no queue
        # of ours"; deleting the root gives the device's default back.
        return None if state.is_default or state.kind == "noqueue" else "not the default"
    if state.kind != kind:
        return f"kind {state.kind}"
    if kind in FIFO_KINDS:
        return None if state.options.get("limit") == args.limit else "limit"
    wanted = dict(args.params)
    if args.limit is not None:
        wanted["limit"] = str(args.limit)
    for key, value in wanted.items():
        json_key = JSON_KEYS.get(key, key)
        if json_key not in state.options:
            return f"tc does not report {key}: replaced every run"
        if not option_matches(key, value, state.options[json_key]):
            return key
    return None


# ---------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class ProbeResult:
    """The wanted qdisc tried on the loopback of a private, throwaway network namespace."""

    ran: bool  # False: unshare itself failed (not root?): nothing is known
    ok: bool
    message: str  # tc's first error line, or why the probe could not run

    @property
    def unknown_kind(self) -> bool:
        return any(e in self.message for e in UNKNOWN_KIND_ERRORS)


@dataclass(frozen=True)
class HostQdiscs:
    """What the plan's one read-only command found on a host."""

    interfaces: dict[str, QdiscState]
    default_qdisc: str | None = None
    probe: ProbeResult | None = None


PROBE_STARTED = f"{MARK} probe started"


def probe_command(words: Sequence[str]) -> str:
    inner = f"echo '{PROBE_STARTED}'; exec " + shlex.join(
        ["tc", "qdisc", "add", "dev", "lo", "root", *words]
    )
    return shlex.join(["unshare", "-n", "sh", "-c", inner]) + " 2>&1"


def read_commands(args: QdiscArgs) -> dict[str, str]:
    """The sections of the plan's one read-only command (see labctl.facts.host.facts_script)."""
    commands = {"link": "ip -j link show", "qdisc": "tc -s -j qdisc show"}
    if args.default_qdisc is not None:
        commands["default_qdisc"] = f"cat {DEFAULT_QDISC_PATH} 2>&1"
    if args.kind is not None and args.kind not in DEFAULT_KINDS:
        commands["probe"] = probe_command(args.tc_words())
    return commands


def parse_probe(section: Section) -> ProbeResult:
    lines = section.output.splitlines()
    if PROBE_STARTED not in lines:
        why = next((x.strip() for x in lines if x.strip()), f"exit status {section.exit_status}")
        return ProbeResult(False, False, why)
    after = [x.strip() for x in lines[lines.index(PROBE_STARTED) + 1 :] if x.strip()]
    if section.exit_status == 0:
        return ProbeResult(True, True, "")
    return ProbeResult(True, False, after[0] if after else f"exit status {section.exit_status}")


def parse_host_qdiscs(host: str, stdout: str) -> HostQdiscs:
    """The read command's output → HostQdiscs; ValueError (one line) for what cannot be used."""
    sections = split_sections(stdout)
    for name in ("link", "qdisc"):
        sec = sections.get(name)
        if sec is None or sec.exit_status != 0:
            why = "no output" if sec is None else f"exit status {sec.exit_status}"
            tool = "ip -j link show" if name == "link" else "tc -s -j qdisc show"
            raise ValueError(f"qdisc: `{tool}` failed on {host} ({why}; iproute2 ≥ 4.19?)")
    default_qdisc = None
    if "default_qdisc" in sections:
        sec = sections["default_qdisc"]
        if sec.exit_status != 0:
            if "No such file or directory" in sec.output:
                raise ValueError(
                    f"qdisc: net.core.default_qdisc: not available on {host} "
                    "(only in the initial network namespace?)"
                )
            raise ValueError(f"qdisc: net.core.default_qdisc on {host}: {sec.output.strip()}")
        default_qdisc = sec.output.strip()
    probe = parse_probe(sections["probe"]) if "probe" in sections else None
    return HostQdiscs(
        parse_qdisc_states(sections["link"].output, sections["qdisc"].output),
        default_qdisc,
        probe,
    )


def read_host_qdiscs(ctx: TaskContext, args: QdiscArgs) -> HostQdiscs:
    res = ctx.conn.run(ShellScript(facts_script(read_commands(args))), timeout=60)
    if not res.ok:
        raise CommandFailed(res)
    return parse_host_qdiscs(ctx.conn.host.name, res.stdout)


def resolve_interfaces(host: str, states: Mapping[str, QdiscState], args: QdiscArgs) -> list[str]:
    """The interfaces `args` choose, in the host's link order; one that matches nothing is an
    error naming it."""
    chosen: set[str] = set()
    for pattern in args.interfaces:
        if any(c in pattern for c in "*?["):
            found = {n for n in states if fnmatch.fnmatchcase(n, pattern)}
            if not found:
                raise ValueError(f"qdisc: no interface on {host} matches {pattern!r}")
        elif pattern in states:
            found = {pattern}
        else:
            raise ValueError(f"qdisc: no interface {pattern!r} on {host}")
        chosen |= found
    if args.bridge_ports is not None:
        bridge = args.bridge_ports
        if bridge not in states:
            raise ValueError(f"qdisc: no bridge {bridge!r} on {host}")
        ports = {n for n, s in states.items() if s.master == bridge}
        if not ports:
            raise ValueError(f"qdisc: bridge {bridge!r} on {host} has no ports")
        chosen |= ports
    return [n for n in states if n in chosen]


# ---------------------------------------------------------------------------- changing


Words = tuple[str, ...]


@dataclass(frozen=True)
class Change:
    """One change of the apply script: its commands, its plan line, and how to take it back."""

    interface: str | None  # None: the host-wide default_qdisc
    line: str  # the plan's change line
    commands: tuple[Words, ...]
    undo: tuple[Words, ...] | None  # None: tc -j does not tell enough to rebuild the old root
    tolerate: tuple[str, ...] = ()  # errors of the first command meaning "already so"
    cleanup: tuple[Words, ...] = ()  # after the first command failed: its side effects undone

    @property
    def is_qdisc(self) -> bool:
        return self.commands[0][:2] == ("tc", "qdisc")


@dataclass
class QdiscPlan(Plan):
    ordered: list[Change] = field(default_factory=list)


def wanted_summary(args: QdiscArgs) -> str:
    return " ".join(args.tc_words()) if args.kind not in DEFAULT_KINDS else str(args.kind)


def restore_words(state: QdiscState) -> list[str] | None:
    """tc's words that rebuild `state` as a root qdisc, where tc -j tells enough."""
    o = state.options
    if state.kind in FIFO_KINDS and "limit" in o:
        return [state.kind, "limit", str(o["limit"])]
    if state.kind in ("pfifo_fast", "noqueue"):
        return [state.kind]
    if state.kind == "tbf" and {"rate", "burst", "lat"} <= set(o):
        rate, burst, lat = f"{o['rate']}bps", f"{o['burst']}b", f"{o['lat']}us"
        return ["tbf", "rate", rate, "burst", burst, "latency", lat]
    return None


def undo_of(state: QdiscState, root: bool, txqueuelen: bool) -> Undo | None:
    """The qdisc task that puts an interface back as `state` found it (its root qdisc,
    its txqueuelen, or both); None when tc -j does not tell enough to rebuild the root."""
    args: dict[str, Any] = {"interfaces": [state.interface]}
    if root:
        words = ["default"] if state.is_default else restore_words(state)
        if words is None:
            return None
        args["kind"] = words[0]
        rest = words[1:]
        if rest[:1] == ["limit"]:
            args["limit"] = int(rest[1])
            rest = rest[2:]
        if rest:
            args["params"] = dict(zip(rest[::2], rest[1::2], strict=True))
    if txqueuelen or (root and state.txqueuelen == 0):
        args["txqueuelen"] = state.txqueuelen
    return Undo(f"qdisc {state.interface}", "qdisc", args)


def root_command(interface: str, words: Sequence[str] | None) -> Words:
    """`tc qdisc replace dev X root WORDS`, or `tc qdisc del dev X root` for no words."""
    if words is None:
        return ("tc", "qdisc", "del", "dev", interface, "root")
    return ("tc", "qdisc", "replace", "dev", interface, "root", *words)


def txqueuelen_command(interface: str, length: int) -> Words:
    return ("ip", "link", "set", interface, "txqueuelen", str(length))


def root_change(state: QdiscState, args: QdiscArgs, why: str) -> Change:
    """Replace or delete one interface's root qdisc, keeping a txqueuelen of 0.

    Attaching a qdisc to a device whose txqueuelen is 0 sets it to 1000 (measured on 6.18:
    the kernel logs "Caught tx_queue_len zero misconfig"), even when the attach then fails
    (mq on a one-queue veth), so a 0 is set again right after, after a failure, and after an
    undo.
    """
    name = state.interface
    tolerate: tuple[str, ...] = ()
    if args.kind in DEFAULT_KINDS:
        commands, tolerate = [root_command(name, None)], ALREADY_DEFAULT_ERRORS
    else:
        commands = [root_command(name, args.tc_words())]
    line = f"{name}: root {state.summary()} -> {wanted_summary(args)}"
    if why.startswith("tc does not report"):
        line += f" ({why})"
    keep_zero = state.txqueuelen == 0
    if keep_zero and args.txqueuelen in (None, 0):
        commands.append(txqueuelen_command(name, 0))
    restore = None if state.is_default else restore_words(state)
    undo: tuple[Words, ...] | None = None
    if state.is_default or restore is not None:
        undo = (root_command(name, restore),)
        if keep_zero:
            undo += (txqueuelen_command(name, 0),)
    cleanup = (txqueuelen_command(name, 0),) if keep_zero else ()
    return Change(name, line, tuple(commands), undo, tolerate, cleanup)


def plan_changes(
    host: str, args: QdiscArgs, found: HostQdiscs, want_diff: bool = False
) -> QdiscPlan:
    """Facts in, changes out: pure, so the whole decision is unit-tested without a host."""
    changes: list[Change] = []
    if args.default_qdisc is not None and found.default_qdisc != args.default_qdisc:
        key = "net.core.default_qdisc"
        changes.append(
            Change(
                None,
                f"{key} {found.default_qdisc} -> {args.default_qdisc}",
                (("sysctl", "-w", f"{key}={args.default_qdisc}"),),
                (("sysctl", "-w", f"{key}={found.default_qdisc}"),),
            )
        )
    per_interface = args.kind is not None or args.txqueuelen is not None
    names = resolve_interfaces(host, found.interfaces, args) if per_interface else []
    before_lines, after_lines = [], []
    undo: list[Undo] = []
    if args.default_qdisc is not None and found.default_qdisc != args.default_qdisc:
        key = "net.core.default_qdisc"
        undo.append(Undo(f"sysctl {key}", "sysctl", {"name": key, "value": found.default_qdisc}))
    for name in names:
        state = found.interfaces[name]
        after_root, after_len = state.summary(), state.txqueuelen
        why = qdisc_difference(state, args)
        new_len = args.txqueuelen is not None and state.txqueuelen != args.txqueuelen
        if why is not None or new_len:
            back = undo_of(state, why is not None, new_len)
            if back is not None:
                undo.append(back)
        if why is not None:
            after_root = wanted_summary(args)
            changes.append(root_change(state, args, why))
        if args.txqueuelen is not None and state.txqueuelen != args.txqueuelen:
            after_len = args.txqueuelen
            changes.append(
                Change(
                    name,
                    f"{name}: txqueuelen {state.txqueuelen} -> {args.txqueuelen}",
                    (txqueuelen_command(name, args.txqueuelen),),
                    (txqueuelen_command(name, state.txqueuelen),),
                )
            )
        before_lines.append(f"{name}: root {state.summary()}, txqueuelen {state.txqueuelen}\n")
        after_lines.append(f"{name}: root {after_root}, txqueuelen {after_len}\n")
    refused = [c.interface for c in changes if c.is_qdisc]
    probe = found.probe
    if (
        refused
        and probe is not None
        and probe.ran
        and not probe.ok
        and (probe.unknown_kind or args.kind not in MULTIQUEUE_KINDS)
    ):
        # The kernel refused it in the probe's own namespace: refuse before touching anything.
        raise ActionFailed(refusal(host, refused, args, probe.message))
    output: dict[str, Any] = {"interfaces": {n: found.interfaces[n].to_dict() for n in names}}
    if args.default_qdisc is not None:
        output["default_qdisc"] = found.default_qdisc
    diff = None
    if want_diff and before_lines != after_lines:
        diff = "".join(
            difflib.unified_diff(
                before_lines, after_lines, f"{host} qdiscs (before)", f"{host} qdiscs (after)"
            )
        )
    steps: list[Step] = [Run(ShellScript(apply_script(changes)))] if changes else []
    return QdiscPlan(
        steps, [c.line for c in changes], diff=diff, output=output, undo=undo, ordered=changes
    )


def refusal(host: str, interfaces: Sequence[str | None], args: QdiscArgs, tc_line: str) -> str:
    """One line naming host, interface(s) and kind, for a qdisc the host refuses."""
    names = list(dict.fromkeys(n for n in interfaces if n is not None)) or ["default_qdisc"]
    where = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    if any(e in tc_line for e in UNKNOWN_KIND_ERRORS):
        return (
            f"{host}: {where}: qdisc kind {args.kind!r} is not supported by this kernel ({tc_line})"
        )
    return f"{host}: {where}: tc refuses `{' '.join(args.tc_words())}`: {tc_line}"


def _tolerant(command: Words, tolerate: Sequence[str], otherwise: str) -> str:
    """Run `command` (its output in $out); on an error other than `tolerate`, `otherwise`."""
    if not tolerate:
        return f"out=$({shlex.join(command)} 2>&1) || {{ {otherwise}; }}"
    patterns = "|".join(f"*{shlex.quote(t)}*" for t in tolerate)
    return f"out=$({shlex.join(command)} 2>&1) || case $out in {patterns}) ;; *) {otherwise};; esac"


def apply_script(changes: Sequence[Change]) -> str:
    """Every change in order; when one fails, it and the ones before it are undone in reverse.

    On failure the script prints `@@labctl failed N`, the command's output, and one
    `@@labctl undo-failed N` line per undo that did not work, then exits 3.
    """
    lines = ["# labctl qdisc: all or nothing (a failure undoes the changes before it)"]
    for i, change in enumerate(changes):
        for k, command in enumerate(change.commands):
            fail = [f"echo '{MARK} failed {i}'", 'printf "%s\\n" "$out"']
            if k == 0:
                fail += [_tolerant(c, (), f"echo '{MARK} undo-failed {i}'") for c in change.cleanup]
            # A later command of the same change failing: the change itself is undone too.
            for j in range(i if k > 0 else i - 1, -1, -1):
                undo = changes[j].undo
                if undo is None:
                    fail.append(f"echo '{MARK} undo-failed {j}'")
                    continue
                for u in undo:
                    tolerate = ALREADY_DEFAULT_ERRORS if u[2:3] == ("del",) else ()
                    fail.append(_tolerant(u, tolerate, f"echo '{MARK} undo-failed {j}'"))
            fail.append("exit 3")
            lines.append(_tolerant(command, change.tolerate if k == 0 else (), "; ".join(fail)))
    return "\n".join(lines) + "\n"


def failure_message(host: str, args: QdiscArgs, plan: QdiscPlan, res: CommandResult) -> str:
    """The apply script's failure as one line: what failed, tc's reason, what was undone."""
    failed: int | None = None
    undo_failed: list[int] = []
    rest: list[str] = []
    for line in res.stdout.splitlines():
        if line.startswith(f"{MARK} failed "):
            failed = int(line.split()[2])
        elif line.startswith(f"{MARK} undo-failed "):
            undo_failed.append(int(line.split()[2]))
        elif failed is not None and line.strip() and not rest:
            rest.append(line.strip())
    if failed is None:
        return f"{host}: {res.first_error_line()}"
    change = plan.ordered[failed]
    tc_line = rest[0] if rest else f"exit status {res.exit_status}"
    if change.is_qdisc and any(e in tc_line for e in UNKNOWN_KIND_ERRORS):
        head = refusal(host, [change.interface], args, tc_line)
    else:
        head = f"{host}: {change.line} failed: {tc_line}"
    if undo_failed:
        lost = ", ".join(plan.ordered[j].line for j in sorted(undo_failed))
        return f"{head}; could NOT undo: {lost}"
    if failed == 0:
        return f"{head}; nothing was changed"
    return f"{head}; the {failed} change(s) before it were undone"


class QdiscAction(Action):
    name = "qdisc"
    Args = QdiscArgs

    def plan(self, ctx: TaskContext, args: QdiscArgs) -> Plan:
        found = read_host_qdiscs(ctx, args)
        return plan_changes(ctx.conn.host.name, args, found, ctx.want_diff)

    def apply(self, ctx: TaskContext, args: QdiscArgs, plan: Plan) -> ActionResult:
        if not isinstance(plan, QdiscPlan) or not plan.steps:
            return super().apply(ctx, args, plan)
        step = plan.steps[0]
        assert isinstance(step, Run)
        res = ctx.conn.run(step.command, timeout=step.timeout)
        if res.ok:
            return ActionResult(
                changed=True, changes=tuple(plan.changes), diff=plan.diff, output=plan.output
            )
        # All or nothing: unless an undo failed, the host is as it was before the task.
        return ActionResult(
            changed=f"{MARK} undo-failed " in res.stdout,
            failed=True,
            msg=failure_message(ctx.conn.host.name, args, plan, res),
            changes=tuple(plan.changes),
            output=plan.output,
        )
