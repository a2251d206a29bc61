"""`labctl nightly` on the namespace lab, as cron runs it: history, regressions, the lock,
reports, and a controller killed mid-run."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from junitparser import Failure, JUnitXml

from labctl.actions.base import TaskContext, run_action
from labctl.actions.process import ProcessAction
from tests.support import labctl_argv

from .conftest import NamespaceLab

pytestmark = pytest.mark.lab

PORT = 5160
SUITE = """\
name: ci
provision: false
compare: {{history: 5, threshold: 0.20, alpha: 0.05}}
experiments:
  - name: accept
    experiment: reuseport
    metrics: {{conn_per_s: higher}}   # p99 latency is too noisy on a shared 2-core machine
    params: {{modes: [shared], workers: [1], duration: {duration}, repeat: {repeat},
              pktgen: false, port: {port}{extra}}}
"""


def suite(tmp_path: Path, name: str, duration: float = 1, repeat: int = 4, extra: str = "") -> Path:
    path = tmp_path / f"{name}.yml"
    path.write_text(SUITE.format(duration=duration, repeat=repeat, port=PORT, extra=extra))
    return path


def nightly_argv(lab: NamespaceLab, suite_file: Path, store: Path, *more: str) -> list[str]:
    return [
        *labctl_argv("nightly"),
        "-i", str(lab.inventory_path), "--suite", str(suite_file), "--store", str(store),
        *more,
    ]  # fmt: skip


def run_nightly(
    lab: NamespaceLab, suite_file: Path, store: Path, *more: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        nightly_argv(lab, suite_file, store, "--quiet", *more),
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def workload_pids(lab: NamespaceLab) -> list[str]:
    """Servers and clients of this test's port, on any of the lab's hosts (one PID space)."""
    out = lab.host("srv1").run(["ps", "-eo", "pid=,stat=,args="]).stdout
    return [
        line.split()[0]
        for line in out.splitlines()
        if f"--port {PORT}" in line and line.split()[1][0] != "Z"
    ]


def trial_count(store: Path) -> int:
    if not store.exists():
        return 0
    try:
        with sqlite3.connect(store) as db:
            return int(db.execute("SELECT COUNT(*) FROM trials").fetchone()[0])
    except sqlite3.OperationalError:  # the schema is being created
        return 0


def test_history_then_a_regression_flagged_with_its_numbers(
    lab: NamespaceLab, tmp_path: Path
) -> None:
    store = tmp_path / "r.db"
    first = run_nightly(lab, suite(tmp_path, "base"), store)
    assert first.returncode == 0, first.stderr + first.stdout
    assert "this run starts the history" in first.stdout

    second = run_nightly(lab, suite(tmp_path, "base"), store, "--junit", str(tmp_path / "2.xml"))
    assert second.returncode == 0, second.stderr + second.stdout
    assert "compared with run 1" in second.stdout
    assert "no regression" in second.stdout

    # A 1 Mbit/s token bucket on the server's link: far fewer connections. Two past runs do
    # not tell the run-to-run spread, so only a collapse like this one counts.
    html, junit = tmp_path / "3.html", tmp_path / "3.xml"
    srv1 = lab.host("srv1")
    tbf = ["tc", "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", "1mbit"]
    srv1.run([*tbf, "burst", "32kb", "latency", "400ms"])
    try:
        third = run_nightly(
            lab, suite(tmp_path, "base"), store, "--html", str(html), "--junit", str(junit)
        )
    finally:
        srv1.run(["tc", "qdisc", "del", "dev", "eth0", "root"])
    assert third.returncode == 1, third.stderr + third.stdout
    flagged = [line for line in third.stdout.splitlines() if line.startswith("REGRESSION")]
    assert flagged, third.stdout
    text = " ".join(third.stdout.split())
    assert "REGRESSION reuseport conn_per_s" in text
    assert "median of 2 runs: 1,2" in text and "p=" in text and "x0.0" in text
    assert "run-to-run spread unknown (2 of 3 runs)" in text
    assert "-> regression: a step far beyond what a short history can explain" in text
    assert re.search(r"changed since: srv1 eth0 root_qdisc: \S+ -> tbf", text), text

    # JUnit: one testcase per metric; the regression is a failure, the rest pass.
    xml = JUnitXml.fromfile(str(junit))
    cases = {case.name: case for s in xml for case in s}
    assert any(n.startswith("conn_per_s") for n in cases)
    failed = [n for n, c in cases.items() if any(isinstance(r, Failure) for r in c.result)]
    assert failed == [n for n in cases if n.startswith("conn_per_s")] and failed
    ok_xml = JUnitXml.fromfile(str(tmp_path / "2.xml"))
    assert ok_xml.failures == 0 and ok_xml.tests >= 1
    page = html.read_text()
    assert "REGRESSION" in page.upper() and "data:image/png;base64," in page

    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT status FROM nightly ORDER BY id").fetchall()
        labels = db.execute("SELECT DISTINCT label FROM runs").fetchall()
    assert [r[0] for r in rows] == ["ok", "ok", "regression"]
    assert labels == [("accept",)]
    assert workload_pids(lab) == []


def test_a_second_nightly_is_refused_naming_the_holder(lab: NamespaceLab, tmp_path: Path) -> None:
    store = tmp_path / "r.db"
    argv = nightly_argv(lab, suite(tmp_path, "long", duration=2, repeat=3), store, "--quiet")
    first = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while trial_count(store) < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        second = run_nightly(lab, suite(tmp_path, "long"), tmp_path / "other.db")
        by_hand = lab.labctl(
            "experiment", "reuseport", "-i", str(lab.inventory_path), "--store",
            str(tmp_path / "other.db"), "--duration", "1", "--repeat", "1", "--no-pktgen",
        )  # fmt: skip
        out, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert second.returncode == 2
    assert "the lab is locked by nightly ci (root@" in second.stderr
    assert f"pid {first.pid})" in second.stderr
    assert by_hand.returncode != 0 and "locked by nightly ci" in by_hand.stderr
    assert first.returncode == 0, err + out
    assert not (tmp_path / "other.db").exists() or trial_count(tmp_path / "other.db") == 0


def test_sigkill_mid_run_then_the_next_nightly_completes(lab: NamespaceLab, tmp_path: Path) -> None:
    store = tmp_path / "r.db"
    killed = subprocess.Popen(
        nightly_argv(lab, suite(tmp_path, "slow", duration=3, repeat=4), store, "--quiet"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        while trial_count(store) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # the third trial is in flight: server and clients running
        assert workload_pids(lab), "the killed run should have left its workloads running"
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=10)
    finally:
        if killed.poll() is None:
            killed.kill()
            killed.wait()
    kept = trial_count(store)
    assert kept >= 2

    after = run_nightly(lab, suite(tmp_path, "quick", duration=1, repeat=2), store)
    out = " ".join((after.stdout + after.stderr).split())
    assert after.returncode == 0, out
    assert f"its labctl (pid {killed.pid} on" in out and "took over the lab lock" in out
    assert "left running by an earlier run" in out  # server and clients stopped by PID
    assert "was left running by a labctl that died: crashed" in out or "crashed" in out
    assert workload_pids(lab) == []
    with sqlite3.connect(store) as db:
        runs = db.execute("SELECT id, status FROM runs ORDER BY id").fetchall()
        first_trials = db.execute("SELECT COUNT(*) FROM trials WHERE run_id = 1").fetchone()[0]
    assert runs == [(1, "crashed"), (2, "finished")]
    assert first_trials == kept  # nothing finished was lost


def test_provision_first_and_a_failed_experiment_exits_2(lab: NamespaceLab, tmp_path: Path) -> None:
    """The suite provisions (workloads), then its experiment cannot run: a listener already
    holds the port. The run itself failed: exit 2, never 1, and the lock is released."""
    store = tmp_path / "r.db"
    path = suite(tmp_path, "busy", repeat=2)
    path.write_text(path.read_text().replace("provision: false", "provision: {tags: [workloads]}"))
    listener = {"name": "nightly-test-listener", "run_dir": "/root/labctl/test-run"}
    srv = lab.host("srv1")
    argv = [
        "python3", "-c",
        "import socket, time; s = socket.socket(); "
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "  # earlier tests' TIME_WAIT
        f"s.bind(('0.0.0.0', {PORT})); s.listen(); time.sleep(300)",
    ]  # fmt: skip
    ctx = TaskContext(srv, {}, tmp_path)
    started = run_action(ProcessAction(), ctx, {**listener, "argv": argv, "startup_wait": 0.5})
    assert not started.failed, started.msg
    try:
        proc = subprocess.run(
            nightly_argv(lab, path, store),
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
    finally:
        stopped = run_action(ProcessAction(), ctx, {**listener, "state": "stopped"})
    assert not stopped.failed, stopped.msg
    out = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 2, out
    assert "provision: " in out and "0 failed" in out
    assert f"port {PORT} already has a listener" in out
    assert "the run failed" in out
    assert not lab.host("srv1").run(["test", "-e", "/run/labctl/lab.lock"]).ok
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT status FROM nightly").fetchall() == [("failed",)]
