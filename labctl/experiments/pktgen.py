"""netmap pkt-gen between two hosts: tx on one, rx on the other, over the experiment link,
each trial cross-checked with both NICs' own counters (docs/netmap.md, "pkt-gen").

Per trial: netmap's mode is set on both hosts (`admode` 1 native, 2 generic; put back when the
run ends), both NICs' counters are read (/sys/class/net/IF/statistics), pkt-gen rx starts in
the background on the receiver, then pkt-gen tx on the sender. With a `rate`, tx is given
the count `rate x duration` (`-n`) and ends by itself; without one, `duration` counts from
tx's first packets out (pkt-gen first waits for the link, and in a TCG VM takes a second or
more to map netmap's memory: a wall-clock limit cut one trial to 0.8 s of sending) and tx is
stopped with SIGINT, which makes pkt-gen print its summary. rx is stopped last, the same way;
the counters are read again. The verdict compares what pkt-gen says it sent and received
with what the NICs counted: pkt-gen's rx count has been seen wrong in a VM ("Received 1
packets 311064240 bytes", with the right byte count), so where only the bytes agree the
NIC's packet count is used and the trial says so.

Rates measured on virtual hardware measure the emulator, not a NIC: the summary says so.
pkt-gen's command line and output: labctl/experiments/pktgen_tool.py.

Why one module of ~590 lines: one experiment (its options, its verdict, its trial on two
hosts, its declaration), as an experiment is one module; pkt-gen's own command line and output
are labctl/experiments/pktgen_tool.py.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from labctl.experiments.base import (
    RUN_DIR,
    Experiment,
    ExperimentError,
    RunContext,
    SweepOutcome,
    TrialSpec,
    background,
    experiment_address,
    option,
    plan_trials,
    run_params,
    run_sweep,
    server_and_client,
    trial_record,
)
from labctl.experiments.pktgen_tool import (
    PktgenError,
    PktgenResult,
    parse_periodic,
    parse_pktgen,
    pktgen_argv,
)
from labctl.metrics import ExperimentSpec, Metric, PlotSpec, TrialKind
from labctl.paths import HOST_BIN_DIR

if TYPE_CHECKING:
    from labctl.facts.host import HostFacts
    from labctl.inventory import Host, Inventory
    from labctl.remote import Connections, HostConnection
    from labctl.results.store import TrialRecord

PKTGEN_PATH = f"{HOST_BIN_DIR}/pkt-gen"  # where provisioning links the pkt-gen it installed
MODES = ("native", "generic")
ADMODE = {"native": 1, "generic": 2}  # netmap's admode parameter
COUNTERS = ("tx_packets", "tx_bytes", "rx_packets", "rx_bytes", "rx_dropped", "rx_missed_errors")
DRAIN_SECONDS = 0.5  # after tx ends, for the last frames to arrive before rx is stopped
STOP_SLACK = 10.0  # beyond `duration`, for a counted tx to finish before it is stopped
START_TIMEOUT = 60.0  # beyond -w, for pkt-gen to map netmap's memory and start sending


# ---------------------------------------------------------------------------- the verdict


@dataclass(frozen=True)
class NicCounters:
    packets: int
    bytes: int
    dropped: int = 0


def parse_counters(text: str, iface: str) -> dict[str, int]:
    """`name=value` lines of /sys/class/net/IF/statistics."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and value.strip().isdigit():
            out[key.strip()] = int(value)
    missing = [c for c in ("tx_packets", "rx_packets") if c not in out]
    if missing:
        raise ExperimentError(f"no counters for {iface} ({', '.join(missing)} missing)")
    return out


@dataclass(frozen=True)
class PktgenVerdict:
    valid: bool
    reason: str  # why not valid, or a note on a valid one ("" when all agree)
    received: int  # the packets counted as received by pkt-gen: its own count, or the
    # NIC's where only pkt-gen's bytes agree with the NIC (its packet count seen wrong in a VM)


def slack_for(sent: int) -> int:
    """Frames other than pkt-gen's on a link (ARP, IPv6 neighbour discovery, ...)."""
    return max(64, int(sent * 0.002))


