"""pkt-gen output parsing on its documented formats, the sample statistics, and the
verdict that checks pkt-gen against both NICs' counters."""

from __future__ import annotations

import pytest

from labctl.experiments.pktgen import (
    NicCounters,
    judge_pktgen,
    parse_counters,
    trial_metrics,
    tx_count,
)
from labctl.experiments.pktgen_tool import (
    PktgenError,
    PktgenResult,
    parse_periodic,
    parse_pktgen,
    pktgen_argv,
)
from labctl.stats import mann_whitney_p, summarize

PERIODIC = (
    "123.456789 main_thread [2781] 14.880 Mpps (14.895 Mpkts 7.142 Gbps in 1001024 usec) "
    "512.00 avg_batch 99999 min_space\n"
    "124.457000 main_thread [2781] 980.123 Kpps (981.000 Kpkts 470.459 Mbps in 1000900 usec) "
    "12.00 avg_batch 1 min_space\n"
)


def test_periodic_lines_give_packets_per_second() -> None:
    assert parse_periodic(PERIODIC) == pytest.approx([14.880e6, 980.123e3])


def test_tx_summary() -> None:
    out = (
        "Sent 1000 packets 60000 bytes 10 events 60 bytes each in 1.00 seconds.\n"
        "Speed: 1.000 Kpps Bandwidth: 480.000 Kbps (raw 640.000 Kbps). Average batch: 100.00 pkts\n"
    )
    res = parse_pktgen(out, PERIODIC)
    assert (res.direction, res.packets, res.bytes, res.seconds) == ("Sent", 1000, 60000, 1.0)
    assert res.pps == pytest.approx(1000.0) and res.bps == pytest.approx(480e3)
    assert len(res.periodic_pps) == 2


def test_rx_summary_sent_nothing_rtt_and_no_netmap() -> None:
    rx = parse_pktgen(
        "Received 311064240 packets 18663854400 bytes 5 events 60 bytes each in "
        "20.90 seconds.\nSpeed: 14.880 Mpps Bandwidth: 7.142 Gbps (raw 9.998 Gbps)\n"
    )
    assert rx.direction == "Received" and rx.pps == pytest.approx(14.88e6)
    assert parse_pktgen("Sent nothing.\n").packets == 0
    ping = parse_pktgen("RTT over 1000 packets: min 2300 av 2810 ns\nSent nothing.\n")
    assert (ping.rtt_min_ns, ping.rtt_avg_ns) == (2300.0, 2810.0)
    with pytest.raises(PktgenError, match="netmap is not loaded"):
        parse_pktgen("usage: ...", "/dev/netmap: No such file or directory\n")
    with pytest.raises(PktgenError, match="no pkt-gen summary"):
        parse_pktgen("garbage\n")


def test_argv_prefixes_netmap_and_passes_options() -> None:
    argv = pktgen_argv("pkt-gen", "eth1", "tx", rate=1000, count=5000, dst="10.0.0.2:5000")
    assert argv[:5] == ["pkt-gen", "-i", "netmap:eth1", "-f", "tx"]
    assert argv[-6:] == ["-R", "1000", "-n", "5000", "-d", "10.0.0.2:5000"]
    assert pktgen_argv("pkt-gen", "vale0:a", "rx")[2] == "vale0:a"
    with pytest.raises(ValueError):
        pktgen_argv("pkt-gen", "eth1", "flood")


def test_summary_and_mann_whitney() -> None:
    s = summarize([10, 20, 30, 40, 50])
    assert (s.n, s.median, s.q1, s.q3, s.iqr) == (5, 30, 20, 40, 20)
    assert summarize([7]).iqr == 0
    low, high = (
        [27.1, 27.9, 27.5, 28.0, 27.3, 27.7, 27.6, 27.4],
        [33.2, 33.9, 33.5, 34.0, 33.1, 33.8, 33.6, 33.7],
    )
    p = mann_whitney_p(low, high)
    assert p is not None and p < 0.002  # 8 vs 8, fully separated
    assert mann_whitney_p(low, low) == pytest.approx(1.0, abs=0.05)
    assert mann_whitney_p([1.0], high) is None


# ---------------------------------------------------------------------------- the verdict


def sent(packets: int, size: int = 60) -> PktgenResult:
    return PktgenResult("Sent", packets, packets * size, 3.0, packets / 3.0, packets * size * 8 / 3)


def received(packets: int, nbytes: int | None = None) -> PktgenResult:
    nbytes = packets * 60 if nbytes is None else nbytes
    return PktgenResult("Received", packets, nbytes, 3.0, packets / 3.0, nbytes * 8 / 3)


def test_all_counts_agree() -> None:
    v = judge_pktgen(sent(60_000), received(59_990), NicCounters(60_012, 3_600_720),
                     NicCounters(60_004, 3_840_256))  # fmt: skip
    assert (v.valid, v.reason, v.received) == (True, "", 59_990)


def test_a_receiver_too_slow_is_a_loss_not_a_broken_measurement() -> None:
    """Seen with the fixture's AF_PACKET rx in a VM: the NIC counted 59035, pkt-gen 54647."""
    tx, nic_tx, nic_rx = sent(59_100), NicCounters(59_100, 3_546_000), NicCounters(59_035, 0)
    rx = received(54_647)
    v = judge_pktgen(tx, rx, nic_tx, nic_rx)
    assert v.valid and v.received == 54_647
    m = trial_metrics(tx, rx, nic_tx, nic_rx, v, 3.0)
    assert m["rx_loss_share"] == pytest.approx(1 - 54_647 / 59_035)
    assert m["link_loss_share"] == pytest.approx(1 - 59_035 / 59_100)
    assert m["loss_share"] == pytest.approx(1 - 54_647 / 59_100)


