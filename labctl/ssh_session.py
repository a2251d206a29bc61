"""One `sh` on a host, kept busy over one SSH channel: each command is written to its stdin
and read back as one section of labctl/batch.py (its own exit status, stdout and stderr).

An SSH command channel costs a channel open, an exec request and on the host a fork of
sshd and an exec of the login shell; on the namespace lab, 7 ms a command with TCP_NODELAY,
against 0.5 ms through a shell that is already there. Each command runs in a subshell
with stdin from /dev/null, so it can neither change the shell's state (cd, variables, set
-e) nor eat the commands after it; the caller wraps it in coreutils `timeout` as for any
channel, so a command that hangs is ended on the host.

One command at a time: `run` is for the thread that holds the session (HostConnection
falls back to a command channel of its own when another thread is using it).
"""

from __future__ import annotations

import select
import time

import paramiko

from labctl import batch

_CHUNK = 65536


class SessionLost(Exception):
    """The shell or its channel ended before the command's section was complete."""


class SessionBusy(SessionLost):
    """A command whose caller left is still running in the shell after PENDING_WAIT: this
    session is given up (nothing was sent to it); a new one runs the next command."""


PENDING_WAIT = 10.0  # seconds the next command waits for a command whose caller left


class ShellSession:
    def __init__(self, transport: paramiko.Transport, open_timeout: float) -> None:
        self._chan = transport.open_session(timeout=open_timeout)
        self._chan.exec_command("exec sh")
        self._wake = self._chan.fileno()  # readable when either stream has data, or at close
        self._pending: str | None = None  # the nonce of a command whose caller left mid-way

    @property
    def alive(self) -> bool:
        return not (self._chan.closed or self._chan.eof_received or self._chan.exit_status_ready())

    def close(self) -> None:
        self._chan.close()

    def run(self, wire: str, deadline: float | None) -> batch.Section:
        """Run shell text `wire`; raises TimeoutError past `deadline` (time.monotonic), and
        SessionLost if the session ends first (the session is then unusable).

        A caller that left mid-command (Ctrl-C, SIGTERM, a timeout) left that command running
        in the shell: its answer is read and dropped first, so this command's answer is its
        own and it runs after that one, as it was sent (a stop after an interrupted start
        finds the pidfile the start wrote)."""
        if self._pending is not None:
            # Long enough for a start or a stop to finish (what ordering is for); a long
            # wait or measurement is not waited for: a new session runs the next command.
            wait = time.monotonic() + PENDING_WAIT
            try:
                self._read(self._pending, wait if deadline is None else min(deadline, wait))
            except TimeoutError:
                raise SessionBusy("an interrupted command is still running") from None
            self._pending = None
        self._drain()  # what a stray background writer left: not this command's output
        nonce = batch.new_nonce()
        try:
            self._chan.sendall((batch.script([wire], nonce) + "\n").encode())
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise SessionLost(str(exc) or type(exc).__name__) from exc
        self._pending = nonce
        out, err = self._read(nonce, deadline)
        self._pending = None
        sections = batch.parse(out.text(), err.text(), nonce, 1)
        if not sections:
            raise SessionLost("unreadable answer")
        return sections[0]

    def _read(self, nonce: str, deadline: float | None) -> tuple[_Stream, _Stream]:
        """Both streams up to the section marker of `nonce`."""
        tail = ("\n" + nonce + " ").encode()
        out, err = _Stream(tail), _Stream(tail)
        while not (out.done and err.done):
            got = False
            while self._chan.recv_ready():
                out.add(self._chan.recv(_CHUNK))
                got = True
            while self._chan.recv_stderr_ready():
                err.add(self._chan.recv_stderr(_CHUNK))
                got = True
            if got:
                continue
            if not self.alive:
                raise SessionLost("the host closed the session")
            left = 1.0 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            select.select([self._wake], [], [], min(left, 1.0))
        return out, err

    def _drain(self) -> None:
        while self._chan.recv_ready():
            self._chan.recv(_CHUNK)
        while self._chan.recv_stderr_ready():
            self._chan.recv_stderr(_CHUNK)


class _Stream:
    """One stream's bytes up to the end of the section's marker line."""

    def __init__(self, tail: bytes) -> None:
        self.tail = tail
        self.data = bytearray()
        self.at = -1  # where the marker starts, once seen
        self.done = False

    def add(self, chunk: bytes) -> None:
        if self.done:
            return  # after the marker: a stray writer's, dropped
        if self.at < 0:
            start = max(0, len(self.data) - len(self.tail) + 1)
            self.data += chunk
            self.at = self.data.find(self.tail, start)
        else:
            self.data += chunk
        if self.at >= 0:
            end = self.data.find(b"\n", self.at + len(self.tail))
            if end >= 0:
                del self.data[end + 1 :]
                self.done = True

    def text(self) -> str:
        return self.data.decode(errors="replace")
