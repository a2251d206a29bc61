"""Where and how labctl SSHes to a host: inventory vars over the ssh config over defaults.

Every ssh config here is written to tmp_path and named by `-F` (or found under a HOME that is
tmp_path): the machine's own ~/.ssh is never read.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from labctl.errors import InventoryError
from labctl.inventory import Host
from labctl.ssh_options import SshEndpoint, parse_ssh_args, resolve


def make_host(
    name: str,
    address: str = "",
    port: int = 22,
    user: str = "root",
    key_file: str | None = None,
    vars: Mapping[str, Any] | None = None,
    known_hosts_file: str | None = None,
) -> Host:
    """An inventory Host with the inventory's defaults (address: the name, user root, 22)."""
    return Host(
        name=name,
        address=address or name,
        port=port,
        user=user,
        key_file=key_file,
        known_hosts_file=known_hosts_file,
        become=False,
        groups=("all",),
        vars=dict(vars or {}),
    )


NO_AGENT: dict[str, str] = {"HOME": "/nonexistent-home"}


def config(tmp_path: Path, text: str) -> dict[str, str]:
    """Write an ssh config; the inventory vars that point labctl at it."""
    path = tmp_path / "ssh_config"
    path.write_text(text)
    return {"ansible_ssh_common_args": f"-F {path}"}


def key(tmp_path: Path, name: str) -> str:
    path = tmp_path / name
    path.write_text("not really a key; only its existence matters here\n")
    return str(path)


def test_an_alias_takes_hostname_user_port_and_identity_from_the_ssh_config(
    tmp_path: Path,
) -> None:
    k = key(tmp_path, "id_lab")
    ssh_vars = config(
        tmp_path,
        f"Host lab-a\n  HostName 10.9.0.5\n  User alice\n  Port 2222\n  IdentityFile {k}\n",
    )
    got = resolve(make_host("lab-a", vars=ssh_vars), NO_AGENT)
    assert got == SshEndpoint("lab-a", "10.9.0.5", 2222, "alice", (k,), allow_agent=False)


def test_what_the_inventory_sets_explicitly_wins_over_the_ssh_config(tmp_path: Path) -> None:
    inv_key = key(tmp_path, "inventory_key")
    k = key(tmp_path, "config_key")
    ssh_vars = config(
        tmp_path,
        f"Host lab-a\n  HostName 10.9.0.5\n  User alice\n  Port 2222\n  IdentityFile {k}\n",
    )
    host = make_host(
        "lab-a",
        port=22,
        user="bob",
        key_file=inv_key,
        vars={**ssh_vars, "ansible_user": "bob", "ansible_port": 22},
    )
    got = resolve(host, NO_AGENT)
    assert (got.address, got.user, got.port, got.key_files) == ("10.9.0.5", "bob", 22, (inv_key,))


def test_ansible_host_is_what_the_config_is_matched_on(tmp_path: Path) -> None:
    # As Ansible hands ssh the ansible_host: the inventory name's config entry is not used.
    ssh_vars = config(
        tmp_path,
        "Host srv1\n  HostName 10.66.0.1\n  User wrong\nHost 10.9.0.*\n  User lab\n  Port 2200\n",
    )
    got = resolve(make_host("srv1", address="10.9.0.7", vars=ssh_vars), NO_AGENT)
    assert (got.address, got.user, got.port) == ("10.9.0.7", "lab", 2200)


def test_defaults_when_neither_the_inventory_nor_the_config_says(tmp_path: Path) -> None:
    ssh_vars = config(tmp_path, "Host other\n  User alice\n  Port 2222\n")
    got = resolve(make_host("10.9.0.7", vars=ssh_vars), NO_AGENT)
    assert got == SshEndpoint("10.9.0.7", "10.9.0.7", 22, "root", (), allow_agent=False)


