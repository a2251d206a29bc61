"""Making one SSH connection: a fabric Connection for a host and its jump hosts, checked
strictly against known_hosts, its TCP socket dialled here with TCP_NODELAY; and a connect
error told in one line.

Why dial here: paramiko leaves Nagle's algorithm on. An SSH client writes several small
packets in a row (a channel request, then EOF; the key exchange's messages), and with
Nagle each second write waits for the server's delayed ACK, about 40 ms: measured on the
namespace lab, a connect took 86 ms and a command 50 ms that way, 27 ms and 7 ms with
TCP_NODELAY (OpenSSH's own client sets it too).
"""

from __future__ import annotations

import os
import socket

import paramiko
from fabric import Config, Connection

from labctl.ssh_options import SshEndpoint


def dial(conn: Connection, timeout: float) -> None:
    """Give `conn`'s next open a TCP socket with TCP_NODELAY, when it dials TCP itself (not
    through a jump host's channel: that one rides on the jump host's socket)."""
    if conn.gateway is not None:
        return
    sock = socket.create_connection((conn.host, conn.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn.connect_kwargs["sock"] = sock


def one_line(exc: BaseException) -> str:
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
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


class KnownHosts:
    """known_hosts files, each read once for all the connections made with this object
    (paramiko's `load_host_keys` would parse every line of the file for every host: with 16
    lab hosts, 256 keys parsed to use 16). Each connection's client gets only the keys of
    the host it dials, so the check is the same strict one."""

    def __init__(self) -> None:
        self._files: dict[str, paramiko.HostKeys] = {}

    def install(self, client: paramiko.SSHClient, path: str, address: str, port: int) -> None:
        keys = self._files.get(path)
        if keys is None:
            keys = paramiko.HostKeys(path) if os.path.exists(path) else paramiko.HostKeys()
            self._files[path] = keys
        # the name paramiko's SSHClient.connect looks the server's key up by
        name = address if port == 22 else f"[{address}]:{port}"
        for key_type, key in (keys.lookup(name) or {}).items():
            client.get_host_keys().add(name, key_type, key)


# AES-GCM first: its tag is checked inside the cipher (OpenSSL), where paramiko checks an
# HMAC of every packet in Python; any server without it negotiates the next as before.
_GCM_FIRST = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


def _transport(sock: object, **kwargs: object) -> paramiko.Transport:
    transport = paramiko.Transport(sock, **kwargs)
    options = transport.get_security_options()
    options.ciphers = _GCM_FIRST + tuple(c for c in options.ciphers if c not in _GCM_FIRST)
    return transport


def fabric_connection(
    endpoint: SshEndpoint, known_hosts: str, connect_timeout: float, known: KnownHosts
) -> Connection:
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
    connect_kwargs["transport_factory"] = _transport
    gateway = None
    if endpoint.jump is not None:
        # fabric tunnels through a Connection gateway with a direct-tcpip channel.
        gateway = fabric_connection(endpoint.jump, known_hosts, connect_timeout, known)
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
    known.install(client, known_hosts, endpoint.address, endpoint.port)
    return conn
