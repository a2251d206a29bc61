"""The VM lab's base image: Debian's own packages, built once, cached by its recipe's hash.

docs/labs.md: `mmdebstrap` (minbase; bookworm + updates + security) with sshd, the
build tools, kmod, iproute2, ethtool and Debian's `linux-image-amd64` plus the headers of
exactly the release it installed (worked out inside the build: Debian replaces old kernel
packages, so a release cannot be pinned in the recipe); `mke2fs -t ext4 -d` (no loop
device), then a qcow2 base. The kernel and initrd are copied out beside it, so QEMU boots
them directly (`-kernel`/`-initrd`).

The image knows nothing of any lab: each VM gets its hostname, SSH host key, root's
authorized key and experiment address at boot from QEMU's fw_cfg (`labctl-seed.service`,
before sshd and networkd). So one cached base serves every lab, and each VM's host key is
made on the controller, written to known_hosts before the VM boots, and checked strictly.

The cache entry is `<cache>/<hash>/` holding `base.qcow2`, `vmlinuz`, `initrd.img` and
`image.json`; the hash covers everything that shapes the image (`ImageRecipe.digest`), so a
changed recipe builds a new entry and an unchanged one never rebuilds. Builds take a lock
and go to a scratch directory renamed into place whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from labctl.errors import LabError
from labctl.filelock import exclusive
from labctl.labs.steps import LabStep, OnStep, no_steps

DEFAULT_IMAGE_CACHE = Path("/var/lib/labctl/images")
RECIPE_VERSION = 1  # bump when the build steps below change in a way the fields do not show
BUILD_TIMEOUT = 1800  # seconds for mmdebstrap; ~3 min measured on 2 cores
FW_CFG_PREFIX = "opt/labctl"  # fw_cfg names must start with opt/

# What every VM needs: sshd, the module build tools the provision playbook asks for (the VMs
# have no route to a mirror: restrict=on), kmod, the NIC tools, an init, udev for the
# predictable interface names, and the kernel. The headers are added by the hook, by release.
DEFAULT_PACKAGES = (
    "systemd-sysv",
    "udev",
    "dbus",
    "openssh-server",
    "build-essential",
    "bc",
    "flex",
    "bison",
    "libelf-dev",
    "kmod",
    "iproute2",
    "ethtool",
    "iputils-ping",
    "procps",
    "initramfs-tools",
    "linux-image-amd64",
)

# Runs in the guest before networkd and sshd: everything lab-specific comes from fw_cfg.
SEED_SCRIPT = f"""\
#!/bin/sh
# labctl-seed: this VM's hostname, SSH host key, root's key and experiment address, from
# QEMU fw_cfg (written by labctl on the controller). Nothing lab-specific is in the image.
set -eu
modprobe qemu_fw_cfg
d=/sys/firmware/qemu_fw_cfg/by_name/{FW_CFG_PREFIX}
i=0
while [ ! -r "$d/hostname/raw" ] && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
[ -r "$d/hostname/raw" ] || {{ echo "labctl-seed: no fw_cfg seed under $d" >&2; exit 1; }}
name=$(cat "$d/hostname/raw")
printf '%s\\n' "$name" > /etc/hostname
hostname "$name"
printf '127.0.1.1\\t%s\\n127.0.0.1\\tlocalhost\\n' "$name" > /etc/hosts
umask 077
cat "$d/ssh_host_ed25519_key/raw" > /etc/ssh/ssh_host_ed25519_key
umask 022
cat "$d/ssh_host_ed25519_key.pub/raw" > /etc/ssh/ssh_host_ed25519_key.pub
mkdir -p -m 0700 /root/.ssh
umask 077
cat "$d/authorized_keys/raw" > /root/.ssh/authorized_keys
umask 022
addr=$(cat "$d/exp_address/raw")
printf '[Match]\\nName=enp0s4\\n\\n[Network]\\nAddress=%s\\nLinkLocalAddressing=no\\n' \\
    "$addr" > /etc/systemd/network/20-labctl-exp.network
"""

SEED_UNIT = """\
[Unit]
Description=labctl seed (hostname, SSH keys, experiment address) from QEMU fw_cfg
DefaultDependencies=no
After=local-fs.target systemd-remount-fs.service
Before=ssh.service systemd-networkd.service network-pre.target
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/labctl-seed

[Install]
WantedBy=multi-user.target
"""

MGMT_NETWORK = """\
[Match]
Name=enp0s3

[Network]
DHCP=ipv4
LinkLocalAddressing=no
"""

# Names by PCI address (enp0s3, enp0s4), as docs/labs.md asks: on QEMU's pc machine
# the slot policy would win and give ens3/ens4 (ACPI hotplug slots). No "keep": a name the
# initramfs's udev gave is replaced too.
NAMES_LINK = """\
[Match]
OriginalName=*

