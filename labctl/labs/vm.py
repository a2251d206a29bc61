"""The VM lab: QEMU virtual machines booting Debian's own kernel, so modules really load.

DESIGN.md section 7 has the measured recipe. Each VM boots the cached base image's kernel
directly (`-kernel`/`-initrd`, root=/dev/vda) from its own qcow2 overlay, with:
- a management NIC, virtio-net at PCI slot 3 (`enp0s3`), on QEMU user networking with
  `restrict=on` (no route out) and `hostfwd=tcp:127.0.0.1:<port>-:22`: SSH is 127.0.0.1:<port>;
- an experiment NIC, e1000e at PCI slot 4 (`enp0s4`; netmap has a patch for it), on a QEMU
  socket netdev on 127.0.0.1 shared by the lab's two VMs (the first listens, the other
  connects), with a static address from the seed;
- its hostname, SSH host key (made here, written to known_hosts before the VM boots, so host
  keys are checked strictly from the first connection) and root's authorized key, handed
  over by fw_cfg (see labctl/vmimage.py).

KVM is used only when it really starts a guest (here /dev/kvm is a PVM one and QEMU stops
with "failed to set MSR 0x10a"); otherwise TCG, multi-threaded, its translation cache capped.

`up` writes each QEMU's pidfile path into `lab.json` before starting it, then its PID and
start time once QEMU has daemonized; `down` kills exactly those PIDs (after checking start
time and command line) and removes the overlays, nothing else.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import re
import select
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from labctl.errors import LabError
from labctl.inventory import Host, Inventory
from labctl.labs.image import (
    DEFAULT_IMAGE_CACHE,
    FW_CFG_PREFIX,
    BaseImage,
    ImageRecipe,
    ensure_image,
)
from labctl.labs.netns import (
    DEFAULT_STATE_ROOT,
    HOST_NAME_RE,
    LAB_NAME_RE,
    LAB_VAR,
    LabChange,
    LabReport,
    LabStateFiles,
    RecordedLab,
    _atomic_write,
    _terminate,
)
from labctl.procs import process_start_time

QEMU = "qemu-system-x86_64"
KIND_VAR = "labctl_lab_kind"  # `vm` for this lab; the namespace lab when absent
VM_KIND = "vm"
MGMT_SLOT, EXP_SLOT, DISK_SLOT = 3, 4, 5  # PCI slots: enp0s3, enp0s4, the root disk
MAX_VMS = 2  # one socket netdev joins exactly two QEMUs (listen + connect)
EXP_SUBNET = ipaddress.IPv4Network("10.78.0.0/24")  # the experiment link, inside the lab
TCG_ACCEL = "tcg,thread=multi,tb-size=256"  # tb-size caps TCG's cache (DESIGN.md section 7)
BOOT_TIMEOUT = 420.0  # seconds until sshd answers; ~35 s for one VM, ~70 s for two, on TCG
# A KVM guest must print its first console line within this many seconds: here /dev/kvm is
# a PVM one where a paused QEMU looks fine but a booting guest never runs.
KVM_PROBE_SECONDS = 10.0


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


# ---------------------------------------------------------------------------- pure pieces


def known_hosts_text(spec: VmLabSpec, public_keys: dict[str, str]) -> str:
    """known_hosts lines for the VMs: `[127.0.0.1]:<port> <type> <key>` (port-qualified)."""
    lines = []
    for h in spec.hosts:
        kind, key = public_keys[h.name].split()[:2]
        lines.append(f"[127.0.0.1]:{h.ssh_port} {kind} {key}\n")
    return "".join(lines)


def accel_args(accel: str) -> list[str]:
    if accel == "kvm":
        return ["-accel", "kvm", "-cpu", "host"]
    return ["-accel", TCG_ACCEL, "-cpu", "max"]


def qemu_argv(spec: VmLabSpec, host: str, image: BaseImage, accel: str) -> list[str]:
    """The QEMU command line of one VM (daemonized; its PID in its pidfile)."""
    index = spec.index(host)
    hdir = spec.host_dir(host)
    key = spec.host_key(host)
    port = next(h.ssh_port for h in spec.hosts if h.name == host)
    # the first VM listens on the link port, the other connects to it
    link = "listen" if index == 1 else "connect"
    fw = FW_CFG_PREFIX
    return [
        QEMU,
        "-name",
        spec.qemu_name(host),
        "-machine",
        "pc",
        *accel_args(accel),
        "-smp",
        str(spec.cpus),
        "-m",
        str(spec.memory_mib),
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-daemonize",
        "-pidfile",
        str(spec.pidfile(host)),
        "-serial",
        f"file:{spec.console_log(host)}",
        "-no-reboot",  # a kernel panic (panic=5) ends QEMU: `up` sees it die, not loop
        "-kernel",
        str(image.kernel),
        "-initrd",
        str(image.initrd),
        "-append",
        "root=/dev/vda rw console=ttyS0 panic=5",
        "-drive",
        f"file={spec.overlay(host)},if=none,id=root,format=qcow2,discard=unmap",
        "-device",
        f"virtio-blk-pci,drive=root,addr={DISK_SLOT:#x}",
        "-netdev",
        f"user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22",
        "-device",
        f"virtio-net-pci,netdev=mgmt,mac={spec.mac(host, 1)},addr={MGMT_SLOT:#x}",
        "-netdev",
        f"socket,id=exp,{link}=127.0.0.1:{spec.link_port}",
        "-device",
        f"e1000e,netdev=exp,mac={spec.mac(host, 2)},addr={EXP_SLOT:#x}",
        "-fw_cfg",
        f"name={fw}/hostname,string={host}",
        "-fw_cfg",
        f"name={fw}/ssh_host_ed25519_key,file={key}",
        "-fw_cfg",
        f"name={fw}/ssh_host_ed25519_key.pub,file={key}.pub",
        "-fw_cfg",
        f"name={fw}/authorized_keys,file={hdir / 'authorized_keys'}",
        "-fw_cfg",
        f"name={fw}/exp_address,string={spec.exp_address(host)}",
    ]


def read_rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def is_our_qemu(pid: int, start: int | None, pidfile: Path) -> bool:
    """PID is still the QEMU `up` started: same start time (when known), a QEMU binary, and
    our pidfile on its command line (a path inside this lab's state directory)."""
    now = process_start_time(pid)
    if now is None or (start is not None and now != start):
        return False
    argv = _cmdline(pid)
    exe = os.path.basename(argv[0]) if argv else ""
    if not exe.startswith("qemu-system-"):
        return False
    return any(a == "-pidfile" and b == str(pidfile) for a, b in itertools_pairs(argv))


def itertools_pairs(items: Sequence[str]) -> list[tuple[str, str]]:
    return list(zip(items, items[1:], strict=False))


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ssh_banner(port: int, timeout: float = 2.0) -> bool:
    """sshd answered on 127.0.0.1:port. QEMU's hostfwd accepts a TCP connection even before
    the guest listens (then closes it), so a connect alone proves nothing: read the banner."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def _last_line(path: Path) -> str:
    try:
        lines = [x for x in path.read_text(errors="replace").splitlines() if x.strip()]
    except OSError:
        return ""
    return lines[-1].strip()[:120] if lines else ""


# ---------------------------------------------------------------------------- the lab


@dataclass(frozen=True)
class VmStatus:
    name: str
    ssh_port: int
    qemu_pid: int | None
    running: bool
    ssh_open: bool
    rss_mib: float | None
    accel: str | None
    kernel_release: str | None


class VmLab(RecordedLab):
    """Brings a `VmLabSpec` up and down on this machine (root: the image build needs it)."""

    def __init__(self, spec: VmLabSpec, progress: Callable[[str], None] | None = None) -> None:
        super().__init__(spec.record_file, progress)
        self.spec = spec
        self.boot_seconds: dict[str, float] = {}
        self.accel: str | None = None
        self.image: BaseImage | None = None
        self.image_built = False

    def _running(self, host: str, record: dict[str, Any] | None = None) -> int | None:
        """The PID of the host's QEMU if it is still the one `up` started."""
        rec = (record if record is not None else self._record).get("qemu", {}).get(host)
        if not rec or not rec.get("pid"):
            return None
        pid = int(rec["pid"])
        return pid if is_our_qemu(pid, rec.get("start"), Path(rec["pidfile"])) else None

    # -- up
    def up(self) -> LabReport:
        if os.geteuid() != 0:
            raise LabError("lab.up of a VM lab needs root (mmdebstrap builds the image as root)")
        if shutil.which(QEMU) is None:
            raise LabError(f"{QEMU} not found: apt-get install qemu-system-x86 qemu-utils")
        spec = self.spec
        report = LabReport(spec.name)
        spec.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._record = self._load_record()
        hosts = {h.name: h.ssh_port for h in spec.hosts}
        if self._record.get("hosts") and (
            self._record.get("kind") != VM_KIND
            or self._record["hosts"] != hosts
            or self._record.get("link_port") != spec.link_port
        ):
            raise LabError(
                f"{spec.record_file} holds another lab ({self._record.get('kind', 'namespace')} "
                f"lab {self._record.get('name')!r}, hosts {self._record['hosts']}): "
                "run lab.down first to change it"
            )
        self._record.update(kind=VM_KIND, name=spec.name, hosts=hosts, link_port=spec.link_port)
        self._save_record()

        image, built = ensure_image(ImageRecipe(), spec.image_cache, self._say)
        self.image, self.image_built = image, built
        report.changes.append(LabChange(f"image {image.dir.name[:12]}", built))
        if self._record.get("image") not in (None, str(image.dir)) and any(
            self._running(h.name) for h in spec.hosts
        ):
            raise LabError(
                f"lab {spec.name} runs VMs of another base image ({self._record['image']}): "
                "run lab.down first"
            )
        self._record["image"] = str(image.dir)
        self._save_record()

        running = {h.name: self._running(h.name) for h in spec.hosts}
        if all(running.values()):
            self.accel = self._record.get("accel")
            self._check_ssh(wait=False)
            return report
        # The link is one socket from the first VM to the other: a VM that starts again
        # needs its peer to start again too. The overlays keep every disk's contents.
        for host, pid in running.items():
            if pid:
                _terminate([pid])
                report.changes.append(LabChange(f"qemu {host} restarted (pid {pid})", True))

        report.changes.append(self._ensure_key(spec.key_file, f"labctl@{spec.name}"))
        pubs = {}
        for h in spec.hosts:
            hdir = spec.host_dir(h.name)
            hdir.mkdir(parents=True, exist_ok=True, mode=0o700)
            report.changes.append(self._ensure_key(spec.host_key(h.name), f"{h.name}@{spec.name}"))
            pubs[h.name] = Path(f"{spec.host_key(h.name)}.pub").read_text()
            shutil.copyfile(Path(f"{spec.key_file}.pub"), hdir / "authorized_keys")
        text = known_hosts_text(spec, pubs)
        if not spec.known_hosts_file.exists() or spec.known_hosts_file.read_text() != text:
            _atomic_write(spec.known_hosts_file, text)
            report.changes.append(LabChange("known_hosts", True))

        for port in [spec.link_port] + [h.ssh_port for h in spec.hosts]:
            if not _port_free(port):
                raise LabError(
                    f"127.0.0.1:{port} is in use: choose other ports for lab {spec.name}"
                )
        self.accel = self._choose_accel(image)
        self._record["accel"] = self.accel
        self._save_record()

        started: dict[str, float] = {}
        for h in spec.hosts:
            report.changes.append(self._ensure_overlay(h.name, image))
            started[h.name] = time.monotonic()
            report.changes.append(self._start_qemu(h.name, image))
        self._wait_for_ssh(started)
        self._check_ssh(wait=True)
        return report

    def _ensure_overlay(self, host: str, image: BaseImage) -> LabChange:
        overlay = self.spec.overlay(host)
        rec = self._record.get("overlay", {}).get(host)
        if overlay.exists() and rec and rec.get("base") == str(image.qcow2):
            return LabChange(f"overlay {host}", False)
        self._note("overlay", host, path=str(overlay), base=str(image.qcow2))
        overlay.unlink(missing_ok=True)
        argv = [
            "qemu-img",
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            "qcow2",
            "-b",
            str(image.qcow2),
            str(overlay),
        ]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise LabError(f"qemu-img create {overlay}: {proc.stderr.strip()}")
        return LabChange(f"overlay {host}", True)

    def _choose_accel(self, image: BaseImage) -> str:
        """KVM only when it really starts a guest here; else TCG. Says which, and why."""
        want = self.spec.accel
        if want == "tcg":
            self._say("accel: tcg (labctl_vm_accel: tcg)")
            return "tcg"
        why = kvm_problem(image.kernel)
        if why is None:
            self._say("accel: kvm")
            return "kvm"
        if want == "kvm":
            raise LabError(f"labctl_vm_accel: kvm, but KVM does not work here: {why}")
        self._say(f"accel: tcg (KVM unusable: {why})")
        return "tcg"

    def _start_qemu(self, host: str, image: BaseImage) -> LabChange:
        spec = self.spec
        pidfile, console = spec.pidfile(host), spec.console_log(host)
        pidfile.unlink(missing_ok=True)
        console.unlink(missing_ok=True)
        # recorded before QEMU exists: an interrupted up is still undone by down
        self._note("qemu", host, pidfile=str(pidfile), pid=None, start=None)
        argv = qemu_argv(spec, host, image, self.accel or "tcg")
        (spec.host_dir(host) / "qemu.argv").write_text(shlex.join(argv) + "\n")
        # -daemonize: the first process exits once the VM is set up and the pidfile written
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
        )
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            raise LabError(
                f"{host}: QEMU did not start: {detail[-1] if detail else proc.returncode}"
            )
        pid = int(pidfile.read_text().strip())
        start = process_start_time(pid)
        if not is_our_qemu(pid, start, pidfile):
            raise LabError(f"{host}: pidfile {pidfile} names PID {pid}, which is not our QEMU")
        self._note("qemu", host, pidfile=str(pidfile), pid=pid, start=start, started_at=time.time())
        self._say(
            f"{host}: qemu pid {pid}, ssh 127.0.0.1:{spec.hosts[spec.index(host) - 1].ssh_port}"
        )
        return LabChange(f"qemu {host}", True)

    def _wait_for_ssh(self, started: dict[str, float], timeout: float = BOOT_TIMEOUT) -> None:
        """Until every VM's sshd answers; a progress line every 15 s; fails fast if a QEMU
        dies (with the last line of its console)."""
        waiting = {h.name: h.ssh_port for h in self.spec.hosts}
        t0 = min(started.values())
        deadline = t0 + timeout
        next_report = t0 + 15
        while waiting:
            for host, port in list(waiting.items()):
                if _ssh_banner(port, timeout=1.0):
                    self.boot_seconds[host] = time.monotonic() - started[host]
                    self._say(f"{host}: sshd answers after {self.boot_seconds[host]:.1f} s")
                    del waiting[host]
                elif self._running(host) is None:
                    last = _last_line(self.spec.console_log(host))
                    raise LabError(f"{host}: QEMU exited during boot (console: {last!r})")
            now = time.monotonic()
            if waiting and now > deadline:
                host = next(iter(waiting))
                last = _last_line(self.spec.console_log(host))
                raise LabError(
                    f"{host}: no sshd on 127.0.0.1:{waiting[host]} after {timeout:.0f} s "
                    f"(console: {last!r}; log {self.spec.console_log(host)})"
                )
            if waiting and now > next_report:
                self._say(f"booting {', '.join(waiting)}: {now - t0:.0f} s ...")
                next_report = now + 15
            if waiting:
                time.sleep(0.5)

    def _check_ssh(self, wait: bool) -> None:
        """One command over labctl's own SSH, host key checked strictly, on every VM."""
        from labctl.remote import HostConnection

        for h in self.spec.hosts:
            with HostConnection(self.spec.inventory_host(h)) as conn:
                release = conn.run(["uname", "-r"], timeout=30, check=True).stdout.strip()
            if self._record.get("kernel_release") != release:
                self._record["kernel_release"] = release
                self._save_record()
            if wait:
                self._say(f"{h.name}: ssh ok (host key checked), kernel {release}")

    # -- down
    def down(self, purge: bool = False) -> LabReport:
        """Kill exactly the recorded QEMU PIDs, remove the overlays; with `purge` also the
        keys and files `up` wrote. The cached base image stays (other labs share it)."""
        self._record = self._load_record()
        report = LabReport(self.spec.name)
        for host, rec in list(self._record.get("qemu", {}).items()):
            pidfile = Path(rec["pidfile"])
            pid, start = rec.get("pid"), rec.get("start")
            if pid is None:
                # up stopped between starting QEMU and noting its PID: the pidfile tells
                with contextlib.suppress(OSError, ValueError):
                    pid = int(pidfile.read_text().strip())
            if pid and is_our_qemu(int(pid), start, pidfile):
                _terminate([int(pid)])
                report.changes.append(LabChange(f"qemu {host} (pid {pid})", True))
            pidfile.unlink(missing_ok=True)
            del self._record["qemu"][host]
            self._save_record()
        for host, rec in list(self._record.get("overlay", {}).items()):
            path = Path(rec["path"])
            if path.exists():
                path.unlink()
                report.changes.append(LabChange(f"overlay {host}", True))
            del self._record["overlay"][host]
            self._save_record()
        self.spec.record_file.unlink(missing_ok=True)
        if purge:
            self._purge_files()
        return report

    def _purge_files(self) -> None:
        state = self.spec.state_dir
        self._purge_state_files(state)
        for h in self.spec.hosts:
            hdir = self.spec.host_dir(h.name)
            if hdir.is_dir():
                for name in (
                    "ssh_host_ed25519_key",
                    "ssh_host_ed25519_key.pub",
                    "authorized_keys",
                    "console.log",
                    "qemu.argv",
                    "qemu.pid",
                ):
                    (hdir / name).unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    hdir.rmdir()
        for empty in (state / "vms", state):
            with contextlib.suppress(OSError):  # not empty: something else lives there
                empty.rmdir()

    # -- status
    def status(self) -> list[VmStatus]:
        record = self._load_record()
        rows = []
        for h in self.spec.hosts:
            rec = record.get("qemu", {}).get(h.name, {})
            pid = self._running(h.name, record)
            rows.append(
                VmStatus(
                    h.name,
                    h.ssh_port,
                    rec.get("pid"),
                    pid is not None,
                    pid is not None and _ssh_banner(h.ssh_port, timeout=1.0),
                    read_rss_mib(pid) if pid else None,
                    record.get("accel"),
                    record.get("kernel_release"),
                )
            )
        return rows

    def qemu_pids(self) -> dict[str, int]:
        """The running QEMU of each host, as recorded and checked."""
        record = self._load_record()
        return {h.name: p for h in self.spec.hosts if (p := self._running(h.name, record))}


