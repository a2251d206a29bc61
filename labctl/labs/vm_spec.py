"""What a VM lab should look like (`VmLabSpec`: its name, ports, image cache, VMs), read
from an inventory (`labctl_lab_kind: vm`) or generated for `lab.up --vms N`."""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from labctl.errors import LabError
from labctl.inventory import Host, Inventory
from labctl.labs.base import DEFAULT_STATE_ROOT, HOST_NAME_RE, LAB_NAME_RE, LAB_VAR, LabStateFiles
from labctl.labs.image import DEFAULT_IMAGE_CACHE

KIND_VAR = "labctl_lab_kind"  # `vm` for this lab; the namespace lab when absent
VM_KIND = "vm"
MAX_VMS = 2  # one socket netdev joins exactly two QEMUs (listen + connect)
EXP_SUBNET = ipaddress.IPv4Network("10.78.0.0/24")  # the experiment link, inside the lab


@dataclass(frozen=True)
class VmHostSpec:
    name: str
    ssh_port: int


@dataclass(frozen=True)
class VmLabSpec(LabStateFiles):
    """A VM lab: a name, its VMs (each an SSH port on 127.0.0.1) and the experiment link."""

    name: str
    hosts: tuple[VmHostSpec, ...]
    link_port: int
    state_dir: Path
    image_cache: Path = DEFAULT_IMAGE_CACHE
    memory_mib: int = 768
    cpus: int = 1
    accel: str = "auto"  # auto (KVM if it starts a guest, else TCG), kvm, tcg

    def __post_init__(self) -> None:
        where = f"VM lab {self.name!r}"
        if not LAB_NAME_RE.match(self.name):
            raise LabError(f"lab name {self.name!r}: use 1-8 lowercase letters and digits")
        if not 1 <= len(self.hosts) <= MAX_VMS:
            raise LabError(
                f"{where}: {len(self.hosts)} VMs: choose 1 to {MAX_VMS} "
                "(the experiment link is one QEMU socket, listen + connect)"
            )
        ports = [self.link_port] + [h.ssh_port for h in self.hosts]
        if any(
            isinstance(p, bool) or not isinstance(p, int) or not 1024 <= p <= 65535 for p in ports
        ):
            raise LabError(f"{where}: ports must be 1024-65535, not {ports}")
        if len(set(ports)) != len(ports):
            raise LabError(f"{where}: ports must differ (link and SSH ports): {ports}")
        names = [h.name for h in self.hosts]
        for n in names:
            if not HOST_NAME_RE.match(n):
                raise LabError(f"{where}: host {n!r}: use lowercase letters, digits and '-'")
        if len(set(names)) != len(names):
            raise LabError(f"{where}: duplicate host names {names}")
        if not 256 <= self.memory_mib <= 16384:
            raise LabError(f"{where}: labctl_vm_memory {self.memory_mib} MiB: choose 256-16384")
        if not 1 <= self.cpus <= 16:
            raise LabError(f"{where}: labctl_vm_cpus {self.cpus}: choose 1-16")
        if self.accel not in ("auto", "kvm", "tcg"):
            raise LabError(f"{where}: labctl_vm_accel {self.accel!r}: choose auto, kvm or tcg")
        for label, path in (("state dir", self.state_dir), ("image dir", self.image_cache)):
            # QEMU option values split on commas (a literal one is written ",,"): refuse them
            if not path.is_absolute() or "," in str(path):
                raise LabError(f"{where}: {label} {path} must be absolute, without commas")

    # -- paths
    def host_dir(self, host: str) -> Path:
        return self.state_dir / "vms" / host

    def overlay(self, host: str) -> Path:
        return self.host_dir(host) / "overlay.qcow2"

    def pidfile(self, host: str) -> Path:
        return self.host_dir(host) / "qemu.pid"

    def console_log(self, host: str) -> Path:
        return self.host_dir(host) / "console.log"

    def host_key(self, host: str) -> Path:
        return self.host_dir(host) / "ssh_host_ed25519_key"

    # -- addresses
    def index(self, host: str) -> int:
        for i, h in enumerate(self.hosts, start=1):
            if h.name == host:
                return i
        raise LabError(f"VM lab {self.name} has no host {host!r}")

    def exp_address(self, host: str) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(f"{EXP_SUBNET.network_address + 10 + self.index(host)}/24")

    def mac(self, host: str, nic: int) -> str:
        """52:54:00 (QEMU's prefix), a byte from the lab name, the VM's index, the NIC."""
        lab_byte = hashlib.sha256(self.name.encode()).digest()[0]
        return f"52:54:00:{lab_byte:02x}:{self.index(host):02x}:{nic:02x}"

    def qemu_name(self, host: str) -> str:
        return f"labctl-{self.name}-{host}"

    # -- building specs
    @classmethod
    def generated(
        cls, name: str, count: int, link_port: int, state_dir: Path, **options: Any
    ) -> VmLabSpec:
        """N VMs: srv1, then cli1..; SSH ports link_port+1, link_port+2, ..."""
        if not 1 <= count <= MAX_VMS:
            raise LabError(f"--vms {count}: choose 1 to {MAX_VMS}")
        names = ["srv1"] + [f"cli{i}" for i in range(1, count)]
        hosts = tuple(VmHostSpec(n, link_port + i) for i, n in enumerate(names, start=1))
        return cls(name, hosts, link_port, state_dir, **options)

    def resized(self, count: int) -> VmLabSpec:
        return VmLabSpec.generated(
            self.name,
            count,
            self.link_port,
            self.state_dir,
            image_cache=self.image_cache,
            memory_mib=self.memory_mib,
            cpus=self.cpus,
            accel=self.accel,
        )

    @classmethod
    def from_inventory(cls, inventory: Inventory) -> VmLabSpec:
        members = [h for h in inventory.hosts.values() if h.vars.get(KIND_VAR) == VM_KIND]
        if not members:
            raise LabError(f"{inventory.path}: no host has `{KIND_VAR}: {VM_KIND}`")
        names = {str(h.vars.get(LAB_VAR, "")) for h in members}
        if len(names) != 1 or "" in names:
            raise LabError(
                f"{inventory.path}: every VM needs one and the same `{LAB_VAR}` "
                f"(found {', '.join(sorted(names)) or 'none'})"
            )
        name = names.pop()
        first = members[0].vars
        for h in members:
            if h.address != "127.0.0.1":
                raise LabError(
                    f"{inventory.path}: VM {h.name}: ansible_host must be 127.0.0.1 "
                    f"(SSH reaches a VM through its forwarded port), not {h.address}"
                )

        def number(key: str, default: int) -> int:
            value = first.get(key, default)
            if isinstance(value, str) and value.strip().isdigit():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int):
                raise LabError(f"{inventory.path}: {key} {value!r}: expected a number")
            return value

        if "labctl_vm_link_port" not in first:
            raise LabError(f"{inventory.path}: VM lab {name!r} needs `labctl_vm_link_port`")
        base = Path(inventory.path).resolve().parent

        def path(key: str, default: Path) -> Path:
            p = Path(str(first.get(key) or default))
            return p if p.is_absolute() else base / p

        return cls(
            name,
            tuple(VmHostSpec(h.name, h.port) for h in members),
            number("labctl_vm_link_port", 0),
            path("labctl_lab_state_dir", DEFAULT_STATE_ROOT / name),
            image_cache=path("labctl_vm_image_dir", DEFAULT_IMAGE_CACHE),
            memory_mib=number("labctl_vm_memory", 768),
            cpus=number("labctl_vm_cpus", 1),
            accel=str(first.get("labctl_vm_accel", "auto")),
        )

    def inventory_yaml(self) -> str:
        """An Ansible inventory of this lab (what `lab.up --vms N` writes)."""
        lab_vars: dict[str, Any] = {
            LAB_VAR: self.name,
            KIND_VAR: VM_KIND,
            "labctl_lab_state_dir": str(self.state_dir),
            "labctl_vm_link_port": self.link_port,
            "labctl_vm_memory": self.memory_mib,
            "labctl_vm_cpus": self.cpus,
            "labctl_vm_accel": self.accel,
            "labctl_vm_image_dir": str(self.image_cache),
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.key_file),
            "labctl_known_hosts_file": str(self.known_hosts_file),
            "experiment_interface": "enp0s4",
            # build modules once on the controller when it has the VMs' headers (~15x faster)
            "kmod_build_on": "auto",
            "netmap_drivers": "e1000e",  # the experiment NIC's driver, which netmap patches
        }

        def group(servers: bool) -> dict[str, Any]:
            return {
                "hosts": {
                    h.name: self.host_vars(h)
                    for h in self.hosts
                    if h.name.startswith("srv") == servers
                }
            }

        doc = {
            "all": {
                "children": {
                    "vm_lab": {
                        "vars": lab_vars,
                        "children": {"servers": group(True), "clients": group(False)},
                    }
                }
            }
        }
        return "# written by `labctl lab.up --vms N`; edits are overwritten\n" + yaml.safe_dump(
            doc, sort_keys=False
        )

    def host_vars(self, host: VmHostSpec) -> dict[str, Any]:
        return {
            "ansible_host": "127.0.0.1",
            "ansible_port": host.ssh_port,
            "experiment_address": str(self.exp_address(host.name)),
        }

    def inventory_host(self, host: VmHostSpec) -> Host:
        """The inventory view of a VM, for labctl's own SSH check after boot."""
        return Host(
            name=host.name,
            address="127.0.0.1",
            port=host.ssh_port,
            user="root",
            key_file=str(self.key_file),
            known_hosts_file=str(self.known_hosts_file),
            become=False,
            groups=("all",),
            vars={},
        )


def is_vm_inventory(inventory: Inventory) -> bool:
    return any(h.vars.get(KIND_VAR) == VM_KIND for h in inventory.hosts.values())
