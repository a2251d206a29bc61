"""The fault suite's own namespace lab (faults break hosts: no other test shares it) and a
census of the processes in every host's namespace (sshd aside) taken before and after each
fault. The table of faults and outcomes is tests/conftest.py's (VM faults add to it too)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.conftest import NamespaceLab, session_lab, unique_spec
from tests.support import is_session_shell


@pytest.fixture(scope="session")
def faultlab() -> Iterator[NamespaceLab]:
    with session_lab(unique_spec(hosts=3, tag=8)) as made:
        yield made


def programs(lab: NamespaceLab) -> dict[str, list[str]]:
    """Per host: the command lines of every live process in its network namespace but sshd
    and its sessions (found by namespace inode, like lab.down)."""
    out: dict[str, list[str]] = {}
    for host in lab.lab.spec.hosts:
        ns = f"/run/netns/{lab.lab.spec.netns(host.name)}"
        try:
            inode = os.stat(ns).st_ino
        except OSError:
            out[host.name] = []
            continue
        found = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                if os.stat(f"/proc/{entry.name}/ns/net").st_ino != inode:
                    continue
                if os.readlink(f"/proc/{entry.name}/exe") == "/usr/sbin/sshd":
                    continue  # the host's sshd and its sessions
                if is_session_shell(entry.name):
                    continue  # a live session's shell (labctl's or the harness's)
                stat = Path(f"/proc/{entry.name}/stat").read_text()
                if stat.rsplit(") ", 1)[1][0] == "Z":
                    continue
                cmd = Path(f"/proc/{entry.name}/cmdline").read_bytes().replace(b"\0", b" ")
                found.append(cmd.decode(errors="replace").strip())
            except OSError:
                continue
        out[host.name] = sorted(found)
    return out
