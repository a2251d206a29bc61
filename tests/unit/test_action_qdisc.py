"""qdisc without a host: parsers on captured real output, the planner (facts in, commands out),
argument checks, and the all-or-nothing apply script run against fake `tc` and `ip`.

The captures are in tests/unit/data/qdisc (README.md there says how each was made). A
`FakeConn` answers the plan's one read command section by section from them.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from labctl.actions.base import ActionFailed, ArgsError, TaskContext, build_args, run_action
from labctl.actions.qdisc import (
    ALREADY_DEFAULT_ERRORS,
    MARK,
    HostQdiscs,
    QdiscAction,
    QdiscArgs,
    QdiscPlan,
    QdiscState,
    apply_script,
    failure_message,
    normalize_option,
    option_matches,
    parse_host_qdiscs,
    parse_probe,
    parse_qdisc_states,
    plan_changes,
    probe_command,
    read_commands,
)
from labctl.facts.host import MARK as FACTS_MARK
from labctl.facts.host import Section
from labctl.facts.qdisc import parse_qdisc_stats
from labctl.remote import CommandResult, command_text
from labctl.views.qdisc import render_table, to_json

DATA = Path(__file__).parent / "data" / "qdisc"


def data(name: str) -> str:
    return (DATA / name).read_text()


def captured_section(name: str) -> Section:
    doc = json.loads(data(name))
    return Section(doc["output"], doc["exit_status"])


LAB = {"link": "lab-srv1-link.json", "qdisc": "lab-srv1-qdisc-noqueue.json"}
LAB_PFIFO = {"link": "lab-srv1-link.json", "qdisc": "lab-srv1-qdisc-pfifo.json"}
LAB_PFIFO_TXQ0 = {"link": "lab-srv1-link-txqueuelen0.json", "qdisc": "lab-srv1-qdisc-pfifo.json"}
ROOT = {"link": "root-link.json", "qdisc": "root-qdisc-default.json"}
ROOT_KINDS = {"link": "root-link-txqueuelen0.json", "qdisc": "root-qdisc-kinds.json"}


def sectioned(sections: dict[str, Section]) -> str:
    """Output in the shape labctl.facts.host.facts_script produces."""
    out = []
    for name, sec in sections.items():
        out.append(
            f"{FACTS_MARK} begin {name}\n{sec.output}{FACTS_MARK} end {name} {sec.exit_status}"
        )
    return "\n".join(out) + "\n"


class FakeConn:
    """Answers the read command from captures (only the sections it asks for) and every other
    command with `apply`; records what ran."""

    def __init__(
        self,
        capture: dict[str, str],
        *,
        default_qdisc: str = "root-default_qdisc.json",
        probe: str = "lab-srv1-probe-pfifo.json",
        apply: CommandResult | None = None,
        name: str = "srv1",
    ) -> None:
        self.host = SimpleNamespace(name=name)
        self.capture = capture
        self.default_qdisc = default_qdisc
        self.probe = probe
        self.apply = apply
        self.ran: list[str] = []

    def run(self, command: Any, **_: Any) -> CommandResult:
        text = command_text(command)
        self.ran.append(text)
        if f"{FACTS_MARK} begin link" not in text:
            assert self.apply is not None, f"unexpected command {text!r}"
            return self.apply
        sections = {
            "link": Section(data(self.capture["link"]), 0),
            "qdisc": Section(data(self.capture["qdisc"]), 0),
        }
        if "begin default_qdisc" in text:
            sections["default_qdisc"] = captured_section(self.default_qdisc)
        if "begin probe" in text:
            sections["probe"] = captured_section(self.probe)
        return CommandResult(self.host.name, text, 0, sectioned(sections), "", 0.01)


def ctx_for(conn: FakeConn, want_diff: bool = False) -> TaskContext:
    return TaskContext(conn=conn, vars={}, base_dir=Path("."), want_diff=want_diff)  # type: ignore[arg-type]


def plan_for(conn: FakeConn, raw: dict[str, Any], want_diff: bool = False) -> Any:
    args = build_args(QdiscAction, raw)
    return QdiscAction().plan(ctx_for(conn, want_diff), args)


def script_of(plan: Any) -> str:
    assert len(plan.steps) == 1
    return str(plan.steps[0].describe())


# ---------------------------------------------------------------------------- parsers


def test_lab_host_states_parse() -> None:
    states = parse_qdisc_states(data("lab-srv1-link.json"), data("lab-srv1-qdisc-noqueue.json"))
    assert list(states) == ["lo", "eth0"]
    eth0 = states["eth0"]
    assert (eth0.kind, eth0.handle, eth0.is_default, eth0.txqueuelen) == (
        "noqueue",
        "0:",
        True,
        1000,
    )
    assert eth0.summary() == "noqueue"

    pfifo = parse_qdisc_states(data("lab-srv1-link.json"), data("lab-srv1-qdisc-pfifo.json"))
    eth0 = pfifo["eth0"]
    assert (eth0.kind, eth0.handle, eth0.is_default) == ("pfifo", "803a:", False)
    assert eth0.options == {"limit": 100} and eth0.summary() == "pfifo limit 100"
    assert (eth0.bytes, eth0.packets, eth0.drops, eth0.overlimits) == (3506, 37, 0, 0)
    assert (eth0.requeues, eth0.backlog, eth0.qlen) == (0, 0, 0)


def test_txqlen_missing_from_ip_json_means_zero() -> None:
    # iproute2 6.1 leaves `txqlen` out of `ip -j link` when it is 0.
    assert '"txqlen"' not in json.dumps(json.loads(data("lab-srv1-link-txqueuelen0.json"))[1])
    states = parse_qdisc_states(
        data("lab-srv1-link-txqueuelen0.json"), data("lab-srv1-qdisc-pfifo.json")
    )
    assert states["eth0"].txqueuelen == 0 and states["lo"].txqueuelen == 1000


def test_root_namespace_kinds_parse() -> None:
    states = parse_qdisc_states(data("root-link-txqueuelen0.json"), data("root-qdisc-kinds.json"))
    summary = {n: (s.summary(), s.handle, s.master) for n, s in states.items()}
    assert summary == {
        "lo": ("noqueue", "0:", None),
        # The kernel's own pfifo_fast on a NIC: handle 0:, i.e. the default.
        "eth0": ("pfifo_fast bands 3 multiqueue false", "0:", None),
        "qtstbr": ("bfifo limit 150000", "8037:", None),
        "qtst1": ("pfifo limit 100", "8034:", None),
        "qtst0": ("tbf rate 12500000 burst 4087 lat 50000", "8035:", "qtstbr"),
        "qtst3": ("pfifo_fast bands 3 multiqueue false", "8038:", None),
        "qtst2": (
            "htb r2q 10 default 0x10 direct_packets_stat 0 direct_qlen 1000",
            "8036:",
            "qtstbr",
        ),
    }
    assert states["qtst1"].txqueuelen == 0 and states["qtst1"].packets == 6


def test_a_down_veth_has_no_root_in_tc_and_is_noop() -> None:
    assert '"qtst3"' not in data("root-qdisc-default.json")
    states = parse_qdisc_states(data("root-link.json"), data("root-qdisc-default.json"))
    assert (states["qtst3"].kind, states["qtst3"].handle, states["qtst3"].is_default) == (
        "noop",
        "",
        True,
    )


def test_probe_outputs_parse() -> None:
    unknown = parse_probe(captured_section("lab-srv1-probe-fq_codel.json"))
    assert (unknown.ran, unknown.ok, unknown.unknown_kind) == (True, False, True)
    assert unknown.message == "Error: Specified qdisc kind is unknown."
    assert parse_probe(captured_section("lab-srv1-probe-pfifo.json")).ok is True
    bad = parse_probe(captured_section("lab-srv1-probe-tbf-noburst.json"))
    assert (bad.ok, bad.unknown_kind, bad.message) == (
        False,
        False,
        'tbf: the "burst" parameter is mandatory.',
    )
    # unshare itself refused (no root): the probe says nothing about the kind.
    no_ns = parse_probe(Section("unshare: unshare failed: Operation not permitted\n", 1))
    assert (no_ns.ran, no_ns.message) == (False, "unshare: unshare failed: Operation not permitted")


def test_probe_command_is_what_was_captured() -> None:
    doc = json.loads(data("lab-srv1-probe-pfifo.json"))
    assert probe_command(["pfifo", "limit", "100"]) == doc["command"]


def test_read_commands_ask_only_for_what_is_needed() -> None:
    assert list(read_commands(QdiscArgs(interfaces=("eth0",), txqueuelen=0))) == ["link", "qdisc"]
    assert list(read_commands(QdiscArgs(interfaces=("eth0",), kind="noqueue"))) == ["link", "qdisc"]
    for kind in ("tbf", "mq"):
        assert list(read_commands(QdiscArgs(interfaces=("eth0",), kind=kind))) == [
            "link",
            "qdisc",
            "probe",
        ]
    assert list(read_commands(QdiscArgs(default_qdisc="pfifo_fast"))) == [
        "link",
        "qdisc",
        "default_qdisc",
    ]


def test_default_qdisc_read_in_root_and_refused_in_a_namespace() -> None:
    root = sectioned(
        {
            "link": Section(data("root-link.json"), 0),
            "qdisc": Section(data("root-qdisc-default.json"), 0),
            "default_qdisc": captured_section("root-default_qdisc.json"),
        }
    )
    assert parse_host_qdiscs("here", root).default_qdisc == "pfifo_fast"
    lab = root.replace(
        sectioned({"default_qdisc": captured_section("root-default_qdisc.json")}),
        sectioned({"default_qdisc": captured_section("lab-srv1-default_qdisc.json")}),
    )
    with pytest.raises(ValueError) as exc:
        parse_host_qdiscs("srv1", lab)
    assert str(exc.value) == (
        "qdisc: net.core.default_qdisc: not available on srv1 "
        "(only in the initial network namespace?)"
    )


def test_a_failed_tc_is_one_line() -> None:
    out = sectioned({"link": Section(data("lab-srv1-link.json"), 0), "qdisc": Section("", 127)})
    with pytest.raises(ValueError, match=r"^qdisc: `tc -s -j qdisc show` failed on srv1 \(exit"):
        parse_host_qdiscs("srv1", out)


# ---------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("key", "wanted", "actual", "same"),
    [
        # tbf rate 100mbit burst 32kbit latency 50ms, as tc -j reads it back (captured)
        ("rate", "100mbit", 12500000, True),
        ("rate", "12500kbps", 12500000, True),
        ("rate", "100000000", 12500000, True),  # a bare rate is bits
        ("rate", "200mbit", 12500000, False),
        ("burst", "32kbit", 4087, True),  # 4096 bytes, kept as ticks: within 2%
        ("burst", "4kb", 4087, True),
        ("burst", "8kb", 4087, False),
        ("latency", "50ms", 50000, True),
        ("latency", "0.05s", 50000, True),
        ("latency", "60ms", 50000, False),
        # htb prints `default` in hex; tc reads `default 10` as hex too
        ("default", "10", "0x10", True),
        ("default", "11", "0x10", False),
        ("r2q", "10", 10, True),
        ("r2q", "11", 10, False),
    ],
)
def test_options_compare_in_tc_json_units(key: str, wanted: str, actual: Any, same: bool) -> None:
    assert option_matches(key, wanted, actual) is same


def test_normalize_option_units() -> None:
    assert normalize_option("rate", "1kibit") == (128.0, 0.0)
    assert normalize_option("burst", "1540") == (1540.0, 0.02)
    assert normalize_option("rate", "10%") == ("10%", 0.0)  # not comparable as a number


# ---------------------------------------------------------------------------- planner


def test_already_pfifo_limit_100_is_a_noop() -> None:
    conn = FakeConn(LAB_PFIFO)
    res = run_action(
        QdiscAction(), ctx_for(conn), {"interfaces": "eth0", "kind": "pfifo", "limit": 100}
    )
    assert (res.changed, res.failed, res.changes) == (False, False, ())
    assert len(conn.ran) == 1  # one read-only command, nothing else
    assert res.output["interfaces"]["eth0"]["kind"] == "pfifo"
    assert res.output["interfaces"]["eth0"]["bytes"] == 3506


def test_noqueue_to_pfifo_is_one_replace() -> None:
    plan = plan_for(FakeConn(LAB), {"interfaces": ["eth0"], "kind": "pfifo", "limit": 100})
    assert plan.changes == ["eth0: root noqueue -> pfifo limit 100"]
    script = script_of(plan)
    assert "out=$(tc qdisc replace dev eth0 root pfifo limit 100 2>&1)" in script
    assert "txqueuelen" not in script  # eth0 is at 1000: nothing to keep


def test_other_limit_is_replaced() -> None:
    plan = plan_for(FakeConn(LAB_PFIFO), {"interfaces": "eth0", "kind": "pfifo", "limit": 50})
    assert plan.changes == ["eth0: root pfifo limit 100 -> pfifo limit 50"]
    assert "tc qdisc replace dev eth0 root pfifo limit 50" in script_of(plan)


def test_back_to_noqueue_deletes_the_root_tolerating_handle_zero() -> None:
    plan = plan_for(FakeConn(LAB_PFIFO), {"interfaces": "eth0", "kind": "noqueue"})
    assert plan.changes == ["eth0: root pfifo limit 100 -> noqueue"]
    script = script_of(plan)
    assert "out=$(tc qdisc del dev eth0 root 2>&1) || case $out in" in script
    assert "*'Cannot delete qdisc with handle of zero'*|*'No such file or directory'*) ;;" in script


@pytest.mark.parametrize("kind", ["noqueue", "default"])
def test_del_at_the_default_is_ok(kind: str) -> None:
    conn = FakeConn(LAB)
    res = run_action(QdiscAction(), ctx_for(conn), {"interfaces": "eth0", "kind": kind})
    assert (res.changed, res.changes) == (False, ())
    assert len(conn.ran) == 1


def test_txqueuelen_changes_alone() -> None:
    plan = plan_for(FakeConn(LAB_PFIFO), {"interfaces": "eth0", "txqueuelen": 0})
    assert plan.changes == ["eth0: txqueuelen 1000 -> 0"]
    assert "out=$(ip link set eth0 txqueuelen 0 2>&1)" in script_of(plan)
    ok = plan_for(
        FakeConn(LAB_PFIFO_TXQ0),
        {"interfaces": "eth0", "kind": "pfifo", "limit": 100, "txqueuelen": 0},
    )
    assert (ok.changes, ok.steps) == ([], [])
    back = plan_for(FakeConn(LAB_PFIFO_TXQ0), {"interfaces": "eth0", "txqueuelen": 1000})
    assert back.changes == ["eth0: txqueuelen 0 -> 1000"]


def test_a_txqueuelen_of_0_is_set_again_after_an_attach() -> None:
    # Attaching a qdisc where txqueuelen is 0 makes it 1000 (kernel: "Caught tx_queue_len
    # zero misconfig"): the plan keeps the 0 it found.
    plan = plan_for(FakeConn(LAB_PFIFO_TXQ0), {"interfaces": "eth0", "kind": "pfifo", "limit": 7})
    assert plan.changes == ["eth0: root pfifo limit 100 -> pfifo limit 7"]
    lines = script_of(plan).splitlines()
    assert lines[1].startswith("out=$(tc qdisc replace dev eth0 root pfifo limit 7 2>&1)")
    assert lines[2].startswith("out=$(ip link set eth0 txqueuelen 0 2>&1)")


def test_glob_chooses_in_link_order() -> None:
    plan = plan_for(FakeConn(ROOT), {"interfaces": "qtst?", "kind": "pfifo", "limit": 100})
    assert plan.changes == [
        "qtst1: root noqueue -> pfifo limit 100",
        "qtst0: root noqueue -> pfifo limit 100",
        "qtst3: root noop -> pfifo limit 100",
        "qtst2: root noqueue -> pfifo limit 100",
    ]
    # qtstbr matches `qtst*` but not `qtst?`; eth0 and lo are left alone.
    assert "qtstbr" not in script_of(plan) and "eth0" not in script_of(plan)


def test_bridge_ports_are_every_port_of_the_bridge() -> None:
    plan = plan_for(FakeConn(ROOT_KINDS), {"bridge_ports": "qtstbr", "kind": "pfifo", "limit": 100})
    assert plan.changes == [
        "qtst0: root tbf rate 12500000 burst 4087 lat 50000 -> pfifo limit 100",
        "qtst2: root htb r2q 10 default 0x10 direct_packets_stat 0 direct_qlen 1000 "
        "-> pfifo limit 100",
    ]
    assert sorted(plan.output["interfaces"]) == ["qtst0", "qtst2"]


def test_tbf_and_htb_as_tc_reports_them_are_ok() -> None:
    tbf = {"rate": "100mbit", "burst": "32kbit", "latency": "50ms"}
    same = plan_for(FakeConn(ROOT_KINDS), {"interfaces": "qtst0", "kind": "tbf", "params": tbf})
    assert same.changes == []
    faster = plan_for(
        FakeConn(ROOT_KINDS),
        {"interfaces": "qtst0", "kind": "tbf", "params": {**tbf, "rate": "1gbit"}},
    )
    assert faster.changes == [
        "qtst0: root tbf rate 12500000 burst 4087 lat 50000 "
        "-> tbf rate 1gbit burst 32kbit latency 50ms"
    ]
    htb = plan_for(
        FakeConn(ROOT_KINDS),
        {"interfaces": "qtst2", "kind": "htb", "params": {"default": "10", "r2q": 10}},
    )
    assert htb.changes == []


def test_an_option_tc_does_not_report_is_replaced_and_said_so() -> None:
    plan = plan_for(
        FakeConn(ROOT_KINDS),
        {
            "interfaces": "qtst0",
            "kind": "tbf",
            "params": {"rate": "100mbit", "burst": "32kbit", "limit": "3000"},
        },
    )
    assert plan.changes == [
        "qtst0: root tbf rate 12500000 burst 4087 lat 50000 -> tbf rate 100mbit burst 32kbit "
        "limit 3000 (tc does not report limit: replaced every run)"
    ]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"interfaces": "eth9", "kind": "noqueue"}, "qdisc: no interface 'eth9' on srv1"),
        (
            {"interfaces": ["eth0", "veth*"], "txqueuelen": 0},
            "qdisc: no interface on srv1 matches 'veth*'",
        ),
        ({"bridge_ports": "docker0", "kind": "noqueue"}, "qdisc: no bridge 'docker0' on srv1"),
        ({"bridge_ports": "eth0", "kind": "noqueue"}, "qdisc: bridge 'eth0' on srv1 has no ports"),
    ],
)
def test_interfaces_that_match_nothing_are_named(raw: dict[str, Any], message: str) -> None:
    conn = FakeConn(LAB)
    with pytest.raises(ValueError) as exc:
        run_action(QdiscAction(), ctx_for(conn), raw)
    assert str(exc.value) == message
    assert len(conn.ran) == 1


def test_unsupported_kind_is_refused_before_anything_changes() -> None:
    conn = FakeConn(LAB, probe="lab-srv1-probe-fq_codel.json")
    with pytest.raises(ActionFailed) as exc:
        run_action(QdiscAction(), ctx_for(conn), {"interfaces": "eth0", "kind": "fq_codel"})
    assert str(exc.value) == (
        "srv1: eth0: qdisc kind 'fq_codel' is not supported by this kernel "
        "(Error: Specified qdisc kind is unknown.)"
    )
    assert len(conn.ran) == 1  # the read (with its probe); no change was attempted


def test_multiqueue_kinds_are_refused_by_the_probe_only_when_unknown() -> None:
    # The probe's loopback has one queue: mq is refused there, not on a multiqueue veth.
    conn = FakeConn(LAB, probe="root-probe-mq.json")
    assert plan_for(conn, {"interfaces": "eth0", "kind": "mq"}).changes == [
        "eth0: root noqueue -> mq"
    ]
    with pytest.raises(ActionFailed, match=r"^srv1: eth0: qdisc kind 'mqprio' is not supported"):
        plan_for(
            FakeConn(LAB, probe="root-probe-mqprio.json"), {"interfaces": "eth0", "kind": "mqprio"}
        )


def test_bad_parameters_are_refused_by_the_probe() -> None:
    conn = FakeConn(ROOT, probe="lab-srv1-probe-tbf-noburst.json")
    with pytest.raises(ActionFailed) as exc:
        plan_for(conn, {"interfaces": "qtst0", "kind": "tbf", "params": {"rate": "100mbit"}})
    assert str(exc.value) == (
        'srv1: qtst0: tc refuses `tbf rate 100mbit`: tbf: the "burst" parameter is mandatory.'
    )


def test_check_mode_runs_only_the_read() -> None:
    conn = FakeConn(LAB)
    res = run_action(
        QdiscAction(),
        ctx_for(conn),
        {"interfaces": "eth0", "kind": "pfifo", "limit": 100, "txqueuelen": 0},
        check=True,
    )
    assert (res.changed, res.changes) == (
        True,
        ("eth0: root noqueue -> pfifo limit 100", "eth0: txqueuelen 1000 -> 0"),
    )
    assert len(conn.ran) == 1


def test_diff_shows_before_and_after() -> None:
    plan = plan_for(
        FakeConn(LAB),
        {"interfaces": "eth0", "kind": "pfifo", "limit": 100, "txqueuelen": 0},
        want_diff=True,
    )
    assert plan.diff == (
        "--- srv1 qdiscs (before)\n+++ srv1 qdiscs (after)\n@@ -1 +1 @@\n"
        "-eth0: root noqueue, txqueuelen 1000\n+eth0: root pfifo limit 100, txqueuelen 0\n"
    )


def test_default_qdisc_is_set_with_sysctl() -> None:
    plan = plan_for(FakeConn(ROOT), {"default_qdisc": "pfifo"})
    assert plan.changes == ["net.core.default_qdisc pfifo_fast -> pfifo"]
    assert "sysctl -w net.core.default_qdisc=pfifo" in script_of(plan)
    assert plan_for(FakeConn(ROOT), {"default_qdisc": "pfifo_fast"}).changes == []
    with pytest.raises(ValueError, match=r"default_qdisc: not available on srv1"):
        plan_for(
            FakeConn(LAB, default_qdisc="lab-srv1-default_qdisc.json"), {"default_qdisc": "pfifo"}
        )


def test_apply_runs_one_script_and_maps_a_failure_to_one_line() -> None:
    raw = {"interfaces": "eth0", "kind": "pfifo", "limit": 100}
    ok = FakeConn(LAB, apply=CommandResult("srv1", "script", 0, "", "", 0.01))
    res = run_action(QdiscAction(), ctx_for(ok), raw)
    assert (res.changed, res.failed, res.changes) == (
        True,
        False,
        ("eth0: root noqueue -> pfifo limit 100",),
    )
    assert len(ok.ran) == 2 and ok.ran[1].startswith("# labctl qdisc: all or nothing")

    out = f"{MARK} failed 0\nError: Specified qdisc kind is unknown.\n"
    bad = FakeConn(LAB, apply=CommandResult("srv1", "script", 3, out, "", 0.01))
    res = run_action(QdiscAction(), ctx_for(bad), raw)
    assert (res.changed, res.failed) == (False, True)
    assert res.msg == (
        "srv1: eth0: qdisc kind 'pfifo' is not supported by this kernel "
        "(Error: Specified qdisc kind is unknown.); nothing was changed"
    )


def test_register_output_is_the_state_before() -> None:
    plan = plan_for(FakeConn(LAB_PFIFO), {"interfaces": "eth0", "kind": "noqueue"})
    eth0 = plan.output["interfaces"]["eth0"]
    assert {k: eth0[k] for k in ("kind", "handle", "options", "txqueuelen", "default")} == {
        "kind": "pfifo",
        "handle": "803a:",
        "options": {"limit": 100},
        "txqueuelen": 1000,
        "default": False,
    }
    assert [
        eth0[k] for k in ("bytes", "packets", "drops", "overlimits", "requeues", "backlog", "qlen")
    ] == [
        3506,
        37,
        0,
        0,
        0,
        0,
        0,
    ]


# ---------------------------------------------------------------------------- args


def args_error(raw: dict[str, Any]) -> str:
    with pytest.raises(ArgsError) as exc:
        build_args(QdiscAction, raw)
    return str(exc.value)


@pytest.mark.parametrize(("kind", "unit"), [("pfifo", "packets"), ("bfifo", "bytes")])
def test_fifo_without_limit_is_refused_with_the_reason(kind: str, unit: str) -> None:
    assert args_error({"interfaces": "eth0", "kind": kind}) == (
        f"qdisc: kind {kind} needs an explicit limit ({unit}): without one a fifo takes the "
        "interface's txqueuelen as its limit, and txqueuelen may be 0 (docs/qdiscs.md)"
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"rate": "1mbit; reboot"}, "params: rate '1mbit; reboot' is not a safe tc value"),
        ({"rate": "$(id)"}, "params: rate '$(id)' is not a safe tc value"),
        ({"rate": "1mbit burst"}, "params: rate '1mbit burst' is not a safe tc value"),
        ({"Rate;x": "1"}, "params: 'Rate;x' is not a tc parameter name"),
        ({"rate": ""}, "params: rate '' is not a safe tc value"),
    ],
)
def test_unsafe_params_are_refused(params: dict[str, str], message: str) -> None:
    assert (
        args_error({"interfaces": "eth0", "kind": "tbf", "params": params}) == f"qdisc: {message}"
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"kind": "noqueue"}, "give 'interfaces' (names or globs) or 'bridge_ports' (a bridge)"),
        (
            {"interfaces": "eth0"},
            "interfaces chosen but nothing to set on them: give kind or txqueuelen",
        ),
        ({}, "nothing to set: give kind, txqueuelen or default_qdisc"),
        (
            {"interfaces": "eth0; reboot", "kind": "noqueue"},
            "interface 'eth0; reboot' is not an interface name or glob",
        ),
        ({"bridge_ports": "br*", "kind": "noqueue"}, "bridge_ports 'br*' is not an interface name"),
        (
            {"interfaces": "eth0", "kind": "fq codel"},
            "kind 'fq codel' is not a qdisc kind (like pfifo, tbf, htb)",
        ),
        ({"interfaces": "eth0", "kind": "ingress"}, "kind ingress is not a root qdisc"),
        (
            {"interfaces": "eth0", "kind": "noqueue", "limit": 10},
            "limit and params need a qdisc kind, not noqueue",
        ),
        (
            {"interfaces": "eth0", "kind": "pfifo", "limit": 10, "params": {"x": "1"}},
            "kind pfifo takes only limit, not x",
        ),
        (
            {"interfaces": "eth0", "kind": "tbf", "limit": 10, "params": {"limit": "1"}},
            "give limit once: as 'limit' or in params, not both",
        ),
        ({"interfaces": "eth0", "txqueuelen": -1}, "txqueuelen must be 0 or more, not -1"),
        ({"default_qdisc": "fq;x"}, "default_qdisc 'fq;x' is not a qdisc kind"),
    ],
)
def test_bad_args_are_refused(raw: dict[str, Any], message: str) -> None:
    assert args_error(raw) == f"qdisc: {message}"


def test_args_from_yaml_values() -> None:
    args = build_args(
        QdiscAction,
        {
            "interfaces": "veth*",
            "kind": "tbf",
            "params": {"rate": "100mbit", "burst": 1540, "latency": "50ms"},
            "txqueuelen": "0",
        },
    )
    assert args.interfaces == ("veth*",) and args.txqueuelen == 0
    assert args.tc_words() == ["tbf", "rate", "100mbit", "burst", "1540", "latency", "50ms"]


# ---------------------------------------------------------------------------- all or nothing


FAKE_TOOL = """#!/bin/sh
echo "$(basename "$0") $*" >> "$FAKE_LOG"
case "$(basename "$0") $*" in
  $FAKE_FAIL) echo "RTNETLINK answers: Operation not supported" >&2; exit 2;;
  $FAKE_ZERO) echo "Error: Cannot delete qdisc with handle of zero." >&2; exit 2;;
