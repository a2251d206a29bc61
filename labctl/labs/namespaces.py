"""Network namespaces of this machine, as the namespace lab needs them: which exist, which
processes are in one, how to tell one from a later namespace that got its inode number (its
cookie), a command run inside a lab host, and removing a namespace or link.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence

from labctl.errors import LabError
from labctl.labs.base import run


def link_exists(name: str, netns: str | None = None) -> bool:
    argv = ["ip"] + (["-n", netns] if netns else []) + ["-j", "link", "show", "dev", name]
    return run(argv, check=False).returncode == 0


def netns_list() -> set[str]:
    out = run(["ip", "-j", "netns", "list"], check=False).stdout.strip()
    return {entry["name"] for entry in json.loads(out)} if out else set()


def netns_pids(netns: str) -> list[int]:
    out = run(["ip", "netns", "pids", netns], check=False).stdout
    return [int(p) for p in out.split()]


def in_host(
    sshd_pid: int, argv: Sequence[str], check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command in a lab host's mount, network and UTS namespaces, those of its sshd:
    what a shell on the host sees, its /run/netns (its containers) included."""
    nsenter = ["nsenter", "--target", str(sshd_pid), "--mount", "--net", "--uts", "--"]
    return run([*nsenter, *argv], check=check, input=input)


def host_netns_list(sshd_pid: int) -> set[str]:
    """Network namespaces named in the host's own /run/netns (its containers)."""
    out = in_host(sshd_pid, ["ip", "-j", "netns", "list"]).stdout.strip()
    return {entry["name"] for entry in json.loads(out)} if out else set()


# SO_NETNS_COOKIE (Linux >= 5.14): a 64-bit id of a network namespace, never reused, unlike
# the namespace's inode number, which a later namespace may get once this one is gone.
_COOKIE_PY = (
    "import socket; s = socket.socket(socket.AF_UNIX); "
    "print(int.from_bytes(s.getsockopt(socket.SOL_SOCKET, 71, 8), 'little'))"
)


def netns_identity(path: str) -> tuple[int, int | None] | None:
    """(inode, cookie) of the network namespace at PATH (/proc/PID/ns/net or a bind mount);
    None if it is gone; cookie None if the kernel has no SO_NETNS_COOKIE."""
    try:
        inode = os.stat(path).st_ino
    except OSError:
        return None
    proc = run(["nsenter", f"--net={path}", "--", sys.executable, "-c", _COOKIE_PY], check=False)
    cookie = proc.stdout.strip()
    return inode, int(cookie) if proc.returncode == 0 and cookie.isdigit() else None


def pids_in_netns(wanted: dict[int, int | None]) -> dict[int, list[int]]:
    """PIDs of the processes whose network namespace is one of WANTED (inode -> cookie).

    One pass over /proc compares each process's /proc/PID/ns/net inode; for an inode that
    matches, the cookie of one of its processes confirms that the namespace is still the one
    recorded and not a later one that was given the same inode number. Processes that share
    an inode at one moment share the namespace, so one confirmation covers them all."""
    found: dict[int, list[int]] = {}
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            inode = os.stat(f"/proc/{entry.name}/ns/net").st_ino
        except OSError:  # gone, a zombie, or a kernel thread we may not look at
            continue
        if inode in wanted:
            found.setdefault(inode, []).append(int(entry.name))
    confirmed: dict[int, list[int]] = {}
    for inode, pids in found.items():
        cookie = wanted[inode]
        for pid in pids:
            identity = netns_identity(f"/proc/{pid}/ns/net")
            if identity is None or (cookie is not None and identity[1] is None):
                # It exited meanwhile (between the stat and nsenter, as an SSH session's
                # shell does right after its connection closes): ask the next one.
                continue
            if identity[0] == inode and (cookie is None or identity[1] == cookie):
                confirmed[inode] = pids
            break
    return confirmed


def remove(kind: str, name: str, present_netns: set[str]) -> bool:
    """Delete a namespace or link; False if it was already gone."""
    if kind == "netns" and name not in present_netns:
        return False
    argv = ["ip", "netns", "del", name] if kind == "netns" else ["ip", "link", "del", name]
    proc = run(argv, check=False)
    if proc.returncode == 0:
        return True
    if "Cannot find device" in proc.stderr or "No such file" in proc.stderr:
        return False
    raise LabError(f"removing {kind} {name}: {proc.stderr.strip()}")
