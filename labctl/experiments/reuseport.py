"""The SO_REUSEPORT accept-scaling sweep (docs/reuseport.md).

Per trial: the port is free, the C server starts (N pinned workers, one of three modes) and
listens, the C clients start together on every client host, run for a fixed time and stop;
the server is stopped by PID and reports per-worker counts. Counters are read inside the
server's network namespace before and after (nstat), with CPU time; a verdict says whether
the trial measured the server or something else (overflows, counts that do not reconcile:
labctl/experiments/reuseport_verdict.py).
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labctl.experiments.base import (
    RUN_DIR,
    Experiment,
    ExperimentError,
    RunContext,
    SweepOutcome,
    TrialSpec,
    background,
    client_hosts,
    experiment_address,
    option,
    plan_trials,
    run_params,
    run_sweep,
    server_host,
    trial_record,
)
from labctl.experiments.pktgen import PKTGEN_KIND, PktgenOptions, PktgenTrials, pktgen_notes
from labctl.experiments.reuseport_verdict import (
    OVERFLOW_COUNTERS,
    cpu_shares,
    judge,
    last_json,
    link_flaps,
    parse_carriers,
    parse_cpu_line,
    parse_nstat,
    trial_metrics,
)
from labctl.metrics import ExperimentSpec, Metric, PlotSpec, TrialKind
from labctl.paths import HOST_DIR

if TYPE_CHECKING:
    from labctl.actions.base import ActionResult
    from labctl.facts.host import HostFacts
    from labctl.remote import Connections, HostConnection, ShellScript
    from labctl.results.store import TrialRecord

MODES = ("shared", "reuseport", "reuseport-cbpf")
WORK = HOST_DIR
SYSCTLS = (
    "net/core/somaxconn",
    "net/ipv4/tcp_syncookies",
    "net/ipv4/tcp_tw_reuse",
    "net/ipv4/tcp_max_syn_backlog",
)


@dataclass(frozen=True)
class ReuseportOptions:
    modes: tuple[str, ...] = option(MODES, "server modes: " + ",".join(MODES))
    workers: tuple[int, ...] = option((1, 2), "server worker counts to sweep, e.g. 1,2")
    duration: float = option(5.0, "seconds per trial")
    repeat: int = option(8, "repeats of the whole matrix, interleaved in shuffled order")
    backlog: int = option(4096, "listen backlog (capped by net.core.somaxconn)")
    port: int = option(5000, "server port")
    threads: int = option(0, "client threads per client host (0: its CPU count)")
    inflight: int = option(16, "connects in flight per client thread")
    wait_fin: bool = option(True, "a client counts a connection once the server closed it")
    pktgen: bool = option(True, "also a netmap pkt-gen trial where netmap is loaded")
    warmup: bool = option(True, "a warm-up trial first (stored, never counted)")

    def __post_init__(self) -> None:
        bad = [m for m in self.modes if m not in MODES]
        if bad:
            raise ValueError(f"unknown mode {bad[0]!r}: choose from {', '.join(MODES)}")
        if not self.workers or min(self.workers) < 1:
            raise ValueError("workers must be at least 1")
        if not 0.2 <= self.duration <= 3600:
            raise ValueError("duration must be 0.2 to 3600 s")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port {self.port} out of range")
        if self.backlog < 1 or self.inflight < 1 or self.threads < 0 or self.repeat < 1:
            raise ValueError("backlog, inflight and repeat must be positive")

    def matrix(self) -> dict[str, Sequence[Any]]:
        return {"mode": self.modes, "workers": self.workers}


# ---------------------------------------------------------------------------- on the hosts


# Each interface's carrier_changes: a link that went down and up mid-trial shows here even
# when the trial's own numbers look plausible.
_CARRIERS = (
    "for f in /sys/class/net/*/carrier_changes; do d=${f%/carrier_changes}; "
    'printf \'%s=%s\\n\' "${d##*/}" "$(cat "$f" 2>/dev/null)"; done'
)


def _state_script(port: int) -> ShellScript:
    from labctl.remote import ShellScript

    sysctls = " ".join(f"/proc/sys/{k}" for k in SYSCTLS)
    return ShellScript(
        "nstat -asz 2>/dev/null; echo @@; head -1 /proc/stat; echo @@; "
        f'for f in {sysctls}; do printf \'%s=%s\\n\' "${{f#/proc/sys/}}" "$(cat $f)"; done; '
        f"echo @@; ss -Hltn 'sport = :{port}'; echo @@; {_CARRIERS}"
    )


def read_carriers(conn: HostConnection) -> dict[str, int]:
    from labctl.remote import ShellScript

    return parse_carriers(conn.run(ShellScript(_CARRIERS), check=True, timeout=30).stdout)


@dataclass(frozen=True)
class HostState:
    counters: dict[str, int]
    cpu: list[int]
    sysctls: dict[str, str]
    listeners: str  # `ss` lines of whatever listens on the experiment's port
    carriers: dict[str, int]  # interface -> carrier_changes


def read_state(conn: HostConnection, port: int) -> HostState:
    """Counters, CPU time, sysctls, the port's listeners and the links' carrier changes in
    one round trip."""
    res = conn.run(_state_script(port), check=True, timeout=30)
    nstat, cpu, sysctls, listeners, carriers = (res.stdout.split("@@\n") + [""] * 4)[:5]
    values = dict(line.split("=", 1) for line in sysctls.splitlines() if "=" in line)
    return HostState(
        parse_nstat(nstat), parse_cpu_line(cpu), values, listeners.strip(), parse_carriers(carriers)
    )


class ReuseportSweep:
    """Sets the hosts up once, then runs one trial at a time."""

    def __init__(
        self,
        conns: Connections,
        server: str,
        clients: Sequence[str],
        facts: Mapping[str, HostFacts],
        options: ReuseportOptions,
        run_id: int,
        workloads_dir: Path,
    ) -> None:
        self.conns = conns
        self.server = server
        self.clients = list(clients)
        self.facts = facts
        self.options = options
        self.run_id = run_id
        self.workloads_dir = workloads_dir
        self.bin_dir = ""
        self.address = experiment_address(conns[server].host)
        self._names = {"server": f"rp-server-{run_id}", "client": f"rp-client-{run_id}"}

    # -- setup
    def build(self) -> None:
        """Workloads are compiled on the hosts that run them (docs/architecture.md: Python
        drives, C measures)."""
        from labctl.actions.source import directory_digest

        digest = directory_digest(self.workloads_dir).removeprefix("sha256:")[:12]
        self.bin_dir = f"{WORK}/build/workloads-{digest}"
        hosts = [self.server, *self.clients]

        def build_on(conn: HostConnection) -> None:
            from labctl.actions.base import TaskContext, run_action
            from labctl.actions.command import CommandAction
            from labctl.actions.source import SourceAction

            ctx = TaskContext(conn, {}, self.workloads_dir.parent)
            for action, args in (
                (SourceAction(), {"src": str(self.workloads_dir), "dest": f"{WORK}/workloads"}),
                (
                    CommandAction(),
                    {
                        "argv": ["make", "-s", "-C", f"{WORK}/workloads", f"O={self.bin_dir}"],
                        "creates": f"{self.bin_dir}/conn_client",
                    },
                ),
            ):
                result = run_action(action, ctx, args)
                if result.failed:
                    raise ExperimentError(f"{conn.host.name}: building the workloads: {result.msg}")

        for outcome in self.conns.run_on_hosts(build_on, names=hosts):
            if outcome.error:
                raise ExperimentError(str(outcome.error))

    def cpus(self, host: str) -> list[int]:
        count = self.facts[host].cpus or 1
        return list(range(count))

    # -- one trial
    def _out(self, role: str, seq: int, host: str) -> str:
        return f"{RUN_DIR}/{self.run_id}-{seq}-{role}-{host}"

    def _process(
        self, conn: HostConnection, role: str, argv: list[str] | None, out: str, state: str
    ) -> ActionResult:
        # We wait for the server's `listening` line and the clients' results ourselves.
        result = background(conn, self._names[role], state, argv=argv, out=out)
        if result.failed:
            raise ExperimentError(f"{conn.host.name}: {role} {state}: {result.msg}")
        return result

    def _wait_for(
        self, conn: HostConnection, path: str, needle: str, what: str, timeout: float
    ) -> str:
        """Poll a file until it holds `needle` (bounded); its text."""
        deadline = time.monotonic() + timeout
        while True:
            text = conn.run(["cat", path]).stdout
            if needle in text:
                return text
            if time.monotonic() > deadline:
                raise ExperimentError(f"{conn.host.name}: {what} within {timeout:g} s")
            time.sleep(0.02)

    def check_port_free(self, state: HostState) -> None:
        if state.listeners:
            listener = " ".join(state.listeners.split()[:4])
            raise ExperimentError(
                f"{self.server}: port {self.options.port} already has a listener ({listener}); "
                f"a leftover SO_REUSEPORT listener would join the group: stop it or choose --port"
            )

    def run_trial(self, spec: TrialSpec) -> TrialRecord:
        opts = self.options
        mode, workers = str(spec.params["mode"]), int(spec.params["workers"])
        server = self.conns[self.server]
        cpus = self.cpus(self.server)
        started = time.time()
        before = read_state(server, opts.port)
        self.check_port_free(before)
        out = self._out("server", spec.seq, self.server)
        self._process(
            server,
            "server",
            [
                f"{self.bin_dir}/reuseport_server",
                "--addr",
                self.address,
                "--port",
                str(opts.port),
                "--mode",
                mode,
                "--workers",
                str(workers),
                "--cpus",
                ",".join(map(str, cpus[:workers] if workers <= len(cpus) else cpus)),
                "--backlog",
                str(opts.backlog),
            ],
            out,
            "started",
        )
        client_outs: dict[str, str] = {}
        threads: dict[str, int] = {}
        carriers_before: dict[str, dict[str, int]] = {self.server: before.carriers}
        carriers_after: dict[str, dict[str, int]] = {}
        try:
            self._wait_for(
                server, f"{out}.err", "listening", "the server did not report listening", 10
            )

            def start_client(conn: HostConnection) -> None:
                host = conn.host.name
                carriers_before[host] = read_carriers(conn)
                n = opts.threads or len(self.cpus(host))
                threads[host] = n
                client_outs[host] = self._out("client", spec.seq, host)
                argv = [
                    f"{self.bin_dir}/conn_client",
                    "--addr",
                    self.address,
                    "--port",
                    str(opts.port),
                    "--threads",
                    str(n),
                    "--cpus",
                    ",".join(map(str, self.cpus(host))),
                    "--inflight",
                    str(opts.inflight),
                    "--duration",
                    f"{opts.duration:g}",
                ]
                if opts.wait_fin:
                    argv.append("--wait-fin")
                self._process(conn, "client", argv, client_outs[host], "started")

            _raise_first(self.conns.run_on_hosts(start_client, names=self.clients))

            def wait_client(conn: HostConnection) -> dict[str, Any]:
                time.sleep(opts.duration)
                doc = last_json(
                    self._wait_for(
                        conn,
                        client_outs[conn.host.name] + ".out",
                        "}",
                        "the client did not finish",
                        30,
                    )
                )
                carriers_after[conn.host.name] = read_carriers(conn)
                return doc

            clients = [
                o.value
                for o in _raise_first(self.conns.run_on_hosts(wait_client, names=self.clients))
                if o.value
            ]
            after = read_state(server, opts.port)
        finally:
            stopped = self._process(server, "server", None, out, "stopped")
        params = {
            "mode": mode,
            "workers": workers,
            "duration": opts.duration,
            "backlog": opts.backlog,
            "inflight": opts.inflight,
            "client_threads": threads,
            "wait_fin": opts.wait_fin,
            "port": opts.port,
        }

        died = next((c for c in stopped.changes if "had exited" in c), None)
        if died is not None:  # killed under us (the OOM killer, a crash): this trial only
            reason = f"the server died mid-trial: {died}"
            kept = {"sysctls": before.sysctls}
            return trial_record(spec, "accept", params, started, False, reason, {}, kept)
        server_doc = last_json(
            self._wait_for(server, out + ".out", "}", "the server did not report its counts", 10)
        )
        deltas = {
            k: after.counters.get(k, 0) - before.counters.get(k, 0) for k in OVERFLOW_COUNTERS
        }
        in_flight = sum(threads.values()) * opts.inflight
        carriers_after[self.server] = after.carriers
        flaps = link_flaps(carriers_before, carriers_after)
        verdict = judge(server_doc, clients, deltas, in_flight, opts.wait_fin, flaps)
        metrics = trial_metrics(
            server_doc, clients, opts.duration, deltas, cpu_shares(before.cpu, after.cpu)
        )
        outputs = [(self.server, "server", "stdout", json.dumps(server_doc))]
        outputs += [
            (h, "client", "stdout", json.dumps(c))
            for h, c in zip(self.clients, clients, strict=False)
        ]
        state: dict[str, Any] = {
            "sysctls": before.sysctls,
            "counters_delta": deltas,
            "workers": server_doc.get("workers", []),
        }
        return trial_record(
            spec, "accept", params, started, verdict.valid, verdict.reason, metrics, state, outputs
        )

    def stop_all(self) -> None:
        """Stop this run's server and clients wherever they may still run (by pidfile PID),
        then remove the run's output files (the store has what they held)."""

        def stop(conn: HostConnection) -> None:
            from labctl.remote import ShellScript

            for role in ("server", "client"):
                self._process(conn, role, None, "", "stopped")
            conn.run(ShellScript(f"rm -f {shlex.quote(RUN_DIR)}/{self.run_id}-*"))

        self.conns.run_on_hosts(stop, names=[self.server, *self.clients])