esac
exit 0
"""


def run_script(
    tmp_path: Path, script: str, fail: str, zero: str = "nothing"
) -> tuple[int, str, list[str]]:
    """The apply script with `tc` and `ip` replaced by fakes that log their arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("tc", "ip", "sysctl"):
        (bin_dir / tool).write_text(FAKE_TOOL)
        (bin_dir / tool).chmod(0o755)
    log = tmp_path / "log"
    log.write_text("")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_LOG": str(log)}
    env |= {"FAKE_FAIL": fail, "FAKE_ZERO": zero}
    proc = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, timeout=30)
    return proc.returncode, proc.stdout, log.read_text().splitlines()


def two_interfaces() -> Any:
    found = parse_host_qdiscs(
        "here",
        sectioned(
            {
                "link": Section(data("root-link-txqueuelen0.json"), 0),
                "qdisc": Section(data("root-qdisc-kinds.json"), 0),
            }
        ),
    )
    args = QdiscArgs(interfaces=("qtst0", "qtst1"), kind="pfifo", limit=10, txqueuelen=500)
    return plan_changes("here", args, found)


def test_a_failure_undoes_every_change_before_it_in_reverse(tmp_path: Path) -> None:
    plan = two_interfaces()
    assert plan.changes == [
        "qtst1: root pfifo limit 100 -> pfifo limit 10",
        "qtst1: txqueuelen 0 -> 500",
        "qtst0: root tbf rate 12500000 burst 4087 lat 50000 -> pfifo limit 10",
        "qtst0: txqueuelen 1000 -> 500",
    ]
    script = plan.steps[0].describe()
    rc, out, ran = run_script(tmp_path, script, fail="tc qdisc replace dev qtst0 *")
    assert rc == 3
    assert ran == [
        "tc qdisc replace dev qtst1 root pfifo limit 10",
        "ip link set qtst1 txqueuelen 500",
        "tc qdisc replace dev qtst0 root pfifo limit 10",  # fails
        "ip link set qtst1 txqueuelen 0",  # undone, last first
        "tc qdisc replace dev qtst1 root pfifo limit 100",
        "ip link set qtst1 txqueuelen 0",  # attaching made it 1000 again
    ]
    assert out.splitlines() == [f"{MARK} failed 2", "RTNETLINK answers: Operation not supported"]
    res = CommandResult("here", script, rc, out, "", 0.1)
    assert failure_message(
        "here", QdiscArgs(interfaces=("qtst0",), kind="pfifo", limit=10), plan, res
    ) == (
        "here: qtst0: root tbf rate 12500000 burst 4087 lat 50000 -> pfifo limit 10 failed: "
        "RTNETLINK answers: Operation not supported; the 2 change(s) before it were undone"
    )