def test_host_patterns_match_as_openssh_first_value_wins(tmp_path: Path) -> None:
    ssh_vars = config(
        tmp_path,
        "Host *.lab !bad.lab\n  User first\nHost *\n  User second\n  Port 2022\n",
    )
    assert resolve(make_host("a.lab", vars=ssh_vars), NO_AGENT).user == "first"
    bad = resolve(make_host("bad.lab", vars=ssh_vars), NO_AGENT)
    assert (bad.user, bad.port) == ("second", 2022)


def test_identity_files_are_kept_in_order_and_missing_ones_skipped(tmp_path: Path) -> None:
    a, b = key(tmp_path, "a"), key(tmp_path, "b")
    ssh_vars = config(
        tmp_path,
        f"Host h\n  IdentityFile {a}\n  IdentityFile {tmp_path}/gone\n  IdentityFile {b}\n",
    )
    assert resolve(make_host("h", vars=ssh_vars), NO_AGENT).key_files == (a, b)


def test_the_agent_is_used_when_ssh_auth_sock_is_set(tmp_path: Path) -> None:
    k = key(tmp_path, "k")
    ssh_vars = config(
        tmp_path,
        f"Host only\n  IdentityFile {k}\n  IdentitiesOnly yes\n"
        "Host noagent\n  IdentityAgent none\n",
    )
    agent = {**NO_AGENT, "SSH_AUTH_SOCK": str(tmp_path / "agent.sock")}
    assert resolve(make_host("h", vars=ssh_vars), agent).allow_agent
    assert not resolve(make_host("h", vars=ssh_vars), NO_AGENT).allow_agent
    # IdentitiesOnly: paramiko cannot limit the agent to the listed keys, so no agent.
    assert not resolve(make_host("only", vars=ssh_vars), agent).allow_agent
    assert not resolve(make_host("noagent", vars=ssh_vars), agent).allow_agent


def test_proxyjump_from_the_ssh_config_resolves_the_jump_host_there_too(tmp_path: Path) -> None:
    jk = key(tmp_path, "jump_key")
    ssh_vars = config(
        tmp_path,
        "Host target\n  HostName 10.9.0.20\n  ProxyJump jumper@bastion:2200\n"
        f"Host bastion\n  HostName 10.9.0.1\n  User ignored\n  IdentityFile {jk}\n",
    )
    got = resolve(make_host("target", vars=ssh_vars), NO_AGENT)
    assert got.address == "10.9.0.20"
    assert got.jump == SshEndpoint("bastion", "10.9.0.1", 2200, "jumper", (jk,), False)
    assert got.jumps() == [got.jump]


def test_a_jump_host_without_a_key_of_its_own_is_offered_the_hosts_key(tmp_path: Path) -> None:
    k = key(tmp_path, "lab_key")
    host = make_host(
        "10.9.0.20", key_file=k, vars={"ansible_ssh_common_args": "-F none -J 10.9.0.1"}
    )
    jump = resolve(host, NO_AGENT).jump
    assert jump == SshEndpoint("10.9.0.1", "10.9.0.1", 22, "root", (k,), False)


def test_inventory_args_proxyjump_overrides_the_config(tmp_path: Path) -> None:
    path = tmp_path / "ssh_config"
    path.write_text("Host target\n  ProxyJump via-config\n")
    for args, expected in [
        (f"-F {path} -o ProxyJump=ops@10.9.0.2:2201", ("10.9.0.2", 2201, "ops")),
        (f"-F {path} -o 'ProxyJump ops@10.9.0.2'", ("10.9.0.2", 22, "ops")),
        (f"-F{path} -oproxyjump=10.9.0.3", ("10.9.0.3", 22, "root")),
        (f"-F {path} -J [fd00::1]:2222", ("fd00::1", 2222, "root")),
    ]:
        jump = resolve(make_host("target", vars={"ansible_ssh_common_args": args}), NO_AGENT).jump
        assert jump is not None and (jump.address, jump.port, jump.user) == expected, args
    # extra_args count as much as common_args; "none" switches the config's ProxyJump off
    none = {"ansible_ssh_common_args": f"-F {path}", "ansible_ssh_extra_args": "-J none"}
    assert resolve(make_host("target", vars=none), NO_AGENT).jump is None
    via_config = resolve(make_host("target", vars={"ansible_ssh_common_args": f"-F {path}"}), {})
    assert via_config.jump is not None and via_config.jump.name == "via-config"


