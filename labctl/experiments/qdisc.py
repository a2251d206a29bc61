"""Root qdiscs on the veth path, compared: TCP throughput and UDP packet rate (iperf3).

The blog tunes the qdisc of docker's veths; here each trial sets the root qdisc of the
sender's veth with the qdisc action, runs one iperf3 test across the bridge, and stores the
rate with the qdisc's own counters (sent, drops, requeues, overlimits, backlog) before and
after. A kind the kernel lacks is skipped with the reason; the interface is put back to the
kernel's default (noqueue) at the end, also after Ctrl-C.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labctl.errors import HostUnreachable, LabctlError
from labctl.experiments.base import (
    RUN_DIR,
    Experiment,
    ExperimentError,
    RunContext,
    SweepOutcome,
    TrialSpec,
    option,
    plan_trials,
    restore_run,
    run_params,
    run_sweep,
    server_and_client,
    trial_record,
)
from labctl.metrics import ExperimentSpec, Metric, PlotSpec, TrialKind

if TYPE_CHECKING:
    from labctl.actions.base import TaskContext
    from labctl.facts.qdisc import QdiscStat
    from labctl.remote import Connections, HostConnection
    from labctl.results.store import ResultsStore, TrialRecord

# Each kind with the arguments that make it a fair fifo of about 100 packets.
QDISCS: dict[str, dict[str, Any]] = {
    "noqueue": {"kind": "noqueue"},
    "pfifo": {"kind": "pfifo", "limit": 100},
    "pfifo_fast": {"kind": "pfifo_fast"},
    "bfifo": {"kind": "bfifo", "limit": 150_000},
    "fq_codel": {"kind": "fq_codel"},
}
COUNTERS = ("bytes", "packets", "drops", "overlimits", "requeues")


@dataclass(frozen=True)
class QdiscOptions:
    qdiscs: tuple[str, ...] = option(
        ("noqueue", "pfifo", "pfifo_fast", "bfifo"), "root qdiscs to compare: " + ",".join(QDISCS)
    )
    protos: tuple[str, ...] = option(
        ("tcp", "udp"), "tcp (iperf3 throughput), udp (64-byte packet rate), or both"
    )
    duration: float = option(3.0, "seconds per trial (whole seconds: iperf3's -t)")
    repeat: int = option(3, "repeats of the whole matrix, interleaved in shuffled order")
    port: int = option(5301, "iperf3 server port")
    udp_size: int = option(64, "UDP payload size in bytes")
    warmup: bool = option(True, "a warm-up trial first (stored, never counted)")

    def __post_init__(self) -> None:
        unknown = [q for q in self.qdiscs if q not in QDISCS]
        if unknown:
            raise ValueError(f"unknown qdisc {unknown[0]!r}: choose from {', '.join(QDISCS)}")
        if not set(self.protos) <= {"tcp", "udp"} or not self.protos:
            raise ValueError("protos: tcp, udp or both")
        # iperf3 reads -t as whole seconds, and 0 means "forever"
        if self.duration != int(self.duration) or not 1 <= self.duration <= 600:
            raise ValueError("qdisc: duration must be whole seconds, 1 to 600")
        if self.repeat < 1:
            raise ValueError("repeat must be at least 1")


def parse_iperf3(text: str, proto: str) -> dict[str, float]:
    """iperf3 -J output → rates; raises ValueError with iperf3's own error."""
    doc = json.loads(text)
    if doc.get("error"):
        raise ValueError(f"iperf3: {doc['error']}")
    end = doc["end"]
    if proto == "tcp":
        sent, received = end["sum_sent"], end["sum_received"]
        return {
            "throughput_mbps": received["bits_per_second"] / 1e6,
            "retransmits": float(sent.get("retransmits", 0)),
        }
    total = end["sum"]
    seconds = float(total["seconds"]) or 1.0
    delivered = int(total["packets"]) - int(total["lost_packets"])
    return {
        "pps": delivered / seconds,
        "sent_pps": int(total["packets"]) / seconds,
        "lost_percent": float(total["lost_percent"]),
    }


def counter_deltas(before: QdiscStat | None, after: QdiscStat | None) -> dict[str, float]:
    if before is None or after is None:
        return {}
    out = {f"qdisc_{c}": float(getattr(after, c) - getattr(before, c)) for c in COUNTERS}
    out["qdisc_backlog_after"] = float(after.backlog)
    return out


