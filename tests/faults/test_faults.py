"""Faults injected mid-run on a real namespace lab, as a night in a lab brings them. For each:
the other hosts finish, finished trials are kept and the run is marked, nothing of ours is
left running on any host (counted per namespace before and after), the exit status and a
one-line reason. Each fault adds a row to the table printed at the end of the run."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from labctl.experiments.base import RUN_DIR
from labctl.nightly.lock import LOCK_FILE
from tests.conftest import FaultRow
from tests.lab.conftest import NamespaceLab
from tests.support import labctl_argv

from .conftest import programs

pytestmark = pytest.mark.lab


def sweep_argv(lab: NamespaceLab, store: Path, port: int, *extra: str) -> list[str]:
    return [
        *labctl_argv(),
        "experiment",
        "reuseport",
        "-i",
        str(lab.inventory_path),
        "--store",
        str(store),
        "--plot",
        str(store.with_suffix(".png")),
        "--no-pktgen",
        "--port",
        str(port),
        *extra,
    ]


def start(argv: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL
    )


def finish(proc: subprocess.Popen[str], timeout: float = 180) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    return proc.returncode, out, err


def wait_until(what: str, check: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def stored(store: Path, sql: str) -> list[Any]:
    if not store.exists():
        return []
    with contextlib.closing(sqlite3.connect(store)) as db:  # closed: the mount must unmount
        try:
            return db.execute(sql).fetchall()
        except sqlite3.OperationalError:  # made, its tables not yet
            return []


def last_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("labctl: ")]
    return lines[-1] if lines else ""


def running(lab: NamespaceLab, host: str, program: str) -> int:
    """Processes of a workload binary on a host (not its build, not its start script)."""
    return sum(p.split()[0].endswith(f"/{program}") for p in programs(lab)[host] if p)


def servers(lab: NamespaceLab) -> int:
    """reuseport_server processes on srv1: its master and workers."""
    return running(lab, "srv1", "reuseport_server")


def no_orphans(lab: NamespaceLab, before: dict[str, list[str]]) -> int:
    """Processes beyond the census taken before the fault, after a short bounded wait."""
    extra: dict[str, list[str]] = {}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        now = programs(lab)
        extra = {h: [p for p in now[h] if p not in before.get(h, [])] for h in now}
        if not any(extra.values()):
            return 0
        time.sleep(0.2)
    raise AssertionError(f"left running: {extra}")


def test_the_servers_master_killed_mid_trial(
    faultlab: NamespaceLab, tmp_path: Path, record: list[FaultRow]
) -> None:
    """As the OOM killer would: SIGKILL to the server's master while its workers serve."""
    lab, store = faultlab, tmp_path / "r.db"
    before = programs(lab)
    srv = lab.host("srv1")
    sweep = start(
        sweep_argv(
            lab, store, 5201, "--duration", "2", "--repeat", "2", "--workers", "2",
            "--modes", "reuseport", "--no-warmup", "--json",
        )
    )  # fmt: skip
    try:
        pidfile = f"{RUN_DIR}/rp-server-1.pid"

        def server_serving() -> bool:
            # Mid-trial: the master and 2 workers up and a client connecting. The clients
            # start only once labctl has seen the server start and listen, so the kill can
            # no longer land inside the start's own check (labctl is fast enough for that).
            out = srv.run(["sh", "-c", f"cat {pidfile} 2>/dev/null"]).stdout
            return '"pid"' in out and servers(lab) >= 3 and running(lab, "cli1", "conn_client") >= 1

        wait_until("the first trial's server", server_serving)
        master = json.loads(srv.run(["cat", pidfile]).stdout)["pid"]
        srv.run(["kill", "-s", "KILL", str(master)], check=True)
        rc, out, err = finish(sweep)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    trials = json.loads(out)["trials"] if out.strip() else []
    killed = [t for t in trials if not t["valid"]]
    assert rc == 0, err
    assert len(trials) == 2 and len(killed) == 1, trials
    assert "the server died mid-trial" in killed[0]["reason"]
    assert [t for t in trials if t["valid"]], "the trial after the fault did not run whole"
    orphans = no_orphans(lab, before)
    record.append(
        FaultRow(
            "server master SIGKILLed mid-trial", "that trial invalid, the next one valid, "
            "run finished", str(rc), killed[0]["reason"], orphans,
        )
    )  # fmt: skip


