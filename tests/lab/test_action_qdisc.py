"""qdisc on the namespace lab: the blog's sequence applied twice (changed, then ok) and read
back with `tc -j`; del at the default is ok; check mode changes nothing; a kind the kernel
lacks, or one the device refuses, leaves eth0 exactly as it was; playbooks/qdisc.yml runs
twice. Every test gives eth0 back as the lab made it (noqueue, txqueuelen 1000).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labctl.actions.base import ActionFailed, ActionResult, TaskContext, run_action
from labctl.actions.qdisc import QdiscAction
from labctl.play.load import load_playbook
from labctl.play.run import QuietReporter, RunOptions, run_playbook
from labctl.remote import CommandResult, HostConnection, command_text

from .conftest import NamespaceLab

pytestmark = pytest.mark.lab

PLAYBOOK = Path(__file__).resolve().parents[2] / "playbooks" / "qdisc.yml"
LAB_TXQUEUELEN = 1000  # what the lab's veths get


def ctx(lab: NamespaceLab, tmp_path: Path, host: str = "srv1") -> TaskContext:
    return TaskContext(conn=lab.host(host), vars={}, base_dir=tmp_path)


def root_qdisc(conn: HostConnection, dev: str = "eth0") -> dict[str, Any]:
    """eth0's root qdisc as tc -j shows it: kind, handle, options (no counters: SSH traffic
    moves them between two reads)."""
    entries = json.loads(conn.run(["tc", "-j", "qdisc", "show", "dev", dev], check=True).stdout)
    roots = [q for q in entries if q.get("root")]
    assert len(roots) == 1, entries
    return roots[0]


def txqueuelen(conn: HostConnection, dev: str = "eth0") -> int:
    return int(conn.run(["cat", f"/sys/class/net/{dev}/tx_queue_len"], check=True).stdout)


def full_state(conn: HostConnection) -> tuple[str, int]:
    """Every qdisc of eth0 (root and any other) and its txqueuelen, for before/after checks."""
    qdiscs = conn.run(["tc", "-j", "qdisc", "show", "dev", "eth0"], check=True).stdout
    return qdiscs, txqueuelen(conn)


def set_lab_default(conn: HostConnection) -> None:
    res = conn.run(["tc", "qdisc", "del", "dev", "eth0", "root"])
    assert res.ok or "handle of zero" in res.stderr, res.stderr
    conn.run(["ip", "link", "set", "eth0", "txqueuelen", str(LAB_TXQUEUELEN)], check=True)


@pytest.fixture
def restore_eth0(lab: NamespaceLab) -> Iterator[None]:
    """Every lab host's eth0 back at noqueue and txqueuelen 1000, whatever the test did."""
    for name in ("srv1", "cli1", "cli2"):
        set_lab_default(lab.host(name))
    try:
        yield
    finally:
        for name in ("srv1", "cli1", "cli2"):
            set_lab_default(lab.host(name))


def twice(lab: NamespaceLab, tmp_path: Path, raw: dict[str, Any]) -> ActionResult:
    first = run_action(QdiscAction(), ctx(lab, tmp_path), raw)
    second = run_action(QdiscAction(), ctx(lab, tmp_path), raw)
    assert (first.changed, first.failed) == (True, False), first.msg
    assert (second.changed, second.failed, second.changes) == (False, False, ())
    return first