def test_a_chain_is_dialled_first_hop_first(tmp_path: Path) -> None:
    ssh_vars = config(
        tmp_path,
        "Host target\n  ProxyJump a,b:2202\n"
        "Host a\n  HostName 10.9.0.1\n  ProxyJump outer\n"
        "Host b\n  HostName 10.9.0.2\n  ProxyJump ignored-for-a-later-hop\n",
    )
    got = resolve(make_host("target", vars=ssh_vars), NO_AGENT)
    # ssh's rule: the first hop's own ProxyJump applies; a later hop goes through the one before
    assert [(j.name, j.address, j.port) for j in got.jumps()] == [
        ("outer", "outer", 22),
        ("a", "10.9.0.1", 22),
        ("b", "10.9.0.2", 2202),
    ]


def test_a_proxyjump_loop_is_an_error(tmp_path: Path) -> None:
    ssh_vars = config(tmp_path, "Host a\n  ProxyJump b\nHost b\n  ProxyJump a\n")
    with pytest.raises(InventoryError, match=r"host 'a': ProxyJump: more than 8 jump hosts"):
        resolve(make_host("a", vars=ssh_vars), NO_AGENT)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            "-o StrictHostKeyChecking=no",
            r"^host 'h1': ansible_ssh_common_args: -o StrictHostKeyChecking=no is refused: "
            r"labctl always checks host keys strictly",
        ),
        ("-o StrictHostKeyChecking=accept-new", r"StrictHostKeyChecking=accept-new is refused"),
        ("-o ServerAliveInterval=5", r"h1'.*unsupported ssh option -o ServerAliveInterval=5"),
        ("-C", r"unsupported ssh option '-C'"),
        ("-o ProxyCommand='nc %h %p'", r"unsupported ssh option -o ProxyCommand=nc %h %p"),
        ("-J a -o ProxyJump=b", r"ProxyJump given twice"),
        ("-o", r"-o needs a value"),
        ("-o Nonsense", r"-o 'Nonsense' is not KEY=VALUE"),
        ("-J 'a b'", r"ProxyJump: bad jump host 'a b'"),
        ("-J user@", r"ProxyJump: bad jump host 'user@'"),
        ("-J h:99999", r"port must be an integer in 1..65535"),
        ("-F '/unterminated", r"cannot split"),
    ],
)
def test_unsupported_or_weakening_ssh_args_are_refused_naming_host_and_option(
    args: str, message: str
) -> None:
    host = make_host("h1", address="10.9.0.1", vars={"ansible_ssh_common_args": args})
    with pytest.raises(InventoryError, match=message) as info:
        resolve(host, NO_AGENT)
    assert "\n" not in str(info.value)


def test_strict_host_key_checking_yes_is_accepted_as_what_labctl_does_anyway() -> None:
    host = make_host("h", vars={"ansible_ssh_extra_args": "-o StrictHostKeyChecking=yes"})
    assert parse_ssh_args(host).proxy_jump is None


def test_user_known_hosts_file_names_the_file_checked_strictly() -> None:
    common = "-o UserKnownHostsFile=~/lab/known_hosts -o StrictHostKeyChecking=yes"
    host = make_host("h", vars={"ansible_ssh_common_args": common})
    endpoint = resolve(host, NO_AGENT)
    assert endpoint.known_hosts == os.path.expanduser("~/lab/known_hosts")
    assert resolve(make_host("h"), NO_AGENT).known_hosts is None


