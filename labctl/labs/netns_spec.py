"""What a namespace lab should look like (`LabSpec`: its name, subnet, hosts and their
containers), read from an inventory or generated, and what `status` reports of a host."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from labctl.errors import LabError
from labctl.inventory import Inventory
from labctl.labs.base import (
    DEFAULT_STATE_ROOT,
    HOST_NAME_RE,
    LAB_NAME_RE,
    LAB_VAR,
    LabStateFiles,
)

CONTAINERS_VAR = "labctl_lab_containers"  # host var: how many containers on its docker0
MAX_CONTAINERS = 16
CONTAINER_BRIDGE = "docker0"
CONTAINER_SUBNET_SHIFT = 100  # added to the lab subnet's second octet, see container_subnet


@dataclass(frozen=True)
class LabHostSpec:
    name: str
    address: str
    containers: int = 0


@dataclass(frozen=True)
class LabSpec(LabStateFiles):
    """What a lab should look like: a name (prefix of its namespaces and links), a /24, hosts."""

    name: str
    subnet: ipaddress.IPv4Network
    hosts: tuple[LabHostSpec, ...]
    state_dir: Path

    def __post_init__(self) -> None:
        if not LAB_NAME_RE.match(self.name):
            raise LabError(f"lab name {self.name!r}: use 1-8 lowercase letters and digits")
        seen: set[str] = set()
        for h in self.hosts:
            if not HOST_NAME_RE.match(h.name):
                raise LabError(f"lab host {h.name!r}: use lowercase letters, digits and '-'")
            try:
                addr = ipaddress.ip_address(h.address)
            except ValueError:
                raise LabError(f"lab host {h.name}: {h.address!r} is not an IP address") from None
            if addr not in self.subnet or addr in (
                self.subnet.network_address,
                self.subnet.broadcast_address,
                self.gateway,
            ):
                raise LabError(
                    f"lab host {h.name}: address {h.address} not usable in {self.subnet}"
                )
            if h.name in seen or h.address in seen:
                raise LabError(f"lab host {h.name}: duplicate name or address")
            seen.update((h.name, h.address))
        for h in self.hosts:
            n = h.containers
            if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_CONTAINERS:
                raise LabError(
                    f"lab host {h.name}: {CONTAINERS_VAR} {n!r}: choose 0 to {MAX_CONTAINERS}"
                )
            if n and self.container_subnet(h.name).overlaps(self.subnet):
                raise LabError(
                    f"lab host {h.name}: container subnet {self.container_subnet(h.name)} "
                    f"overlaps the lab subnet {self.subnet}: choose a smaller labctl_lab_subnet"
                )

    @property
    def bridge(self) -> str:
        return f"{self.name}-br"

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return self.subnet.network_address + 1

    def netns(self, host: str) -> str:
        return f"{self.name}-{host}"

    def veth(self, index: int) -> str:
        return f"{self.name}-v{index}"

    def host_index(self, host: str) -> int:
        """The host's 1-based position: its veth is veth(index)."""
        for index, h in enumerate(self.hosts, start=1):
            if h.name == host:
                return index
        raise LabError(f"lab {self.name} has no host {host!r}")

    def container_subnet(self, host: str) -> ipaddress.IPv4Network:
        """The /24 of a host's docker0: 10.S.I.0/24, where I is the host's index (1-255) and
        S = (second octet of the lab subnet + 100) mod 256. It stays inside 10.0.0.0/8, is
        one /24 per host, and lies a /16 away from the lab subnet's own, so it can overlap
        that only when the lab subnet is wider than a /16, which the spec refuses. The subnet
        exists only inside the host's namespace (nothing routes it elsewhere), so labs that
        happen to share it do not meet. docker0 takes .1, container k takes .k+1."""
        index = self.host_index(host)
        if index > 255:
            raise LabError(f"lab host {host}: containers only on the first 255 hosts")
        second = (self.subnet.network_address.packed[1] + CONTAINER_SUBNET_SHIFT) % 256
        return ipaddress.IPv4Network(f"10.{second}.{index}.0/24")

    def container_address(self, host: str, k: int) -> ipaddress.IPv4Address:
        return self.container_subnet(host).network_address + 1 + k

    def host_dir(self, host: str) -> Path:
        return self.state_dir / "hosts" / host

    @classmethod
    def generated(
        cls,
        name: str,
        subnet: str,
        count: int,
        state_dir: Path,
        containers_on: dict[str, int] | None = None,
    ) -> LabSpec:
        """N hosts: srv1, then cli1..cli(N-1), addresses from .11 on; `containers_on` gives
        hosts containers by name."""
        if not 1 <= count <= 200:
            raise LabError(f"--hosts {count}: choose 1 to 200 hosts")
        net = ipaddress.IPv4Network(subnet)
        names = ["srv1"] + [f"cli{i}" for i in range(1, count)]
        containers = dict(containers_on or {})
        unknown = set(containers) - set(names)
        if unknown:
            raise LabError(f"containers on unknown hosts: {', '.join(sorted(unknown))}")
        hosts = tuple(
            LabHostSpec(n, str(net.network_address + 11 + i), containers.get(n, 0))
            for i, n in enumerate(names)
        )
        return cls(name, net, hosts, state_dir)

    @classmethod
    def from_inventory(cls, inventory: Inventory) -> LabSpec:
        """The lab made of the inventory's hosts that carry `labctl_lab` (one lab per inventory)."""
        members = [h for h in inventory.hosts.values() if LAB_VAR in h.vars]
        if not members:
            raise LabError(f"{inventory.path}: no host has `{LAB_VAR}`: not a local-lab inventory")
        names = {str(h.vars[LAB_VAR]) for h in members}
        if len(names) != 1:
            raise LabError(f"{inventory.path}: hosts name several labs: {', '.join(sorted(names))}")
        first = members[0]
        name = names.pop()
        subnet = first.vars.get("labctl_lab_subnet")
        if not subnet:
            raise LabError(f"{inventory.path}: lab {name!r} needs `labctl_lab_subnet`")
        state = first.vars.get("labctl_lab_state_dir") or str(DEFAULT_STATE_ROOT / name)
        state_dir = Path(state)
        if not state_dir.is_absolute():
            state_dir = Path(inventory.path).resolve().parent / state_dir
        try:
            net = ipaddress.IPv4Network(str(subnet))
        except ValueError as exc:
            raise LabError(f"{inventory.path}: labctl_lab_subnet: {exc}") from exc
        hosts = []
        for h in members:
            count = h.vars.get(CONTAINERS_VAR, 0)
            if isinstance(count, str) and count.strip().isdigit():
                count = int(count)
            if isinstance(count, bool) or not isinstance(count, int):
                raise LabError(
                    f"{inventory.path}: host {h.name}: {CONTAINERS_VAR} {count!r}: "
                    f"choose 0 to {MAX_CONTAINERS}"
                )
            hosts.append(LabHostSpec(h.name, h.address, count))
        return cls(name, net, tuple(hosts), state_dir)

    @property
    def containers(self) -> dict[str, int]:
        """Hosts that have containers, with their count."""
        return {h.name: h.containers for h in self.hosts if h.containers}

    def inventory_yaml(self) -> str:
        """An Ansible-format inventory for this lab (what `lab.up --hosts N` writes)."""
        doc = {
            "all": {
                "children": {
                    "local_lab": {
                        "vars": {
                            LAB_VAR: self.name,
                            "labctl_lab_subnet": str(self.subnet),
                            "labctl_lab_state_dir": str(self.state_dir),
                            "ansible_user": "root",
                            "ansible_ssh_private_key_file": str(self.key_file),
                            "labctl_known_hosts_file": str(self.known_hosts_file),
                        },
                        "children": {
                            "servers": {
                                "hosts": {
                                    h.name: _host_vars(h)
                                    for h in self.hosts
                                    if h.name.startswith("srv")
                                }
                            },
                            "clients": {
                                "hosts": {
                                    h.name: _host_vars(h)
                                    for h in self.hosts
                                    if not h.name.startswith("srv")
                                }
                            },
                        },
                    }
                }
            }
        }
        return "# written by `labctl lab.up`; edits are overwritten\n" + yaml.safe_dump(
            doc, sort_keys=False
        )


def _host_vars(host: LabHostSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"ansible_host": host.address}
    if host.containers:
        out[CONTAINERS_VAR] = host.containers
    return out


@dataclass(frozen=True)
class LabHostStatus:
    name: str
    address: str
    netns: str
    netns_exists: bool
    sshd_pid: int | None
    sshd_running: bool
    ssh_port_open: bool
    containers: int = 0  # of the host's containers, those present in its mount namespace