[Link]
NamePolicy=kernel database onboard path
AlternativeNamesPolicy=database onboard slot path
MACAddressPolicy=persistent
"""

SSHD_DROPIN = """\
# labctl VM: key-only root login with the host key labctl-seed wrote
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
MaxStartups 100:30:200
MaxSessions 64
"""

# The hook runs with $1 = the root directory, after the packages are installed.
CUSTOMIZE_HOOK = """\
set -eu
root=$1
n=$(ls "$root/lib/modules" | wc -l)
[ "$n" = 1 ] || { echo "expected one kernel in the image, found $n" >&2; exit 1; }
rel=$(ls "$root/lib/modules")
echo "labctl: kernel release $rel, installing linux-headers-$rel"
chroot "$root" apt-get install -y -q --no-install-recommends "linux-headers-$rel"
chroot "$root" apt-get clean
rm -f "$root"/etc/ssh/ssh_host_*
printf '%s\\n' "$rel" > "$root/etc/labctl-kernel-release"
printf '/dev/vda / ext4 errors=remount-ro 0 1\\n' > "$root/etc/fstab"
printf 'labctl-vm\\n' > "$root/etc/hostname"
"""


@dataclass(frozen=True)
class ImageRecipe:
    """Everything that shapes the base image; its digest names the cache entry."""

    suite: str = "bookworm"
    mirror: str = "http://deb.debian.org/debian"
    security_mirror: str = "http://deb.debian.org/debian-security"
    packages: tuple[str, ...] = DEFAULT_PACKAGES
    size: str = "6G"
    version: int = RECIPE_VERSION
    # the guest files and the hook are part of the recipe: editing them rebuilds
    files: tuple[tuple[str, str, int], ...] = field(
        default=(
            ("/usr/local/sbin/labctl-seed", SEED_SCRIPT, 0o755),
            ("/etc/systemd/system/labctl-seed.service", SEED_UNIT, 0o644),
            ("/etc/systemd/network/10-labctl-mgmt.network", MGMT_NETWORK, 0o644),
            ("/etc/systemd/network/10-labctl-names.link", NAMES_LINK, 0o644),
            ("/etc/ssh/sshd_config.d/labctl.conf", SSHD_DROPIN, 0o644),
        )
    )
    hook: str = CUSTOMIZE_HOOK

    @property
    def sources(self) -> tuple[str, ...]:
        """One-line apt sources: the suite, its updates and its security suite."""
        return (
            f"deb {self.mirror} {self.suite} main",
            f"deb {self.mirror} {self.suite}-updates main",
            f"deb {self.security_mirror} {self.suite}-security main",
        )

    def digest(self) -> str:
        """sha256 over the recipe's fields, canonical JSON: same recipe, same entry."""
        text = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class BaseImage:
    """A cache entry that is complete: the qcow2 base and the kernel to boot."""

    dir: Path
    kernel_release: str
    build_seconds: float

    @property
    def qcow2(self) -> Path:
        return self.dir / "base.qcow2"

    @property
    def kernel(self) -> Path:
        return self.dir / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.dir / "initrd.img"


def customize_hooks(recipe: ImageRecipe) -> list[str]:
    """mmdebstrap --customize-hook arguments: the hook, then one `upload`-free write per
    guest file (printf of the quoted text, so no temporary files on the controller)."""
    hooks = [f'sh -c {shlex.quote(recipe.hook)} labctl-hook "$1"']
    for path, text, mode in recipe.files:
        target = f'"$1"{shlex.quote(path)}'
        hooks.append(
            f'mkdir -p "$1"{shlex.quote(os.path.dirname(path))} && '
            f"printf %s {shlex.quote(text)} > {target} && chmod {mode:o} {target}"
        )
    hooks.append(
        'chroot "$1" systemctl enable labctl-seed.service systemd-networkd.service ssh.service'
    )
    return hooks


def mmdebstrap_argv(recipe: ImageRecipe, rootfs: Path) -> list[str]:
    return [
        "mmdebstrap",
        "--mode=root",
        "--variant=minbase",
        "--format=directory",
        f"--include={','.join(recipe.packages)}",
        '--aptopt=Acquire::Retries "3"',
        *(f"--customize-hook={h}" for h in customize_hooks(recipe)),
        recipe.suite,
        str(rootfs),
        *recipe.sources,
    ]


def find_image(cache: Path, recipe: ImageRecipe) -> BaseImage | None:
    """The cached base image of this recipe, if a complete one exists."""
    entry = cache / recipe.digest()
    try:
        meta = json.loads((entry / "image.json").read_text())
    except (OSError, ValueError):
        return None
    image = BaseImage(entry, str(meta["kernel_release"]), float(meta["build_seconds"]))
    if all(p.is_file() for p in (image.qcow2, image.kernel, image.initrd)):
        return image
    return None


def log_news(tool: str, text: str) -> str | None:
    """The step a build's new log lines show, for the live display: mmdebstrap's latest `I:`
    line (its phase: downloading, extracting, installing...) or the hook's `labctl:` line."""
    phase = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("I: running --customize-hook"):
            phase = "running the customize hooks"  # each one's whole text follows
        elif line.startswith("I: "):
            phase = line[3:]
        elif line.startswith("labctl: "):
            phase = line[8:]
    return None if phase is None else f"{tool}: {phase.rstrip('.')[:80]}"