def test_password_login_is_refused() -> None:
    host = make_host("h", vars={"ansible_password": "hunter2"})
    with pytest.raises(InventoryError, match=r"host 'h': password login is not supported"):
        resolve(host, NO_AGENT)


def test_a_proxycommand_in_the_config_is_refused_not_bypassed(tmp_path: Path) -> None:
    ssh_vars = config(
        tmp_path, "Host pc\n  ProxyCommand nc %h %p\nHost none\n  ProxyCommand none\n"
    )
    with pytest.raises(
        InventoryError, match=r"^host 'pc': the ssh config's ProxyCommand for 'pc' is not"
    ):
        resolve(make_host("pc", vars=ssh_vars), NO_AGENT)
    assert resolve(make_host("none", vars=ssh_vars), NO_AGENT).jump is None
    # the inventory's own jump host replaces the config's proxy
    jumped = {"ansible_ssh_common_args": f"{ssh_vars['ansible_ssh_common_args']} -J 10.9.0.1"}
    assert resolve(make_host("pc", vars=jumped), NO_AGENT).jump is not None


def test_the_default_config_is_home_dot_ssh_config(tmp_path: Path) -> None:
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "config").write_text("Host alias\n  HostName 10.9.0.4\n  User u\n")
    home = {"HOME": str(tmp_path)}
    assert resolve(make_host("alias"), home).address == "10.9.0.4"
    # -F none: no config at all, as with ssh
    off = make_host("alias", vars={"ansible_ssh_common_args": "-F none"})
    assert resolve(off, home).address == "alias"
    # no ~/.ssh/config: defaults, not an error
    assert resolve(make_host("alias"), {"HOME": str(tmp_path / "empty")}).user == "root"


def test_a_named_config_that_cannot_be_read_or_parsed_is_an_error(tmp_path: Path) -> None:
    gone = make_host("h", vars={"ansible_ssh_common_args": f"-F {tmp_path}/gone"})
    with pytest.raises(InventoryError, match=r"/gone: cannot read ssh config"):
        resolve(gone, NO_AGENT)
    with pytest.raises(InventoryError, match=r"ssh_config: ssh config: Unparsable line"):
        resolve(make_host("h", vars=config(tmp_path, "Host h\n  =bad\n")), NO_AGENT)
    with pytest.raises(InventoryError, match=r"port must be an integer in 1..65535, not 'x'"):
        resolve(make_host("h", vars=config(tmp_path, "Host h\n  Port x\n")), NO_AGENT)


def test_include_is_spliced_in_relative_to_dot_ssh_and_keeps_its_block(tmp_path: Path) -> None:
    ssh = tmp_path / ".ssh"
    (ssh / "conf.d").mkdir(parents=True)
    (ssh / "conf.d" / "10-lab").write_text("Host inc\n  HostName 10.9.0.8\n")
    (ssh / "conf.d" / "20-port").write_text("Port 2020\n")  # no Host line: enclosing block's
    (ssh / "config").write_text(
        "Include conf.d/10-lab\nUser everyone\nHost porty\n  Include ~/.ssh/conf.d/20-port\n"
        "  User porty\n"
    )
    home = {"HOME": str(tmp_path)}
    inc = resolve(make_host("inc"), home)
    # "User everyone" after the Include is global again, not part of the included Host inc
    assert (inc.address, inc.user) == ("10.9.0.8", "everyone")
    assert resolve(make_host("other"), home).user == "everyone"
    porty = resolve(make_host("porty"), home)
    assert (porty.port, porty.user) == (2020, "everyone")  # first value wins, as in ssh