def test_labctl_killed_mid_sweep_then_run_again(
    faultlab: NamespaceLab, tmp_path: Path, record: list[FaultRow]
) -> None:
    """SIGKILL skips every finally: the lock, the run and the server stay behind. The next
    run takes the lock over, marks the run crashed (its trials kept), stops what it left."""
    lab, store = faultlab, tmp_path / "r.db"
    before = programs(lab)
    args = ("--duration", "3", "--repeat", "2", "--workers", "1", "--modes", "reuseport")
    sweep = start(sweep_argv(lab, store, 5202, *args))
    try:
        wait_until("two stored trials", lambda: len(stored(store, "SELECT id FROM trials")) >= 2)
        wait_until("a running server", lambda: servers(lab) >= 2)  # master + its worker
        sweep.send_signal(signal.SIGKILL)
        sweep.wait(timeout=30)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    kept = len(stored(store, "SELECT id FROM trials WHERE run_id = 1"))
    assert lab.host("srv1").run(["test", "-e", LOCK_FILE]).ok, "the dead run's lock is gone?"
    again = start(sweep_argv(lab, store, 5202, *args))
    rc, out, err = finish(again)
    assert rc == 0, err
    said = " ".join((out + err).split())  # the console wraps long lines
    assert "took over the lab lock" in said
    runs = dict(stored(store, "SELECT id, status FROM runs"))
    assert runs == {1: "crashed", 2: "finished"}, runs
    assert len(stored(store, "SELECT id FROM trials WHERE run_id = 1")) == kept >= 2
    assert "left running by an earlier run" in said
    orphans = no_orphans(lab, before)
    record.append(
        FaultRow(
            "labctl SIGKILLed mid-sweep, then run again",
            f"run 1 crashed with its {kept} trials kept; lock taken over, leftovers stopped; "
            "run 2 finished",
            str(rc), "run 1 was left running by a labctl that died: crashed", orphans,
        )
    )  # fmt: skip


def test_two_controllers_race_for_the_lock(
    faultlab: NamespaceLab, tmp_path: Path, record: list[FaultRow]
) -> None:
    lab = faultlab
    before = programs(lab)
    args = ("--duration", "1", "--repeat", "1", "--workers", "1", "--modes", "shared")
    first = start(sweep_argv(lab, tmp_path / "a.db", 5203, *args))
    second = start(sweep_argv(lab, tmp_path / "b.db", 5204, *args))
    results = [finish(first), finish(second)]
    codes = sorted(rc for rc, _, _ in results)
    refused = next(err for rc, _, err in results if rc != 0)
    assert codes == [0, 1], results
    assert last_line(refused).startswith("labctl: ") and "the lab is locked by experiment" in (
        last_line(refused)
    )
    assert not lab.host("srv1").run(["test", "-e", LOCK_FILE]).ok  # released
    orphans = no_orphans(lab, before)
    record.append(
        FaultRow(
            "two controllers race for the lab lock", "one runs and finishes, the other is "
            "refused before touching a host", "0 and 1", last_line(refused)[:90] + "…", orphans,
        )
    )  # fmt: skip


def test_the_stores_filesystem_fills_mid_sweep(
    faultlab: NamespaceLab, tmp_path: Path, record: list[FaultRow]
) -> None:
    lab = faultlab
    before = programs(lab)
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], check=True)
    try:
        store = mount / "r.db"
        args = ("--duration", "0.5", "--repeat", "40", "--workers", "1", "--modes", "shared")
        rc, out, err = finish(start(sweep_argv(lab, store, 5205, *args)), timeout=300)
        assert rc == 1, (out, err)
        reason = last_line(err)
        assert "full" in reason and "Traceback" not in err, err
        kept = stored(store, "SELECT COUNT(*) FROM trials")
        assert kept and kept[0][0] >= 1
    finally:
        subprocess.run(["umount", str(mount)], check=False)
    assert f" {mount} " not in Path("/proc/mounts").read_text(), "the tmpfs is still mounted"
    orphans = no_orphans(lab, before)
    record.append(
        FaultRow(
            "the store's filesystem full mid-sweep (256 KiB tmpfs)",
            f"sweep stops, {kept[0][0]} trials kept, hosts cleaned", str(rc), reason[:90], orphans,
        )
    )  # fmt: skip