@dataclass(frozen=True)
class TrafficPath:
    """Where the traffic goes: sender and receiver (hosts, or container namespaces on one
    host), the receiver's address, and the interface whose root qdisc is under test."""

    sender: str
    sender_ns: str | None
    receiver: str
    receiver_ns: str | None
    address: str
    qdisc_host: str
    interface: str

    def describe(self) -> str:
        def end(host: str, ns: str | None) -> str:
            return f"{host}/{ns}" if ns else host

        return (
            f"{end(self.sender, self.sender_ns)} -> {end(self.receiver, self.receiver_ns)}"
            f", root qdisc of {self.qdisc_host}:{self.interface}"
        )


def in_ns(ns: str | None, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv] if ns else argv


def container_path(conn: HostConnection, sender_ns: str, receiver_ns: str) -> TrafficPath | None:
    """The docker pattern on one host: container -> docker0 -> container, testing the qdisc
    of the receiving container's host-side veth (found from its eth0's peer index)."""
    probe = conn.run(
        [
            "sh",
            "-c",
            'ip netns exec "$1" cat /sys/class/net/eth0/iflink && '
            'ip netns exec "$1" ip -j -4 addr show dev eth0 && ip -j link show && '
            'ip netns exec "$0" true',
            sender_ns,
            receiver_ns,
        ]
    )
    if not probe.ok:
        return None
    iflink, addrs, links = (probe.stdout.split("\n", 2) + ["", ""])[:3]
    address = next(
        (a["local"] for link in json.loads(addrs or "[]") for a in link.get("addr_info", [])), None
    )
    peer = next(
        (
            link["ifname"]
            for link in json.loads(links.strip() or "[]")
            if str(link.get("ifindex")) == iflink.strip()
        ),
        None,
    )
    if address is None or peer is None:
        return None
    host = conn.host.name
    return TrafficPath(host, sender_ns, host, receiver_ns, address, host, peer)


class QdiscSweep:
    def __init__(
        self,
        conns: Connections,
        path: TrafficPath,
        options: QdiscOptions,
        run_id: int,
        base_dir: Path,
        store: ResultsStore,
    ) -> None:
        self.conns = conns
        self.path = path
        self.options = options
        self.run_id = run_id
        self.base_dir = base_dir
        self.store = store

    def _ctx(self, conn: HostConnection) -> TaskContext:
        from labctl.actions.base import TaskContext

        return TaskContext(conn, {}, self.base_dir)

    def set_qdisc(self, name: str) -> str | None:
        """Put the wanted root qdisc on the interface under test; why not, if it cannot."""
        from labctl.actions.base import run_action
        from labctl.actions.qdisc import QdiscAction

        args = {"interfaces": [self.path.interface], **QDISCS[name]}
        host = self.path.qdisc_host
        try:
            result = run_action(QdiscAction(), self._ctx(self.conns[host]), args)
        except HostUnreachable:
            raise
        except (LabctlError, ValueError) as exc:  # e.g. a kind this kernel lacks
            return str(exc)
        # What the interface was before: put back at the end (`labctl restore RUN` too).
        self.store.add_undo(self.run_id, host, [u.to_dict() for u in result.undo])
        return result.msg if result.failed else None

    def stat(self) -> QdiscStat | None:
        from labctl.facts.qdisc import qdisc_stats

        stats = qdisc_stats(self.conns[self.path.qdisc_host])
        return next((s for s in stats if s.interface == self.path.interface), None)

    def _server(self, state: str) -> None:
        from labctl.actions.base import run_action
        from labctl.actions.process import ProcessAction

        args: dict[str, Any] = {
            "name": f"iperf3-{self.run_id}",
            "state": state,
            "run_dir": RUN_DIR,
            "startup_wait": 0.2,
        }
        if state != "stopped":
            # one test per server (-1): a test that went wrong cannot hold up the next
            args["argv"] = in_ns(
                self.path.receiver_ns,
                ["iperf3", "-s", "-1", "-B", self.path.address, "-p", str(self.options.port)],
            )
        receiver = self.path.receiver
        try:
            result = run_action(ProcessAction(), self._ctx(self.conns[receiver]), args)
        except ValueError as exc:
            raise ExperimentError(f"{receiver}: iperf3 server {state}: {exc}") from exc
        if result.failed:
            raise ExperimentError(f"{receiver}: iperf3 server {state}: {result.msg}")

    def run_trial(self, spec: TrialSpec) -> TrialRecord:
        from labctl.results.store import TrialRecord

        opts, path = self.options, self.path
        name, proto = str(spec.params["qdisc"]), str(spec.params["proto"])
        started = time.time()
        params = {
            "qdisc": name,
            **QDISCS[name],
            "proto": proto,
            "duration": opts.duration,
            "interface": f"{path.qdisc_host}:{path.interface}",
            "path": path.describe(),
        }
        why_not = self.set_qdisc(name)
        if why_not:
            return TrialRecord(
                spec.seq,
                "qdisc",
                spec.warmup,
                params,
                started,
                0.0,
                False,
                f"skipped: {why_not}",
                {},
            )
        self._server("restarted")
        before = self.stat()
        argv = [
            "iperf3",
            "--connect-timeout",
            "3000",
            "-c",
            path.address,
            "-p",
            str(opts.port),
            "-t",
            str(int(opts.duration)),
            "-J",
        ]
        if proto == "udp":
            argv += ["-u", "-b", "0", "-l", str(opts.udp_size)]
        res = self.conns[path.sender].run(in_ns(path.sender_ns, argv), timeout=opts.duration + 15)
        after = self.stat()
        try:
            metrics = parse_iperf3(res.stdout, proto)
            valid, reason = True, ""
        except (ValueError, KeyError) as exc:
            metrics, valid = {}, False
            reason = (
                str(exc)
                if res.stdout
                else f"iperf3 exited {res.exit_status}: {res.first_error_line()}"
            )
        metrics.update(counter_deltas(before, after))
        if valid and proto == "udp" and metrics["pps"] <= 0:
            valid, reason = False, "no UDP packet arrived"
        state = {
            "before": before.__dict__ if before else None,
            "after": after.__dict__ if after else None,
        }
        outputs = ((path.sender, "client", "stdout", res.stdout),)
        return trial_record(spec, "qdisc", params, started, valid, reason, metrics, state, outputs)

    def cleanup(self) -> None:
        """No iperf3 left running; the interface back as the run found it."""
        try:
            self._server("stopped")
        finally:
            restored = restore_run(self.store, self.conns, self.run_id)
            problems = [f"{p.target}: {p.result.msg}" for p in restored.failed]
            problems += [f"{h}: {why}" for h, why in restored.unreachable.items()]
            if problems:
                raise ExperimentError(
                    f"putting back what run {self.run_id} changed: {'; '.join(problems)} "
                    f"(labctl restore {self.run_id} tries again)"
                )