def test_a_root_that_cannot_be_rebuilt_is_reported(tmp_path: Path) -> None:
    found = parse_host_qdiscs(
        "here",
        sectioned(
            {
                "link": Section(data("root-link-txqueuelen0.json"), 0),
                "qdisc": Section(data("root-qdisc-kinds.json"), 0),
            }
        ),
    )
    # qtst2's htb (its classes) cannot be rebuilt from what tc -j shows.
    args = QdiscArgs(interfaces=("qtst2", "qtstbr"), kind="pfifo", limit=10)
    plan = plan_changes("here", args, found)
    assert [c.interface for c in plan.ordered] == ["qtstbr", "qtst2"]
    rc, out, ran = run_script(
        tmp_path, plan.steps[0].describe(), fail="tc qdisc replace dev qtst2 *"
    )
    assert ran[-1] == "tc qdisc replace dev qtstbr root bfifo limit 150000"
    rc, out, ran = run_script(
        tmp_path,
        apply_script(list(reversed(plan.ordered))),
        fail="tc qdisc replace dev qtstbr *",
    )
    assert f"{MARK} undo-failed 0" in out.splitlines()
    reversed_plan = QdiscPlan(ordered=list(reversed(plan.ordered)))
    assert failure_message(
        "here", args, reversed_plan, CommandResult("here", "s", rc, out, "", 0)
    ) == (
        "here: qtstbr: root bfifo limit 150000 -> pfifo limit 10 failed: RTNETLINK answers: "
        "Operation not supported; could NOT undo: qtst2: root htb r2q 10 default 0x10 "
        "direct_packets_stat 0 direct_qlen 1000 -> pfifo limit 10"
    )


