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


def _pid_space() -> tuple[str, str]:
    """(boot id, PID namespace inode): a PID names the same process only where both match.
    A hostname does not say that: machines share names, and containers share the kernel."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "?", "?"
    return boot, namespace


def controller_id(pid: int | None = None) -> str:
    """host:pid:start:boot-id:pid-namespace of a labctl process (this one by default)."""
    pid = pid or os.getpid()
    boot, namespace = _pid_space()
    return f"{socket.gethostname()}:{pid}:{process_start_time(pid) or '?'}:{boot}:{namespace}"


def controller_alive(controller: str) -> bool | None:
    """Is the labctl that wrote `controller` still running? None when this process cannot
    tell: another machine, another boot, another PID namespace, or an id of an older labctl
    that did not say which (then only a lock's expiry decides)."""
    parts = controller.split(":")
    if len(parts) != 5 or not parts[1].isdigit() or "?" in _pid_space():
        return None
    host, pid_text, start, boot, namespace = parts
    if host != socket.gethostname() or (boot, namespace) != _pid_space():
        return None
    started = process_start_time(int(pid_text))  # None: gone, or a zombie
    return started is not None and str(started) == start
