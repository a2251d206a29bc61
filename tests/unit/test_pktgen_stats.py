"""pkt-gen output parsing on its documented formats, and the sample statistics."""

from __future__ import annotations

import pytest

from labctl.experiments.pktgen import PktgenError, parse_periodic, parse_pktgen, pktgen_argv
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
