"""Processes on this machine, named for their whole life: a PID and its start time; and a
labctl process as other runs see it (`controller_id`: in the lab lock and in the store)."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def process_start_time(pid: int) -> int | None:
    """Start time in clock ticks (field 22 of /proc/PID/stat), None if gone or a zombie.

    PIDs are reused; (PID, start time) is not. A zombie counts as gone: this machine's PID 1
    reaps late, so a killed process can stay a zombie for a while."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the comm field may hold spaces
    if fields[0] == "Z":
        return None
    return int(fields[19])


def controller_id(pid: int | None = None) -> str:
    """host:pid:start of a labctl process (this one by default)."""
    pid = pid or os.getpid()
    return f"{socket.gethostname()}:{pid}:{process_start_time(pid) or '?'}"


def controller_alive(controller: str) -> bool | None:
    """Is the labctl that wrote `controller` still running? None: not this machine's."""
    host, _, rest = controller.partition(":")
    pid_text, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return None
    started = process_start_time(int(pid_text))  # None: gone, or a zombie
    return started is not None and str(started) == start