def judge_pktgen(
    sent: PktgenResult, received: PktgenResult, nic_tx: NicCounters, nic_rx: NicCounters
) -> PktgenVerdict:
    """Do pkt-gen and the two NICs tell one possible story? Frames flow pkt-gen tx → sender
    NIC → link → receiver NIC → pkt-gen rx, and each count along the way can only fall:
    a loss (link or receiver too slow) is a result, a count that rises is a broken
    measurement. The NICs may add a few frames of their own (ARP, ...) and count a 4-byte
    CRC per frame."""
    problems: list[str] = []
    note = ""
    slack = slack_for(sent.packets)
    if sent.packets == 0:
        problems.append("pkt-gen sent nothing")
    elif abs(nic_tx.packets - sent.packets) > slack:
        problems.append(
            f"the sender's NIC counted {nic_tx.packets} packets out, "
            f"pkt-gen says it sent {sent.packets}"
        )
    counted = received.packets
    each = received.bytes / received.packets if received.packets else 0.0
    if received.packets > nic_rx.packets + slack:
        problems.append(
            f"pkt-gen received {received.packets} packets, more than its NIC counted in "
            f"({nic_rx.packets})"
        )
    elif received.packets < nic_rx.packets - slack and received.bytes:
        # Fewer than the NIC: the receiver lost them, unless pkt-gen's bytes say it did not
        # (then its packet count is what is wrong).
        crc = 4 * nic_rx.packets
        if abs(nic_rx.bytes - received.bytes) <= slack * 1514 + crc and each > 1514:
            counted = nic_rx.packets
            note = (
                f"pkt-gen rx counted {received.packets} packets but {received.bytes} bytes, "
                f"its NIC {nic_rx.packets} packets, {nic_rx.bytes} bytes: the NIC's count used"
            )
    if nic_rx.packets > nic_tx.packets + slack:
        problems.append(
            f"the receiver's NIC counted {nic_rx.packets} packets in, more than the "
            f"{nic_tx.packets} the sender's NIC sent"
        )
    if problems:
        return PktgenVerdict(False, "; ".join(problems), counted)
    return PktgenVerdict(True, note, counted)


def trial_metrics(
    sent: PktgenResult,
    received: PktgenResult,
    nic_tx: NicCounters,
    nic_rx: NicCounters,
    verdict: PktgenVerdict,
    duration: float,
) -> dict[str, float]:
    """pkt-gen's rates, both NICs' counts, and where packets were lost: on the link (sender
    NIC → receiver NIC) or in the receiver (its NIC → pkt-gen rx).

    Receiving rates are over tx's own sending time: packets arrive only while tx sends, and
    netmap's pkt-gen rx times itself from its first packet until it is stopped, which is
    after tx has ended (a counted tx ends by itself; rx is stopped a round trip or more
    later: its own figure read half the real rate in a TCG VM)."""
    seconds = sent.seconds or duration
    rx_seconds = min(received.seconds, seconds) if received.seconds else seconds
    return {
        "tx_pps": sent.pps,
        "tx_bps": sent.bps,
        "rx_pps": verdict.received / rx_seconds if rx_seconds else 0.0,
        "rx_bps": received.bytes * 8 / rx_seconds if rx_seconds else 0.0,
        "tx_packets": float(sent.packets),
        "tx_bytes": float(sent.bytes),
        "rx_packets": float(verdict.received),
        "rx_bytes": float(received.bytes),
        "nic_tx_packets": float(nic_tx.packets),
        "nic_tx_bytes": float(nic_tx.bytes),
        "nic_rx_packets": float(nic_rx.packets),
        "nic_rx_bytes": float(nic_rx.bytes),
        "nic_rx_dropped": float(nic_rx.dropped),
        "nic_rx_pps": nic_rx.packets / seconds if seconds else 0.0,
        "loss_share": _lost(verdict.received, sent.packets) if sent.packets else 1.0,
        "link_loss_share": _lost(nic_rx.packets, nic_tx.packets),
        "rx_loss_share": _lost(verdict.received, nic_rx.packets),
    }


def tx_count(rate: int, duration: float) -> int | None:
    """Packets for tx to send at `rate` for `duration` (None: no rate, timed and stopped)."""
    return max(1, round(rate * duration)) if rate else None


