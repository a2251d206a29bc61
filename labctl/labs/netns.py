"""The local lab: network namespaces as hosts, each with its own sshd (DESIGN.md section 1).

Each host is a network namespace joined by a veth pair to one bridge (the docker0 pattern),
with its own address, hostname (UTS namespace), a private /run (sshd 9.2 needs a root-owned
0755 /run/sshd), a private /root that is also its work directory (the controller's /root
rc files would otherwise run on every SSH command), and an OpenSSH sshd with its own host key.

`up` records every namespace, link and process it makes in `lab.json` as soon as it exists,
so `down` removes exactly those, even after an `up` that failed half-way.

A host may also carry "containers" (`labctl_lab_containers: N`), made as a docker host makes
them: inside the host's network namespace a bridge `docker0`, and N network namespaces c1..cN
created in the host's own mount namespace (so `ip netns list` over SSH on the host shows them,
and only there), each joined to docker0 by a veth pair: `veth<k>` on the host, `eth0` inside.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from labctl.errors import LabError
from labctl.inventory import Inventory
from labctl.procs import process_start_time

SSHD = "/usr/sbin/sshd"
LAB_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,7}$")  # prefixes of 15-char interface names
HOST_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")  # goes into netns names, paths, hostname
DEFAULT_STATE_ROOT = Path("/var/lib/labctl")
LAB_VAR = "labctl_lab"  # inventory var naming the lab a host belongs to
CONTAINERS_VAR = "labctl_lab_containers"  # host var: how many containers on its docker0
MAX_CONTAINERS = 16
CONTAINER_BRIDGE = "docker0"
CONTAINER_SUBNET_SHIFT = 100  # added to the lab subnet's second octet, see container_subnet


@dataclass(frozen=True)
class LabHostSpec:
    name: str
    address: str
    containers: int = 0


class LabStateFiles:
    """The files every kind of lab keeps in its state directory."""

    state_dir: Path

    @property
    def key_file(self) -> Path:
        return self.state_dir / "id_ed25519"

    @property
    def known_hosts_file(self) -> Path:
        return self.state_dir / "known_hosts"

    @property
    def record_file(self) -> Path:
        return self.state_dir / "lab.json"


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


@dataclass
class LabChange:
    """One thing `up` or `down` did (or found already in place)."""

    what: str
    changed: bool


@dataclass
class LabReport:
    lab: str
    changes: list[LabChange] = field(default_factory=list)

    @property
    def changed(self) -> int:
        return sum(c.changed for c in self.changes)


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


# ---------------------------------------------------------------------------- local commands


def _run(
    argv: Sequence[str], check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=60,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"`{' '.join(argv)}` did not finish within 60 s") from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise LabError(f"`{' '.join(argv)}` failed: {detail[0] if detail else proc.returncode}")
    return proc


def _link_exists(name: str, netns: str | None = None) -> bool:
    argv = ["ip"] + (["-n", netns] if netns else []) + ["-j", "link", "show", "dev", name]
    return _run(argv, check=False).returncode == 0


def _netns_list() -> set[str]:
    out = _run(["ip", "-j", "netns", "list"], check=False).stdout.strip()
    return {entry["name"] for entry in json.loads(out)} if out else set()


def _is_our_sshd(pid: int, start: int | None, config: Path) -> bool:
    """True only if PID is still the sshd we started: same start time, binary and config."""
    if process_start_time(pid) != start or start is None:
        return False
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
        # sshd rewrites its argv into a title: "sshd: /usr/sbin/sshd -f CONFIG [listener] ..."
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return exe == SSHD and f" -f {config} ".encode() in title + b" "


def _terminate(pids: Sequence[int], grace: float = 3.0) -> None:
    """SIGTERM, wait (bounded), then SIGKILL what is left. PIDs only, never names."""
    starts = {pid: process_start_time(pid) for pid in pids}
    alive = [p for p, s in starts.items() if s is not None]
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = [p for p in alive if process_start_time(p) == starts[p]]
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _netns_pids(netns: str) -> list[int]:
    out = _run(["ip", "netns", "pids", netns], check=False).stdout
    return [int(p) for p in out.split()]


def _in_host(
    sshd_pid: int, argv: Sequence[str], check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command in a lab host's mount, network and UTS namespaces, those of its sshd:
    what a shell on the host sees, its /run/netns (its containers) included."""
    nsenter = ["nsenter", "--target", str(sshd_pid), "--mount", "--net", "--uts", "--"]
    return _run([*nsenter, *argv], check=check, input=input)