def test_the_captured_del_error_is_one_we_tolerate() -> None:
    doc = json.loads(data("lab-srv1-qdisc-del-again.json"))
    assert doc["exit_status"] == 2
    assert any(e in doc["output"] for e in ALREADY_DEFAULT_ERRORS)


def test_del_at_the_default_in_the_script_is_no_failure(tmp_path: Path) -> None:
    state = QdiscState("eth0", "pfifo", "8001:", 1000, {"limit": 100})
    plan = plan_changes(
        "srv1", QdiscArgs(interfaces=("eth0",), kind="noqueue"), HostQdiscs({"eth0": state})
    )
    rc, out, ran = run_script(
        tmp_path, plan.steps[0].describe(), fail="nothing", zero="tc qdisc del *"
    )
    assert (rc, out, ran) == (0, "", ["tc qdisc del dev eth0 root"])


def test_each_script_line_runs_exactly_the_planned_words() -> None:
    plan = two_interfaces()
    firsts = [
        shlex.split(line.split("$(", 1)[1].split(" 2>&1)", 1)[0])
        for line in plan.steps[0].describe().splitlines()[1:]
    ]
    assert firsts == [list(c) for change in plan.ordered for c in change.commands]


# ---------------------------------------------------------------------------- qdisc.show


def show_output() -> str:
    return sectioned(
        {
            "link": Section(data("root-link-txqueuelen0.json"), 0),
            "qdisc": Section(data("root-qdisc-kinds.json"), 0),
        }
    )


