"""How labctl talks to a host: one persistent SSH connection, results as values.

One `HostConnection` per host wraps one fabric `Connection` (one paramiko transport), reused by
every step of a run. Commands are argument lists, quoted here and nowhere else; `ShellScript`
is the one escape hatch for shell text that the caller composed from quoted pieces.
`run_on_hosts` runs a step on many hosts in a bounded thread pool: one host's failure is a
value in its `HostOutcome`, never a crash of the others (fabric's ThreadingGroup has no bound
and no join timeout, so it is not used).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

import paramiko
from fabric import Connection
from invoke.exceptions import CommandTimedOut

from labctl import batch
from labctl.defaults import DEFAULT_POOL_SIZE
from labctl.errors import CommandTimeout, HostUnreachable, LabctlError
from labctl.inventory import Host
from labctl.shell_text import Command, command_summary, command_text, is_program_call, quote
from labctl.shell_text import ShellScript as ShellScript  # callers import it from here
from labctl.shell_text import wait_until_script as wait_until_script  # likewise
from labctl.ssh_dial import KnownHosts, dial, fabric_connection, one_line
from labctl.ssh_options import SshEndpoint, resolve
from labctl.ssh_session import SessionBusy, SessionLost, ShellSession

# Every command and its outcome, for -v/-vv (labctl/views/verbose.py shows them).
log = logging.getLogger("labctl.remote")

DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_COMMAND_TIMEOUT = 300.0
KILL_GRACE = 2.0  # seconds between TERM and KILL when a command times out
# How long a read taken ahead stays usable (HostConnection.expect): a bound on what a
# process on the host (not labctl) may have changed since.
READ_AHEAD_MAX_AGE = 5.0


@dataclass(frozen=True)
class CommandResult:
    host: str
    command: str
    exit_status: int
    stdout: str
    stderr: str
    duration: float

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def first_error_line(self) -> str:
        for stream in (self.stderr, self.stdout):
            for line in stream.splitlines():
                if line.strip():
                    return line.strip()
        return f"exit status {self.exit_status}"


class CommandFailed(LabctlError):
    """A command exited non-zero where success was required; `result` is the CommandResult."""

    def __init__(self, result: CommandResult) -> None:
        super().__init__(
            f"{result.host}: `{result.command}` exited {result.exit_status}: "
            f"{result.first_error_line()}",
            result,
        )


def log_command(host: str, text: str) -> None:
    log.info("%s $ %s", host, text)


def log_result(result: CommandResult) -> None:
    """The exit status and output of a command, for -vv (built only when shown)."""
    if not log.isEnabledFor(logging.DEBUG):
        return
    lines = [f"{result.host} rc={result.exit_status} in {result.duration:.2f} s"]
    for name, text in (("out", result.stdout), ("err", result.stderr)):
        lines += [f"{result.host} {name}| {line}" for line in text.splitlines()]
    log.debug("\n".join(lines))


class HostConnection:
    """One persistent SSH connection to one inventory host (through its jump hosts, if any).

    Where and how to connect comes from the inventory and the user's ssh config
    (labctl/ssh_options.py). The process environment is read, not a parameter: paramiko takes
    the agent's socket from os.environ itself, so a separate mapping could only disagree.
    """

    def __init__(
        self,
        host: Host,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        known: KnownHosts | None = None,
    ) -> None:
        self.host = host
        # sudo for commands when the user is not root; a play's `become` overrides it.
        self.become_default = host.become
        self.endpoint = resolve(host, os.environ)
        known_hosts = (
            host.known_hosts_file
            or self.endpoint.known_hosts
            or os.path.expanduser("~/.ssh/known_hosts")
        )
        self._connect_timeout = connect_timeout
        self._conn = fabric_connection(
            self.endpoint, known_hosts, connect_timeout, known or KnownHosts()
        )
        # The jump hosts' connections, the first one dialled first (to open and close them).
        self._jumps: list[tuple[SshEndpoint, Connection]] = []
        hop = self._conn
        for endpoint in reversed(self.endpoint.jumps()):
            hop = hop.gateway
            self._jumps.insert(0, (endpoint, hop))
        # Reads taken ahead (see `expect`): what is expected, and what was read, by
        # (command text, through sudo) with the time it was read.
        self._now: list[str] = []
        self._after: list[str] = []
        self._taken: dict[tuple[str, bool], tuple[float, CommandResult]] = {}
        # The host's shell session (ssh_session.py), for one thread at a time.
        self._session: ShellSession | None = None
        self._session_lock = threading.Lock()

    @property
    def user(self) -> str:
        """The login user on the host (the inventory's, else the ssh config's, else root)."""
        return self.endpoint.user

    def open(self) -> None:
        """Connect now; raises HostUnreachable with a one-line reason."""
        if self._conn.is_connected:
            return
        # Each jump host first, so that its failure is reported as the jump host's.
        for endpoint, conn in self._jumps:
            try:
                dial(conn, self._connect_timeout)
                conn.open()
            except Exception as exc:  # paramiko raises many unrelated classes
                self.close()
                raise HostUnreachable(
                    f"{self.host.name}: unreachable via jump host {endpoint.name}: {one_line(exc)}"
                ) from exc
        try:
            dial(self._conn, self._connect_timeout)
            self._conn.open()
        except Exception as exc:  # paramiko raises many unrelated classes
            self.close()
            reason = one_line(exc)
            if self._jumps and isinstance(exc, paramiko.ChannelException):
                e = self.endpoint
                reason = f"jump host {self._jumps[-1][0].name} cannot reach {e.address}:{e.port}"
                reason += f" ({exc.text})" if exc.text else ""
            raise HostUnreachable(f"{self.host.name}: unreachable: {reason}") from exc

    def expect(self, now: Sequence[str], after: Sequence[str] = ()) -> None:
        """The read-only commands (their exact text) the next task's plan will run (`now`)
        and those of the tasks after it (`after`), in order. The first command sent from
        here on carries the reads still to come in the same round trip (a read of `now`,
        those after it; any other command, all of `after`, read once it is done), and their
        results are kept for when they are asked for.

        A kept result is used once, only while nothing else has run on this host since it
        was read (any other command, upload or download drops them all) and for at most
        READ_AHEAD_MAX_AGE seconds: a plan then sees what it would have read itself.
        """
        self._now, self._after = list(now), list(after)
        wanted = set(self._now) | set(self._after)
        self._taken = {key: got for key, got in self._taken.items() if key[0] in wanted}

    def forget(self) -> None:
        """Drop the reads taken ahead and those expected (the next task may change the host
        in a way no command here shows: time passes, or another machine acts on it)."""
        self.expect([], [])

    def run(
        self,
        command: Command,
        *,
        timeout: float | None = DEFAULT_COMMAND_TIMEOUT,
        check: bool = False,
        become: bool | None = None,
    ) -> CommandResult:
        """Run a command; a non-zero exit is a value unless `check` is set."""
        text = command_text(command)
        sudo = bool(self.become_default if become is None else become) and self.user != "root"
        result = self._kept(text, sudo)
        if result is None:
            self._taken = {}  # this command may change what was read
            reads = self._reads_after(text) if timeout == DEFAULT_COMMAND_TIMEOUT else []
            result = self._send_with_reads(text, reads, sudo, timeout) if reads else None
        if result is None:
            result = self._send(text, sudo, timeout)
        if check and not result.ok:
            raise CommandFailed(result)
        return result

    def _kept(self, text: str, sudo: bool) -> CommandResult | None:
        got = self._taken.pop((text, sudo), None)  # once: a retry reads again
        if got is None or time.monotonic() - got[0] > READ_AHEAD_MAX_AGE:
            return None
        log.debug("%s: `%s` read ahead", self.host.name, command_summary(text))
        return got[1]

    def _reads_after(self, text: str) -> list[str]:
        if text in self._now:
            return self._now[self._now.index(text) + 1 :] + self._after
        return list(self._after)

    def _send_with_reads(
        self, text: str, reads: list[str], sudo: bool, timeout: float | None
    ) -> CommandResult | None:
        """`text`, then `reads`, in one round trip (see `expect`); None when `text`'s own
        answer could not be read back (then it is sent alone)."""
        texts = [text, *reads]
        nonce = batch.new_nonce()
        for i, each in enumerate(texts):
            log_command(self.host.name, each if i == 0 else f"{each}  (read ahead)")
        # Reads only (stat, sha256sum): no coreutils timeout around them, two execs fewer;
        # the wait's own backstop still holds. A command first keeps its timeout.
        reads_only = text in self._now
        whole = self._send(
            batch.script(texts, nonce), sudo, timeout, shown=text, on_host=not reads_only
        )
        sections = batch.parse(whole.stdout, whole.stderr, nonce, len(texts))
        if not sections:
            return None
        now = time.monotonic()
        share = whole.duration / len(sections)
        results = [
            CommandResult(self.host.name, t, s.exit_status, s.stdout, s.stderr, share)
            for t, s in zip(texts, sections, strict=False)
        ]
        for result in results:
            log_result(result)
        self._taken = {(r.command, sudo): (now, r) for r in results[1:]}
        return results[0]

    def _send(
        self,
        text: str,
        sudo: bool,
        timeout: float | None,
        shown: str | None = None,
        on_host: bool = True,
    ) -> CommandResult:
        """One round trip: `text` through the host's shell session. `shown` is what the
        command is called in messages when `text` is a script that runs it (then the caller
        logs). `on_host`: the timeout is also enforced on the host."""
        wire = text
        if timeout is not None and on_host:
            # Enforced on the host: coreutils timeout signals its whole process group, so
            # nothing the command started outlives it (closing the channel would not: without
            # a pty nothing sends SIGHUP). The wait below is the backstop. A program and its
            # quoted arguments need no shell of their own under it.
            program = text if is_program_call(text) else f"sh -c {quote(text)}"
            wire = f"timeout -k {KILL_GRACE:g} {timeout:g} {program}"
        if sudo:
            wire = "sudo -n -- sh -c " + quote(wire)
        self.open()
        if shown is None:
            log_command(self.host.name, text)
        started = time.monotonic()
        name = command_summary(shown or text)
        try:
            exit_status, stdout, stderr = self._exchange(
                wire, None if timeout is None else timeout + KILL_GRACE + 5
            )
        except TimeoutError as exc:
            # The host-side timeout should have fired first: the connection itself is stuck.
            # Close it, so the next command reconnects (or finds the host unreachable).
            self.close()
            raise CommandTimeout(
                f"{self.host.name}: `{name}` timed out after {timeout:g} s",
                CommandResult(self.host.name, text, -1, "", "", time.monotonic() - started),
            ) from exc
        except (paramiko.SSHException, OSError, EOFError, SessionLost) as exc:
            self.close()
            raise HostUnreachable(
                f"{self.host.name}: connection lost during `{name}`: {one_line(exc)}"
            ) from exc
        elapsed = time.monotonic() - started
        if timeout is not None and exit_status in (124, 137) and elapsed >= timeout:
            raise CommandTimeout(
                f"{self.host.name}: `{name}` timed out after {timeout:g} s",
                CommandResult(self.host.name, text, -1, stdout, stderr, elapsed),
            )
        result = CommandResult(self.host.name, text, exit_status, stdout, stderr, elapsed)
        if shown is None:
            log_result(result)
        return result

    def _exchange(self, wire: str, backstop: float | None) -> tuple[int, str, str]:
        """Exit status, stdout and stderr of shell text `wire`: through the session when
        this thread can have it, else on a command channel of its own."""
        deadline = None if backstop is None else time.monotonic() + backstop
        if self._session_lock.acquire(blocking=False):
            try:
                if self._session is None or not self._session.alive:
                    if self._session is not None:
                        self._session.close()
                    self._session = ShellSession(self._conn.transport, self._connect_timeout)
                try:
                    got = self._session.run(wire, deadline)
                except SessionBusy:  # still running what an interrupted caller left: a new one
                    self._session.close()
                    self._session = ShellSession(self._conn.transport, self._connect_timeout)
                    got = self._session.run(wire, deadline)
                return got.exit_status, got.stdout, got.stderr
            finally:
                self._session_lock.release()
        try:
            res = self._conn.run(
                wire, hide=True, warn=True, in_stream=False, pty=False, timeout=backstop
            )
        except CommandTimedOut as exc:
            raise TimeoutError from exc
        if res.exited == -1:  # the channel closed without an exit status
            raise SessionLost("the channel closed without an exit status")
        return res.exited, res.stdout, res.stderr

    def put(self, local: str, remote: str) -> None:
        self._taken = {}
        self.open()
        self._conn.put(local, remote)

    def get(self, remote: str, local: str) -> None:
        self._taken = {}
        self.open()
        self._conn.get(remote, local)

    def close(self) -> None:
        # fabric does not close a gateway with its Connection: the target first, then each
        # jump host back towards us.
        if self._session is not None:
            self._session.close()
            self._session = None
        self._conn.close()
        for _, conn in reversed(self._jumps):
            conn.close()

    def __enter__(self) -> HostConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


T = TypeVar("T")


@dataclass(frozen=True)
class HostOutcome(Generic[T]):
    """What one step did on one host: a value, or the error that stopped it."""

    host: str
    value: T | None = None
    error: LabctlError | None = None
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def unreachable(self) -> bool:
        return isinstance(self.error, HostUnreachable)


class Connections:
    """The run's connections, one per host, opened on first use and reused after."""

    def __init__(self, hosts: Iterable[Host], connect_timeout: float = DEFAULT_CONNECT_TIMEOUT):
        known = KnownHosts()  # each known_hosts file read once for all the hosts
        self._by_name = {h.name: HostConnection(h, connect_timeout, known) for h in hosts}
        # One pool of worker threads for the whole run, not one per step: starting 16
        # threads for each task of a play cost more than the task itself.
        self._pool: ThreadPoolExecutor | None = None
        self._pool_size = 0
        self._pool_in_use = threading.Lock()

    def __getitem__(self, name: str) -> HostConnection:
        return self._by_name[name]

    def __len__(self) -> int:
        return len(self._by_name)

    @property
    def names(self) -> list[str]:
        return list(self._by_name)

    def close(self) -> None:
        if self._pool is not None:  # steps still running end before their connections
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        for conn in self._by_name.values():
            conn.close()

    def __enter__(self) -> Connections:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run_on_hosts(
        self,
        step: Callable[[HostConnection], T],
        *,
        names: Iterable[str] | None = None,
        pool_size: int = DEFAULT_POOL_SIZE,
    ) -> list[HostOutcome[T]]:
        """Run `step` on each host (at most `pool_size` at once); outcomes in host order."""
        conns = (
            [self._by_name[n] for n in names] if names is not None else list(self._by_name.values())
        )

        def attempt(conn: HostConnection) -> HostOutcome[T]:
            started = time.monotonic()
            try:
                value = step(conn)
            except LabctlError as exc:
                return HostOutcome(conn.host.name, error=exc, duration=time.monotonic() - started)
            except Exception as exc:  # a bug in a step must not take the other hosts down
                err = LabctlError(f"{conn.host.name}: {type(exc).__name__}: {one_line(exc)}")
                return HostOutcome(conn.host.name, error=err, duration=time.monotonic() - started)
            return HostOutcome(conn.host.name, value=value, duration=time.monotonic() - started)

        if not conns:
            return []
        if not self._pool_in_use.acquire(blocking=False):
            # Called from a step, or from another thread: a pool of its own, so that no
            # one waits for a worker its caller holds.
            with ThreadPoolExecutor(max_workers=max(1, min(pool_size, len(conns)))) as pool:
                return list(pool.map(attempt, conns))
        try:
            size = max(1, min(pool_size, len(self._by_name)))
            if self._pool is None or self._pool_size != size:
                if self._pool is not None:
                    self._pool.shutdown(wait=True)
                self._pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="labctl")
                self._pool_size = size
            return list(self._pool.map(attempt, conns))
        finally:
            self._pool_in_use.release()
