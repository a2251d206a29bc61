"""The local lab: network namespaces as hosts, each with its own sshd (DESIGN.md section 1).

Each host is a network namespace joined by a veth pair to one bridge (the docker0 pattern),
with its own address, hostname (UTS namespace), a private /run (sshd 9.2 needs a root-owned
0755 /run/sshd), a private /root that is also its work directory (the controller's /root
rc files would otherwise run on every SSH command), and an OpenSSH sshd with its own host key.

`up` records every namespace, link and process it makes in `lab.json` as soon as it exists,
so `down` removes exactly those, even after an `up` that failed half-way.
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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from labctl.errors import LabError
from labctl.inventory import Inventory

SSHD = "/usr/sbin/sshd"
LAB_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,7}$")  # prefixes of 15-char interface names
HOST_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")  # goes into netns names, paths, hostname
DEFAULT_STATE_ROOT = Path("/var/lib/labctl")
LAB_VAR = "labctl_lab"  # inventory var naming the lab a host belongs to


@dataclass(frozen=True)
class LabHostSpec:
    name: str
    address: str


@dataclass(frozen=True)
class LabSpec:
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

    @property
    def key_file(self) -> Path:
        return self.state_dir / "id_ed25519"

    @property
    def known_hosts_file(self) -> Path:
        return self.state_dir / "known_hosts"

    @property
    def record_file(self) -> Path:
        return self.state_dir / "lab.json"

    def host_dir(self, host: str) -> Path:
        return self.state_dir / "hosts" / host

    @classmethod
    def generated(cls, name: str, subnet: str, count: int, state_dir: Path) -> LabSpec:
        """N hosts: srv1, then cli1..cli(N-1), addresses from .11 on."""
        if not 1 <= count <= 200:
            raise LabError(f"--hosts {count}: choose 1 to 200 hosts")
        net = ipaddress.IPv4Network(subnet)
        names = ["srv1"] + [f"cli{i}" for i in range(1, count)]
        hosts = tuple(
            LabHostSpec(n, str(net.network_address + 11 + i)) for i, n in enumerate(names)
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
        hosts = tuple(LabHostSpec(h.name, h.address) for h in members)
        return cls(name, net, hosts, state_dir)

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
                                    h.name: {"ansible_host": h.address}
                                    for h in self.hosts
                                    if h.name.startswith("srv")
                                }
                            },
                            "clients": {
                                "hosts": {
                                    h.name: {"ansible_host": h.address}
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


# ---------------------------------------------------------------------------- local commands


def _run(argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
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


def _process_start_time(pid: int) -> int | None:
    """Start time in clock ticks (field 22 of /proc/PID/stat), None if gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the comm field may hold spaces
    if fields[0] == "Z":
        return None
    return int(fields[19])


def _is_our_sshd(pid: int, start: int | None, config: Path) -> bool:
    """True only if PID is still the sshd we started: same start time, binary and config."""
    if _process_start_time(pid) != start or start is None:
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
    starts = {pid: _process_start_time(pid) for pid in pids}
    alive = [p for p, s in starts.items() if s is not None]
    for pid in alive:
        with _ignore_gone():
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = [p for p in alive if _process_start_time(p) == starts[p]]
    for pid in alive:
        with _ignore_gone():
            os.kill(pid, signal.SIGKILL)


class _ignore_gone:
    def __enter__(self) -> None:
        return None

    def __exit__(self, typ: type[BaseException] | None, *rest: object) -> bool:
        return typ is ProcessLookupError


def _netns_pids(netns: str) -> list[int]:
    out = _run(["ip", "netns", "pids", netns], check=False).stdout
    return [int(p) for p in out.split()]


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


class LocalLab:
    """Brings a `LabSpec` up and down on this machine. Needs root."""

    def __init__(self, spec: LabSpec, progress: Callable[[str], None] | None = None) -> None:
        self.spec = spec
        self._say = progress or (lambda _msg: None)
        self._record: dict[str, Any] = {}

    # -- the record of what up made
    def _load_record(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.spec.record_file.read_text())
            return data
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise LabError(f"{self.spec.record_file}: unreadable lab record: {exc}") from exc

    def _save_record(self) -> None:
        _atomic_write(self.spec.record_file, json.dumps(self._record, indent=2) + "\n", 0o600)

    def _note(self, kind: str, name: str, **extra: Any) -> None:
        self._record.setdefault(kind, {})[name] = extra
        self._save_record()

    @staticmethod
    def _require_root(action: str) -> None:
        if os.geteuid() != 0:
            raise LabError(
                f"lab.{action} needs root (it makes namespaces, links and sshd); run it as root"
            )

    # -- up
    def up(self) -> LabReport:
        self._require_root("up")
        for tool in ("ip", "unshare", "ssh-keygen"):
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
            name=spec.name, subnet=str(spec.subnet), hosts={h.name: h.address for h in spec.hosts}
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
        ):
            raise LabError(
                f"{self.spec.record_file} holds lab {rec.get('name')!r} ({rec.get('subnet')}, "
                f"hosts {', '.join(rec['hosts'])}) and it differs from the one asked for; "
                f"run lab.down first to change it"
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

    def _ensure_key(self, path: Path, comment: str) -> LabChange:
        if path.exists():
            return LabChange(f"key {path.name}", False)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
        return LabChange(f"key {path.name}", True)

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
        return changes

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
        self._note("sshd", host.name, pid=pid, start=_process_start_time(pid), config=str(config))
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
        for host, sshd in list(self._record.get("sshd", {}).items()):
            if _is_our_sshd(sshd["pid"], sshd["start"], Path(sshd["config"])):
                _terminate([sshd["pid"]])
                report.changes.append(LabChange(f"sshd {host} (pid {sshd['pid']})", True))
            del self._record["sshd"][host]
            self._save_record()
        present = _netns_list()
        for ns in self._record.get("netns", {}):
            # Sessions and programs started over SSH live in the namespace: stop them by PID.
            leftovers = _netns_pids(ns) if ns in present else []
            if leftovers:
                _terminate(leftovers)
                report.changes.append(LabChange(f"{len(leftovers)} processes in {ns}", True))
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

    def _purge_files(self) -> None:
        """Delete only what `up` writes, then the directory if that left it empty: a wrong
        `labctl_lab_state_dir` must never cost anything else."""
        state = self.spec.state_dir
        for name in (
            "id_ed25519",
            "id_ed25519.pub",
            "known_hosts",
            "inventory.yml",
            "lab.json.tmp",
            "known_hosts.tmp",
        ):
            (state / name).unlink(missing_ok=True)
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
                )
            )
        return rows

    def sshd_pid(self, host: str) -> int | None:
        """The PID of the host's sshd if it is still the one `up` started."""
        sshd = self._load_record().get("sshd", {}).get(host)
        if sshd and _is_our_sshd(sshd["pid"], sshd["start"], Path(sshd["config"])):
            return int(sshd["pid"])
        return None
