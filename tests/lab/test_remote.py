"""Connections over real SSH to namespace hosts: results, quoting, timeouts, files, failures."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from labctl.errors import CommandTimeout, HostUnreachable
from labctl.remote import CommandFailed, Connections, HostConnection, ShellScript

from .conftest import NamespaceLab

pytestmark = pytest.mark.lab


def test_command_result_carries_everything(lab: NamespaceLab) -> None:
    res = lab.host("cli1").run(ShellScript("echo out; echo err >&2; exit 3"))
    assert (res.host, res.exit_status, res.stdout, res.stderr) == ("cli1", 3, "out\n", "err\n")
    assert res.command == "echo out; echo err >&2; exit 3"
    assert 0 < res.duration < 10
    with pytest.raises(CommandFailed, match=r"cli1: `false` exited 1"):
        lab.host("cli1").run(["false"], check=True)


def test_arguments_reach_the_host_verbatim(lab: NamespaceLab) -> None:
    nasty = "a b; $(touch /tmp/pwned) `id` 'q' \"dq\" \\ * $HOME"
    res = lab.host("srv1").run(["printf", "%s", nasty])
    assert res.stdout == nasty
    assert lab.host("srv1").run(["test", "-e", "/tmp/pwned"]).exit_status == 1
    with pytest.raises(TypeError):
        lab.host("srv1").run("echo unquoted")  # type: ignore[arg-type]


def test_one_connection_is_reused_by_every_command(lab: NamespaceLab) -> None:
    conn = lab.host("cli2")
    first = conn.run(ShellScript('echo "$SSH_CONNECTION"')).stdout.split()
    second = conn.run(ShellScript('echo "$SSH_CONNECTION"')).stdout.split()
    # Same client port: both commands rode the same SSH transport.
    assert first[1] == second[1]


def test_timeout_stops_the_command(lab: NamespaceLab) -> None:
    conn = lab.host("cli1")
    started = time.monotonic()
    with pytest.raises(CommandTimeout, match=r"cli1: `sleep 30.25` timed out after 0.5 s"):
        conn.run(["sleep", "30.25"], timeout=0.5)
    assert time.monotonic() - started < 5
    # No orphan: the remote command is gone after the timeout (a duration nobody else uses).
    left = conn.run(ShellScript("pgrep -f 'slee[p] 30.25' || true")).stdout
    assert left == ""


def _session_sshds(lab: NamespaceLab, host: str) -> list[int]:
    """The per-connection sshd processes of a lab host (not its listener)."""
    import os
    import subprocess

    listener = lab.lab.sshd_pid(host)
    pids = subprocess.run(
        ["ip", "netns", "pids", lab.lab.spec.netns(host)], capture_output=True, text=True
    ).stdout.split()
    out = []
    for pid in map(int, pids):
        try:
            if pid != listener and os.readlink(f"/proc/{pid}/exe") == "/usr/sbin/sshd":
                out.append(pid)
        except OSError:
            continue
    return out


def test_a_frozen_host_fails_in_bounded_time(lab: NamespaceLab) -> None:
    import os
    import signal

    conn = HostConnection(lab.inventory_host("cli2"), connect_timeout=2)
    frozen: list[int] = []
    try:
        conn.run(["true"], check=True)
        frozen = _session_sshds(lab, "cli2")
        assert frozen
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        started = time.monotonic()
        with pytest.raises((HostUnreachable, CommandTimeout)):
            conn.run(["true"], timeout=2)
        assert time.monotonic() - started < 15
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
        conn.close()
    assert lab.host("cli2").run(["true"]).ok  # the host itself is fine


def test_put_and_get_files(lab: NamespaceLab, tmp_path: Path) -> None:
    src = tmp_path / "payload.bin"
    src.write_bytes(bytes(range(256)) * 100)
    conn = lab.host("srv1")
    conn.put(str(src), "/root/payload.bin")
    assert (
        conn.run(["sha256sum", "/root/payload.bin"]).stdout.split()[0]
        == __import__("hashlib").sha256(src.read_bytes()).hexdigest()
    )
    back = tmp_path / "back.bin"
    conn.get("/root/payload.bin", str(back))
    assert back.read_bytes() == src.read_bytes()
    conn.run(["rm", "/root/payload.bin"], check=True)


def test_hosts_have_private_homes_and_hostnames(lab: NamespaceLab) -> None:
    lab.host("srv1").run(["touch", "/root/only-on-srv1"], check=True)
    try:
        assert lab.host("cli1").run(["test", "-e", "/root/only-on-srv1"]).exit_status == 1
        names = {lab.host(h).run(["hostname"]).stdout.strip() for h in ("srv1", "cli1", "cli2")}
        assert names == {"srv1", "cli1", "cli2"}
    finally:
        lab.host("srv1").run(["rm", "-f", "/root/only-on-srv1"])


def test_unknown_host_key_is_refused(lab: NamespaceLab, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    host = dataclasses.replace(lab.inventory_host("cli1"), known_hosts_file=str(empty))
    with pytest.raises(HostUnreachable, match=r"^cli1: unreachable: host key unknown"):
        HostConnection(host).open()


def test_wrong_host_key_is_refused(lab: NamespaceLab, tmp_path: Path) -> None:
    # cli2's key recorded under cli1's address: a man in the middle, as far as SSH can tell.
    cli1, cli2 = lab.inventory_host("cli1"), lab.inventory_host("cli2")
    real = Path(str(cli1.known_hosts_file)).read_text().splitlines()
    cli2_key = next(line for line in real if line.startswith(cli2.address + " ")).split(" ", 1)[1]
    forged = tmp_path / "known_hosts"
    forged.write_text(f"{cli1.address} {cli2_key}\n")
    host = dataclasses.replace(cli1, known_hosts_file=str(forged))
    with pytest.raises(HostUnreachable, match=r"^cli1: unreachable: host key mismatch"):
        HostConnection(host).open()


def test_refused_key_fails_that_host_alone(lab: NamespaceLab, tmp_path: Path) -> None:
    import subprocess

    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    hosts = [lab.inventory_host(n) for n in ("srv1", "cli1", "cli2")]
    hosts[1] = dataclasses.replace(hosts[1], key_file=str(stranger))
    with Connections(hosts) as conns:
        outcomes = conns.run_on_hosts(lambda c: c.run(["hostname"]).stdout.strip())
    by_host = {o.host: o for o in outcomes}
    assert by_host["srv1"].value == "srv1" and by_host["cli2"].value == "cli2"
    assert by_host["cli1"].unreachable
    assert str(by_host["cli1"].error).startswith("cli1: unreachable: authentication refused")
