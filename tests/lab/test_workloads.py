"""The C workloads (workloads/*.c) on the namespace lab: built on the hosts, run over SSH.

reuseport_server runs on srv1, conn_client on cli1, against srv1's lab address. What is
checked comes from docs/reuseport.md: the server's accept count reconciles with the client's
connection count, workers are really pinned, the cBPF program steers each connection to the
worker on the CPU that received it, a port with a listener is refused, and listen(fd, 5) shows
up as TcpExtListenOverflows in srv1's own network namespace.

Every test stops what it started on a host by PID (the server's process group: setsid made
the server its leader) and removes its files. PID 1 of this machine does not reap orphans, so
a stopped server may stay a zombie: a zombie counts as gone.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from labctl.remote import HostConnection, ShellScript

from .conftest import NamespaceLab

pytestmark = pytest.mark.lab

WORKLOADS = Path(__file__).resolve().parents[2] / "workloads"
BUILD_DIR = "/root/labctl-test-workloads"
CFLAGS = ["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror"]
THREADS, INFLIGHT = 2, 16
CLIENT_SECONDS = 1.5
REUSEPORT_MODES = ("reuseport", "reuseport-cbpf")


@dataclass(frozen=True)
class Workloads:
    srv: HostConnection
    cli: HostConnection
    srv_address: str
    server: str  # path of the binary on srv1
    client: str  # path of the binary on cli1


@pytest.fixture(scope="module")
def workloads(lab: NamespaceLab) -> Iterator[Workloads]:
    """Both sources uploaded to srv1 and cli1 (private /root each) and compiled there."""
    srv, cli = lab.host("srv1"), lab.host("cli1")
    try:
        for conn in (srv, cli):
            conn.run(["mkdir", "-p", BUILD_DIR], check=True)
            for name in ("reuseport_server.c", "conn_client.c"):
                conn.put(str(WORKLOADS / name), f"{BUILD_DIR}/{name}")
        server, client = f"{BUILD_DIR}/reuseport_server", f"{BUILD_DIR}/conn_client"
        srv.run(["gcc", *CFLAGS, "-o", server, f"{server}.c"], check=True)
        cli.run(["gcc", *CFLAGS, "-pthread", "-o", client, f"{client}.c"], check=True)
        yield Workloads(srv, cli, lab.inventory_host("srv1").address, server, client)
    finally:
        for conn in (srv, cli):
            conn.run(["rm", "-rf", BUILD_DIR])


def alive(conn: HostConnection, pid: int) -> bool:
    """Running and not a zombie."""
    stat = conn.run(["ps", "-o", "stat=", "-p", str(pid)]).stdout.strip()
    return bool(stat) and not stat.startswith("Z")


def kill_group(conn: HostConnection, pgid: int) -> None:
    """SIGKILL what is left of a process group we started (nothing, after a clean stop)."""
    conn.run(ShellScript(f"if pgrep -g {pgid} >/dev/null; then kill -KILL -{pgid}; fi"))


@dataclass
class Server:
    conn: HostConnection
    run_dir: str
    pid: int

    def file(self, name: str) -> str:
        return self.conn.run(["cat", f"{self.run_dir}/{name}"]).stdout

    def wait_listening(self, timeout: float = 10.0) -> str:
        """Bounded poll for the line the orchestrator waits for; returns it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            err = self.file("server.err")
            lines = [line for line in err.splitlines() if line.startswith("listening ")]
            if lines:
                return lines[0]
            if not alive(self.conn, self.pid):
                pytest.fail(f"reuseport_server exited before listening: {err.strip()}")
            time.sleep(0.05)
        pytest.fail(f"reuseport_server not listening after {timeout} s")

    def stop(self, group: bool = True, timeout: float = 10.0) -> dict[str, Any]:
        """SIGTERM (to its process group or to the parent alone), then its JSON report."""
        target = f"-{self.pid}" if group else str(self.pid)
        self.conn.run(["kill", "-TERM", target], check=True)  # sh's kill: no "--"
        deadline = time.monotonic() + timeout
        while alive(self.conn, self.pid):
            if time.monotonic() > deadline:
                pytest.fail(f"reuseport_server {self.pid} still running {timeout} s after TERM")
            time.sleep(0.05)
        out = self.file("server.json")
        assert out.count("\n") == 1, f"expected one JSON line on stdout, got {out!r}"
        report: dict[str, Any] = json.loads(out)
        return report


