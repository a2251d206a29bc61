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
import shlex
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

import paramiko
from fabric import Config, Connection
from invoke.exceptions import CommandTimedOut

from labctl.errors import CommandTimeout, HostUnreachable, LabctlError
from labctl.inventory import Host
from labctl.ssh_options import SshEndpoint, resolve

# Every command and its outcome, for -v/-vv (labctl/views/verbose.py shows them).
log = logging.getLogger("labctl.remote")

DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_COMMAND_TIMEOUT = 300.0
DEFAULT_POOL_SIZE = 32
KILL_GRACE = 2.0  # seconds between TERM and KILL when a command times out


@dataclass(frozen=True)
class ShellScript:
    """Shell text run as is. Build it from `quote()`d pieces; never from raw user input."""

    text: str


Command = Sequence[str] | ShellScript


def quote(arg: str) -> str:
    return shlex.quote(arg)


def wait_until_script(condition: str, seconds: int, failure: str) -> str:
    """sh that polls `condition` (shell text) every 0.25 s until it holds, or prints `failure`
    to stderr and exits 1 after `seconds` by the host's clock (not a count of tries: one try
    can take a second or more in a TCG VM)."""
    return (
        f"end=$(($(date +%s) + {int(seconds)})); until {condition}; do "
        f'if [ "$(date +%s)" -ge "$end" ]; then echo {quote(failure)} >&2; exit 1; fi; '
        "sleep 0.25; done"
    )


