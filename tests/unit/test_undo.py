"""What a run changed, put back: each change's undo is a task of the same kind with the state
its plan found; of several changes to one thing, the first one's undo is kept."""

from __future__ import annotations

from pathlib import Path

from labctl.actions.base import Undo
from labctl.actions.qdisc import HostQdiscs, QdiscArgs, plan_changes, undo_of
from labctl.facts.qdisc import QdiscState
from labctl.results.store import ResultsStore

from .test_action_qdisc import two_interfaces


def test_a_qdisc_undo_rebuilds_the_root_and_queue_length_found() -> None:
    plan = two_interfaces()  # qtst1: pfifo limit 100, txqueuelen 0; qtst0: tbf, 1000
    assert [u.to_dict() for u in plan.undo] == [
        {
            "target": "qdisc qtst1",
            "action": "qdisc",
            "args": {"interfaces": ["qtst1"], "kind": "pfifo", "limit": 100, "txqueuelen": 0},
        },
        {
            "target": "qdisc qtst0",
            "action": "qdisc",
            "args": {
                "interfaces": ["qtst0"],
                "kind": "tbf",
                "params": {"rate": "12500000bps", "burst": "4087b", "latency": "50000us"},
                "txqueuelen": 1000,
            },
        },
    ]
    # every undo is a valid task of its action
    for u in plan.undo:
        QdiscArgs(**{**u.args, "interfaces": tuple(u.args["interfaces"])})


def test_a_default_root_is_put_back_as_the_default_and_unknown_roots_are_not_guessed() -> None:
    default = QdiscState("eth0", "noqueue", "0:", 1000)
    assert undo_of(default, root=True, txqueuelen=False) == Undo(
        "qdisc eth0", "qdisc", {"interfaces": ["eth0"], "kind": "default"}
    )
    htb = QdiscState("eth1", "htb", "1:", 1000, {"r2q": 10})
    assert undo_of(htb, root=True, txqueuelen=False) is None
    assert undo_of(htb, root=False, txqueuelen=True) == Undo(
        "qdisc eth1", "qdisc", {"interfaces": ["eth1"], "txqueuelen": 1000}
    )


def test_nothing_to_change_means_nothing_to_undo() -> None:
    state = QdiscState("eth0", "pfifo", "8001:", 1000, {"limit": 100})
    found = plan_changes(
        "h",
        QdiscArgs(interfaces=("eth0",), kind="pfifo", limit=100),
        HostQdiscs({"eth0": state}),
    )
    assert not found.steps and not found.undo


def test_the_store_keeps_the_first_undo_of_each_thing_last_change_first(tmp_path: Path) -> None:
    with ResultsStore(tmp_path / "r.db") as db:
        run_id = db.start_run("qdisc", {}, "inv", 1)
        first = {"target": "qdisc eth0", "action": "qdisc", "args": {"kind": "pfifo"}}
        later = {"target": "qdisc eth0", "action": "qdisc", "args": {"kind": "bfifo"}}
        sysctl = {"target": "sysctl a.b", "action": "sysctl", "args": {"name": "a.b", "value": "1"}}
        db.add_undo(run_id, "srv1", [first])
        db.add_undo(run_id, "srv1", [later, sysctl])
        db.add_undo(run_id, "cli1", [later])
        assert db.undo_entries(run_id) == [
            ("cli1", later),
            ("srv1", sysctl),
            ("srv1", first),  # the state before the run, not the one between two trials
        ]
