"""netmap's build without a host: what a build is keyed by, the scripts (run for real with sh
against a fake build directory), the collected artifacts, the controller's cache."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from labctl.actions.netmap_host import NetmapArgs, install_script, parse_probe, probe_script
from labctl.builds.builder import LocalShell, install_tarball, store_build
from labctl.builds.netmap import (
    Artifact,
    NetmapBuild,
    NetmapSpec,
    build_outputs,
    collect_script,
    configure_script,
    load_cached,
    make_script,
    parse_collected,
)
from labctl.failures import CONFIG_LOG_MARK, explain

REL = "6.1.0-57-amd64"
SPEC = NetmapSpec("git https://github.com/luigirizzo/netmap.git " + "89607e14" * 5, REL, ("ixgbe",))


def test_the_key_is_a_name_kbuild_accepts_and_changes_with_every_input() -> None:
    """The build directory was `netmap-6.1.0-57-amd64%20HEAD%20ixgbe%20`, which Kbuild
    refuses; the key is hex, so no path labctl builds in can hold a `%`."""
    assert re.fullmatch(r"[0-9a-f]{24}", SPEC.key)
    others = [
        NetmapSpec("sha256:ab", REL, ("ixgbe",)),
        NetmapSpec(SPEC.source, "6.1.0-56-amd64", ("ixgbe",)),
        NetmapSpec(SPEC.source, REL, ("ixgbe", "e1000e")),
        NetmapSpec(SPEC.source, REL, ("ixgbe",), ("--enable-ptnetmap",)),
    ]
    assert len({SPEC.key, *(o.key for o in others)}) == 5
    assert NetmapSpec(SPEC.source, REL, ("ixgbe",)).key == SPEC.key  # stable
    assert SPEC.series == "6.1"
    with pytest.raises(ValueError, match="bad driver"):
        NetmapSpec("x", REL, ("ixgbe;reboot",))
    with pytest.raises(ValueError, match="at least one driver"):
        NetmapSpec("x", REL, ())


def test_outputs_per_driver() -> None:
    assert build_outputs(["ixgbe", "veth.c"]) == {
        "netmap.ko": "netmap.ko",
        "ixgbe.ko": "ixgbe/ixgbe.ko",
        "veth.ko": "veth.ko",
        "pkt-gen": "build-apps/pkt-gen/pkt-gen",
    }


def test_scripts_are_valid_sh_and_values_reach_the_host_literally(tmp_path: Path) -> None:
    odd = str(tmp_path / 'it\'s $(touch CANARY) "q"')
    for script in (
        configure_script(odd, f"{odd}/b", "/k", "/s", SPEC),
        make_script(f"{odd}/b", 2),
        collect_script(f"{odd}/b", f"{odd}/o", SPEC),
    ):
        assert subprocess.run(["sh", "-n", "-c", script]).returncode == 0
    res = LocalShell().run(configure_script(odd, str(tmp_path / "b"), "/k", "/s", SPEC), 30)
    assert explain(res.stdout, res.stderr, res.exit_status) == [
        f"no executable {odd}/LINUX/configure (is this a netmap source tree?)"
    ]
    res = LocalShell().run(collect_script(odd, str(tmp_path / "o"), SPEC), 30)
    assert not res.ok and not list(tmp_path.rglob("CANARY"))
    text = configure_script("/n", "/b", "/k", "/s", SPEC)
    for flag in ("--kernel-dir=/k", "--kernel-sources=/s", "--drivers=ixgbe"):
        assert flag in text
    assert "--no-ext-drivers --fail-on-driver-errors" in text
    with pytest.raises(ValueError, match="positive"):
        make_script("/b", 0)


def _fake_tree(tmp_path: Path, configure: str) -> Path:
    src = tmp_path / "src"
    (src / "LINUX").mkdir(parents=True)
    (src / "LINUX" / "configure").write_text(configure)
    (src / "LINUX" / "configure").chmod(0o755)
    return src


def test_a_failed_configure_appends_config_logs_tail(tmp_path: Path) -> None:
    src = _fake_tree(
        tmp_path,
        "#!/bin/sh\necho 'Makefile:160: *** module directory path cannot contain '\"'%'\"'.  Stop.'"
        " > config.log\necho '*** ERROR' ; exit 1\n",
    )
    res = LocalShell().run(configure_script(str(src), str(tmp_path / "b"), "/k", "/s", SPEC), 30)
    assert res.exit_status == 1
    assert CONFIG_LOG_MARK in res.stderr and "cannot contain '%'" in res.stderr
    assert any("cannot contain '%'" in line for line in explain(res.stdout, res.stderr, 1))
    missing = LocalShell().run(
        configure_script("/nonexistent", str(tmp_path / "c"), "/k", "/s", SPEC), 30
    )
    assert explain(missing.stdout, missing.stderr, 1) == [
        "no executable /nonexistent/LINUX/configure (is this a netmap source tree?)"
    ]


@pytest.mark.skipif(shutil.which("modinfo") is None, reason="needs modinfo (kmod)")
def test_collect_refuses_a_module_of_another_release(tmp_path: Path) -> None:
    """A build dir with everything but a netmap.ko that is no module: modinfo fails, the
    collect step says which file, and the out dir is not left half made."""
    build = tmp_path / "b"
    (build / "ixgbe").mkdir(parents=True)
    (build / "build-apps" / "pkt-gen").mkdir(parents=True)
    for rel in ("netmap.ko", "ixgbe/ixgbe.ko", "build-apps/pkt-gen/pkt-gen"):
        (build / rel).write_text("not an ELF file\n")
    res = LocalShell().run(collect_script(str(build), str(tmp_path / "o"), SPEC), 30)
    assert not res.ok
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.new").exists()
    (build / "netmap.ko").unlink()
    res = LocalShell().run(collect_script(str(build), str(tmp_path / "o"), SPEC), 30)
    assert explain(res.stdout, res.stderr, res.exit_status) == ["make built no netmap.ko"]


COLLECTED = (
    "@@artifact\tixgbe.ko\t" + "a" * 64 + f"\t{REL} SMP preempt mod_unload modversions \t"
    "netmap,dca,xfrm_algo,libphy,mdio_devres,mdio\t0d7f1b0c\n"
    "@@artifact\tnetmap.ko\t" + "b" * 64 + f"\t{REL} SMP preempt mod_unload modversions \t\tbd79\n"
    "@@artifact\tpkt-gen\t" + "c" * 64 + "\t\t\t\n"
    "@@patch\tixgbe\tpatches/vanilla--ixgbe--50c00--61000\n"
)


def test_collected_artifacts_parse() -> None:
    artifacts, patches = parse_collected(COLLECTED)
    assert [a.name for a in artifacts] == ["ixgbe.ko", "netmap.ko", "pkt-gen"]
    ixgbe = artifacts[0]
    assert ixgbe.depends == ("netmap", "dca", "xfrm_algo", "libphy", "mdio_devres", "mdio")
    assert ixgbe.vermagic.split()[0] == REL and ixgbe.module_id == "build-id:0d7f1b0c"
    assert artifacts[2].module_id == "" and artifacts[2].depends == ()
    assert patches == {"ixgbe": "vanilla--ixgbe--50c00--61000"}


def _build(tmp_path: Path) -> tuple[NetmapBuild, Path]:
    files = tmp_path / "files"
    files.mkdir()
    artifacts = []
    for name in ("netmap.ko", "ixgbe.ko", "pkt-gen"):
        (files / name).write_bytes(name.encode() * 100)
        from labctl.digests import file_sha256

        artifacts.append(Artifact(name, file_sha256(files / name), REL if "ko" in name else ""))
    build = NetmapBuild(
        SPEC.key, SPEC, tuple(artifacts), {"ixgbe": "p"}, "controller", {"make": 1.0}
    )
    return build, files


def test_the_cache_keeps_a_build_whole_and_checks_it(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    build, files = _build(tmp_path)
    store_build(cache, build, files)
    found = load_cached(cache, SPEC.key)
    assert found == build
    assert (cache / SPEC.key / "SHA256SUMS").read_text().count("\n") == 3
    info = (cache / SPEC.key / "build.txt").read_text()
    assert f"key={SPEC.key}\n" in info and "patches=ixgbe:p\n" in info
    # a file changed behind the cache's back: the entry no longer counts
    (cache / SPEC.key / "pkt-gen").write_bytes(b"tampered")
    assert load_cached(cache, SPEC.key) is None
    assert load_cached(cache, "0" * 24) is None


def test_the_install_unpacks_checks_and_links(tmp_path: Path) -> None:
    """install_script run with sh on this machine against a root under tmp_path: the copy is
    checked by sha256 (a corrupt one is refused and leaves nothing), then linked."""
    cache = tmp_path / "cache"
    cache.mkdir()
    build, files = _build(tmp_path)
    # modules that are not ELF: vermagic would fail; keep only pkt-gen's checks meaningful
    build = NetmapBuild(
        build.key, build.spec, tuple(a for a in build.artifacts if a.name == "pkt-gen")
    )
    store_build(cache, build, files)
    args = NetmapArgs(
        src="/x", kernel_release=REL, root=str(tmp_path / "root"), bin_dir=str(tmp_path / "bin")
    )
    upload = tmp_path / "root" / "installed" / "up.tar.gz"
    upload.parent.mkdir(parents=True)
    install_tarball(cache, build, upload)
    res = subprocess.run(
        ["sh", "-c", install_script(args, build, str(upload))], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    assert os.readlink(tmp_path / "root" / "current") == f"installed/{SPEC.key}"
    assert (tmp_path / "bin" / "pkt-gen").resolve() == (
        tmp_path / "root" / "installed" / SPEC.key / "pkt-gen"
    )
    assert not upload.exists()
    # a corrupt upload: refused, nothing half made, the old install untouched
    install_tarball(cache, build, upload)
    data = bytearray(upload.read_bytes())
    upload.write_bytes(bytes(data[: len(data) // 2]))
    res = subprocess.run(
        ["sh", "-c", install_script(args, build, str(upload))], capture_output=True, text=True
    )
    assert res.returncode != 0
    assert not (tmp_path / "root" / "installed" / f"{SPEC.key}.new").exists()
    assert (tmp_path / "root" / "installed" / SPEC.key / "pkt-gen").exists()


def test_the_probe_reads_what_is_installed_loaded_and_held(tmp_path: Path) -> None:
    args = NetmapArgs(state="unloaded", run_dirs=(str(tmp_path),))
    text = probe_script(args, None)
    ran = subprocess.run(["sh", "-c", text], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr  # on this machine: nothing loaded, no pidfile
    assert f"release={os.uname().release}" in ran.stdout and "loaded=yes" not in ran.stdout
    pidfile = '{"pid": 4242, "start": 99, "argv": ["pkt-gen"]}'
    probe = parse_probe(
        "release=6.1.0-57-amd64\nmodules=yes\ncpus=2\ncurrent=installed/abc\n"
        "loaded=yes\nholders=e1000e \nrecord=yes\nmissing=e1000e \nusers=4242 77 \n"
        f"pidfile {tmp_path}/pktgen-rx-3.pid {pidfile}\n"
        "sys_e1000e=build-id:aa\nko_e1000e=build-id:bb\nsys_netmap=build-id:cc\n"
    )
    assert probe.modules_supported and probe.loaded and probe.holders == ("e1000e",)
    assert probe.users == (4242, 77) and probe.pidfiles == {4242: ("pktgen-rx-3", str(tmp_path))}
    assert probe.module_ids == {"e1000e": "build-id:aa", "netmap": "build-id:cc"}
    assert probe.installed_ids == {"e1000e": "build-id:bb"}
    assert probe.missing == ("e1000e",) and probe.current == "installed/abc"