def _sshd_pids(lab: NamespaceLab, host: str) -> list[int]:
    """Every sshd process in the host's network namespace: its listener and its sessions."""
    inode = os.stat(f"/run/netns/{lab.lab.spec.netns(host)}").st_ino
    found = []
    for entry in os.scandir("/proc"):
        try:
            if (
                entry.name.isdigit()
                and os.stat(f"/proc/{entry.name}/ns/net").st_ino == inode
                and os.readlink(f"/proc/{entry.name}/exe") == "/usr/sbin/sshd"
            ):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_a_hosts_sshd_killed_mid_play(
    faultlab: NamespaceLab, tmp_path: Path, record: list[FaultRow]
) -> None:
    """cli2's sshd and its sessions die mid-task (as in an OOM kill or a crash)."""
    lab = faultlab
    before = programs(lab)
    book = tmp_path / "book.yml"
    book.write_text(
        textwrap.dedent(
            """\
            - hosts: all
              gather_facts: false
              tasks:
                - name: slow step
                  command: sleep 2
                - name: after
                  command: hostname
            """
        )
    )
    play = start([*labctl_argv(), "play", str(book), "-i", str(lab.inventory_path), "--json"])
    try:
        wait_until(
            "the slow step on cli2", lambda: any("sleep 2" in p for p in programs(lab)["cli2"])
        )
        for pid in _sshd_pids(lab, "cli2"):
            os.kill(pid, signal.SIGKILL)
        rc, out, err = finish(play)
    finally:
        if play.poll() is None:
            play.kill()
        # the next up restarts the dead sshd
        up = subprocess.run(
            [*labctl_argv(), "lab.up", "-i", str(lab.inventory_path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert up.returncode == 0, up.stderr
    doc = json.loads(out)
    recap = doc["recap"]
    assert rc == 4, (out, err)
    assert recap["cli2"]["unreachable"] == 1
    assert recap["srv1"]["changed"] == 2 and recap["cli1"]["changed"] == 2  # they finished
    reason = next(r["msg"] for r in doc["results"] if r["status"] == "unreachable")
    assert "\n" not in reason
    orphans = no_orphans(lab, before)
    record.append(
        FaultRow(
            "one host's sshd and its sessions SIGKILLed mid-play", "that host unreachable, the "
            "others finish every task; the next lab.up restarts its sshd", str(rc), reason[:90],
            orphans,
        )
    )  # fmt: skip


def test_a_clients_link_cut_during_a_trial(
    faultlab: NamespaceLab, tmp_path: Path, record: list[FaultRow]
) -> None:
    lab, store = faultlab, tmp_path / "r.db"
    before = programs(lab)
    veth = lab.lab.spec.veth(2)  # cli1's link to the bridge
    sweep = start(
        sweep_argv(
            lab, store, 5206, "--duration", "3", "--repeat", "1", "--workers", "1",
            "--modes", "shared", "--no-warmup", "--json",
        )
    )  # fmt: skip
    try:
        wait_until("cli1's client", lambda: running(lab, "cli1", "conn_client") >= 1)
        subprocess.run(["ip", "link", "set", veth, "down"], check=True)
        time.sleep(1.5)
        subprocess.run(["ip", "link", "set", veth, "up"], check=True)
        rc, out, err = finish(sweep)
    finally:
        subprocess.run(["ip", "link", "set", veth, "up"], check=False)
        if sweep.poll() is None:
            sweep.kill()
    assert rc == 0, err
    (trial,) = json.loads(out)["trials"]
    # The clients' numbers alone may look plausible: the links' carrier changes tell.
    assert not trial["valid"] and "a link went down mid-trial: cli1:eth0" in trial["reason"], (
        trial["valid"],
        trial["reason"],
        err[-500:],
    )
    outcome, reason = "the trial kept and marked invalid; run finished", trial["reason"]
    orphans = no_orphans(lab, before)
    record.append(
        FaultRow("a client's link down 1.5 s mid-trial", outcome, str(rc), reason[:90], orphans)
    )