@pytest.mark.usefixtures("restore_eth0")
def test_the_blog_sequence_applies_then_changes_nothing(lab: NamespaceLab, tmp_path: Path) -> None:
    srv1, cli1 = lab.host("srv1"), lab.host("cli1")
    cli1_before = full_state(cli1)
    assert root_qdisc(srv1)["kind"] == "noqueue" and root_qdisc(srv1)["handle"] == "0:"

    first = twice(lab, tmp_path, {"interfaces": "eth0", "kind": "pfifo", "limit": 100})
    assert first.changes == ("eth0: root noqueue -> pfifo limit 100",)
    assert first.output["interfaces"]["eth0"]["kind"] == "noqueue"  # registered: the before
    q = root_qdisc(srv1)
    assert (q["kind"], q["options"]) == ("pfifo", {"limit": 100}) and q["handle"] != "0:"
    assert txqueuelen(srv1) == 1000

    first = twice(lab, tmp_path, {"interfaces": "eth0", "txqueuelen": 0})
    assert first.changes == ("eth0: txqueuelen 1000 -> 0",)
    assert txqueuelen(srv1) == 0
    assert root_qdisc(srv1)["options"] == {"limit": 100}  # an explicit limit: still 100

    first = twice(lab, tmp_path, {"interfaces": "eth0", "kind": "noqueue"})
    assert first.changes == ("eth0: root pfifo limit 100 -> noqueue",)
    q = root_qdisc(srv1)
    assert (q["kind"], q["handle"]) == ("noqueue", "0:")
    assert txqueuelen(srv1) == 0

    # The whole desired state in one task, from the end of the sequence back to the start.
    first = twice(lab, tmp_path, {"interfaces": "eth0", "kind": "default", "txqueuelen": 1000})
    assert first.changes == ("eth0: txqueuelen 0 -> 1000",)
    assert full_state(cli1) == cli1_before  # another host's eth0: untouched


@pytest.mark.usefixtures("restore_eth0")
def test_a_qdisc_attached_at_txqueuelen_0_keeps_it(lab: NamespaceLab, tmp_path: Path) -> None:
    srv1 = lab.host("srv1")
    srv1.run(["ip", "link", "set", "eth0", "txqueuelen", "0"], check=True)
    first = twice(lab, tmp_path, {"interfaces": "eth0", "kind": "pfifo", "limit": 100})
    assert first.changes == ("eth0: root noqueue -> pfifo limit 100",)
    # The kernel set it to 1000 on attach ("Caught tx_queue_len zero misconfig"); the plan
    # set it back.
    assert txqueuelen(srv1) == 0
    assert root_qdisc(srv1)["options"] == {"limit": 100}


@pytest.mark.usefixtures("restore_eth0")
def test_del_at_the_default_is_ok(lab: NamespaceLab, tmp_path: Path) -> None:
    srv1 = lab.host("srv1")
    # The measured fact this relies on (docs/qdiscs.md): tc refuses, rc 2.
    res = srv1.run(["tc", "qdisc", "del", "dev", "eth0", "root"])
    assert (res.exit_status, res.stderr.strip()) == (
        2,
        "Error: Cannot delete qdisc with handle of zero.",
    )
    before = full_state(srv1)
    for kind in ("noqueue", "default"):
        result = run_action(QdiscAction(), ctx(lab, tmp_path), {"interfaces": "eth0", "kind": kind})
        assert (result.changed, result.failed, result.changes) == (False, False, ())
    assert full_state(srv1) == before


@pytest.mark.usefixtures("restore_eth0")
def test_check_mode_changes_nothing(lab: NamespaceLab, tmp_path: Path) -> None:
    srv1 = lab.host("srv1")
    before = full_state(srv1)
    raw = {"interfaces": ["eth*"], "kind": "pfifo", "limit": 100, "txqueuelen": 0}
    check = run_action(QdiscAction(), ctx(lab, tmp_path), raw, check=True)
    assert (check.changed, check.failed, check.changes) == (
        True,
        False,
        ("eth0: root noqueue -> pfifo limit 100", "eth0: txqueuelen 1000 -> 0"),
    )
    assert full_state(srv1) == before