def _lost(arrived: int, left: int) -> float:
    """The share of `left` packets that did not arrive (0 when none left)."""
    return min(1.0, max(0.0, 1.0 - arrived / left)) if left else 0.0


# ---------------------------------------------------------------------------- on the hosts


@dataclass(frozen=True)
class PktgenOptions:
    mode: tuple[str, ...] = option(("native",), "netmap mode: native, generic, or both")
    size: tuple[int, ...] = option((60,), "frame sizes in bytes without CRC (60..1514)")
    rate: int = option(0, "packets/s pkt-gen sends (0: as fast as it can)")
    duration: float = option(5.0, "seconds of sending per trial")
    repeat: int = option(3, "repeats of the whole matrix, interleaved in shuffled order")
    wait_link: int = option(2, "seconds pkt-gen waits for the link before it starts (-w)")
    warmup: bool = option(True, "a warm-up trial first (stored, never counted)")

    def __post_init__(self) -> None:
        bad = [m for m in self.mode if m not in MODES]
        if bad or not self.mode:
            raise ValueError(f"mode: choose from {', '.join(MODES)}")
        if not self.size or any(not 60 <= s <= 1514 for s in self.size):
            raise ValueError("size: frames of 60 to 1514 bytes")
        if self.rate < 0 or self.repeat < 1 or not 0 <= self.wait_link <= 30:
            raise ValueError("rate >= 0, repeat >= 1, wait_link 0..30")
        if not 0.5 <= self.duration <= 3600:
            raise ValueError("duration must be 0.5 to 3600 s")

    def matrix(self) -> dict[str, Sequence[Any]]:
        return {"mode": self.mode, "size": self.size}


PKTGEN_KIND = TrialKind(
    "pktgen",
    config=("mode", "size"),
    metrics=(
        Metric("rx_pps", "received packets/s", "pkt/s", "higher", watched=True),
        Metric("tx_pps", "sent packets/s", "pkt/s", "higher", watched=True),
        Metric("loss_share", "share of packets lost", "", "lower"),
        Metric("link_loss_share", "lost between the NICs", "", "lower", shown=False),
        Metric("rx_loss_share", "lost in the receiver (NIC to pkt-gen)", "", "lower", shown=False),
    ),
)


