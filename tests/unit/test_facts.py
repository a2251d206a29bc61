"""Fact parsers on captured output: facts in, typed values out. No SSH."""

from __future__ import annotations

import json
from pathlib import Path

from labctl.facts.host import (
    FACT_COMMANDS,
    facts_script,
    parse_ethtool_blocks,
    parse_host_facts,
    parse_interfaces,
    parse_root_qdiscs,
    split_sections,
    ssh_endpoint,
)

DATA = Path(__file__).parent / "data" / "facts"


def test_lab_host_output_parses_into_typed_facts() -> None:
    # Captured from a local-lab host (namespace cli1 on 6.18, reached over SSH from 10.240.7.1).
    facts = parse_host_facts("cli1", (DATA / "lab-veth-host.txt").read_text())
    assert facts.errors == ()
    assert facts.hostname == "cli1"
    assert facts.kernel_release == "6.18.44-fc-v669"
    assert facts.arch == "x86_64"
    assert facts.distro_id == "debian" and facts.distro_version == "12"
    assert facts.cpus == 2
    assert facts.mem_total_mib is not None and facts.mem_total_mib > 1000
    assert facts.modules_supported is False
    assert facts.somaxconn == 4096
    # net.core.default_qdisc exists only in the initial network namespace.
    assert facts.default_qdisc is None
    assert facts.gcc_version == "12.2.0"
    assert facts.tc_version is not None and "iproute2-6.1.0" in facts.tc_version
    eth0 = facts.interface("eth0")
    assert eth0 is not None
    assert (eth0.driver, eth0.root_qdisc) == ("veth", "noqueue")
    assert eth0.addresses == ("10.240.7.12/24", "fe80::7ca3:ddff:fe9a:3f7b/64")
    assert eth0.bus_info is None  # ethtool prints an empty field for a veth
    assert (facts.ssh_interface, facts.ssh_address, facts.controller_address) == (
        "eth0",
        "10.240.7.12",
        "10.240.7.1",
    )


def test_failed_and_missing_sections_are_reported_not_invented() -> None:
    out = (
        "@@labctl begin hostname\nh1\n@@labctl end hostname 0\n"
        "@@labctl begin qdiscs\n@@labctl end qdiscs 127\n"
    )
    facts = parse_host_facts("h1", out)
    assert facts.hostname == "h1"
    assert facts.kernel_release is None and facts.interfaces == ()
    assert "qdiscs: exit status 127" in facts.errors
    assert "uname: no output" in facts.errors


def test_script_frames_every_fact_and_splits_back() -> None:
    script = facts_script()
    assert script.count("@@labctl begin") == len(FACT_COMMANDS)
    fake = "".join(f"@@labctl begin {n}\nline of {n}\n@@labctl end {n} 3\n" for n in FACT_COMMANDS)
    sections = split_sections(fake)
    assert set(sections) == set(FACT_COMMANDS)
    assert sections["uname"].output == "line of uname\n"
    assert sections["uname"].exit_status == 3


def test_physical_nic_driver_from_ethtool_and_sysfs_fallback() -> None:
    text = (
        "@if enp3s0f0\ndriver: ixgbe\nversion: 6.1.0-28-amd64\nfirmware-version: 0x800004e0\n"
        "bus-info: 0000:03:00.0\n@if enp0s4\ndriver: e1000e\n@if lo\n"
    )
    blocks = parse_ethtool_blocks(text)
    assert blocks["enp3s0f0"]["driver"] == "ixgbe"
    assert blocks["enp3s0f0"]["bus-info"] == "0000:03:00.0"
    assert blocks["enp0s4"] == {"driver": "e1000e"}
    assert blocks["lo"] == {}
    ip_json = json.dumps(
        [
            {
                "ifname": "enp3s0f0",
                "address": "a0:36:9f:00:00:01",
                "mtu": 1500,
                "operstate": "UP",
                "addr_info": [{"family": "inet", "local": "192.168.3.6", "prefixlen": 24}],
            },
            {"ifname": "lo", "mtu": 65536, "operstate": "UNKNOWN", "addr_info": []},
        ]
    )
    qdiscs = parse_root_qdiscs(
        json.dumps(
            [
                {"kind": "mq", "handle": "0:", "dev": "enp3s0f0", "root": True},
                {"kind": "pfifo_fast", "handle": "0:", "dev": "enp3s0f0", "parent": ":1"},
            ]
        )
    )
    assert qdiscs == {"enp3s0f0": "mq"}
    nics = parse_interfaces(ip_json, blocks, qdiscs)
    assert nics[0].driver == "ixgbe" and nics[0].firmware == "0x800004e0"
    assert nics[0].root_qdisc == "mq"
    assert nics[1].driver is None and nics[1].root_qdisc is None
    assert ssh_endpoint("192.168.3.1 50022 192.168.3.6 22", nics) == (
        "enp3s0f0",
        "192.168.3.6",
        "192.168.3.1",
    )
    assert ssh_endpoint("", nics) == (None, None, None)