def command_summary(text: str, width: int = 60) -> str:
    """A command's text as one short line for a message (a script's first line, cut)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    said = [line for line in lines if not line.startswith("set -")] or lines  # not `set -e`
    first = said[0] if said else ""
    more = len(lines) > 1 or len(first) > width
    return first[:width] + (" …" if more else "")


def command_text(command: Command) -> str:
    """The exact text the remote shell receives."""
    if isinstance(command, ShellScript):
        return command.text
    if isinstance(command, str):
        # A bare string would be split by the remote shell unquoted: make the caller choose.
        raise TypeError("pass an argument list or a ShellScript, not a str")
    return shlex.join(command)


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


def _one_line(exc: BaseException) -> str:
    """A connect error as one readable line (paramiko's messages vary by class)."""
    if isinstance(exc, paramiko.BadHostKeyException):
        return f"host key mismatch for {exc.hostname} (known_hosts says otherwise)"
    if isinstance(exc, paramiko.SSHException) and "not found in known_hosts" in str(exc):
        return f"host key unknown: {exc} (strict host key checking)"
    if isinstance(exc, paramiko.ChannelException):  # a jump host could not open the tunnel
        return f"tunnel refused by the jump host ({exc.text or exc.code})"
    if isinstance(exc, paramiko.SSHException) and str(exc) == "No authentication methods available":
        # paramiko had nothing to try: no key file, and no agent or an empty one
        return "authentication refused: no key to offer (no key file, IdentityFile or agent key)"
    if isinstance(exc, paramiko.AuthenticationException):
        return f"authentication refused ({exc})"
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        reasons = {os.strerror(e.errno) if e.errno else str(e) for e in exc.errors.values()}
        return "connection refused" if reasons == {"Connection refused"} else "; ".join(reasons)
    if isinstance(exc, socket.timeout | TimeoutError):
        return "connect timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _connection(endpoint: SshEndpoint, known_hosts: str, connect_timeout: float) -> Connection:
    """A fabric Connection for one hop, through its jump hosts (each one checked as strictly)."""
    connect_kwargs: dict[str, object] = {
        # ~/.ssh/id_* stay unread: keys come from the inventory, the ssh config or the agent.
        "look_for_keys": False,
        "allow_agent": endpoint.allow_agent,
        "banner_timeout": connect_timeout,
        "auth_timeout": connect_timeout,
        # paramiko waits an hour for a channel by default: a frozen host would stall the run;
        # on a jump host this also bounds opening the tunnel to the next hop.
        "channel_timeout": connect_timeout,
    }
    if endpoint.key_files:
        connect_kwargs["key_filename"] = list(endpoint.key_files)
    gateway = None
    if endpoint.jump is not None:
        # fabric tunnels through a Connection gateway with a direct-tcpip channel.
        gateway = _connection(endpoint.jump, known_hosts, connect_timeout)
    # An empty SSHConfig: ssh_options already applied the user's config; fabric must not
    # apply it again (or read another file) behind our back.
    conn = Connection(
        endpoint.address,
        user=endpoint.user,
        port=endpoint.port,
        config=Config(ssh_config=paramiko.SSHConfig()),
        gateway=gateway,
        connect_timeout=int(max(1, connect_timeout)),
        connect_kwargs=connect_kwargs,
    )
    # Strict host key checking: fabric defaults to AutoAddPolicy, which trusts anyone.
    client = conn.client
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    if os.path.exists(known_hosts):
        client.load_host_keys(known_hosts)
    return conn


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

    def __init__(self, host: Host, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> None:
        self.host = host
        # sudo for commands when the user is not root; a play's `become` overrides it.
        self.become_default = host.become
        self.endpoint = resolve(host, os.environ)
        known_hosts = (
            host.known_hosts_file
            or self.endpoint.known_hosts
            or os.path.expanduser("~/.ssh/known_hosts")
        )
        self._conn = _connection(self.endpoint, known_hosts, connect_timeout)
        # The jump hosts' connections, the first one dialled first (to open and close them).
        self._jumps: list[tuple[SshEndpoint, Connection]] = []
        hop = self._conn
        for endpoint in reversed(self.endpoint.jumps()):
            hop = hop.gateway
            self._jumps.insert(0, (endpoint, hop))

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
                conn.open()
            except Exception as exc:  # paramiko raises many unrelated classes
                self.close()
                raise HostUnreachable(
                    f"{self.host.name}: unreachable via jump host {endpoint.name}: {_one_line(exc)}"
                ) from exc
        try:
            self._conn.open()
        except Exception as exc:  # paramiko raises many unrelated classes
            self.close()
            reason = _one_line(exc)
            if self._jumps and isinstance(exc, paramiko.ChannelException):
                e = self.endpoint
                reason = f"jump host {self._jumps[-1][0].name} cannot reach {e.address}:{e.port}"
                reason += f" ({exc.text})" if exc.text else ""
            raise HostUnreachable(f"{self.host.name}: unreachable: {reason}") from exc

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
        wire = text
        if timeout is not None:
            # Enforced on the host: coreutils timeout signals its whole process group, so
            # nothing the command started outlives it (closing the channel would not: without
            # a pty nothing sends SIGHUP). fabric's own timeout below is the backstop.
            wire = f"timeout -k {KILL_GRACE:g} {timeout:g} sh -c {quote(wire)}"
        if (self.become_default if become is None else become) and self.user != "root":
            wire = "sudo -n -- sh -c " + quote(wire)
        self.open()
        log_command(self.host.name, text)
        started = time.monotonic()

        def timed_out(stdout: str, stderr: str) -> CommandTimeout:
            return CommandTimeout(
                f"{self.host.name}: `{command_summary(text)}` timed out after {timeout:g} s",
                CommandResult(self.host.name, text, -1, stdout, stderr, time.monotonic() - started),
            )

        try:
            res = self._conn.run(
                wire,
                hide=True,
                warn=True,
                in_stream=False,
                pty=False,
                timeout=None if timeout is None else timeout + KILL_GRACE + 5,
            )
        except CommandTimedOut as exc:
            # The host-side timeout should have fired first: the connection itself is stuck.
            # Close it, so the next command reconnects (or finds the host unreachable).
            self.close()
            raise timed_out(exc.result.stdout, exc.result.stderr) from exc
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.close()
            raise HostUnreachable(f"{self.host.name}: connection lost: {_one_line(exc)}") from exc
        if res.exited == -1:
            # The channel closed without an exit status: the session died, not the command.
            self.close()
            raise HostUnreachable(
                f"{self.host.name}: connection lost during `{command_summary(text)}`"
            )
        if (
            timeout is not None
            and res.exited in (124, 137)
            and time.monotonic() - started >= timeout
        ):
            raise timed_out(res.stdout, res.stderr)
        result = CommandResult(
            host=self.host.name,
            command=text,
            exit_status=res.exited,
            stdout=res.stdout,
            stderr=res.stderr,
            duration=time.monotonic() - started,
        )
        log_result(result)
        if check and not result.ok:
            raise CommandFailed(result)
        return result

    def put(self, local: str, remote: str) -> None:
        self.open()
        self._conn.put(local, remote)

    def get(self, remote: str, local: str) -> None:
        self.open()
        self._conn.get(remote, local)

    def close(self) -> None:
        # fabric does not close a gateway with its Connection: the target first, then each
        # jump host back towards us.
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
        self._by_name = {h.name: HostConnection(h, connect_timeout) for h in hosts}

    def __getitem__(self, name: str) -> HostConnection:
        return self._by_name[name]

    def __len__(self) -> int:
        return len(self._by_name)

    @property
    def names(self) -> list[str]:
        return list(self._by_name)

    def close(self) -> None:
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
                err = LabctlError(f"{conn.host.name}: {type(exc).__name__}: {_one_line(exc)}")
                return HostOutcome(conn.host.name, error=err, duration=time.monotonic() - started)
            return HostOutcome(conn.host.name, value=value, duration=time.monotonic() - started)

        if not conns:
            return []
        with ThreadPoolExecutor(max_workers=max(1, min(pool_size, len(conns)))) as pool:
            return list(pool.map(attempt, conns))
