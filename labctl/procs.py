"""Processes on this machine, named for their whole life: a PID and its start time."""

from __future__ import annotations

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
