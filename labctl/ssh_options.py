"""Where and how to SSH to an inventory host: the inventory, then the user's ssh config.

Precedence is Ansible's with its ssh connection plugin, where the inventory's settings become
`ssh` command-line options and `ssh` fills the rest from its config file:

- the ssh config is matched (``Host`` / ``Match`` patterns, first value wins) on the host's
  inventory address: ``ansible_host`` when set, else the inventory name, just as `ssh` is
  handed that address by Ansible; its ``HostName`` then names the machine to dial;
- ``ansible_user``, ``ansible_port``, ``ansible_ssh_private_key_file`` win when the inventory
  sets them; otherwise the config's ``User``, ``Port``, ``IdentityFile`` apply; otherwise
  labctl's defaults (user root, port 22, no key file);
- the SSH agent is used when ``SSH_AUTH_SOCK`` is set, beside the key files;
- a jump host comes from ``-o ProxyJump=`` / ``-J`` in ``ansible_ssh_common_args`` or
  ``ansible_ssh_extra_args``, else from the config's ``ProxyJump``. Each jump host is looked up
  in the same config (its own ``ProxyJump`` too, for the first hop, as `ssh` does).

The config file is ``~/.ssh/config`` (``~`` is ``$HOME``), or the one named by ``-F FILE`` in
those inventory args (``-F none``: no config), as with `ssh`. Host keys are always checked
strictly: ``-o StrictHostKeyChecking=no`` is refused, the config's is not read.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import paramiko

from labctl.errors import InventoryError

DEFAULT_SSH_CONFIG = "~/.ssh/config"
ARGS_VARS = ("ansible_ssh_common_args", "ansible_ssh_extra_args")
DEFAULT_USER = "root"  # labctl's default when neither the inventory nor the config names one
DEFAULT_PORT = 22
MAX_JUMPS = 8  # a longer chain is a ProxyJump loop in the config
_EXPLICIT = {
    "user": ("ansible_user", "ansible_ssh_user"),
    "port": ("ansible_port", "ansible_ssh_port"),
}
_PASSWORDS = ("ansible_password", "ansible_ssh_pass", "ansible_ssh_password")
_OPTION = re.compile(r"\s*([A-Za-z]+)\s*(?:=\s*|\s+)(\S.*?)\s*$")
_INCLUDE = re.compile(r"(?i)\s*include(?:\s*=\s*|\s+)(.+)")
_BLOCK = re.compile(r"(?i)\s*(?:host|match)(?:\s*=\s*|\s+)")


class SshHost(Protocol):
    """What this module reads of an inventory host (labctl.inventory's Host has it all)."""

    @property
    def name(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def user(self) -> str: ...
    @property
    def key_file(self) -> str | None: ...
    @property
    def vars(self) -> Mapping[str, Any]: ...  # all its inventory variables, merged


@dataclass(frozen=True)
class SshEndpoint:
    """One SSH hop: the host itself, or a jump host on the way to it (`jump` comes first)."""

    name: str  # as the inventory or ProxyJump wrote it, for messages
    address: str  # what is dialled (the config's HostName applied)
    port: int
    user: str
    key_files: tuple[str, ...]
    allow_agent: bool
    jump: SshEndpoint | None = None
    known_hosts: str | None = None  # from -o UserKnownHostsFile in the inventory's ssh args

    def jumps(self) -> list[SshEndpoint]:
        """The jump hosts on the way here, the first one dialled first."""
        chain: list[SshEndpoint] = []
        hop = self.jump
        while hop is not None:
            chain.insert(0, hop)
            hop = hop.jump
        return chain


@dataclass(frozen=True)
class SshArgs:
    """What labctl understood in ``ansible_ssh_common_args`` / ``ansible_ssh_extra_args``."""

    config_file: str | None = None
    proxy_jump: str | None = None
    known_hosts: str | None = None  # -o UserKnownHostsFile=PATH: still checked strictly


def _input_error(host: SshHost, message: str) -> InventoryError:
    return InventoryError(f"host {host.name!r}: {message}")


def parse_ssh_args(host: SshHost) -> SshArgs:
    """The options labctl supports in the host's ssh args; anything else is an error, because
    an option silently dropped would connect differently from what the inventory says."""
    config_file: str | None = None
    jump: str | None = None
    known_hosts: str | None = None
    for var in ARGS_VARS:
        value = host.vars.get(var)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise _input_error(host, f"{var} must be a string, not {value!r}")
        try:
            words = shlex.split(value)
        except ValueError as exc:
            raise _input_error(host, f"{var}: cannot split {value!r}: {exc}") from None
        i = 0
        while i < len(words):
            word = words[i]
            flag, arg = word[:2], word[2:]
            if flag not in ("-o", "-J", "-F"):
                raise _input_error(
                    host, f"{var}: unsupported ssh option {word!r} (labctl supports -F, -J, -o)"
                )
            if not arg:  # "-o X" rather than "-oX"
                i += 1
                if i == len(words):
                    raise _input_error(host, f"{var}: {flag} needs a value")
                arg = words[i]
            i += 1
            if flag == "-F":
                if config_file is not None:
                    raise _input_error(host, f"{var}: -F given twice")
                config_file = arg
                continue
            if flag == "-J":
                key, setting = "proxyjump", arg
            else:
                match = _OPTION.fullmatch(arg)
                if match is None:
                    raise _input_error(host, f"{var}: -o {arg!r} is not KEY=VALUE")
                key, setting = match.group(1).lower(), match.group(2)
            if key == "proxyjump":
                if jump is not None:
                    raise _input_error(host, f"{var}: ProxyJump given twice")
                jump = setting
            elif key == "userknownhostsfile":
                # Ansible inventories often name the lab's known_hosts this way; the keys in
                # it are checked as strictly as ~/.ssh/known_hosts would be.
                known_hosts = os.path.expanduser(setting)
            elif key == "stricthostkeychecking":
                if setting.lower() != "yes":
                    raise _input_error(
                        host,
                        f"{var}: -o {arg} is refused: labctl always checks host keys strictly "
                        "(add the key to the known_hosts file instead)",
                    )
            elif key == "proxycommand":
                raise _input_error(
                    host,
                    f"{var}: unsupported ssh option -o {arg} "
                    "(write -o ProxyJump=[user@]host[:port]: labctl tunnels through it itself)",
                )
            else:
                raise _input_error(
                    host,
                    f"{var}: unsupported ssh option -o {arg} "
                    "(labctl supports -o ProxyJump=..., -o UserKnownHostsFile=..., -J and -F)",
                )
    return SshArgs(config_file, jump, known_hosts)


def _config_text(path: str, home: str, depth: int = 0) -> str:
    """The file's text with its ``Include``s spliced in (paramiko ignores Include, and a host
    silently missing from the config would be dialled by its bare name)."""
    if depth > 16:
        raise InventoryError("ssh config: Include nested too deep (a loop?)", path=path)
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError(f"cannot read ssh config: {exc}", path=path) from exc
    out: list[str] = []
    header = "Host *"  # the block in force: Include lines inherit it, text after resumes it
    for line in lines:
        if _BLOCK.match(line):
            header = line
        include = _INCLUDE.fullmatch(line)
        if include is None:
            out.append(line)
            continue
        for pattern in shlex.split(include.group(1)):
            pattern = home + pattern[1:] if pattern.startswith("~") else pattern
            # As ssh: a relative Include in a user config is relative to ~/.ssh.
            pattern = os.path.join(home, ".ssh", pattern)
            for name in sorted(glob.glob(pattern)):
                out.append(_config_text(name, home, depth + 1))
        out.append(header)
    return "\n".join(out)


def load_ssh_config(path: str | None, environ: Mapping[str, str]) -> paramiko.SSHConfig:
    """The ssh config at `path` (None: ``~/.ssh/config``, absent is fine; "none": empty)."""
    home = environ.get("HOME") or os.path.expanduser("~")
    if path is not None and path.lower() == "none":
        return paramiko.SSHConfig()
    if path is None:
        path = home + DEFAULT_SSH_CONFIG[1:]
        if not os.path.exists(path):
            return paramiko.SSHConfig()
    elif path.startswith("~"):
        path = home + path[1:]
    try:
        return paramiko.SSHConfig.from_text(_config_text(path, home))
    except paramiko.ssh_exception.ConfigParseError as exc:
        raise InventoryError(f"ssh config: {exc}", path=path) from exc


def _explicit(host: SshHost, setting: str) -> bool:
    """Did the inventory set it? A variable says so; so does a Host built with a value other
    than the default (the VM lab's own check after boot builds one without variables)."""
    if any(var in host.vars for var in _EXPLICIT[setting]):
        return True
    return host.port != DEFAULT_PORT if setting == "port" else host.user != DEFAULT_USER


def _port(value: object, where: str) -> int:
    text = str(value)
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"{where}: port must be an integer in 1..65535, not {text!r}")
    return int(text)


def _agent(environ: Mapping[str, str], conf: paramiko.SSHConfigDict, keys: tuple[str, ...]) -> bool:
    if not environ.get("SSH_AUTH_SOCK") or conf.get("identityagent", "").lower() == "none":
        return False
    # IdentitiesOnly: ssh then offers only the listed keys; paramiko cannot filter the agent's.
    return not (keys and conf.get("identitiesonly", "no").lower() == "yes")


def _config_keys(conf: paramiko.SSHConfigDict) -> tuple[str, ...]:
    # As ssh, a listed IdentityFile that does not exist is skipped, not an error.
    return tuple(k for k in conf.get("identityfile", []) if os.path.exists(k))


def _check_proxy_command(conf: paramiko.SSHConfigDict, name: str) -> None:
    if conf.get("proxycommand") and "proxyjump" not in conf:
        # Dialling directly instead would silently bypass the proxy the user set up.
        raise ValueError(
            f"the ssh config's ProxyCommand for {name!r} is not supported (use ProxyJump)"
        )


def _split_jump(spec: str) -> tuple[str | None, str, int | None]:
    """``[ssh://][user@]host[:port]`` (IPv6 in brackets) -> user, host, port."""
    text = spec.removeprefix("ssh://")
    user, at, rest = text.rpartition("@")
    match = re.fullmatch(r"\[([^\]\s]+)\](?::(\S+))?|([^:\[\]\s]+)(?::(\S+))?", rest)
    if not rest or match is None or (at and not user):
        raise ValueError(f"ProxyJump: bad jump host {spec!r} (expected [user@]host[:port])")
    address = match.group(1) or match.group(3)
    port = match.group(2) or match.group(4)
    return (user or None), address, (_port(port, f"ProxyJump {spec!r}") if port else None)


def resolve(host: SshHost, environ: Mapping[str, str]) -> SshEndpoint:
    """Where and how to reach `host`; `environ` gives HOME and SSH_AUTH_SOCK (os.environ).
    Raises InventoryError, in one line naming the host, for what labctl cannot honour."""
    try:
        return _resolve(host, environ)
    except ValueError as exc:
        raise _input_error(host, str(exc)) from None


def _resolve(host: SshHost, environ: Mapping[str, str]) -> SshEndpoint:
    if any(var in host.vars for var in _PASSWORDS):
        raise _input_error(host, "password login is not supported: use a key or the SSH agent")
    args = parse_ssh_args(host)
    config = load_ssh_config(args.config_file, environ)
    conf = config.lookup(host.address)
    if args.proxy_jump is None:  # the inventory's jump host overrides the config's proxy
        _check_proxy_command(conf, host.name)
    user = host.user if _explicit(host, "user") else conf.get("user", DEFAULT_USER)
    if _explicit(host, "port"):
        port = host.port
    else:
        port = _port(conf.get("port", DEFAULT_PORT), f"ssh config for {host.address!r}")
    keys = (host.key_file,) if host.key_file else _config_keys(conf)
    spec = args.proxy_jump if args.proxy_jump is not None else conf.get("proxyjump")
    jump = _jumps(spec, config, environ, keys, depth=0)
    return SshEndpoint(
        name=host.name,
        address=conf["hostname"],
        port=port,
        user=user,
        key_files=keys,
        allow_agent=_agent(environ, conf, keys),
        jump=jump,
        known_hosts=args.known_hosts,
    )


def _jumps(
    spec: str | None,
    config: paramiko.SSHConfig,
    environ: Mapping[str, str],
    fallback_keys: tuple[str, ...],
    depth: int,
) -> SshEndpoint | None:
    """The last hop of a ProxyJump chain ``a,b`` (b, reached through a), or None."""
    if spec is None or spec.strip().lower() == "none":
        return None
    if depth + spec.count(",") >= MAX_JUMPS:
        raise ValueError(f"ProxyJump: more than {MAX_JUMPS} jump hosts (a loop in the config?)")
    previous: SshEndpoint | None = None
    for i, item in enumerate(h.strip() for h in spec.split(",")):
        user, name, port = _split_jump(item)
        conf = config.lookup(name)
        _check_proxy_command(conf, name)
        # The first hop's own ProxyJump applies (ssh does the same); later hops go through
        # the previous one, whatever their config says.
        if i == 0:
            through = _jumps(conf.get("proxyjump"), config, environ, fallback_keys, depth + 1)
        else:
            through = previous
        # No key of its own in the config: offer the host's keys (a lab's one key usually
        # opens its jump host too). ssh would offer ~/.ssh/id_*; labctl never reads those.
        keys = _config_keys(conf) or fallback_keys
        previous = SshEndpoint(
            name=name,
            address=conf["hostname"],
            port=port or _port(conf.get("port", DEFAULT_PORT), f"ssh config for {name!r}"),
            user=user or conf.get("user", DEFAULT_USER),
            key_files=keys,
            allow_agent=_agent(environ, conf, keys),
            jump=through,
        )
    return previous
