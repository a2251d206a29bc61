"""The VM lab: QEMU virtual machines booting Debian's own kernel, so modules really load.

docs/labs.md has the measured recipe. Each VM boots the cached base image's kernel
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
import os
import re
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labctl.errors import LabError
from labctl.labs.base import (
    LabChange,
    LabReport,
    RecordedLab,
    atomic_write,
    terminate,
)
from labctl.labs.image import (
    BaseImage,
    ImageRecipe,
    ensure_image,
)
from labctl.labs.qemu import (
    QEMU,
    is_our_qemu,
    kvm_problem,
    qemu_argv,
    read_rss_mib,
)
from labctl.labs.steps import LabStep, OnStep, no_steps
from labctl.labs.vm_spec import VM_KIND, VmLabSpec
from labctl.procs import process_start_time

BOOT_TIMEOUT = 420.0  # seconds until sshd answers; ~35 s for one VM, ~70 s for two, on TCG


# ---------------------------------------------------------------------------- pure pieces


def known_hosts_text(spec: VmLabSpec, public_keys: dict[str, str]) -> str:
    """known_hosts lines for the VMs: `[127.0.0.1]:<port> <type> <key>` (port-qualified)."""
    lines = []
    for h in spec.hosts:
        kind, key = public_keys[h.name].split()[:2]
        lines.append(f"[127.0.0.1]:{h.ssh_port} {kind} {key}\n")
    return "".join(lines)


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
    """A console log's last line, without its colours and control characters."""
    try:
        text = _TERMINAL_CODES.sub("", path.read_text(errors="replace"))
    except OSError:
        return ""
    lines = [x for x in text.splitlines() if x.strip()]
    return lines[-1].strip()[:120] if lines else ""


# systemd colours its console status ("[  OK  ]") and the kernel's console may carry other
# control characters: neither belongs in an error message or on the controller's terminal.
_TERMINAL_CODES = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|[\x00-\x08\x0b-\x1f\x7f]")


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

    def __init__(
        self,
        spec: VmLabSpec,
        progress: Callable[[str], None] | None = None,
        on_step: OnStep = no_steps,
    ) -> None:
        """`progress` gets lines (the record), `on_step` what the image build and each
        VM's boot are doing now (for a live display)."""
        super().__init__(spec.record_file, progress)
        self._on_step = on_step
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
        self._claim_state_dir(spec.name, [spec.host_dir(h.name) for h in spec.hosts])
        self._record.update(kind=VM_KIND, name=spec.name, hosts=hosts, link_port=spec.link_port)
        self._save_record()

        image, built = ensure_image(ImageRecipe(), spec.image_cache, self._say, self._on_step)
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
                terminate([pid])
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
            atomic_write(spec.known_hosts_file, text)
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
        self._on_step(LabStep(host, "starting qemu"))
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
        shown = dict.fromkeys(waiting, "")  # each VM's console line last told to on_step
        t0 = min(started.values())
        deadline = t0 + timeout
        next_report = t0 + 15
        while waiting:
            for host, port in list(waiting.items()):
                if _ssh_banner(port, timeout=1.0):
                    self.boot_seconds[host] = time.monotonic() - started[host]
                    self._say(f"{host}: sshd answers after {self.boot_seconds[host]:.1f} s")
                    self._on_step(LabStep(host, "sshd answers", done=True))
                    del waiting[host]
                elif self._running(host) is None:
                    last = _last_line(self.spec.console_log(host))
                    raise LabError(f"{host}: QEMU exited during boot (console: {last!r})")
                elif (line := _last_line(self.spec.console_log(host)) or "booting") != shown[host]:
                    self._on_step(LabStep(host, f"{line} (waiting for sshd)"))
                    shown[host] = line
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
                terminate([int(pid)])
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
            self._purge_made()
        return report

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
