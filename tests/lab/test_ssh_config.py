"""SSH as users set it up, on the namespace lab: an ssh config, ProxyJump, the SSH agent.

Every ssh config is the test's own file, named by `-F` in ansible_ssh_common_args (`-F none`
where no config is wanted); host keys come from the lab's own known_hosts file. Nothing here
reads or writes the machine's ~/.ssh.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from labctl.errors import HostUnreachable
from labctl.inventory import Host, load_inventory
from labctl.remote import HostConnection, ShellScript
from tests.support import run_labctl

from .conftest import NamespaceLab

pytestmark = pytest.mark.lab

WHO_DIALLED = ShellScript('echo "$SSH_CONNECTION"')  # "client port server port"


def write_inventory(path: Path, hosts: dict[str, dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"all": {"hosts": hosts}}, sort_keys=False))
    return path


def with_vars(host: Host, **changes: Any) -> Host:
    """The lab host with inventory variables changed (None: removed), as a new Host."""
    merged = {**host.vars, **changes}
    return dataclasses.replace(host, vars={k: v for k, v in merged.items() if v is not None})


def labctl_facts(inventory: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """`labctl facts --json` as a user runs it: the hosts' facts, or what stopped each."""
    proc = run_labctl("facts", "-i", str(inventory), "--json", timeout=120, env=env)
    assert proc.stdout, proc.stderr
    hosts: dict[str, Any] = json.loads(proc.stdout)["hosts"]
    return hosts


def client_address(conn: HostConnection) -> str:
    """The address the host saw the SSH connection come from."""
    return conn.run(WHO_DIALLED, check=True).stdout.split()[0]


def test_an_alias_gets_hostname_user_port_and_key_from_the_ssh_config(
    lab: NamespaceLab, tmp_path: Path
) -> None:
    cli1 = lab.inventory_host("cli1")
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host lab-alias\n  HostName {cli1.address}\n  User root\n  Port {cli1.port}\n"
        f"  IdentityFile {cli1.key_file}\n"
        # the same machine, as a user that the config names and the host does not have
        f"Host lab-stranger\n  HostName {cli1.address}\n  User labctl-nobody\n"
        f"  IdentityFile {cli1.key_file}\n"
        # a port nothing listens on: the config's Port is used, not 22
        f"Host lab-closed\n  HostName {cli1.address}\n  Port 2\n  IdentityFile {cli1.key_file}\n"
    )
    # The inventory gives only the name, the config and the lab's known_hosts file.
    common = {
        "ansible_ssh_common_args": f"-F {config}",
        "labctl_known_hosts_file": cli1.known_hosts_file,
    }
    inventory = write_inventory(tmp_path / "alias.yml", {"lab-alias": common})
    facts = labctl_facts(inventory)
    assert facts["lab-alias"]["hostname"] == "cli1", facts
    assert facts["lab-alias"]["ssh_address"] == cli1.address

    both = write_inventory(
        tmp_path / "both.yml", {n: common for n in ("lab-stranger", "lab-closed")}
    )
    loaded = load_inventory(both)
    with pytest.raises(HostUnreachable, match=r"^lab-stranger: unreachable: authentication"):
        HostConnection(loaded.host("lab-stranger")).open()
    with pytest.raises(HostUnreachable, match=r"^lab-closed: unreachable: connection refused"):
        HostConnection(loaded.host("lab-closed")).open()


def test_proxyjump_reaches_cli1_through_srv1(lab: NamespaceLab) -> None:
    srv1, cli1 = lab.inventory_host("srv1"), lab.inventory_host("cli1")
    direct = client_address(lab.host("cli1"))
    assert direct != srv1.address  # direct, cli1 sees the controller's bridge address
    jump = f"-F none -o ProxyJump=root@{srv1.address}:{srv1.port}"
    with HostConnection(with_vars(cli1, ansible_ssh_common_args=jump)) as conn:
        assert [e.address for e in conn.endpoint.jumps()] == [srv1.address]
        seen = conn.run(WHO_DIALLED, check=True).stdout.split()
        # through the tunnel, cli1's sshd is dialled by srv1, at cli1's own address
        assert (seen[0], seen[2]) == (srv1.address, cli1.address)
        assert conn.run(["hostname"], check=True).stdout.strip() == "cli1"