def test_every_hop_checks_host_keys_strictly_against_the_hosts_known_hosts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import paramiko

    from labctl.remote import HostConnection

    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    known_hosts = tmp_path / "known_hosts"
    # a throwaway ed25519 public key, recorded for the first jump host
    key_b64 = "AAAAC3NzaC1lZDI1NTE5AAAAIAgRq21pNVu5/XN+w79x3yBLCZow6G6Tm2ws+IRa0IHC"
    known_hosts.write_text(
        "".join(
            f"{name} ssh-ed25519 {key_b64}\n"
            for name in ("10.9.0.1", "[10.9.0.2]:2202", "10.9.0.20")
        )
    )
    host = make_host(
        "target",
        address="10.9.0.20",
        vars={"ansible_ssh_common_args": "-F none -J ops@10.9.0.1,10.9.0.2:2202"},
        known_hosts_file=str(known_hosts),
    )
    conn = HostConnection(host)
    hops = [c for _, c in conn._jumps]
    assert [(c.host, c.port, c.user) for c in hops] == [
        ("10.9.0.1", 22, "ops"),
        ("10.9.0.2", 2202, "root"),
    ]
    # the target tunnels through the last hop, which tunnels through the first
    assert conn._conn.gateway is hops[1] and hops[1].gateway is hops[0]
    assert hops[0].gateway is None
    # each hop's client knows its own host's key from that file, and refuses any other
    names = ["10.9.0.1", "[10.9.0.2]:2202", "10.9.0.20"]
    for c, name in zip([*hops, conn._conn], names, strict=True):
        assert isinstance(c.client._policy, paramiko.RejectPolicy)
        assert list(c.client.get_host_keys()) == [name]
        assert c.connect_kwargs["look_for_keys"] is False
        assert c.connect_kwargs["allow_agent"] is False


def test_connection_to_an_unreachable_jump_host_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loopback only: a port nothing listens on, so the jump host refuses at once."""
    from labctl.errors import HostUnreachable
    from labctl.remote import HostConnection

    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    host = make_host(
        "target",
        address="127.0.0.2",
        vars={"ansible_ssh_common_args": f"-F none -J root@127.0.0.1:{port}"},
        known_hosts_file=str(known_hosts),
    )
    conn = HostConnection(host, connect_timeout=2)
    with pytest.raises(
        HostUnreachable,
        match=r"^target: unreachable via jump host 127\.0\.0\.1: connection refused$",
    ):
        conn.open()


def test_with_a_real_inventory_only_what_it_sets_is_explicit(tmp_path: Path) -> None:
    from labctl.inventory import parse_inventory

    cfg = tmp_path / "ssh_config"
    cfg.write_text("Host *\n  User from-config\n  Port 2200\n")
    inventory = parse_inventory(
        "all:\n"
        "  vars:\n"
        f"    ansible_ssh_common_args: -F {cfg}\n"
        "  hosts:\n"
        "    alias1:\n"
        "    10.9.0.9:\n"
        "      ansible_user: admin\n"
        "      ansible_port: 22\n",
        str(tmp_path / "inventory.yml"),
    )
    alias = resolve(inventory.host("alias1"), NO_AGENT)
    assert (alias.address, alias.user, alias.port) == ("alias1", "from-config", 2200)
    pinned = resolve(inventory.host("10.9.0.9"), NO_AGENT)
    assert (pinned.user, pinned.port) == ("admin", 22)


def test_a_host_built_with_a_port_and_user_keeps_them_over_the_config(tmp_path: Path) -> None:
    """The VM lab checks a VM after boot with a Host it builds itself (no variables)."""
    ssh_vars = config(tmp_path, "Host 127.0.0.1\n  Port 2200\n  User admin\n")
    host = make_host("srv1", address="127.0.0.1", port=10031, user="lab", vars=ssh_vars)
    endpoint = resolve(host, NO_AGENT)
    assert (endpoint.port, endpoint.user) == (10031, "lab")
    default = resolve(make_host("srv1", address="127.0.0.1", vars=ssh_vars), NO_AGENT)
    assert (default.port, default.user) == (2200, "admin")