QDISC_KIND = TrialKind(
    "qdisc",
    config=("proto", "qdisc"),
    metrics=(
        Metric("throughput_mbps", "TCP throughput", "Mbit/s", "higher", watched=True),
        Metric("pps", "UDP packet rate", "pkt/s", "higher", watched=True),
    ),
    totals=("qdisc_drops", "qdisc_requeues"),
    baseline=("qdisc", "noqueue"),
    ratios=("throughput_mbps", "pps"),  # drift-free: each round's rate over noqueue's
)


class Qdisc(Experiment):
    """Containers on the receiver host if it has them (the docker pattern), else host to
    host across the lab bridge with the sender's eth0 under test."""

    spec = ExperimentSpec(
        name="qdisc",
        identity=("qdiscs", "protos", "duration"),
        kinds=(QDISC_KIND,),
        plot=PlotSpec("qdisc", x="qdisc", y=("throughput_mbps", "pps"), x_label="root qdisc"),
    )
    help = "root qdiscs on the veth path compared: iperf3 TCP throughput and UDP packet rate"
    Options = QdiscOptions

    def run(self, ctx: RunContext, options: QdiscOptions) -> SweepOutcome:
        from labctl.facts.host import gather_all
        from labctl.remote import Connections

        inventory = ctx.inventory
        receiver_host, sender_host = server_and_client(inventory, ctx.server, ctx.clients)
        hosts = [receiver_host, sender_host]
        containers = ("c1", "c2")
        with Connections(hosts) as conns:
            facts = {name: f.to_dict() for name, f in gather_all(conns).items()}
            path = container_path(conns[receiver_host.name], *containers)
            if path is None:
                path = TrafficPath(
                    sender_host.name,
                    None,
                    receiver_host.name,
                    None,
                    receiver_host.address,
                    sender_host.name,
                    "eth0",
                )
            params = {**run_params(options), "path": path.describe()}
            run_id, seed = ctx.start_run(
                self.spec.name,
                params,
                {
                    h.name: ("receiver" if h is receiver_host else "sender", facts[h.name])
                    for h in hosts
                },
            )
            exp = QdiscSweep(
                conns, path, options, run_id, Path(inventory.path).resolve().parent, ctx.store
            )
            trials = plan_trials(
                {"qdisc": options.qdiscs, "proto": options.protos},
                options.repeat,
                seed,
                warmup=options.warmup,
            )
            return run_sweep(
                ctx.store, run_id, trials, exp.run_trial, exp.cleanup, on_trial=ctx.on_trial
            )
