"""One shell session per host over one SSH channel, reads sent together, small files
written inline: on real hosts (labctl/ssh_session.py, labctl/batch.py, remote.py)."""

from __future__ import annotations

import hashlib
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest

from labctl.actions.base import INLINE_UPLOAD_MAX, Upload, upload
from labctl.remote import HostConnection, ShellScript, wait_until_script

from .conftest import NamespaceLab

pytestmark = pytest.mark.lab


def test_each_command_starts_clean_in_the_shared_session(lab: NamespaceLab) -> None:
    conn = lab.host("cli1")
    conn.run(ShellScript("cd /tmp; X=1; export Y=2; set -e; umask 077"), check=True)
    after = conn.run(ShellScript('pwd; echo "${X:-unset} ${Y:-unset}"; umask'), check=True)
    assert after.stdout == "/root\nunset unset\n0022\n"


def test_a_command_reading_stdin_gets_end_of_file(lab: NamespaceLab) -> None:
    conn = lab.host("cli1")
    got = conn.run(["cat"], timeout=10)
    assert (got.exit_status, got.stdout) == (0, "")
    # and the session still answers the next command, whole
    assert conn.run(["echo", "next"]).stdout == "next\n"


def test_output_without_a_final_newline_and_large_output_come_back_whole(
    lab: NamespaceLab,
) -> None:
    conn = lab.host("srv1")
    assert conn.run(["printf", "no newline"]).stdout == "no newline"
    big = conn.run(ShellScript("head -c 3000000 /dev/zero | tr '\\0' x; echo done >&2"))
    assert big.stdout == "x" * 3_000_000
    assert big.stderr == "done\n"


def test_two_threads_on_one_connection_run_at_once(lab: NamespaceLab) -> None:
    """The session serves one thread at a time; another gets a channel of its own, so a
    command that waits for another one's effect is not stuck behind it."""
    conn = lab.host("cli2")
    flag = "/root/labctl-test-session-flag"
    conn.run(["rm", "-f", flag], check=True)
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            waiting = pool.submit(
                conn.run, ShellScript(wait_until_script(f"[ -e {flag} ]", 20, "no flag"))
            )
            made = pool.submit(conn.run, ["touch", flag])
            assert made.result(timeout=30).ok
            assert waiting.result(timeout=30).ok
    finally:
        conn.run(["rm", "-f", flag])


def test_the_tcp_socket_has_nodelay(lab: NamespaceLab) -> None:
    conn = HostConnection(lab.inventory_host("srv1"))
    try:
        conn.run(["true"], check=True)
        sock = conn._conn.transport.sock  # the TCP socket labctl dialled
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        conn.close()


def test_reads_expected_ahead_come_back_in_one_round_trip_and_once(lab: NamespaceLab) -> None:
    conn = HostConnection(lab.inventory_host("cli1"))
    sent: list[str] = []
    original = conn._send

    def counting(text: str, *args: object, **kwargs: object) -> object:
        sent.append(text)
        return original(text, *args, **kwargs)  # type: ignore[arg-type]

    conn._send = counting  # type: ignore[method-assign]
    try:
        reads = ["echo one", "echo two >&2; exit 4", "hostname"]
        conn.expect(reads[:1], reads[1:])
        first = conn.run(ShellScript("echo one"))
        second = conn.run(ShellScript("echo two >&2; exit 4"))
        third = conn.run(ShellScript("hostname"))
        assert len(sent) == 1
        assert (first.stdout, second.stderr, second.exit_status, third.stdout) == (
            "one\n",
            "two\n",
            4,
            "cli1\n",
        )
        conn.run(ShellScript("hostname"))  # used once: asked again, it is read again
        assert len(sent) == 2
        x = "/root/labctl-test-session-x"
        conn.expect([], [f"cat {x}"])
        assert conn.run(["rm", "-f", x]).ok  # a command first: the read rides along
        assert len(sent) == 3
        conn.run(ShellScript(f"echo new > {x}"))  # a change: the read rides along again, after it
        assert conn.run(ShellScript(f"cat {x}")).stdout == "new\n"
        assert len(sent) == 4
        conn.forget()
        assert conn.run(ShellScript(f"cat {x}")).stdout == "new\n"
        assert len(sent) == 5
    finally:
        conn.run(["rm", "-f", "/root/labctl-test-session-x"])
        conn.close()


@pytest.mark.parametrize(
    "content",
    [b"", b"line 'one'\n$(touch /tmp/pwned) `id`\n\x00\xff", bytes(range(256)) * 400],
    ids=["empty", "nasty", "over-the-inline-limit"],
)
def test_an_upload_writes_exactly_the_bytes_and_leaves_no_temp_file(
    lab: NamespaceLab, content: bytes
) -> None:
    conn = lab.host("srv1")
    dest = "/root/labctl-test-upload"
    assert (len(content) > INLINE_UPLOAD_MAX) == (len(content) == 256 * 400)
    try:
        upload(conn, Upload(content, dest, mode="640"))
        got = conn.run(ShellScript(f"sha256sum {dest}; stat -c %a {dest}; ls /root"), check=True)
        digest, _, rest = got.stdout.partition("  ")
        assert digest == hashlib.sha256(content).hexdigest()
        lines = rest.splitlines()
        assert lines[1] == "640"
        assert not [n for n in lines[2:] if ".labctl-" in n]
        assert conn.run(["test", "-e", "/tmp/pwned"]).exit_status == 1
    finally:
        conn.run(["rm", "-f", dest])


def test_a_command_whose_caller_left_is_finished_before_the_next_one(lab: NamespaceLab) -> None:
    """Ctrl-C or SIGTERM mid-command leaves it running in the shell: the next command runs
    after it (a stop after an interrupted start finds what the start wrote) and gets back
    only its own answer."""
    import time

    from labctl.ssh_session import ShellSession

    conn = lab.host("cli1")
    conn.open()
    session = ShellSession(conn._conn.transport, 10)  # the shell a HostConnection keeps
    try:
        marker = "/tmp/labctl-test-session-order"
        first = f"rm -f {marker}; sleep 0.5; echo started > {marker}; echo first-output"
        with pytest.raises(TimeoutError):
            session.run(first, time.monotonic() + 0.1)  # the caller leaves mid-command
        got = session.run(f"cat {marker}; rm -f {marker}", time.monotonic() + 10)
        assert (got.exit_status, got.stdout, got.stderr) == (0, "started\n", "")
        assert session.run("echo next", None).stdout == "next\n"
    finally:
        session.close()


def test_a_long_command_whose_caller_left_gives_the_session_up(
    lab: NamespaceLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wait or a measurement left running is not waited for past PENDING_WAIT: the session
    says so before sending anything, and the connection runs the command on a new one."""
    import time

    from labctl import ssh_session

    monkeypatch.setattr(ssh_session, "PENDING_WAIT", 0.3)
    conn = lab.host("cli1")
    conn.open()
    session = ssh_session.ShellSession(conn._conn.transport, 10)
    try:
        with pytest.raises(TimeoutError):
            session.run("sleep 5", time.monotonic() + 0.1)
        started = time.monotonic()
        with pytest.raises(ssh_session.SessionBusy):
            session.run("echo never", time.monotonic() + 10)
        assert time.monotonic() - started < 3
    finally:
        session.close()
