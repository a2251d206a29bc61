"""`labctl experiment reuseport` on the namespace lab, as a user runs it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support import is_session_shell, labctl_argv

from .conftest import NamespaceLab

pytestmark = pytest.mark.lab


def experiment(
    lab: NamespaceLab, store: Path, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return lab.labctl(
        "experiment",
        "reuseport",
        "-i",
        str(lab.inventory_path),
        "--store",
        str(store),
        "--plot",
        str(store.with_suffix(".png")),
        "--json",
        *args,
        timeout=timeout,
    )


def lab_programs(lab: NamespaceLab) -> list[str]:
    """Command lines of everything running in the lab's namespaces except its sshd (and the
    shells of live SSH sessions)."""
    progs = []
    for host in ("srv1", "cli1", "cli2"):
        pids = subprocess.run(
            ["ip", "netns", "pids", lab.lab.spec.netns(host)], capture_output=True, text=True
        ).stdout.split()
        for pid in pids:
            try:
                if os.readlink(f"/proc/{pid}/exe") == "/usr/sbin/sshd" or is_session_shell(pid):
                    continue  # the host's sshd, its sessions and their shells
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0]
                if state != "Z":
                    progs.append(Path(f"/proc/{pid}/cmdline").read_bytes().decode())
            except OSError:
                continue
    return progs


def test_every_mode_reconciles_and_cbpf_steers(lab: NamespaceLab, tmp_path: Path) -> None:
    store = tmp_path / "r.db"
    proc = experiment(
        lab, store, "--duration", "1", "--repeat", "1", "--workers", "2", "--port", "5101"
    )
    assert proc.returncode == 0, proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)
    accept = [t for t in doc["trials"] if t["kind"] == "accept" and not t["warmup"]]
    assert sorted(t["params"]["mode"] for t in accept) == ["reuseport", "reuseport-cbpf", "shared"]
    for t in accept:
        assert t["valid"], t["reason"]
        m = t["metrics"]
        assert m["conn_per_s"] > 1000
        assert m["client_connections"] <= m["server_accepts"]
        assert m["listenoverflows"] == 0
    cbpf = next(t for t in accept if t["params"]["mode"] == "reuseport-cbpf")
    assert cbpf["metrics"]["incoming_cpu_match_share"] >= 0.9
    assert [w["cpus_seen"] for w in cbpf["state"]["workers"]] == [[0], [1]]  # really pinned
    pktgen = next(t for t in doc["trials"] if t["kind"] == "pktgen")
    assert pktgen["reason"].startswith("skipped: srv1: kernel without module support")
    assert doc["run"]["status"] == "finished"
    assert store.with_suffix(".png").stat().st_size > 10_000
    # provenance: the facts of every host are stored with the run
    with sqlite3.connect(store) as db:
        hosts = dict(db.execute("SELECT host, role FROM run_hosts").fetchall())
    assert hosts == {"srv1": "server", "cli1": "client", "cli2": "client"}
    assert lab_programs(lab) == []


def test_a_leftover_listener_stops_the_run_with_a_clear_line(
    lab: NamespaceLab, tmp_path: Path
) -> None:
    srv1 = lab.host("srv1")
    addr = lab.inventory_host("srv1").address
    code = (
        "import socket,time;s=socket.socket();"
        "s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEPORT,1);"
        f"s.bind(('{addr}',5102));s.listen();time.sleep(120)"
    )
    pid = int(
        srv1.run(
            ["sh", "-c", 'setsid python3 -c "$0" >/dev/null 2>&1 </dev/null & echo $!', code]
        ).stdout
    )
    try:
        time.sleep(0.5)
        proc = experiment(
            lab,
            tmp_path / "r.db",
            "--duration",
            "1",
            "--repeat",
            "1",
            "--workers",
            "1",
            "--modes",
            "reuseport",
            "--port",
            "5102",
        )
        assert proc.returncode == 1
        assert (
            proc.stderr.strip()
            .splitlines()[-1]
            .startswith("labctl: run 1 failed: srv1: port 5102 already has a listener")
        )
    finally:
        srv1.run(["kill", str(pid)])
    assert lab_programs(lab) == []


def test_backlog_5_under_load_is_invalid(lab: NamespaceLab, tmp_path: Path) -> None:
    proc = experiment(
        lab,
        tmp_path / "r.db",
        "--duration",
        "1.5",
        "--repeat",
        "1",
        "--workers",
        "1",
        "--modes",
        "reuseport",
        "--backlog",
        "5",
        "--inflight",
        "64",
        "--no-pktgen",
        "--port",
        "5103",
    )
    assert proc.returncode == 0, proc.stderr
    trials = [t for t in json.loads(proc.stdout)["trials"] if not t["warmup"]]
    assert len(trials) == 1
    assert not trials[0]["valid"]
    assert "listen queue overflowed: ListenOverflows +" in trials[0]["reason"]


def test_sigterm_mid_sweep_keeps_finished_trials_and_leaves_no_process(
    lab: NamespaceLab, tmp_path: Path
) -> None:
    store = tmp_path / "r.db"
    argv = [
        *labctl_argv(),
        "experiment",
        "reuseport",
        "-i",
        str(lab.inventory_path),
        "--store",
        str(store),
        "--duration",
        "1",
        "--repeat",
        "5",
        "--workers",
        "1",
        "--no-pktgen",
        "--port",
        "5104",
    ]
    sweep = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # wait until two trials are stored
            if store.exists():
                with contextlib.closing(sqlite3.connect(store)) as db:
                    try:
                        if db.execute("SELECT COUNT(*) FROM trials").fetchone()[0] >= 2:
                            break
                    except sqlite3.OperationalError:  # the file is made, its tables not yet
                        pass
            time.sleep(0.2)
        sweep.send_signal(signal.SIGTERM)
        _, err = sweep.communicate(timeout=60)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    assert sweep.returncode == 130, err
    assert "interrupted: stopped by SIGTERM" in err
    with sqlite3.connect(store) as db:
        status = db.execute("SELECT status FROM runs").fetchone()[0]
        stored = db.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
    assert status == "interrupted"
    assert 2 <= stored < 16
    assert lab_programs(lab) == []
