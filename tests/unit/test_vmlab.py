"""The VM lab's pure parts: spec and inventory, QEMU's command line, the image recipe's hash,
and the checks `down` makes before it kills a PID. No QEMU, no root."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from labctl.errors import LabError
from labctl.inventory import load_inventory
from labctl.labs.image import (
    DEFAULT_PACKAGES,
    BaseImage,
    ImageRecipe,
    customize_hooks,
    find_image,
    mmdebstrap_argv,
)
from labctl.labs.qemu import is_our_qemu, qemu_argv
from labctl.labs.vm import known_hosts_text
from labctl.labs.vm_spec import VmHostSpec, VmLabSpec, is_vm_inventory

ROOT = Path(__file__).resolve().parents[2]


def _image(tmp_path: Path) -> BaseImage:
    return BaseImage(tmp_path / "img", "6.1.0-56-amd64", 80.0)


def _opt(argv: list[str], flag: str) -> list[str]:
    """Every value given to `flag`, in order."""
    return [b for a, b in zip(argv, argv[1:], strict=False) if a == flag]


# ---------------------------------------------------------------------------- spec, inventory


def test_hosts_vm_yml_is_a_two_vm_lab() -> None:
    inv = load_inventory(ROOT / "hosts" / "vm.yml")
    assert is_vm_inventory(inv)
    assert not is_vm_inventory(load_inventory(ROOT / "hosts" / "local.yml"))
    spec = VmLabSpec.from_inventory(inv)
    assert spec.hosts == (VmHostSpec("srv1", 10031), VmHostSpec("cli1", 10032))
    assert (spec.name, spec.link_port, spec.accel) == ("vmlab", 10030, "auto")
    assert [h.name for h in inv.select("servers")] == ["srv1"]
    assert [h.name for h in inv.select("clients")] == ["cli1"]
    srv = inv.host("srv1")
    assert (srv.address, srv.port, srv.known_hosts_file) == (
        "127.0.0.1",
        10031,
        str(spec.known_hosts_file),
    )
    # the file says what `lab.up --vms 2` would generate
    assert spec.resized(2) == spec
    assert srv.vars["experiment_address"] == str(spec.exp_address("srv1"))


def test_generated_inventory_round_trips(tmp_path: Path) -> None:
    spec = VmLabSpec.generated("v7", 2, 23000, tmp_path, memory_mib=512, accel="tcg")
    assert spec.hosts == (VmHostSpec("srv1", 23001), VmHostSpec("cli1", 23002))
    path = tmp_path / "inventory.yml"
    path.write_text(spec.inventory_yaml())
    inv = load_inventory(path)
    assert VmLabSpec.from_inventory(inv) == spec
    cli = inv.host("cli1")
    assert (cli.port, cli.user, cli.key_file) == (23002, "root", str(spec.key_file))
    assert cli.vars["experiment_interface"] == "enp0s4"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "Bad"}, "lowercase"),
        ({"link_port": 80}, "1024-65535"),
        ({"link_port": 23001}, "must differ"),
        ({"memory_mib": 64}, "256-16384"),
        ({"accel": "hvf"}, "auto, kvm or tcg"),
        ({"state_dir": Path("/tmp/a,b")}, "without commas"),
        ({"hosts": ()}, "choose 1 to 2"),
    ],
)
def test_bad_specs_are_refused(change: dict[str, object], message: str, tmp_path: Path) -> None:
    spec = VmLabSpec.generated("v7", 2, 23000, tmp_path)
    with pytest.raises(LabError, match=message):
        replace(spec, **change)


def test_three_vms_are_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="choose 1 to 2"):
        VmLabSpec.generated("v7", 3, 23000, tmp_path)


def test_known_hosts_lines_carry_the_forwarded_port(tmp_path: Path) -> None:
    spec = VmLabSpec.generated("v7", 2, 23000, tmp_path)
    text = known_hosts_text(
        spec, {"srv1": "ssh-ed25519 AAAA1 srv1@v7\n", "cli1": "ssh-ed25519 AAAA2 cli1@v7"}
    )
    assert text == "[127.0.0.1]:23001 ssh-ed25519 AAAA1\n[127.0.0.1]:23002 ssh-ed25519 AAAA2\n"


# ---------------------------------------------------------------------------- QEMU's argv


def test_qemu_argv_nics_disk_and_seed(tmp_path: Path) -> None:
    spec = VmLabSpec.generated("v7", 2, 23000, tmp_path, memory_mib=512)
    image = _image(tmp_path)
    srv = qemu_argv(spec, "srv1", image, "tcg")
    cli = qemu_argv(spec, "cli1", image, "tcg")
    assert srv[0] == "qemu-system-x86_64"
    assert _opt(srv, "-accel") == ["tcg,thread=multi,tb-size=256"]
    assert _opt(srv, "-cpu") == ["max"]
    assert _opt(srv, "-m") == ["512"]
    assert _opt(srv, "-pidfile") == [str(spec.pidfile("srv1"))]
    assert "-daemonize" in srv and "-nodefaults" in srv
    assert _opt(srv, "-kernel") == [str(image.kernel)]
    assert _opt(srv, "-initrd") == [str(image.initrd)]
    assert _opt(srv, "-append")[0].startswith("root=/dev/vda ")
    netdevs = _opt(srv, "-netdev")
    assert netdevs[0] == "user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:23001-:22"
    assert netdevs[1] == "socket,id=exp,listen=127.0.0.1:23000"
    assert _opt(cli, "-netdev")[1] == "socket,id=exp,connect=127.0.0.1:23000"
    devices = _opt(srv, "-device")
    # PCI slots give the predictable names: enp0s3 management, enp0s4 experiment
    assert any(
        d.startswith("virtio-net-pci,netdev=mgmt,") and d.endswith(",addr=0x3") for d in devices
    )
    assert any(d.startswith("e1000e,netdev=exp,") and d.endswith(",addr=0x4") for d in devices)
    assert "virtio-blk-pci,drive=root,addr=0x5" in devices
    assert _opt(srv, "-drive") == [
        f"file={spec.overlay('srv1')},if=none,id=root,format=qcow2,discard=unmap"
    ]
    seeds = _opt(srv, "-fw_cfg")
    assert "name=opt/labctl/hostname,string=srv1" in seeds
    assert "name=opt/labctl/exp_address,string=10.78.0.11/24" in seeds
    assert f"name=opt/labctl/ssh_host_ed25519_key,file={spec.host_key('srv1')}" in seeds
    assert "name=opt/labctl/exp_address,string=10.78.0.12/24" in _opt(cli, "-fw_cfg")


def test_qemu_argv_kvm_and_distinct_macs(tmp_path: Path) -> None:
    spec = VmLabSpec.generated("v7", 2, 23000, tmp_path)
    argv = qemu_argv(spec, "srv1", _image(tmp_path), "kvm")
    assert (_opt(argv, "-accel"), _opt(argv, "-cpu")) == (["kvm"], ["host"])
    macs = {spec.mac(h, nic) for h in ("srv1", "cli1") for nic in (1, 2)}
    assert len(macs) == 4 and all(m.startswith("52:54:00:") for m in macs)


# ---------------------------------------------------------------------------- image recipe


def test_recipe_hash_is_stable_and_follows_every_field() -> None:
    base = ImageRecipe()
    assert base.digest() == ImageRecipe().digest()
    assert len(base.digest()) == 64
    changed = [
        replace(base, packages=(*DEFAULT_PACKAGES, "tcpdump")),
        replace(base, suite="trixie"),
        replace(base, mirror="http://mirror.example/debian"),
        replace(base, size="8G"),
        replace(base, version=base.version + 1),
        replace(base, hook=base.hook + "true\n"),
        replace(base, files=base.files[:-1]),
    ]
    digests = {r.digest() for r in changed}
    assert base.digest() not in digests and len(digests) == len(changed)


def test_mmdebstrap_argv_has_the_three_suites_and_the_kernel(tmp_path: Path) -> None:
    recipe = ImageRecipe()
    argv = mmdebstrap_argv(recipe, tmp_path / "rootfs")
    assert argv[:4] == ["mmdebstrap", "--mode=root", "--variant=minbase", "--format=directory"]
    include = next(a for a in argv if a.startswith("--include="))
    for pkg in (
        "openssh-server",
        "build-essential",
        "kmod",
        "iproute2",
        "ethtool",
        "initramfs-tools",
        "linux-image-amd64",
    ):
        assert pkg in include.split("=", 1)[1].split(",")
    assert argv[-3:] == [
        "deb http://deb.debian.org/debian bookworm main",
        "deb http://deb.debian.org/debian bookworm-updates main",
        "deb http://deb.debian.org/debian-security bookworm-security main",
    ]
    assert argv[-5:-3] == ["bookworm", str(tmp_path / "rootfs")]
    # the headers follow the kernel the image got, worked out inside the build
    assert 'apt-get install -y -q --no-install-recommends "linux-headers-$rel"' in recipe.hook


def test_customize_hooks_write_the_guest_files(tmp_path: Path) -> None:
    """Run the file-writing hooks with sh against a scratch root: the files come out whole."""
    recipe = ImageRecipe()
    root = tmp_path / "root"
    root.mkdir()
    for hook in customize_hooks(recipe)[1:-1]:
        subprocess.run(["sh", "-c", hook, "exec", str(root)], check=True)
    for path, text, mode in recipe.files:
        written = root / path.lstrip("/")
        assert written.read_text() == text
        assert written.stat().st_mode & 0o777 == mode


def test_find_image_needs_a_complete_entry(tmp_path: Path) -> None:
    recipe = ImageRecipe()
    entry = tmp_path / recipe.digest()
    entry.mkdir()
    assert find_image(tmp_path, recipe) is None
    (entry / "image.json").write_text('{"kernel_release": "6.1.0-9-amd64", "build_seconds": 9}')
    for name in ("base.qcow2", "vmlinuz"):
        (entry / name).write_text("x")
    assert find_image(tmp_path, recipe) is None  # no initrd: a half-made entry
    (entry / "initrd.img").write_text("x")
    found = find_image(tmp_path, recipe)
    assert found is not None and found.kernel_release == "6.1.0-9-amd64"
    assert find_image(tmp_path, replace(recipe, size="7G")) is None


# ---------------------------------------------------------------------------- PID checks


def test_is_our_qemu_checks_binary_and_pidfile(tmp_path: Path) -> None:
    from labctl.procs import process_start_time

    me = os.getpid()
    assert not is_our_qemu(me, process_start_time(me), tmp_path / "qemu.pid")  # python
    # a process whose argv[0] is a QEMU name and names our pidfile, but is not started then
    pidfile = tmp_path / "qemu.pid"
    proc = subprocess.Popen(
        ["qemu-system-x86_64", "-c", "import time; time.sleep(30)", "-pidfile", str(pidfile)],
        executable=sys.executable,
        stdin=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):  # until the child has exec'd (bounded: 2 s)
            if Path(f"/proc/{proc.pid}/cmdline").read_bytes().startswith(b"qemu-system"):
                break
            time.sleep(0.01)
        start = process_start_time(proc.pid)
        assert is_our_qemu(proc.pid, start, pidfile)
        assert not is_our_qemu(proc.pid, start, tmp_path / "other.pid")
        assert not is_our_qemu(proc.pid, (start or 0) + 1, pidfile)  # a reused PID
    finally:
        proc.kill()
        proc.wait()
    assert not is_our_qemu(proc.pid, start, pidfile)