class PktgenTrials:
    """pkt-gen tx on `sender`, rx on `receiver`: one trial at a time, netmap's mode put back
    at the end. Also what the reuseport sweep runs for its pkt-gen trial.

    Both run in the background, stopped by pidfile PID with SIGINT (pkt-gen prints its
    summary then): rx first up, tx second; `duration` counts from tx's first packets."""

    def __init__(
        self,
        conns: Connections,
        sender: str,
        receiver: str,
        facts: Mapping[str, HostFacts],
        options: PktgenOptions,
        run_id: int,
    ) -> None:
        self.conns = conns
        self.sender, self.receiver = sender, receiver
        self.facts = facts
        self.options = options
        self.run_id = run_id
        self._admode_before: dict[str, int] = {}  # host → admode when the run began
        self._admode_now: str | None = None  # the mode this run last wrote on both hosts
        self._checked: dict[str, str] | None = None  # host → why it cannot run ("" if it can)

    def default_params(self) -> dict[str, Any]:
        return {"mode": self.options.mode[0], "size": self.options.size[0]}

    def _var(self, host: str, name: str, default: str | None = None) -> str | None:
        value = self.conns[host].host.vars.get(name, default)
        return None if value is None else str(value)

    def interface(self, host: str) -> str | None:
        return self._var(host, "experiment_interface")

    def binary(self, host: str) -> str:
        return self._var(host, "pktgen_path", PKTGEN_PATH) or PKTGEN_PATH

    def _check(self) -> dict[str, str]:
        """Once per run: can each host run pkt-gen at all? (module support, /dev/netmap,
        pkt-gen, the experiment interface)"""
        from labctl.remote import ShellScript

        if self._checked is not None:
            return self._checked
        checked: dict[str, str] = {}
        for host in (self.receiver, self.sender):
            facts, iface = self.facts[host], self.interface(host)
            if not facts.modules_supported:
                checked[host] = f"{host}: kernel without module support, netmap unavailable"
                continue
            if iface is None:
                checked[host] = f"{host}: no experiment_interface in the inventory"
                continue
            q = shlex.quote
            script = (
                "[ -c /dev/netmap ] || { echo 'netmap not loaded (/dev/netmap missing)'; exit; }; "
                f"[ -x {q(self.binary(host))} ] || "
                f"{{ echo {q(f'no pkt-gen at {self.binary(host)}')}; exit; }}; "
                f"[ -d /sys/class/net/{q(iface)} ] || "
                f"{{ echo {q(f'no interface {iface}')}; exit; }}; "
                'printf "admode=%s\\n" "$(cat /sys/module/netmap/parameters/admode)"'
            )
            out = self.conns[host].run(ShellScript(script), timeout=30).stdout.strip()
            if out.startswith("admode="):
                admode = out.removeprefix("admode=")
                if admode.isdigit():
                    self._admode_before.setdefault(host, int(admode))
                checked[host] = ""
            else:
                checked[host] = f"{host}: {out or 'cannot run pkt-gen'}"
        self._checked = checked
        return checked

    def _skip_reason(self, mode: str) -> str:
        reasons = [why for why in self._check().values() if why]
        if not reasons and mode == "native":
            for host in (self.sender, self.receiver):
                iface = self.interface(host)
                nic = self.facts[host].interface(iface or "")
                nm = self.facts[host].netmap
                driver = nic.driver if nic else None
                if nm is not None and driver not in nm.native_drivers:
                    reasons.append(
                        f"{host}: {iface} is driven by {driver or 'no driver'}, not one of "
                        "netmap's patched drivers: native mode unavailable (provision with "
                        f"netmap_drivers={driver})"
                    )
        return "; ".join(reasons)

    def _counters(self, host: str) -> dict[str, int]:
        from labctl.remote import ShellScript

        iface = self.interface(host) or ""
        d = shlex.quote(f"/sys/class/net/{iface}/statistics")
        script = " ".join(f'printf "{c}=%s\\n" "$(cat {d}/{c} 2>/dev/null)";' for c in COUNTERS)
        return parse_counters(self.conns[host].run(ShellScript(script), timeout=30).stdout, iface)

    def _set_admode(self, mode: str) -> None:
        """netmap's mode on both hosts, written where it is not that mode already."""
        from labctl.remote import ShellScript

        if self._admode_now == mode:
            return
        for host in (self.sender, self.receiver):
            self.conns[host].run(
                ShellScript(f"echo {ADMODE[mode]} > /sys/module/netmap/parameters/admode"),
                check=True,
            )
        self._admode_now = mode

    def _process(self, conn: HostConnection, role: str, argv: list[str] | None, state: str) -> None:
        """pkt-gen `role` (tx, rx) started in the background or stopped, by pidfile PID."""
        result = background(
            conn,
            self._name(role),
            state,
            argv=argv,
            out=self._out(role),
            startup_wait=0.2,
            stop_signal="INT",  # pkt-gen prints its summary on SIGINT (or at its -n count)
        )
        if result.failed:
            said = conn.run(["tail", "-n", "3", self._out(role) + ".err"]).stdout.strip()
            why = f"{result.msg.splitlines()[0]}" + (f"; it said: {said}" if said else "")
            raise ExperimentError(f"{conn.host.name}: pkt-gen {role} {state}: {why}")

    def _wait_for_sending(self, conn: HostConnection) -> None:
        """Until tx's periodic lines show packets going out: pkt-gen first waits for the
        link (-w) and maps netmap's memory (seconds in a TCG VM), and `duration` is what it
        spends sending."""
        deadline = time.monotonic() + self.options.wait_link + START_TIMEOUT
        err = self._out("tx") + ".err"
        while True:  # bounded by the deadline
            text = conn.run(["cat", err], timeout=30).stdout
            if any(pps > 0 for pps in parse_periodic(text)):
                return
            if time.monotonic() > deadline:
                tail = " | ".join(text.strip().splitlines()[-3:])
                raise ExperimentError(
                    f"{conn.host.name}: pkt-gen tx sent nothing within "
                    f"{self.options.wait_link + START_TIMEOUT:g} s" + (f": {tail}" if tail else "")
                )
            time.sleep(0.2)

    def _wait_for_exit(self, conn: HostConnection, role: str, seconds: float) -> None:
        """Until pkt-gen `role` has exited by itself, `seconds` at most."""
        from labctl.actions.process import probe_process

        deadline = time.monotonic() + seconds
        name = self._name(role)
        while time.monotonic() < deadline:  # bounded by the deadline
            if not probe_process(conn, name, RUN_DIR).running:
                return
            time.sleep(0.2)

    def _name(self, role: str) -> str:
        return f"pktgen-{role}-{self.run_id}"

    def _out(self, role: str) -> str:
        return f"{RUN_DIR}/{self.run_id}-pktgen-{role}"

    def run_trial(self, spec: TrialSpec) -> TrialRecord:
        opts = self.options
        mode, size = str(spec.params["mode"]), int(spec.params["size"])
        params = {"mode": mode, "size": size, "rate": opts.rate, "duration": opts.duration}
        started = time.time()

        def record(
            valid: bool, reason: str, metrics: dict[str, float], state: Any = None
        ) -> TrialRecord:
            return trial_record(
                spec, PKTGEN_KIND.name, params, started, valid, reason, metrics, state, outputs
            )

        outputs: list[tuple[str, str, str, str]] = []
        why = self._skip_reason(mode)
        if why:
            return record(False, f"skipped: {why}", {})
        self._set_admode(mode)
        tx_conn, rx_conn = self.conns[self.sender], self.conns[self.receiver]
        tx_if, rx_if = self.interface(self.sender) or "", self.interface(self.receiver) or ""
        rx_nic = self.facts[self.receiver].interface(rx_if)
        before = {h: self._counters(h) for h in (self.sender, self.receiver)}
        rx_argv = pktgen_argv(
            self.binary(self.receiver), rx_if, "rx", size=size, wait_link=opts.wait_link
        )
        tx_argv = pktgen_argv(
            self.binary(self.sender),
            tx_if,
            "tx",
            size=size,
            rate=opts.rate or None,
            count=tx_count(opts.rate, opts.duration),
            src=experiment_address(tx_conn.host),
            dst=experiment_address(rx_conn.host),
            dst_mac=rx_nic.mac if rx_nic and rx_nic.mac else None,
            wait_link=opts.wait_link,
        )
        self._process(rx_conn, "rx", rx_argv, "started")
        try:
            self._process(tx_conn, "tx", tx_argv, "started")
            try:
                self._wait_for_sending(tx_conn)
                if opts.rate:  # tx ends by itself after its count; SIGINT only if late
                    self._wait_for_exit(tx_conn, "tx", opts.duration + STOP_SLACK)
                else:
                    time.sleep(opts.duration)
            finally:
                self._process(tx_conn, "tx", None, "stopped")
            time.sleep(DRAIN_SECONDS)
        finally:
            self._process(rx_conn, "rx", None, "stopped")
        after = {h: self._counters(h) for h in (self.sender, self.receiver)}
        read = {
            (role, stream): conn.run(["cat", f"{self._out(role)}.{stream}"]).stdout
            for role, conn in (("tx", tx_conn), ("rx", rx_conn))
            for stream in ("out", "err")
        }
        outputs += [
            (host, role, "stdout" if stream == "out" else "stderr", read[(role, stream)])
            for host, role in ((self.sender, "tx"), (self.receiver, "rx"))
            for stream in ("out", "err")
        ]

        def delta(host: str, key: str) -> int:
            return after[host].get(key, 0) - before[host].get(key, 0)

        nic_tx = NicCounters(delta(self.sender, "tx_packets"), delta(self.sender, "tx_bytes"))
        nic_rx = NicCounters(
            delta(self.receiver, "rx_packets"),
            delta(self.receiver, "rx_bytes"),
            delta(self.receiver, "rx_dropped") + delta(self.receiver, "rx_missed_errors"),
        )
        state = {
            "counters_delta": {"sender": nic_tx.__dict__, "receiver": nic_rx.__dict__},
            "interfaces": {self.sender: tx_if, self.receiver: rx_if},
            "admode": ADMODE[mode],
        }
        try:
            sent = parse_pktgen(read[("tx", "out")], read[("tx", "err")])
            received = parse_pktgen(read[("rx", "out")], read[("rx", "err")])
        except PktgenError as exc:
            return record(False, f"pkt-gen: {exc}", {}, state)
        verdict = judge_pktgen(sent, received, nic_tx, nic_rx)
        metrics = trial_metrics(sent, received, nic_tx, nic_rx, verdict, opts.duration)
        return record(verdict.valid, verdict.reason, metrics, state)

    def cleanup(self) -> None:
        """rx stopped (by pidfile PID) and netmap's mode put back on both hosts."""
        self._admode_now = None

        def put_back(conn: HostConnection) -> None:
            from labctl.remote import ShellScript

            for role in ("tx", "rx"):
                self._process(conn, role, None, "stopped")
                conn.run(["rm", "-f", f"{self._out(role)}.out", f"{self._out(role)}.err"])
            admode = self._admode_before.get(conn.host.name)
            if admode is not None:
                conn.run(
                    ShellScript(
                        f"[ -w /sys/module/netmap/parameters/admode ] && "
                        f"echo {admode} > /sys/module/netmap/parameters/admode; true"
                    )
                )

        self.conns.run_on_hosts(put_back, names=[self.receiver, self.sender])