def _raise_first(outcomes: list[Any]) -> list[Any]:
    for o in outcomes:
        if o.error is not None:
            raise ExperimentError(str(o.error))
    return outcomes


# ---------------------------------------------------------------------------- the experiment

ACCEPT = TrialKind(
    "accept",
    config=("mode", "workers"),
    metrics=(
        Metric("conn_per_s", "connections/s", "conn/s", "higher", watched=True),
        Metric("latency_p99_us", "connect latency p99", "us", "lower", watched=True),
        Metric("latency_p50_us", "connect latency p50", "us", "lower", shown=False),
    ),
    baseline=("mode", "shared"),
    ratios=("conn_per_s",),  # drift-free: each round's conn/s over shared's, same round
)


class Reuseport(Experiment):
    """N pinned workers accept on one port (shared / reuseport / reuseport-cbpf), load from
    every client host; a netmap pkt-gen trial at the end where netmap is loaded."""

    spec = ExperimentSpec(
        name="reuseport",
        identity=("modes", "workers", "duration", "wait_fin", "pktgen"),
        kinds=(ACCEPT, PKTGEN_KIND),
        plot=PlotSpec(
            "accept", x="workers", y=("conn_per_s",), series="mode", x_label="accepting workers"
        ),
    )
    help = "SO_REUSEPORT accept scaling: shared, reuseport, reuseport-cbpf across worker counts"
    Options = ReuseportOptions

    def notes(
        self, hosts: Mapping[str, tuple[str, Mapping[str, Any]]], trials: Sequence[TrialRecord]
    ) -> list[str]:
        return pktgen_notes(hosts, trials)

    def run(self, ctx: RunContext, options: ReuseportOptions) -> SweepOutcome:
        """Select the hosts, record their facts, build the workloads, run the sweep."""
        from labctl.facts.host import gather_all
        from labctl.remote import Connections

        inventory = ctx.inventory
        server = server_host(inventory, ctx.server)
        clients = client_hosts(inventory, ctx.clients, server)
        hosts = [server, *clients]
        with Connections(hosts) as conns:
            facts = gather_all(conns)
            params = {
                **run_params(options),
                "server": server.name,
                "clients": [h.name for h in clients],
            }
            run_id, seed = ctx.start_run(
                self.spec.name,
                params,
                {
                    h.name: ("server" if h is server else "client", facts[h.name].to_dict())
                    for h in hosts
                },
            )
            sweep = ReuseportSweep(
                conns,
                server.name,
                [h.name for h in clients],
                facts,
                options,
                run_id,
                ctx.project_dir / "workloads",
            )
            # pkt-gen from the first client to the server, as `labctl experiment pktgen` runs it
            pktgen = (
                PktgenTrials(
                    conns,
                    sender=clients[0].name,
                    receiver=server.name,
                    facts=facts,
                    options=PktgenOptions(duration=max(0.5, options.duration)),
                    run_id=run_id,
                )
                if options.pktgen
                else None
            )
            trials = plan_trials(options.matrix(), options.repeat, seed, warmup=options.warmup)
            if pktgen is not None:
                trials.append(TrialSpec(len(trials), {"kind": PKTGEN_KIND.name}))

            def run_one(spec: TrialSpec) -> TrialRecord:
                if pktgen is not None and spec.params.get("kind") == PKTGEN_KIND.name:
                    return pktgen.run_trial(TrialSpec(spec.seq, pktgen.default_params()))
                if not sweep.bin_dir:
                    sweep.build()
                return sweep.run_trial(spec)

            def cleanup() -> None:
                sweep.stop_all()
                if pktgen is not None:
                    pktgen.cleanup()

            return run_sweep(ctx.store, run_id, trials, run_one, cleanup, on_trial=ctx.on_trial)