def _host_netns_list(sshd_pid: int) -> set[str]:
    """Network namespaces named in the host's own /run/netns (its containers)."""
    out = _in_host(sshd_pid, ["ip", "-j", "netns", "list"]).stdout.strip()
    return {entry["name"] for entry in json.loads(out)} if out else set()


# SO_NETNS_COOKIE (Linux >= 5.14): a 64-bit id of a network namespace, never reused, unlike
# the namespace's inode number, which a later namespace may get once this one is gone.
_COOKIE_PY = (
    "import socket; s = socket.socket(socket.AF_UNIX); "
    "print(int.from_bytes(s.getsockopt(socket.SOL_SOCKET, 71, 8), 'little'))"
)


def _netns_identity(path: str) -> tuple[int, int | None] | None:
    """(inode, cookie) of the network namespace at PATH (/proc/PID/ns/net or a bind mount);
    None if it is gone; cookie None if the kernel has no SO_NETNS_COOKIE."""
    try:
        inode = os.stat(path).st_ino
    except OSError:
        return None
    proc = _run(["nsenter", f"--net={path}", "--", sys.executable, "-c", _COOKIE_PY], check=False)
    cookie = proc.stdout.strip()
    return inode, int(cookie) if proc.returncode == 0 and cookie.isdigit() else None


def _pids_in_netns(wanted: dict[int, int | None]) -> dict[int, list[int]]:
    """PIDs of the processes whose network namespace is one of WANTED (inode -> cookie).

    One pass over /proc compares each process's /proc/PID/ns/net inode; for an inode that
    matches, the cookie of one of its processes confirms that the namespace is still the one
    recorded and not a later one that was given the same inode number. Processes that share
    an inode at one moment share the namespace, so one confirmation covers them all."""
    found: dict[int, list[int]] = {}
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            inode = os.stat(f"/proc/{entry.name}/ns/net").st_ino
        except OSError:  # gone, a zombie, or a kernel thread we may not look at
            continue
        if inode in wanted:
            found.setdefault(inode, []).append(int(entry.name))
    confirmed: dict[int, list[int]] = {}
    for inode, pids in found.items():
        cookie = wanted[inode]
        for pid in pids:
            identity = _netns_identity(f"/proc/{pid}/ns/net")
            if identity is None:
                continue  # that one exited meanwhile: ask the next
            if identity[0] == inode and (cookie is None or identity[1] == cookie):
                confirmed[inode] = pids
            break
    return confirmed


def _remove(kind: str, name: str, present_netns: set[str]) -> bool:
    """Delete a namespace or link; False if it was already gone."""
    if kind == "netns" and name not in present_netns:
        return False
    argv = ["ip", "netns", "del", name] if kind == "netns" else ["ip", "link", "del", name]
    proc = _run(argv, check=False)
    if proc.returncode == 0:
        return True
    if "Cannot find device" in proc.stderr or "No such file" in proc.stderr:
        return False
    raise LabError(f"removing {kind} {name}: {proc.stderr.strip()}")