# ---------------------------------------------------------------------------- the experiment


def virtual_note(hosts: Mapping[str, tuple[str, Mapping[str, Any]]]) -> str:
    """A line for summaries when the hosts are virtual machines."""
    kinds = sorted(
        {
            str(facts.get("virtualization"))
            for _, facts in hosts.values()
            if facts.get("virtualization") not in (None, "", "none")
        }
    )
    if not kinds:
        return ""
    return (
        f"rates measured on virtual hardware ({', '.join(kinds)}): they measure the emulator, "
        "not a NIC; check function (sent = received = the NICs' counts), not speed"
    )


def pktgen_notes(
    hosts: Mapping[str, tuple[str, Mapping[str, Any]]], trials: Sequence[TrialRecord]
) -> list[str]:
    """The summary's note when pkt-gen measured on virtual hardware."""
    measured = any(t.kind == PKTGEN_KIND.name and t.metrics for t in trials)
    note = virtual_note(hosts) if measured else ""
    return [note] if note else []


class Pktgen(Experiment):
    spec = ExperimentSpec(
        name="pktgen",
        identity=("mode", "size", "rate", "duration"),
        kinds=(PKTGEN_KIND,),
        plot=PlotSpec(
            "pktgen", x="size", y=("rx_pps",), series="mode", x_label="packet size (bytes)"
        ),
    )
    help = "netmap pkt-gen tx to rx over the experiment link, checked against the NICs' counters"
    Options = PktgenOptions

    def hosts(self, inventory: Inventory, server: str | None, clients: str) -> list[Host]:
        receiver, sender = server_and_client(inventory, server, clients)
        return [receiver, sender]

    def notes(
        self, hosts: Mapping[str, tuple[str, Mapping[str, Any]]], trials: Sequence[TrialRecord]
    ) -> list[str]:
        return pktgen_notes(hosts, trials)

    def run(self, ctx: RunContext, options: PktgenOptions) -> SweepOutcome:
        from labctl.facts.host import gather_all
        from labctl.remote import Connections

        receiver, sender = server_and_client(ctx.inventory, ctx.server, ctx.clients)
        with Connections([receiver, sender]) as conns:
            facts = gather_all(conns)
            params = {**run_params(options), "sender": sender.name, "receiver": receiver.name}
            run_id, seed = ctx.start_run(
                self.spec.name,
                params,
                {
                    receiver.name: ("receiver", facts[receiver.name].to_dict()),
                    sender.name: ("sender", facts[sender.name].to_dict()),
                },
            )
            trials = PktgenTrials(conns, sender.name, receiver.name, facts, options, run_id)
            plan = plan_trials(options.matrix(), options.repeat, seed, warmup=options.warmup)
            return run_sweep(
                ctx.store, run_id, plan, trials.run_trial, trials.cleanup, on_trial=ctx.on_trial
            )