_KVM_CACHE: dict[str, str | None] = {}


def kvm_problem(kernel: Path) -> str | None:
    """Why KVM cannot run a guest here, or None if it can. The image's own kernel is booted
    (no disk, serial on a pipe) until it prints its banner: a PVM /dev/kvm either fails at
    once setting MSRs, or accepts a guest that never runs a single instruction."""
    if "kvm" in _KVM_CACHE:
        return _KVM_CACHE["kvm"]
    why: str | None
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        why = "no usable /dev/kvm"
    else:
        why = _boot_probe(kernel)
    _KVM_CACHE["kvm"] = why
    return why


def _boot_probe(kernel: Path) -> str | None:
    argv = [
        QEMU,
        *("-machine", "pc", "-accel", "kvm", "-cpu", "host", "-m", "128"),
        *("-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"),
        *("-serial", "stdio", "-kernel", str(kernel), "-append", "console=ttyS0 panic=-1"),
    ]
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        os.set_blocking(proc.stdout.fileno(), False)
        seen = b""
        deadline = time.monotonic() + KVM_PROBE_SECONDS
        while time.monotonic() < deadline and proc.poll() is None:  # bounded
            ready, _, _ = select.select([proc.stdout], [], [], 0.2)
            if ready:
                seen += proc.stdout.read() or b""
                if b"Linux version" in seen:
                    return None
        if proc.poll() is not None:
            lines = [x for x in proc.stderr.read().decode(errors="replace").splitlines() if x]
            return (
                re.sub(r"^qemu-system-x86_64: ", "", lines[0])
                if lines
                else f"QEMU exited {proc.returncode}"
            )
        return f"a KVM guest printed nothing in {KVM_PROBE_SECONDS:g} s"
    finally:
        if proc.poll() is None:
            proc.kill()  # our own child, by its PID
        proc.communicate()