def _atomic_write(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    tmp.replace(path)


# ---------------------------------------------------------------------------- the lab


SSHD_CONFIG = """\
# written by labctl for lab host {host}
ListenAddress {address}
Port 22
HostKey {host_key}
PidFile {pid_file}
UsePAM no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile .ssh/authorized_keys
# many hosts run steps in parallel, each over several channels
MaxStartups 200:30:400
MaxSessions 64
UseDNS no
PrintMotd no
Subsystem sftp internal-sftp
"""


class RecordedLab:
    """What every kind of lab shares: the record of what `up` made (lab.json, written
    before each thing is made, so `down` finds it even after a crash), progress lines, keys."""

    def __init__(self, record_file: Path, progress: Callable[[str], None] | None) -> None:
        self._record_file = record_file
        self._say = progress or (lambda _msg: None)
        self._record: dict[str, Any] = {}

    def _load_record(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self._record_file.read_text())
            return data
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise LabError(f"{self._record_file}: unreadable lab record: {exc}") from exc

    def _save_record(self) -> None:
        _atomic_write(self._record_file, json.dumps(self._record, indent=2) + "\n", 0o600)

    def _note(self, kind: str, name: str, **extra: Any) -> None:
        self._record.setdefault(kind, {})[name] = extra
        self._save_record()

    @staticmethod
    def _purge_state_files(state: Path) -> None:
        """The files `up` writes in every lab's state directory (never anything else)."""
        for name in (
            "id_ed25519",
            "id_ed25519.pub",
            "known_hosts",
            "inventory.yml",
            "lab.json.tmp",
            "known_hosts.tmp",
        ):
            (state / name).unlink(missing_ok=True)

    @staticmethod
    def _ensure_key(path: Path, comment: str) -> LabChange:
        if path.exists():
            return LabChange(f"key {path.name}", False)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
        return LabChange(f"key {path.name}", True)


class LocalLab(RecordedLab):
    """Brings a `LabSpec` up and down on this machine. Needs root."""

    def __init__(self, spec: LabSpec, progress: Callable[[str], None] | None = None) -> None:
        super().__init__(spec.record_file, progress)
        self.spec = spec

    @staticmethod
    def _require_root(action: str) -> None:
        if os.geteuid() != 0:
            raise LabError(
                f"lab.{action} needs root (it makes namespaces, links and sshd); run it as root"
            )

    # -- up
    def up(self) -> LabReport:
        self._require_root("up")
        for tool in ("ip", "unshare", "ssh-keygen", "nsenter"):
            if shutil.which(tool) is None:
                raise LabError(
                    f"{tool} not found: apt-get install iproute2 util-linux openssh-client"
                )
        if not os.access(SSHD, os.X_OK):
            raise LabError(f"{SSHD} not found: apt-get install openssh-server")
        spec = self.spec
        report = LabReport(spec.name)
        spec.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._record = self._load_record()
        self._check_same_lab()
        self._record.update(
            name=spec.name,
            subnet=str(spec.subnet),
            hosts={h.name: h.address for h in spec.hosts},
            containers=spec.containers,
        )
        self._save_record()

        report.changes.append(self._ensure_key(spec.key_file, f"labctl@{spec.name}"))
        report.changes.append(self._ensure_bridge())
        known_hosts = []
        for index, host in enumerate(spec.hosts, start=1):
            report.changes.extend(self._ensure_host(index, host))
            pub = (spec.host_dir(host.name) / "ssh_host_ed25519_key.pub").read_text().split()
            known_hosts.append(f"{host.address} {pub[0]} {pub[1]}\n")
        text = "".join(known_hosts)
        kh = spec.known_hosts_file
        if not kh.exists() or kh.read_text() != text:
            _atomic_write(kh, text)
            report.changes.append(LabChange("known_hosts", True))
        self._wait_for_ssh()
        return report

    def _check_same_lab(self) -> None:
        """A state directory holds one lab: refuse to reshape a lab that is up."""
        rec = self._record
        hosts = {h.name: h.address for h in self.spec.hosts}
        if rec.get("hosts") and (
            rec.get("name") != self.spec.name
            or rec.get("subnet") != str(self.spec.subnet)
            or rec.get("hosts") != hosts
            or rec.get("containers", {}) != self.spec.containers
        ):
            containers = rec.get("containers") or {}
            raise LabError(
                f"{self.spec.record_file} holds lab {rec.get('name')!r} ({rec.get('subnet')}, "
                f"hosts {', '.join(rec['hosts'])}"
                + "".join(f", {n} containers on {h}" for h, n in containers.items())
                + ") and it differs from the one asked for; run lab.down first to change it"
            )
        self._check_subnet_free()

    def _check_subnet_free(self) -> None:
        """Refuse a subnet that this machine already routes through another device."""
        out = _run(["ip", "-j", "-4", "route", "show"]).stdout
        for route in json.loads(out or "[]"):
            dst = route.get("dst", "")
            if dst in ("default", "") or route.get("dev") == self.spec.bridge:
                continue
            try:
                net = ipaddress.IPv4Network(dst if "/" in dst else f"{dst}/32", strict=False)
            except ValueError:
                continue
            if net.overlaps(self.spec.subnet):
                raise LabError(
                    f"lab subnet {self.spec.subnet} overlaps {dst} on {route.get('dev')}: "
                    f"choose another labctl_lab_subnet"
                )

    def _ensure_bridge(self) -> LabChange:
        br = self.spec.bridge
        if _link_exists(br):
            if br not in self._record.get("bridge", {}):
                raise LabError(f"a link named {br} exists and this lab did not make it")
            return LabChange(f"bridge {br}", False)
        self._note("bridge", br)  # recorded first: an interrupted up is still undone by down
        _run(["ip", "link", "add", br, "type", "bridge"])
        prefix = self.spec.subnet.prefixlen
        _run(["ip", "addr", "add", f"{self.spec.gateway}/{prefix}", "dev", br])
        _run(["ip", "link", "set", br, "up"])
        return LabChange(f"bridge {br}", True)

    def _ensure_host(self, index: int, host: LabHostSpec) -> list[LabChange]:
        spec = self.spec
        ns, veth = spec.netns(host.name), spec.veth(index)
        changes = []
        if ns not in _netns_list():
            self._note("netns", ns)
            _run(["ip", "netns", "add", ns])
            changes.append(LabChange(f"netns {ns}", True))
        elif ns not in self._record.get("netns", {}):
            raise LabError(f"a namespace named {ns} exists and this lab did not make it")
        if not _link_exists(veth):
            self._note("veth", veth)
            # The namespace end is created inside it, named eth0 like a container's.
            _run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])
            changes.append(LabChange(f"veth {veth}", True))
        elif veth not in self._record.get("veth", {}):
            raise LabError(f"a link named {veth} exists and this lab did not make it")
        if self._configure_veth(ns, veth, host.address):
            changes.append(LabChange(f"address {host.address}", True))
        changes.append(self._ensure_sshd(host))
        if host.containers:
            changes.extend(self._ensure_containers(host))
        return changes

    # -- containers (made after the host's sshd: they live in its mount namespace)
    def _ensure_containers(self, host: LabHostSpec) -> list[LabChange]:
        spec = self.spec
        sshd_pid = int(self._record["sshd"][host.name]["pid"])  # _ensure_sshd checked it
        subnet = spec.container_subnet(host.name)
        changes = [self._ensure_docker0(host, sshd_pid, subnet)]
        present = _host_netns_list(sshd_pid)
        mntns = os.stat(f"/proc/{sshd_pid}/ns/mnt").st_ino
        for k in range(1, host.containers + 1):
            changes.append(self._ensure_container(host, k, sshd_pid, present, mntns))
        return changes

    def _ensure_docker0(
        self, host: LabHostSpec, sshd_pid: int, subnet: ipaddress.IPv4Network
    ) -> LabChange:
        """The bridge lives in the host's network namespace, which outlives its sshd."""
        address = f"{subnet.network_address + 1}/{subnet.prefixlen}"
        what = f"{CONTAINER_BRIDGE} {host.name}"
        proc = _in_host(sshd_pid, ["ip", "-j", "addr", "show", "dev", CONTAINER_BRIDGE], False)
        if proc.returncode == 0:
            if host.name not in self._record.get(CONTAINER_BRIDGE, {}):
                raise LabError(
                    f"{host.name}: a link named {CONTAINER_BRIDGE} exists and this lab did not "
                    f"make it"
                )
            info = (json.loads(proc.stdout) or [{}])[0]
            locals_ = {f"{a.get('local')}/{a.get('prefixlen')}" for a in info.get("addr_info", [])}
            if address in locals_ and "UP" in info.get("flags", []):
                return LabChange(what, False)
        else:
            self._note(CONTAINER_BRIDGE, host.name, netns=self.spec.netns(host.name))
            _in_host(sshd_pid, ["ip", "link", "add", CONTAINER_BRIDGE, "type", "bridge"])
        _in_host(sshd_pid, ["ip", "addr", "replace", address, "dev", CONTAINER_BRIDGE])
        _in_host(sshd_pid, ["ip", "link", "set", CONTAINER_BRIDGE, "up"])
        return LabChange(what, True)

    def _ensure_container(
        self, host: LabHostSpec, k: int, sshd_pid: int, present: set[str], mntns: int
    ) -> LabChange:
        key, name, veth = f"{host.name}/c{k}", f"c{k}", f"veth{k}"
        containers = self._record.setdefault("container", {})
        rec = containers.get(key)
        made, why = False, ""
        if name in present and rec is None:
            raise LabError(
                f"{host.name}: a namespace named {name} exists and this lab did not make it"
            )
        if name not in present:
            if rec is not None:
                # Recorded but not in the host's /run/netns: its sshd was restarted, and the
                # entry went with the old mount namespace. Clear what may be left of the old
                # one (its processes, its veth end on docker0), then make it anew.
                restarted = rec.get("mntns") != mntns
                why = "sshd restarted" if restarted else "it was gone"
                left = self._clear_stale_container(key, rec, sshd_pid)
                if left:
                    why += f", stopped {left} processes left in the old one"
                self._say(f"{host.name}: container {name} re-made ({why})")
            elif _in_host(sshd_pid, ["ip", "link", "show", "dev", veth], False).returncode == 0:
                raise LabError(
                    f"{host.name}: a link named {veth} exists and this lab did not make it"
                )
            self._note(
                "container",
                key,
                host=host.name,
                netns=name,
                veth=veth,
                address=str(self.spec.container_address(host.name, k)),
                mntns=mntns,
            )
            _in_host(sshd_pid, ["ip", "netns", "add", name])
            identity = _netns_identity(f"/proc/{sshd_pid}/root/run/netns/{name}")
            if identity is not None:
                containers[key].update(inode=identity[0], cookie=identity[1])
                self._save_record()
            made = True
        if _in_host(sshd_pid, ["ip", "link", "show", "dev", veth], False).returncode != 0:
            _in_host(
                sshd_pid,
                ["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name],
            )
            made = True
        if self._configure_container(host, k, sshd_pid):
            made = True
        return LabChange(f"container {key}" + (f" re-made: {why}" if why else ""), made)

    def _configure_container(self, host: LabHostSpec, k: int, sshd_pid: int) -> bool:
        """veth<k> on docker0 and up; in c<k>: lo and eth0 up, its address, the default route
        via docker0. False if all of it was already so."""
        name, veth = f"c{k}", f"veth{k}"
        subnet = self.spec.container_subnet(host.name)
        gateway = str(subnet.network_address + 1)
        address = f"{self.spec.container_address(host.name, k)}/{subnet.prefixlen}"
        link = json.loads(_in_host(sshd_pid, ["ip", "-j", "link", "show", "dev", veth]).stdout)[0]
        inside = json.loads(_in_host(sshd_pid, ["ip", "-n", name, "-j", "addr", "show"]).stdout)
        by_name = {i.get("ifname"): i for i in inside}
        eth0, lo = by_name.get("eth0", {}), by_name.get("lo", {})
        routes = json.loads(
            _in_host(sshd_pid, ["ip", "-n", name, "-j", "route", "show", "default"]).stdout or "[]"
        )
        if (
            link.get("master") == CONTAINER_BRIDGE
            and "UP" in link.get("flags", [])
            and "UP" in lo.get("flags", [])
            and "UP" in eth0.get("flags", [])
            and address
            in {f"{a.get('local')}/{a.get('prefixlen')}" for a in eth0.get("addr_info", [])}
            and any(r.get("gateway") == gateway for r in routes)
        ):
            return False
        _in_host(sshd_pid, ["ip", "link", "set", veth, "master", CONTAINER_BRIDGE, "up"])
        batch = (
            f"link set lo up\nlink set eth0 up\naddr replace {address} dev eth0\n"
            f"route replace default via {gateway} dev eth0\n"
        )
        _in_host(sshd_pid, ["ip", "-n", name, "-batch", "-"], input=batch)
        return True

    def _clear_stale_container(self, key: str, rec: dict[str, Any], sshd_pid: int) -> int:
        """Stop the processes still in a container's old namespace and remove its veth end
        from the host; returns how many processes were stopped."""
        stopped = 0
        if rec.get("inode"):
            for pids in _pids_in_netns({rec["inode"]: rec.get("cookie")}).values():
                _terminate(pids)
                stopped += len(pids)
        # Deleting one end of a veth pair deletes both; "Cannot find device" is fine too.
        _in_host(sshd_pid, ["ip", "link", "del", rec.get("veth", "")], check=False)
        return stopped

    def _configure_veth(self, ns: str, veth: str, address: str) -> bool:
        """Address and links up; also repairs what an interrupted `up` left half-done."""
        out = _run(["ip", "-j", "-n", ns, "addr", "show", "dev", "eth0"]).stdout
        info = (json.loads(out) or [{}])[0]
        has_addr = any(a.get("local") == address for a in info.get("addr_info", []))
        if has_addr and "UP" in info.get("flags", []):
            return False
        prefix = self.spec.subnet.prefixlen
        _run(["ip", "link", "set", veth, "master", self.spec.bridge, "up"])
        _run(["ip", "-n", ns, "addr", "replace", f"{address}/{prefix}", "dev", "eth0"])
        _run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        _run(["ip", "-n", ns, "link", "set", "lo", "up"])
        return True

    def _write_host_files(self, host: LabHostSpec) -> Path:
        hdir = self.spec.host_dir(host.name)
        home = hdir / "home"
        (home / ".ssh").mkdir(parents=True, exist_ok=True)
        hdir.chmod(0o700)
        home.chmod(0o700)  # sshd's StrictModes checks the home it sees as /root
        (home / ".ssh").chmod(0o700)
        pub = self.spec.key_file.with_suffix(".pub").read_text()
        _atomic_write(home / ".ssh" / "authorized_keys", pub, 0o600)
        self._ensure_key(hdir / "ssh_host_ed25519_key", f"{host.name}@{self.spec.name}")
        config = hdir / "sshd_config"
        _atomic_write(
            config,
            SSHD_CONFIG.format(
                host=host.name,
                address=host.address,
                host_key=hdir / "ssh_host_ed25519_key",
                pid_file=hdir / "sshd.pid",
            ),
        )
        return config

    def _ensure_sshd(self, host: LabHostSpec) -> LabChange:
        config = self._write_host_files(host)
        known = self._record.get("sshd", {}).get(host.name)
        if known and _is_our_sshd(known["pid"], known["start"], config):
            return LabChange(f"sshd {host.name}", False)
        pid_file = self.spec.host_dir(host.name) / "sshd.pid"
        log_file = self.spec.host_dir(host.name) / "sshd.log"
        pid_file.unlink(missing_ok=True)
        log_file.unlink(missing_ok=True)
        home = self.spec.host_dir(host.name) / "home"
        setup = " && ".join(
            [
                f"hostname {shlex.quote(host.name)}",
                "mount -t tmpfs -o mode=0755 labctl-run /run",
                "mkdir -m 0755 /run/sshd",
                f"mount --bind {shlex.quote(str(home))} /root",
                f"exec {SSHD} -f {shlex.quote(str(config))} -E {shlex.quote(str(log_file))}",
            ]
        )
        _run(
            [
                "ip",
                "netns",
                "exec",
                self.spec.netns(host.name),
                "unshare",
                "--uts",
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                setup,
            ]
        )
        # sshd writes its PidFile once it listens.
        deadline = time.monotonic() + 10
        while not pid_file.exists() or not pid_file.read_text().strip():
            log = log_file.read_text().strip().splitlines() if log_file.exists() else []
            fatal = [line for line in log if "fatal" in line or "Bind to port" in line]
            if fatal or time.monotonic() > deadline:
                why = fatal[0] if fatal else f"no {pid_file.name} within 10 s"
                raise LabError(f"sshd for {host.name} did not start: {why}")
            time.sleep(0.01)
        pid = int(pid_file.read_text())
        self._note("sshd", host.name, pid=pid, start=process_start_time(pid), config=str(config))
        self._say(f"{host.name}: sshd pid {pid} on {host.address}")
        return LabChange(f"sshd {host.name}", True)

    def _wait_for_ssh(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        for host in self.spec.hosts:
            while True:
                try:
                    with socket.create_connection((host.address, 22), timeout=1):
                        break
                except OSError as exc:
                    if time.monotonic() > deadline:
                        raise LabError(
                            f"{host.name}: sshd not reachable on {host.address}:22: "
                            f"{exc.strerror or exc}"
                        ) from exc
                    time.sleep(0.05)

    # -- down
    def down(self, purge: bool = False) -> LabReport:
        """Remove exactly what `up` recorded; with `purge`, also the files `up` wrote."""
        self._require_root("down")
        self._record = self._load_record()
        report = LabReport(self.spec.name)
        # Containers first, while their host's sshd, and with it the mount namespace that
        # holds their /run/netns entries, is still there.
        for key, ctr in self._record.get("container", {}).items():
            report.changes.extend(self._remove_container(key, ctr))
        for host, sshd in list(self._record.get("sshd", {}).items()):
            if _is_our_sshd(sshd["pid"], sshd["start"], Path(sshd["config"])):
                _terminate([sshd["pid"]])
                report.changes.append(LabChange(f"sshd {host} (pid {sshd['pid']})", True))
            del self._record["sshd"][host]
            self._save_record()
        report.changes.extend(self._stop_container_leftovers())
        present = _netns_list()
        for ns in self._record.get("netns", {}):
            # Sessions and programs started over SSH live in the namespace: stop them by PID.
            leftovers = _netns_pids(ns) if ns in present else []
            if leftovers:
                _terminate(leftovers)
                report.changes.append(LabChange(f"{len(leftovers)} processes in {ns}", True))
        for host in list(self._record.get(CONTAINER_BRIDGE, {})):
            ns = self.spec.netns(host)
            if ns in present and self._record.get("netns", {}).get(ns) is not None:
                proc = _run(["ip", "-n", ns, "link", "del", CONTAINER_BRIDGE], check=False)
                if proc.returncode == 0:
                    report.changes.append(LabChange(f"{CONTAINER_BRIDGE} {host}", True))
            del self._record[CONTAINER_BRIDGE][host]
            self._save_record()
        # Deleting a veth's root end removes both ends at once; a namespace's own teardown is
        # asynchronous, so veths go first and then nothing races the kernel.
        for kind in ("veth", "netns", "bridge"):
            for name in list(self._record.get(kind, {})):
                if _remove(kind, name, present):
                    report.changes.append(LabChange(f"{kind} {name}", True))
                del self._record[kind][name]
                self._save_record()
        self.spec.record_file.unlink(missing_ok=True)
        if purge:
            self._purge_files()
        return report

    def _remove_container(self, key: str, ctr: dict[str, Any]) -> list[LabChange]:
        """Stop a container's processes (by PID) and delete its veth and namespace, inside its
        host. Needs the host's sshd: without it there is no way in to its /run/netns, and
        _stop_container_leftovers does what remains to be done."""
        sshd = self._record.get("sshd", {}).get(ctr["host"])
        if not sshd or not _is_our_sshd(sshd["pid"], sshd["start"], Path(sshd["config"])):
            return []
        pid, name = int(sshd["pid"]), ctr["netns"]
        changes = []
        present = name in _host_netns_list(pid)
        if present:
            out = _in_host(pid, ["ip", "netns", "pids", name], check=False).stdout
            pids = [int(p) for p in out.split()]
            if pids:
                _terminate(pids)
                changes.append(LabChange(f"{len(pids)} processes in {key}", True))
        _in_host(pid, ["ip", "link", "del", ctr["veth"]], check=False)  # takes eth0 with it
        if present:
            _in_host(pid, ["ip", "netns", "del", name])
            changes.append(LabChange(f"container {key}", True))
        return changes

    def _stop_container_leftovers(self) -> list[LabChange]:
        """After the sshd are gone: processes still in a container's network namespace.

        A container's namespace is held by its /run/netns entry in its host's mount
        namespace, and by every process in it. A process started with `ip netns exec cK`
        also holds a copy of that mount namespace, so when the host's sshd died first the
        container outlives it and `ip netns pids` can no longer name it. So look for the
        namespace itself: every process whose /proc/PID/ns/net is a recorded container's
        (inode, confirmed by the never-reused cookie), and stop those by PID. Then nothing
        holds the namespaces, and the kernel frees them with their veth pairs."""
        containers = self._record.get("container", {})
        wanted = {c["inode"]: c.get("cookie") for c in containers.values() if c.get("inode")}
        by_inode = {c["inode"]: key for key, c in containers.items() if c.get("inode")}
        changes = []
        for inode, pids in _pids_in_netns(wanted).items() if wanted else ():
            _terminate(pids)
            changes.append(LabChange(f"{len(pids)} processes in {by_inode[inode]}", True))
        if self._record.pop("container", None) is not None:
            self._save_record()
        return changes

    def _purge_files(self) -> None:
        """Delete only what `up` writes, then the directory if that left it empty: a wrong
        `labctl_lab_state_dir` must never cost anything else."""
        state = self.spec.state_dir
        self._purge_state_files(state)
        for host in self.spec.hosts:
            hdir = self.spec.host_dir(host.name)
            if (hdir / "sshd_config").exists():  # a directory this lab made
                shutil.rmtree(hdir)
        for empty in (state / "hosts", state):
            with contextlib.suppress(OSError):  # not empty: something else lives there
                empty.rmdir()

    # -- status
    def status(self) -> list[LabHostStatus]:
        record = self._load_record()
        present = _netns_list() if os.geteuid() == 0 else set()
        rows = []
        for host in self.spec.hosts:
            ns = self.spec.netns(host.name)
            sshd = record.get("sshd", {}).get(host.name)
            running = bool(sshd) and _is_our_sshd(sshd["pid"], sshd["start"], Path(sshd["config"]))
            containers = 0
            recorded = {
                c["netns"] for c in record.get("container", {}).values() if c["host"] == host.name
            }
            if running and recorded and os.geteuid() == 0:
                containers = len(recorded & _host_netns_list(int(sshd["pid"])))
            port_open = False
            if running:
                try:
                    with socket.create_connection((host.address, 22), timeout=0.5):
                        port_open = True
                except OSError:
                    pass
            rows.append(
                LabHostStatus(
                    host.name,
                    host.address,
                    ns,
                    ns in present,
                    sshd["pid"] if sshd else None,
                    running,
                    port_open,
                    containers,
                )
            )
        return rows

    def sshd_pid(self, host: str) -> int | None:
        """The PID of the host's sshd if it is still the one `up` started."""
        sshd = self._load_record().get("sshd", {}).get(host)
        if sshd and _is_our_sshd(sshd["pid"], sshd["start"], Path(sshd["config"])):
            return int(sshd["pid"])
        return None
