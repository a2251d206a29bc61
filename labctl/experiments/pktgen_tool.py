"""netmap's pkt-gen as a tool: its command line, and its output parsed (docs/netmap.md,
"pkt-gen"): periodic lines on stderr (`... 14.880 Mpps (14.895 Mpkts 7.142 Gbps in 1001024
usec) ...`), the summary on stdout after SIGINT (`Sent 1000 packets 60000 bytes ... in 1.00
seconds.`, `Speed: 1.000 Kpps Bandwidth: 480.000 Kbps ...`, or `Sent nothing.`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from labctl.errors import LabctlError

_UNITS = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_NUM = r"([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)"
_PERIODIC = re.compile(rf"{_NUM}pps \({_NUM}pkts {_NUM}bps in ([0-9]+) usec\)")
_SUMMARY = re.compile(r"(Sent|Received) ([0-9]+) packets ([0-9]+) bytes .*? in ([0-9.]+) seconds")
_NOTHING = re.compile(r"^(Sent|Received) nothing\.", re.MULTILINE)
_SPEED = re.compile(rf"Speed: {_NUM}pps Bandwidth: {_NUM}bps")
_RTT = re.compile(r"RTT over ([0-9]+) packets: min ([0-9.]+) av ([0-9.]+) ns")


def _value(number: str, unit: str) -> float:
    return float(number) * _UNITS[unit]


@dataclass(frozen=True)
class PktgenResult:
    direction: str | None  # "Sent" or "Received"; None when nothing was sent or received
    packets: int
    bytes: int
    seconds: float
    pps: float
    bps: float
    periodic_pps: tuple[float, ...] = ()
    rtt_min_ns: float | None = None
    rtt_avg_ns: float | None = None


class PktgenError(LabctlError, ValueError):
    """pkt-gen's output says it did not run, or says nothing labctl can read."""


def parse_periodic(stderr: str) -> list[float]:
    """Packets per second of each periodic report line."""
    return [_value(m[1], m[2]) for m in _PERIODIC.finditer(stderr)]


def parse_pktgen(stdout: str, stderr: str = "") -> PktgenResult:
    if "/dev/netmap: No such file or directory" in stderr + stdout:
        raise PktgenError("netmap is not loaded (/dev/netmap missing)")
    periodic = tuple(parse_periodic(stderr))
    rtt = _RTT.search(stdout)
    rtt_min, rtt_avg = (float(rtt[2]), float(rtt[3])) if rtt else (None, None)
    if _NOTHING.search(stdout):
        return PktgenResult(None, 0, 0, 0.0, 0.0, 0.0, periodic, rtt_min, rtt_avg)
    summary = _SUMMARY.search(stdout)
    speed = _SPEED.search(stdout)
    if not summary or not speed:
        raise PktgenError("no pkt-gen summary in its output")
    return PktgenResult(
        direction=summary[1],
        packets=int(summary[2]),
        bytes=int(summary[3]),
        seconds=float(summary[4]),
        pps=_value(speed[1], speed[2]),
        bps=_value(speed[3], speed[4]),
        periodic_pps=periodic,
        rtt_min_ns=rtt_min,
        rtt_avg_ns=rtt_avg,
    )


def pktgen_argv(
    binary: str,
    interface: str,
    function: str,
    *,
    size: int = 60,
    rate: int | None = None,
    count: int | None = None,
    threads: int = 1,
    dst: str | None = None,
    src: str | None = None,
    dst_mac: str | None = None,
    src_mac: str | None = None,
    report_ms: int = 1000,
    wait_link: int | None = None,
) -> list[str]:
    if function not in ("tx", "rx", "ping", "pong"):
        raise ValueError(f"pkt-gen function {function!r}: tx, rx, ping or pong")
    prefixes = ("netmap:", "vale", "tap", "pcap:")
    iface = interface if interface.startswith(prefixes) else f"netmap:{interface}"
    argv = [binary, "-i", iface, "-f", function, "-l", str(size), "-p", str(threads)]
    argv += ["-T", str(report_ms)]
    for flag, value in (
        ("-R", rate),
        ("-n", count),
        ("-d", dst),
        ("-s", src),
        ("-D", dst_mac),
        ("-S", src_mac),
        ("-w", wait_link),
    ):
        if value is not None:
            argv += [flag, str(value)]
    return argv