def _run_logged(
    argv: list[str],
    log: Path,
    timeout: float,
    say: Callable[[str], None],
    on_step: OnStep = no_steps,
) -> None:
    """Run a long build step, its output to `log`; its phase as the log shows it to `on_step`
    each second, and a progress line every 30 s."""
    started = time.monotonic()
    next_line = started + 30
    on_step(LabStep("image", argv[0]))
    with log.open("a") as out:
        out.write(f"+ {shlex.join(argv)}\n")
        out.flush()
        read_to = out.tell()
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        try:
            while True:
                try:
                    proc.wait(timeout=1)
                    break
                except subprocess.TimeoutExpired:
                    read_to = _tell_news(argv[0], log, read_to, on_step)
                    now = time.monotonic()
                    if now - started > timeout:
                        proc.kill()
                        proc.wait()
                        raise LabError(
                            f"`{argv[0]}` ran past {timeout:.0f} s (log: {log})"
                        ) from None
                    if now >= next_line:
                        say(f"  {argv[0]}: {now - started:.0f} s ...")
                        next_line = now + 30
        except BaseException:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            raise
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        raise LabError(
            f"`{argv[0]}` failed (exit {proc.returncode}, log {log}): " + " | ".join(tail)
        )


def _tell_news(tool: str, log: Path, read_to: int, on_step: OnStep) -> int:
    """The log's whole lines after `read_to` to `on_step`; where they end."""
    try:
        with log.open("rb") as fh:
            fh.seek(read_to)
            chunk = fh.read()
    except OSError:
        return read_to
    whole = chunk[: chunk.rfind(b"\n") + 1]
    news = log_news(tool, whole.decode(errors="replace"))
    if news is not None:
        on_step(LabStep("image", news))
    return read_to + len(whole)


def ensure_image(
    recipe: ImageRecipe,
    cache: Path = DEFAULT_IMAGE_CACHE,
    say: Callable[[str], None] = print,
    on_step: OnStep = no_steps,
) -> tuple[BaseImage, bool]:
    """The base image of `recipe`, built if the cache does not hold it; (image, built).
    `say` gets progress lines, `on_step` what the build is doing now."""
    found = find_image(cache, recipe)
    if found:
        return found, False
    for tool in ("mmdebstrap", "mke2fs", "qemu-img"):
        if shutil.which(tool) is None:
            raise LabError(f"{tool} not found: apt-get install mmdebstrap e2fsprogs qemu-utils")
    digest = recipe.digest()
    on_step(LabStep("image", f"{digest[:12]}: the build lock (another labctl may hold it)"))
    with exclusive(cache / f"{digest}.lock"):  # another labctl building this recipe: wait
        found = find_image(cache, recipe)  # built by another labctl while we waited
        if found:
            on_step(LabStep("image", f"{digest[:12]}: built by another labctl", done=True))
            return found, False
        return _build(recipe, cache, digest, say, on_step), True


def _build(
    recipe: ImageRecipe, cache: Path, digest: str, say: Callable[[str], None], on_step: OnStep
) -> BaseImage:
    started = time.monotonic()
    scratch = cache / f"{digest}.build"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    log = cache / f"{digest}.log"
    log.unlink(missing_ok=True)
    try:
        rootfs = scratch / "rootfs"
        say(f"image {digest[:12]}: mmdebstrap {recipe.suite} (~3 min; log {log})")
        _run_logged(mmdebstrap_argv(recipe, rootfs), log, BUILD_TIMEOUT, say, on_step)
        release = (rootfs / "etc" / "labctl-kernel-release").read_text().strip()
        shutil.copyfile(rootfs / "boot" / f"vmlinuz-{release}", scratch / "vmlinuz")
        shutil.copyfile(rootfs / "boot" / f"initrd.img-{release}", scratch / "initrd.img")
        say(f"image {digest[:12]}: kernel {release}; mke2fs -t ext4 -d, {recipe.size}")
        raw = scratch / "root.raw"
        _run_logged(
            [
                "mke2fs",
                "-q",
                "-F",
                "-t",
                "ext4",
                "-L",
                "labctl-root",
                "-d",
                str(rootfs),
                str(raw),
                recipe.size,
            ],
            log,
            600,
            say,
            on_step,
        )
        shutil.rmtree(rootfs)
        say(f"image {digest[:12]}: qcow2 base")
        _run_logged(
            ["qemu-img", "convert", "-O", "qcow2", str(raw), str(scratch / "base.qcow2")],
            log,
            600,
            say,
            on_step,
        )
        raw.unlink()
        seconds = time.monotonic() - started
        meta = {
            "kernel_release": release,
            "build_seconds": round(seconds, 1),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "recipe": asdict(recipe),
        }
        (scratch / "image.json").write_text(json.dumps(meta, indent=2) + "\n")
        final = cache / digest
        shutil.rmtree(final, ignore_errors=True)
        scratch.rename(final)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    size = (final / "base.qcow2").stat().st_size / 2**20
    say(f"image {digest[:12]}: built in {seconds:.0f} s ({size:.0f} MiB qcow2)")
    on_step(LabStep("image", f"{digest[:12]}: built ({size:.0f} MiB qcow2)", done=True))
    return BaseImage(final, release, seconds)
