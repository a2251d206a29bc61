"""QEMU for the VM lab: one VM's command line, whether a PID is still a QEMU the lab
started, its memory, and whether KVM really runs a guest here (docs/labs.md)."""

from __future__ import annotations

import itertools
import os
import re
import select
import subprocess
import time
from pathlib import Path

from labctl.labs.image import FW_CFG_PREFIX, BaseImage
from labctl.labs.vm_spec import VmLabSpec
from labctl.procs import process_start_time

QEMU = "qemu-system-x86_64"
MGMT_SLOT, EXP_SLOT, DISK_SLOT = 3, 4, 5  # PCI slots: enp0s3, enp0s4, the root disk
TCG_ACCEL = "tcg,thread=multi,tb-size=256"  # tb-size caps TCG's cache (docs/labs.md)
# A KVM guest must print its first console line within this many seconds: here /dev/kvm is
# a PVM one where a paused QEMU looks fine but a booting guest never runs.
KVM_PROBE_SECONDS = 10.0


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
    return any(a == "-pidfile" and b == str(pidfile) for a, b in itertools.pairwise(argv))


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