def test_a_wrong_rx_packet_count_with_right_bytes_uses_the_nics_count() -> None:
    """netmap's pkt-gen in a VM (native e1000e): "Received 1 packets 311064240 bytes"."""
    tx = sent(5_184_404)
    v = judge_pktgen(
        tx, received(1, 311_064_240), NicCounters(5_184_404, 311_064_240),
        NicCounters(5_184_404, 311_064_240 + 4 * 5_184_404),
    )  # fmt: skip
    assert v.valid and v.received == 5_184_404
    assert "pkt-gen rx counted 1 packets but 311064240 bytes" in v.reason


def test_counts_that_rise_along_the_way_are_a_broken_measurement() -> None:
    v = judge_pktgen(sent(10_000), received(10_000), NicCounters(7_000, 0), NicCounters(9_990, 0))
    assert not v.valid
    assert "the sender's NIC counted 7000 packets out, pkt-gen says it sent 10000" in v.reason
    assert "more than the 7000 the sender's NIC sent" in v.reason
    v = judge_pktgen(sent(10_000), received(10_000), NicCounters(10_000, 0), NicCounters(8_000, 0))
    assert not v.valid and "more than its NIC counted in (8000)" in v.reason
    v = judge_pktgen(sent(0), received(0), NicCounters(0, 0), NicCounters(0, 0))
    assert not v.valid and v.reason == "pkt-gen sent nothing"


def test_received_nothing_and_counters_parse() -> None:
    assert parse_pktgen("Received nothing.\n").packets == 0
    text = "tx_packets=12\ntx_bytes=720\nrx_packets=3\nrx_bytes=\nrx_dropped=0\n"
    assert parse_counters(text, "enp0s4") == {
        "tx_packets": 12, "tx_bytes": 720, "rx_packets": 3, "rx_dropped": 0,
    }  # fmt: skip
    from labctl.experiments.base import ExperimentError

    with pytest.raises(ExperimentError, match="no counters for enp0s4"):
        parse_counters("rx_bytes=1\n", "enp0s4")


def test_pktgen_command_line_with_wait_and_macs() -> None:
    argv = pktgen_argv(
        "/root/labctl/bin/pkt-gen", "enp0s4", "tx", size=60, rate=5000, dst="10.78.0.11",
        src="10.78.0.12", dst_mac="52:54:00:99:01:02", wait_link=2,
    )  # fmt: skip
    assert argv[:5] == ["/root/labctl/bin/pkt-gen", "-i", "netmap:enp0s4", "-f", "tx"]
    pairs = dict(zip(argv[5::2], argv[6::2], strict=True))
    assert pairs["-R"] == "5000" and pairs["-D"] == "52:54:00:99:01:02" and pairs["-w"] == "2"


def test_the_nics_rate_spans_the_senders_own_seconds_not_the_asked_duration() -> None:
    """A tx that took 5.7 s (slow start, late stop) with `duration` 2: the receiver's NIC rate
    is its count over tx's 5.7 s, not over 2 s (which overstated it 2.8 times)."""
    tx = PktgenResult("Sent", 28_680, 28_680 * 60, 5.736, 5_000.0, 2_400_000.0)
    rx = PktgenResult("Received", 28_680, 28_680 * 60, 5.8, 4_944.8, 2_373_517.0)
    nic = NicCounters(28_680, 28_680 * 60)
    m = trial_metrics(tx, rx, nic, nic, judge_pktgen(tx, rx, nic, nic), 2.0)
    assert m["nic_rx_pps"] == pytest.approx(5_000.0)


def test_a_rate_gives_tx_a_count_and_no_rate_gives_none() -> None:
    assert tx_count(5_000, 2.0) == 10_000
    assert tx_count(3, 0.5) == 2  # rounded, and never 0 (pkt-gen's "no limit")
    assert tx_count(1, 0.5) == 1
    assert tx_count(0, 2.0) is None
    argv = pktgen_argv("/b/pkt-gen", "eth1", "tx", rate=5_000, count=tx_count(5_000, 2.0))
    assert argv[argv.index("-n") + 1] == "10000" and argv[argv.index("-R") + 1] == "5000"
    assert "-n" not in pktgen_argv("/b/pkt-gen", "eth1", "tx", count=tx_count(0, 2.0))


def test_receiving_rates_are_over_the_senders_time_when_rx_was_stopped_later() -> None:
    """netmap's pkt-gen in a TCG VM: tx counted 149,814 packets in 3.0 s and ended by
    itself; rx, stopped later, said 5.99 s and so read half the rate it received at."""
    tx = PktgenResult("Sent", 149_814, 149_814 * 60, 3.0, 49_938.0, 23_970_240.0)
    rx = PktgenResult("Received", 149_814, 149_814 * 60, 5.99, 25_011.0, 12_005_000.0)
    nic = NicCounters(149_814, 149_814 * 60)
    m = trial_metrics(tx, rx, nic, nic, judge_pktgen(tx, rx, nic, nic), 3.0)
    assert m["rx_pps"] == pytest.approx(49_938.0)
    assert m["rx_bps"] == pytest.approx(149_814 * 60 * 8 / 3.0)
    # a receiver that timed itself first to last packet keeps its own, shorter, time
    rx = PktgenResult("Received", 9_990, 9_990 * 60, 1.998, 5_000.0, 2_400_000.0)
    tx = PktgenResult("Sent", 10_000, 10_000 * 60, 2.0, 5_000.0, 2_400_000.0)
    nic = NicCounters(10_000, 10_000 * 60)
    m = trial_metrics(tx, rx, nic, NicCounters(9_990, 0), judge_pktgen(tx, rx, nic, nic), 2.0)
    assert m["rx_pps"] == pytest.approx(9_990 / 1.998)