def kind_missing_here(kind: str) -> str | None:
    """tc's refusal of `kind` in a throwaway namespace of this machine (the lab's kernel), or
    None if the kernel has it."""
    res = subprocess.run(
        ["unshare", "-n", "tc", "qdisc", "add", "dev", "lo", "root", kind],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return None if res.returncode == 0 else res.stderr.strip()


@pytest.mark.usefixtures("restore_eth0")
def test_an_unsupported_kind_fails_in_one_line_and_leaves_eth0_as_it_was(
    lab: NamespaceLab, tmp_path: Path
) -> None:
    refusal = kind_missing_here("fq_codel")
    if refusal is None:
        pytest.skip("this kernel has fq_codel: no unsupported kind to test with")
    assert refusal == "Error: Specified qdisc kind is unknown."
    srv1 = lab.host("srv1")
    # A state of ours with a handle, at txqueuelen 0 (which a qdisc attach would reset).
    srv1.run(["tc", "qdisc", "replace", "dev", "eth0", "root", "pfifo", "limit", "77"], check=True)
    srv1.run(["ip", "link", "set", "eth0", "txqueuelen", "0"], check=True)
    before = full_state(srv1)
    for check in (True, False):
        with pytest.raises(ActionFailed) as exc:
            run_action(
                QdiscAction(),
                ctx(lab, tmp_path),
                {"interfaces": "eth0", "kind": "fq_codel", "txqueuelen": 1000},
                check=check,
            )
        assert str(exc.value) == (
            "srv1: eth0: qdisc kind 'fq_codel' is not supported by this kernel "
            "(Error: Specified qdisc kind is unknown.)"
        )
        assert "\n" not in str(exc.value)
        assert full_state(srv1) == before


@pytest.fixture
def restore_lo(lab: NamespaceLab) -> Iterator[None]:
    """srv1's loopback back at its default (noqueue, txqueuelen 1000) after the test."""
    srv1 = lab.host("srv1")
    try:
        yield
    finally:
        res = srv1.run(["tc", "qdisc", "del", "dev", "lo", "root"])
        assert res.ok or "handle of zero" in res.stderr, res.stderr
        srv1.run(["ip", "link", "set", "lo", "txqueuelen", "1000"], check=True)


@pytest.mark.usefixtures("restore_lo")
def test_a_kind_the_device_refuses_leaves_it_as_it_was(lab: NamespaceLab, tmp_path: Path) -> None:
    # mq needs a multiqueue device: the probe cannot tell (its loopback has one queue), so
    # this is the apply script's own failure path, on the real kernel. srv1's lo has one
    # queue; its veth eth0 has one per CPU and takes mq.
    srv1 = lab.host("srv1")
    srv1.run(["tc", "qdisc", "replace", "dev", "lo", "root", "pfifo", "limit", "77"], check=True)
    srv1.run(["ip", "link", "set", "lo", "txqueuelen", "0"], check=True)

    def lo_state() -> tuple[str, int]:
        qdiscs = srv1.run(["tc", "-j", "qdisc", "show", "dev", "lo"], check=True).stdout
        return qdiscs, txqueuelen(srv1, "lo")

    before = lo_state()
    res = run_action(QdiscAction(), ctx(lab, tmp_path), {"interfaces": "lo", "kind": "mq"})
    assert (res.changed, res.failed) == (False, True)
    assert res.msg == (
        "srv1: lo: root pfifo limit 77 -> mq failed: RTNETLINK answers: Operation not "
        "supported; nothing was changed"
    )
    # The failed attach had reset txqueuelen to 1000; the script set the 0 back.
    assert lo_state() == before


@pytest.fixture
def own_veths() -> Iterator[tuple[str, str]]:
    """A veth pair of this test's own in this machine's root namespace: qtst0 with 4 tx
    queues (mq attaches), qtst1 with one (mq fails); removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    names = ("qtst0", "qtst1")
    for name in names:
        if subprocess.run(["ip", "link", "show", "dev", name], capture_output=True).returncode == 0:
            pytest.skip(f"{name} exists already: not ours to touch")
    subprocess.run(
        ["ip", "link", "add", "qtst1", "numtxqueues", "1", "type", "veth"]
        + ["peer", "name", "qtst0", "numtxqueues", "4"],
        check=True,
    )
    try:
        for name in names:
            subprocess.run(["ip", "link", "set", name, "up"], check=True)
        yield names
    finally:
        subprocess.run(["ip", "link", "del", "qtst1"], capture_output=True, check=False)


def test_a_failure_undoes_the_interfaces_already_changed(
    own_veths: tuple[str, str], tmp_path: Path
) -> None:
    """The all-or-nothing script on the real kernel: qtst0 takes mq, qtst1 refuses it, and
    qtst0 gets its pfifo back (a new handle and counters: the same kind and options)."""

    class Here:
        """Runs the action's commands on this machine, as SSH would on a host."""

        host = type("H", (), {"name": "here"})()

        def run(self, command: Any, **_: Any) -> CommandResult:
            text = command_text(command)
            p = subprocess.run(["sh", "-c", text], capture_output=True, text=True, timeout=60)
            return CommandResult("here", text, p.returncode, p.stdout, p.stderr, 0.0)

    def state(dev: str) -> tuple[str, dict[str, Any], int]:
        q = json.loads(
            subprocess.run(
                ["tc", "-j", "qdisc", "show", "dev", dev], capture_output=True, text=True
            ).stdout
        )
        root = next(x for x in q if x.get("root"))
        tx = int(Path(f"/sys/class/net/{dev}/tx_queue_len").read_text())
        return root["kind"], root.get("options", {}), tx

    subprocess.run(
        ["tc", "qdisc", "replace", "dev", "qtst0", "root", "pfifo", "limit", "7"], check=True
    )
    subprocess.run(["ip", "link", "set", "qtst1", "txqueuelen", "0"], check=True)
    before = {d: state(d) for d in own_veths}
    c = TaskContext(conn=Here(), vars={}, base_dir=tmp_path)  # type: ignore[arg-type]
    res = run_action(QdiscAction(), c, {"interfaces": "qtst?", "kind": "mq", "txqueuelen": 500})
    assert res.failed and not res.changed
    assert res.changes[:2] == ("qtst0: root pfifo limit 7 -> mq", "qtst0: txqueuelen 1000 -> 500")
    assert res.msg == (
        "here: qtst1: root noqueue -> mq failed: RTNETLINK answers: Operation not supported; "
        "the 2 change(s) before it were undone"
    )
    assert {d: state(d) for d in own_veths} == before


@pytest.mark.usefixtures("restore_eth0")
def test_the_playbook_applies_each_stage_then_changes_nothing(
    lab: NamespaceLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Until labctl.actions registers it, the playbook's `qdisc` action is added here.
    book = load_playbook(PLAYBOOK)
    hosts = ("srv1", "cli1", "cli2")

    def run(stage: str | None) -> tuple[int, dict[str, int]]:
        extra = {} if stage is None else {"qdisc_stage": stage}
        done = run_playbook(book, lab.inventory, RunOptions(extra_vars=extra), QuietReporter())
        return done.exit_status, {h: done.recap[h].changed for h in hosts}

    expected = {  # stage -> eth0's root kind, its options, txqueuelen
        "pfifo": ("pfifo", {"limit": 100}, 1000),
        "txqueuelen0": ("pfifo", {"limit": 100}, 0),
        None: ("noqueue", {}, 0),  # no -e: the blog's end state, stage noqueue
        "default": ("noqueue", {}, 1000),
    }
    for stage, (kind, options, length) in expected.items():
        assert run(stage) == (0, dict.fromkeys(hosts, 1)), stage
        assert run(stage) == (0, dict.fromkeys(hosts, 0)), stage
        for h in hosts:
            q = root_qdisc(lab.host(h))
            assert (q["kind"], q["options"], txqueuelen(lab.host(h))) == (kind, options, length)

    bad = run_playbook(
        book, lab.inventory, RunOptions(extra_vars={"qdisc_stage": "nope"}), QuietReporter()
    )
    assert bad.exit_status == 2
    assert all(bad.recap[h].failed == 1 and bad.recap[h].changed == 0 for h in hosts)


def test_qdisc_show_reports_every_interface(lab: NamespaceLab, tmp_path: Path) -> None:
    srv1 = lab.host("srv1")
    srv1.run(["tc", "qdisc", "replace", "dev", "eth0", "root", "pfifo", "limit", "77"], check=True)
    try:
        srv1.run(["ping", "-c", "1", "-W", "1", lab.inventory_host("cli1").address])
        proc = lab.labctl("qdisc.show", "-i", str(lab.inventory_path), "--json")
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(proc.stdout)
        assert set(doc) == {"srv1", "cli1", "cli2"}
        eth0 = {h: next(s for s in stats if s["interface"] == "eth0") for h, stats in doc.items()}
        assert eth0["srv1"]["kind"] == "pfifo" and "77" in eth0["srv1"]["options"]
        assert eth0["srv1"]["packets"] > 0  # SSH's own replies went through it
        assert eth0["cli1"]["kind"] == "noqueue"
        table = lab.labctl("qdisc.show", "-i", str(lab.inventory_path), "--limit", "srv1")
        assert "pfifo" in table.stdout and "cli1" not in table.stdout
    finally:
        srv1.run(["tc", "qdisc", "del", "dev", "eth0", "root"])