def test_proxyjump_chain_and_from_the_ssh_config_via_the_cli(
    lab: NamespaceLab, tmp_path: Path
) -> None:
    srv1, cli1, cli2 = (lab.inventory_host(n) for n in ("srv1", "cli1", "cli2"))
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host jump-a\n  HostName {srv1.address}\n"
        f"Host jump-b\n  HostName {cli1.address}\n"
        f"Host target\n  HostName {cli2.address}\n  ProxyJump jump-a,jump-b\n"
        f"  IdentityFile {cli2.key_file}\n"
    )
    inventory = write_inventory(
        tmp_path / "inventory.yml",
        {
            "target": {
                "ansible_ssh_common_args": f"-F {config}",
                "labctl_known_hosts_file": cli2.known_hosts_file,
            }
        },
    )
    facts = labctl_facts(inventory)
    assert facts["target"]["hostname"] == "cli2", facts
    # cli2 was dialled by the last hop, cli1, which srv1 had let through
    assert facts["target"]["controller_address"] == cli1.address


def test_a_wrong_or_unknown_host_key_of_the_jump_host_is_refused(
    lab: NamespaceLab, tmp_path: Path
) -> None:
    srv1, cli1, cli2 = (lab.inventory_host(n) for n in ("srv1", "cli1", "cli2"))
    real = Path(str(cli1.known_hosts_file)).read_text().splitlines()
    by_address = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in real}
    # cli1's own key is right; srv1, the jump host, is recorded with cli2's key
    forged = tmp_path / "forged_known_hosts"
    forged.write_text(
        f"{cli1.address} {by_address[cli1.address]}\n{srv1.address} {by_address[cli2.address]}\n"
    )
    missing = tmp_path / "missing_known_hosts"
    missing.write_text(f"{cli1.address} {by_address[cli1.address]}\n")
    jump = f"-F none -J {srv1.address}"
    for known_hosts, why in [(forged, "host key mismatch"), (missing, "host key unknown")]:
        host = dataclasses.replace(
            with_vars(cli1, ansible_ssh_common_args=jump), known_hosts_file=str(known_hosts)
        )
        conn = HostConnection(host)
        with pytest.raises(
            HostUnreachable, match=rf"^cli1: unreachable via jump host {srv1.address}: {why}"
        ) as info:
            conn.open()
        assert "\n" not in str(info.value)
        conn.close()


def test_a_jump_host_that_cannot_reach_the_target_says_so(lab: NamespaceLab) -> None:
    srv1, cli1 = lab.inventory_host("srv1"), lab.inventory_host("cli1")
    jump = f"-F none -J {srv1.address}"
    # port 2 on cli1: nothing listens there
    closed = dataclasses.replace(
        with_vars(cli1, ansible_ssh_common_args=jump, ansible_port=2), port=2
    )
    with pytest.raises(
        HostUnreachable,
        match=rf"^cli1: unreachable: jump host {srv1.address} cannot reach {cli1.address}:2",
    ):
        HostConnection(closed).open()


@pytest.fixture
def ssh_agent(tmp_path: Path) -> Iterator[str]:
    """An ssh-agent of the test's own (in the foreground: its PID is the one we started),
    listening on a socket in tmp_path; killed by that PID whatever happens."""
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(
        ["ssh-agent", "-D", "-a", str(sock)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert agent.poll() is None and time.monotonic() < deadline, "ssh-agent did not start"
            time.sleep(0.05)
        yield str(sock)
    finally:
        os.kill(agent.pid, signal.SIGTERM)
        agent.wait(timeout=10)


def test_the_ssh_agent_authenticates_when_the_inventory_names_no_key(
    lab: NamespaceLab, tmp_path: Path, ssh_agent: str
) -> None:
    cli2 = lab.inventory_host("cli2")
    inventory = write_inventory(
        tmp_path / "inventory.yml",
        {
            "cli2": {
                "ansible_host": cli2.address,
                "ansible_ssh_common_args": "-F none",
                "labctl_known_hosts_file": cli2.known_hosts_file,
            }
        },
    )
    # An empty agent, then no agent at all: refused, so nothing else holds a usable key.
    no_key = "cli2: unreachable: authentication refused: no key to offer"
    empty = labctl_facts(inventory, env={"SSH_AUTH_SOCK": ssh_agent})
    assert empty["cli2"]["error"].startswith(no_key), empty
    none = labctl_facts(inventory, env={"SSH_AUTH_SOCK": ""})
    assert none["cli2"]["error"].startswith(no_key), none
    added = subprocess.run(
        ["ssh-add", "-q", str(cli2.key_file)],
        env={**os.environ, "SSH_AUTH_SOCK": ssh_agent},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert added.returncode == 0, added.stderr
    facts = labctl_facts(inventory, env={"SSH_AUTH_SOCK": ssh_agent})
    assert facts["cli2"]["hostname"] == "cli2", facts