@contextmanager
def server(w: Workloads, name: str, args: list[str]) -> Iterator[Server]:
    run_dir = f"/root/labctl-test-workloads-{name}"
    pid = None
    try:
        w.srv.run(["mkdir", "-p", run_dir], check=True)
        # A background job of a non-interactive sh is no group leader, so setsid does not
        # fork: $! is the server itself, leader of a process group of its own.
        res = w.srv.run(
            ShellScript(
                f"cd {shlex.quote(run_dir)} && setsid {shlex.join([w.server, *args])}"
                " >server.json 2>server.err </dev/null & echo $!"
            ),
            check=True,
        )
        pid = int(res.stdout)
        pgid = w.srv.run(["ps", "-o", "pgid=", "-p", str(pid)]).stdout.strip()
        assert pgid in ("", str(pid)), f"server {pid} is not its group's leader ({pgid})"
        yield Server(w.srv, run_dir, pid)
    finally:
        if pid is not None:
            kill_group(w.srv, pid)
        w.srv.run(["rm", "-rf", run_dir])


def run_client(w: Workloads, port: int, *extra: str) -> dict[str, Any]:
    argv = [w.client, "--addr", w.srv_address, "--port", str(port), *extra]
    res = w.cli.run(argv, timeout=60, check=True)
    report: dict[str, Any] = json.loads(res.stdout)
    return report


def listen_overflows(conn: HostConnection) -> int:
    """TcpExtListenOverflows of the host's own network namespace (nstat runs there)."""
    out = conn.run(["nstat", "-asz", "TcpExtListenOverflows"], check=True).stdout
    for line in out.splitlines():
        fields = line.split()
        if fields and fields[0] == "TcpExtListenOverflows":
            return int(fields[1])
    raise AssertionError(f"no TcpExtListenOverflows in nstat output: {out!r}")


@pytest.mark.parametrize(
    "mode,port", [("shared", 5101), ("reuseport", 5102), ("reuseport-cbpf", 5103)]
)
def test_mode_accepts_reconcile_with_the_client(
    workloads: Workloads, mode: str, port: int, record_property: Any
) -> None:
    w = workloads
    args = ["--addr", w.srv_address, "--port", str(port), "--mode", mode]
    args += ["--workers", "2", "--cpus", "0,1", "--maxseg-tag"]
    overflows_before = listen_overflows(w.srv)
    with server(w, f"mode-{mode}", args) as srv:
        listening = f"listening port={port} workers=2 mode={mode}"
        assert srv.wait_listening() == listening
        client = run_client(
            w, port, "--threads", str(THREADS), "--cpus", "0,1", "--inflight", str(INFLIGHT),
            "--duration", str(CLIENT_SECONDS), "--wait-fin",
        )  # fmt: skip
        report = srv.stop()
        assert srv.file("server.err").splitlines() == [listening], "stderr beyond the one line"
    # SO_LINGER {1,0}: every close was a RST, so no TIME_WAIT piles up on either side.
    for conn, side in ((w.cli, "dport"), (w.srv, "sport")):
        left = conn.run(["ss", "-Htan", "state", "time-wait", f"{side} = :{port}"]).stdout
        assert left.splitlines() == [], f"TIME_WAIT on {conn.host.name}: {left[:300]}"
    overflows = listen_overflows(w.srv) - overflows_before
    record_property("rate", client["rate"])

    assert (report["mode"], report["port"], report["backlog"]) == (mode, port, 4096)
    assert isinstance(report["somaxconn"], int) and report["somaxconn"] > 0
    assert (client["threads"], client["inflight"]) == (THREADS, INFLIGHT)
    assert client["rate"] > 0 and client["duration_s"] >= CLIENT_SECONDS
    assert sum(client["errors"].values()) == 0, client["errors"]
    assert client["latency_us"]["p50"] <= client["latency_us"]["p99"]
    # With --wait-fin a connection counts once the server accepted and closed it; what the
    # server accepted and the client had not yet seen close is at most what was in flight.
    accepted, connected = report["accepts_total"], client["connections"]
    assert connected <= accepted <= connected + THREADS * INFLIGHT, (accepted, connected)
    workers = report["workers"]
    assert [wk["worker"] for wk in workers] == [0, 1]
    assert sum(wk["accepts"] for wk in workers) == accepted
    for wk in workers:
        assert wk["cpu_pinned"] == wk["worker"]
        assert wk["cpus_seen"] == [wk["cpu_pinned"]], f"worker not pinned: {wk}"
        assert wk["errors"] == {}
        assert wk["incoming_cpu_samples"] == wk["accepts"]
    # A valid trial drops no connection at the listener (docs/reuseport.md).
    assert overflows == 0

    maxseg = client["maxseg"]
    if mode == "shared":
        # One listening socket, one tag: 1000, read as 988 behind the timestamp option.
        assert set(maxseg) == {"988"}
    else:
        assert all(wk["accepts"] > 0 for wk in workers), workers
        assert set(maxseg) == {"988", "989"}
        for wk in workers:
            seen = maxseg[str(988 + wk["worker"])]
            assert abs(seen - wk["accepts"]) <= THREADS * INFLIGHT, (seen, wk)
    if mode == "reuseport-cbpf":
        matches = sum(wk["incoming_cpu_matches"] for wk in workers)
        samples = sum(wk["incoming_cpu_samples"] for wk in workers)
        record_property("cbpf_match_ratio", matches / samples)
        assert matches / samples >= 0.9, (matches, samples)