def test_qdisc_stats_list_every_interface_root() -> None:
    stats = parse_qdisc_stats(show_output())
    rows = {
        s.interface: (s.kind, s.handle, s.parent, s.options, s.txqueuelen, s.packets) for s in stats
    }
    assert rows["qtst1"] == ("pfifo", "8034:", "root", "limit 100", 0, 6)
    assert rows["qtst0"] == ("tbf", "8035:", "root", "rate 12500000 burst 4087 lat 50000", 1000, 0)
    assert rows["lo"] == ("noqueue", "0:", "root", "", 1000, 0)
    assert [s.interface for s in stats] == [
        "lo",
        "eth0",
        "qtstbr",
        "qtst1",
        "qtst0",
        "qtst3",
        "qtst2",
    ]


def test_qdisc_show_table_and_json() -> None:
    from rich.console import Console

    stats = parse_qdisc_stats(show_output())
    results: dict[str, Any] = {
        "here": stats,
        "cli9": ValueError("cli9: unreachable: connection refused"),
    }
    console = Console(width=200, record=True)
    console.print(render_table(results))
    text = console.export_text()
    assert re.search(r"here\s+qtst1\s+pfifo\s+limit 100\s+0\s+516\s+6\s+0\s+0\s+0\s+0b 0p", text)
    assert "cli9: unreachable: connection refused" in text
    doc = json.loads(to_json(results))
    assert doc["cli9"] == {"error": "cli9: unreachable: connection refused"}
    assert doc["here"][3]["interface"] == "qtst1" and doc["here"][3]["bytes"] == 516