@pytest.mark.parametrize(
    "listener,port",
    [
        ("leftover SO_REUSEPORT listener on the same address", 5201),
        ("plain listener on the wildcard address", 5202),
    ],
)
def test_port_with_a_listener_is_refused(workloads: Workloads, listener: str, port: int) -> None:
    w = workloads
    reuseport = listener.startswith("leftover")
    bind_addr = w.srv_address if reuseport else "0.0.0.0"
    program = (
        "import socket, time\n"
        "s = socket.socket()\n"
        f"s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, {int(reuseport)})\n"
        f"s.bind(({bind_addr!r}, {port}))\n"
        "s.listen()\n"
        "time.sleep(60)\n"
    )
    res = w.srv.run(
        ShellScript(
            f"setsid python3 -c {shlex.quote(program)} >/dev/null 2>&1 </dev/null & echo $!"
        ),
        check=True,
    )
    pid = int(res.stdout)
    try:
        deadline = time.monotonic() + 10
        while not w.srv.run(["ss", "-Htln", f"sport = :{port}"]).stdout.strip():
            assert time.monotonic() < deadline, "the stand-in listener never listened"
            assert alive(w.srv, pid), "the stand-in listener died"
            time.sleep(0.05)
        mode = "reuseport" if reuseport else "shared"
        argv = [w.server, "--addr", w.srv_address, "--port", str(port), "--mode", mode]
        res = w.srv.run([*argv, "--workers", "2"], timeout=10)
        assert res.exit_status == 2
        assert res.stdout == ""
        assert re.fullmatch(
            rf"reuseport_server: port {port} already has a listener \(.+\)\n", res.stderr
        ), res.stderr
        # Nothing of ours joined the port: the stand-in is still its only listener.
        assert len(w.srv.run(["ss", "-Htln", f"sport = :{port}"]).stdout.splitlines()) == 1
    finally:
        kill_group(w.srv, pid)


def test_sigterm_to_the_parent_alone_stops_every_worker(workloads: Workloads) -> None:
    w = workloads
    port = 5401
    args = ["--addr", w.srv_address, "--port", str(port), "--mode", "reuseport"]
    with server(w, "parent-only", [*args, "--workers", "2", "--cpus", "0,1"]) as srv:
        srv.wait_listening()
        client = run_client(w, port, "--duration", "0.5", "--wait-fin")
        report = srv.stop(group=False)
        for wk in report["workers"]:
            assert not alive(w.srv, wk["pid"]), f"worker {wk['pid']} outlived the parent"
        assert report["accepts_total"] >= client["connections"] > 0
        assert 0 < report["duration_s"] < 30


def test_backlog_5_overflows_the_accept_queue(workloads: Workloads, record_property: Any) -> None:
    """The blog's listen(fd, 5): under load, SYNs are dropped at the full accept queue."""
    w = workloads
    port = 5301
    args = ["--addr", w.srv_address, "--port", str(port), "--mode", "reuseport"]
    args += ["--workers", "1", "--cpus", "0", "--backlog", "5"]
    before = listen_overflows(w.srv)
    with server(w, "backlog-5", args) as srv:
        srv.wait_listening()
        client = run_client(
            w, port, "--threads", "2", "--cpus", "0,1", "--inflight", "64",
            "--duration", str(CLIENT_SECONDS),
        )  # fmt: skip
        report = srv.stop()
    overflows = listen_overflows(w.srv) - before
    record_property("overflows", overflows)
    record_property("rate", client["rate"])
    assert report["backlog"] == 5
    assert report["accepts_total"] > 0
    assert overflows > 0, f"no listen overflow with backlog 5 ({client['rate']:.0f} conn/s)"
