"""kmod and the provision helpers without a host: cache key, vermagic, plans from canned
probe output, the management-link guard, the revert, and netmap's command lines.

The load and unload paths cannot run on this machine (its kernel has no module support), so
they are tested here from captured-style probe output, as pyinfra tests operations: facts
in, steps and change lines out. The probe script itself runs for real against temp dirs.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from labctl.actions.base import (
    ActionFailed,
    ArgsError,
    Run,
    TaskContext,
    build_args,
    run_action,
)
from labctl.actions.driver_guard import cancel_revert_command, mgmt_driver_guard, revert_command
from labctl.actions.kmod import KmodAction, KmodPlan
from labctl.actions.kmod_host import SOURCE_PATTERNS, KmodArgs, cache_key, parse_probe, probe_script
from labctl.facts.host import HostFacts, Interface, installed_header_releases, parse_host_facts
from labctl.facts.modules import explain_insmod_failure, lockdown_mode, vermagic_matches
from labctl.remote import CommandResult, command_text

DATA = Path(__file__).parent / "data"
FIXTURE = Path(__file__).parents[2] / "fixtures" / "hello_kmod"
REL = "6.1.0-28-amd64"
VERMAGIC = "6.1.0-28-amd64 SMP preempt mod_unload modversions"
SRC_HASH = "ab" * 32
KDIR = f"/usr/src/linux-headers-{REL}"
CACHE = "/root/labctl/kmod-cache"
KEY = cache_key(SRC_HASH, REL, KDIR, ())
KO = f"{CACHE}/{KEY}/hello_kmod.ko"


# ---------------------------------------------------------------------------- a fake host


def result(command: str, rc: int = 0, stdout: str = "", stderr: str = "") -> CommandResult:
    return CommandResult("srv1", command, rc, stdout, stderr, 0.01)


Answer = Callable[[str], CommandResult]


class FakeConn:
    """Answers the probe with canned output and other commands by prefix; records them."""

    def __init__(self, probe: str, answers: dict[str, Answer] | None = None) -> None:
        self.host = SimpleNamespace(name="srv1")
        self.probe = probe
        self.answers = answers or {}
        self.ran: list[str] = []

    def run(self, command: Any, **_: Any) -> CommandResult:
        text = command_text(command)
        self.ran.append(text)
        if text.startswith('printf "running='):
            return result(text, 0, self.probe)
        for prefix, answer in self.answers.items():
            if text.startswith(prefix):
                return answer(text)
        return result(text)  # every step succeeds unless an answer says otherwise


def ctx_for(conn: FakeConn) -> TaskContext:
    return TaskContext(conn=conn, vars={}, base_dir=Path("."))  # type: ignore[arg-type]


def probe_text(
    running: str = REL,
    modules: str = "yes",
    lockdown: str = "",
    loaded: str = "no",
    kernel_dir: str = KDIR,
    src: str = "ok",
    cache: str | None = "miss",
    vermagic: str | None = None,
) -> str:
    """What `probe_script` prints on a host (the key as the host computes it)."""
    lines = [f"running={running}", f"modules={modules}", f"lockdown={lockdown}"]
    lines.append(f"loaded={loaded}")
    lines.append(f"kernel_dir={kernel_dir}")
    lines.append(f"src={src}")
    if src == "ok":
        lines.append(f"src_hash={SRC_HASH}")
        if kernel_dir and cache:
            lines += [f"key={cache_key(SRC_HASH, REL, kernel_dir, ())}", f"cache={cache}"]
            if vermagic:
                lines.append(f"vermagic={vermagic}")
    return "\n".join(lines) + "\n"


def args(**raw: Any) -> dict[str, Any]:
    return {"name": "hello_kmod", "kernel_release": REL, "src": "/root/src/hello", **raw}


def plan_for(conn: FakeConn, raw: dict[str, Any]) -> KmodPlan:
    return KmodAction().plan(ctx_for(conn), build_args(KmodAction, raw))


def commands(plan: KmodPlan) -> list[str]:
    return [command_text(s.command) for s in plan.steps if isinstance(s, Run)]


# ---------------------------------------------------------------------------- args


def test_args_coerce_and_check() -> None:
    parsed = build_args(KmodAction, args(make_args="KCFLAGS=-DX", depends=["dca", "mdio"]))
    assert parsed == KmodArgs(
        "hello_kmod", REL, "/root/src/hello", None, ("KCFLAGS=-DX",), "built", ("dca", "mdio")
    )
    with pytest.raises(ArgsError, match=r"kmod: missing argument 'kernel_release'"):
        build_args(KmodAction, {"name": "x", "src": "/s"})
    with pytest.raises(ArgsError, match=r"state must be one of built, loaded, unloaded"):
        build_args(KmodAction, args(state="present"))
    with pytest.raises(ArgsError, match=r"state loaded needs `src`"):
        build_args(KmodAction, args(src=None, state="loaded"))
    with pytest.raises(ArgsError, match=r"src must be an absolute path, not 'hello'"):
        build_args(KmodAction, args(src="hello"))
    with pytest.raises(ArgsError, match=r"bad module name\(s\) in depends: \['-r'\]"):
        build_args(KmodAction, args(depends=["-r"]))
    with pytest.raises(ArgsError, match=r"kernel_release '' is not a release"):
        build_args(KmodAction, args(kernel_release=""))
    with pytest.raises(ArgsError, match=r"name 'a b' must be letters"):
        build_args(KmodAction, args(name="a b"))
    # Unloading needs no source.
    assert build_args(KmodAction, args(src=None, state="unloaded")).src is None


# ---------------------------------------------------------------------------- cache key


def test_cache_key_changes_with_source_release_dir_and_flags_only() -> None:
    base = cache_key(SRC_HASH, REL, KDIR, ("V=1",))
    assert base == cache_key(SRC_HASH, REL, KDIR, ("V=1",))
    assert len(base) == 64
    assert base != cache_key("cd" * 32, REL, KDIR, ("V=1",))
    assert base != cache_key(SRC_HASH, "6.1.0-29-amd64", KDIR, ("V=1",))
    assert base != cache_key(SRC_HASH, REL, f"/lib/modules/{REL}/build", ("V=1",))
    assert base != cache_key(SRC_HASH, REL, KDIR, ())
    assert base != cache_key(SRC_HASH, REL, KDIR, ("V=1", "W=1"))
    # Words are kept apart: one argument with a space is not two arguments.
    assert cache_key(SRC_HASH, REL, KDIR, ("A=1 B=2",)) != cache_key(
        SRC_HASH, REL, KDIR, ("A=1", "B=2")
    )


def source_hash(root: Path) -> str:
    """What the probe's find | sort | sha256sum pipeline computes, in Python."""
    names = sorted(
        ("./" + p.relative_to(root).as_posix()).encode()
        for p in root.rglob("*")
        if p.is_file() and any(fnmatch.fnmatchcase(p.name, pat) for pat in SOURCE_PATTERNS)
    )
    digests = [hashlib.sha256((root / n.decode()[2:]).read_bytes()).hexdigest() for n in names]
    listing = b"".join(d.encode() + b"  " + n + b"\n" for d, n in zip(digests, names, strict=True))
    return hashlib.sha256(listing).hexdigest()


def run_probe(kmod: KmodArgs) -> str:
    return subprocess.run(
        ["sh", "-c", probe_script(kmod)], capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture
def module_tree(tmp_path: Path) -> tuple[KmodArgs, Path]:
    src = tmp_path / "src"
    src.mkdir()
    for f in FIXTURE.iterdir():
        (src / f.name).write_bytes(f.read_bytes())
    kdir = tmp_path / "headers"
    kdir.mkdir()
    (kdir / "Makefile").write_text("# headers\n")
    kmod = KmodArgs(
        "hello_kmod", REL, str(src), str(kdir), ("V=1",), cache_dir=str(tmp_path / "cache")
    )
    return kmod, src


def test_the_host_computes_the_same_key_as_python(module_tree: tuple[KmodArgs, Path]) -> None:
    kmod, src = module_tree
    probe = parse_probe(run_probe(kmod))
    assert probe.src == "ok" and probe.kernel_dir == kmod.kernel_dir
    assert probe.src_hash == source_hash(src)
    assert probe.key == cache_key(source_hash(src), REL, str(kmod.kernel_dir), ("V=1",))
    assert not probe.cache_hit


def test_the_source_hash_follows_content_not_times_or_other_files(
    module_tree: tuple[KmodArgs, Path],
) -> None:
    kmod, src = module_tree
    first = parse_probe(run_probe(kmod)).key
    os.utime(src / "hello_kmod.c", (1, 1))
    (src / "README").write_text("not a source file\n")
    (src / "hello_kmod.ko").write_text("a build product\n")
    assert parse_probe(run_probe(kmod)).key == first
    (src / "sub").mkdir()
    (src / "sub" / "extra.h").write_text("#define X 1\n")
    second = parse_probe(run_probe(kmod)).key
    assert second != first
    (src / "hello_kmod.c").write_text((src / "hello_kmod.c").read_text() + "\n")
    assert parse_probe(run_probe(kmod)).key not in (first, second)


def test_the_probe_sees_a_cache_entry_and_missing_pieces(
    module_tree: tuple[KmodArgs, Path], tmp_path: Path
) -> None:
    kmod, src = module_tree
    key = parse_probe(run_probe(kmod)).key
    entry = tmp_path / "cache" / str(key)
    entry.mkdir(parents=True)
    (entry / "hello_kmod.ko").write_bytes(b"\x7fELF")
    (entry / ".labctl-kmod").write_text(f"key={key}\nvermagic={VERMAGIC} \n")
    probe = parse_probe(run_probe(kmod))
    assert (probe.cache_hit, probe.vermagic) == (True, VERMAGIC)
    no_headers = dataclasses.replace(kmod, kernel_dir=str(tmp_path / "nothing"))
    assert parse_probe(run_probe(no_headers)).kernel_dir is None
    assert parse_probe(run_probe(dataclasses.replace(kmod, src="/nonexistent"))).src == "missing"
    (src / "Kbuild").unlink()
    assert parse_probe(run_probe(kmod)).src == "nokbuild"


# ---------------------------------------------------------------------------- vermagic


@pytest.mark.parametrize(
    ("vermagic", "release", "ok"),
    [
        ("6.1.0-28-amd64 SMP preempt mod_unload modversions ", "6.1.0-28-amd64", True),
        ("6.1.0-28-amd64 SMP preempt mod_unload modversions ", "6.1.0-2", False),
        ("6.1.0-28-amd64", "6.1.0-28-amd64", True),
        ("6.1.0-28-amd64-rt SMP", "6.1.0-28-amd64", False),
        ("", "6.1.0-28-amd64", False),
    ],
)
def test_vermagic_must_start_with_the_exact_release(vermagic: str, release: str, ok: bool) -> None:
    assert vermagic_matches(vermagic, release) is ok


# ---------------------------------------------------------------------------- built


def test_a_cache_hit_is_ok_with_the_cached_module() -> None:
    conn = FakeConn(probe_text(cache="hit", vermagic=VERMAGIC))
    res = run_action(KmodAction(), ctx_for(conn), args())
    assert (res.changed, res.failed) == (False, False)
    assert res.output == {"ko": KO, "vermagic": VERMAGIC, "cached": True}
    assert len(conn.ran) == 1


def test_a_miss_builds_in_a_scratch_copy_then_stores() -> None:
    plan = plan_for(FakeConn(probe_text()), args())
    assert plan.roles == ["build", "store"]
    assert plan.changes == [f"build hello_kmod.ko for {REL} against {KDIR} (cache {KEY[:12]}…)"]
    build = commands(plan)[0]
    assert 'cp -a /root/src/hello/. "$b"/' in build
    assert f"make -C {KDIR} M={CACHE}/{KEY}.build modules" in build
    assert plan.steps[0].timeout is not None and plan.steps[0].timeout >= 600  # type: ignore[union-attr]
    assert plan.output == {"ko": KO, "vermagic": None, "cached": False}


def test_make_args_go_before_the_target() -> None:
    conn = FakeConn(probe_text().replace(KEY, cache_key(SRC_HASH, REL, KDIR, ("V=1",))))
    plan = plan_for(conn, args(make_args=["V=1"]))
    assert (
        f"M={CACHE}/{cache_key(SRC_HASH, REL, KDIR, ('V=1',))}.build V=1 modules"
        in (commands(plan)[0])
    )


def test_a_built_module_with_the_right_vermagic_is_stored() -> None:
    conn = FakeConn(
        probe_text(),
        {"set -e\nb=": lambda t: result(t, 0, f"  LD [M]  x.ko\n@@vermagic {VERMAGIC} \n")},
    )
    res = run_action(KmodAction(), ctx_for(conn), args())
    assert (res.changed, res.failed) == (True, False), res.msg
    assert res.output == {"ko": KO, "vermagic": VERMAGIC, "cached": False}
    assert len(conn.ran) == 3 and 'mv "$n" "$d"' in conn.ran[2]


def test_a_wrong_vermagic_fails_naming_both_and_stores_nothing() -> None:
    conn = FakeConn(
        probe_text(),
        {"set -e\nb=": lambda t: result(t, 0, "@@vermagic 6.1.0-2 SMP preempt mod_unload\n")},
    )
    res = run_action(KmodAction(), ctx_for(conn), args())
    assert res.failed
    assert res.msg == (
        "srv1: hello_kmod.ko has vermagic '6.1.0-2 SMP preempt mod_unload', "
        f"not kernel release {REL}"
    )
    assert conn.ran[-1] == f"rm -rf {CACHE}/{KEY}.build"


def test_a_failed_build_says_why() -> None:
    stderr = (
        "Skipping BTF generation for x.ko due to unavailability of vmlinux\n"
        "/root/x/hello_kmod.c:3:10: fatal error: linux/nope.h: No such file or directory\n"
        "make[2]: *** [scripts/Makefile.build:250: hello_kmod.o] Error 1\n"
    )
    conn = FakeConn(probe_text(), {"set -e\nb=": lambda t: result(t, 2, "", stderr)})
    res = run_action(KmodAction(), ctx_for(conn), args())
    assert res.failed
    assert res.msg == (
        f"srv1: building hello_kmod for {REL}: /root/x/hello_kmod.c:3:10: fatal error: "
        "linux/nope.h: No such file or directory"
    )
    assert "Skipping BTF generation" in res.log and "exit status 2" in res.log
    conn = FakeConn(
        probe_text(),
        {"set -e\nb=": lambda t: result(t, 1, "", "noise\nlabctl: make built no x.ko\n")},
    )
    res = run_action(KmodAction(), ctx_for(conn), args())
    assert res.msg == f"srv1: building hello_kmod for {REL}: make built no x.ko"


def test_missing_headers_and_source_plan_a_build_that_fails_in_one_line() -> None:
    # An earlier task may be what installs them: check mode shows the build...
    plan = plan_for(FakeConn(probe_text(src="missing")), args())
    assert plan.changed and plan.changes == [
        f"build hello_kmod.ko for {REL} (once its source is there)"
    ]
    # ...and applying it while they are still missing fails with the reason, in one line.
    for probe, message in (
        (
            probe_text(kernel_dir=""),
            f"no kernel headers for {REL} on srv1: install linux-headers-{REL}",
        ),
        (
            probe_text(src="missing"),
            "srv1: kmod hello_kmod: src /root/src/hello does not exist "
            "(put it there first, e.g. with the source action)",
        ),
    ):
        conn = FakeConn(probe, {"echo ": lambda t: result(t, 1, "", t.split("'")[1] + "\n")})
        res = run_action(KmodAction(), ctx_for(conn), args())
        assert res.failed and res.msg == message
    with pytest.raises(ActionFailed, match=r"has no Kbuild or Makefile$"):
        plan_for(FakeConn(probe_text(src="nokbuild")), args())


def test_check_mode_runs_only_the_probe() -> None:
    conn = FakeConn(probe_text())
    res = run_action(KmodAction(), ctx_for(conn), args(state="loaded"), check=True)
    assert res.changed and not res.failed
    assert len(conn.ran) == 1


# ---------------------------------------------------------------------------- loaded


def test_no_module_support_is_ok_and_says_so() -> None:
    probe = probe_text(running="6.18.44-fc-v669", modules="no")
    res = run_action(KmodAction(), ctx_for(FakeConn(probe)), args(state="loaded"))
    assert (res.changed, res.failed) == (False, False)
    assert res.msg == (
        "srv1: kernel 6.18.44-fc-v669 cannot load modules (no /proc/modules): hello_kmod not loaded"
    )
    assert res.output == {"loaded": False, "unsupported": True}
    res = run_action(KmodAction(), ctx_for(FakeConn(probe)), args(state="unloaded"))
    assert (res.changed, res.failed, res.output["unsupported"]) == (False, False, True)
    assert "cannot load modules (no /proc/modules)" in res.msg


def test_loading_for_another_release_is_refused() -> None:
    with pytest.raises(
        ActionFailed,
        match=rf"^srv1: kmod hello_kmod: built for {REL}, running 6.1.0-27-amd64: cannot load it$",
    ):
        plan_for(FakeConn(probe_text(running="6.1.0-27-amd64")), args(state="loaded"))


def test_an_already_loaded_module_is_ok() -> None:
    plan = plan_for(FakeConn(probe_text(loaded="yes")), args(state="loaded"))
    assert (plan.steps, plan.output) == ([], {"loaded": True})


def test_dependencies_are_modprobed_before_insmod() -> None:
    conn = FakeConn(probe_text(cache="hit", vermagic=VERMAGIC))
    plan = plan_for(conn, args(state="loaded", depends=["dca", "mdio"]))
    assert plan.roles == ["record", "modprobe", "modprobe", "insmod", "verify"]
    ran = commands(plan)
    assert "loaded-before.txt" in ran[0] and "/proc/modules" in ran[0]
    assert ran[1:4] == ["modprobe dca", "modprobe mdio", f"insmod {KO}"]
    assert "/sys/module/hello_kmod" in ran[4]
    assert plan.changes == [f"load hello_kmod (insmod {KO}) after modprobe dca mdio"]
    assert plan.output == {"ko": KO, "vermagic": VERMAGIC, "cached": True, "loaded": True}


def test_a_load_and_an_unload_each_say_how_to_put_them_back() -> None:
    load = plan_for(FakeConn(probe_text(cache="hit", vermagic=VERMAGIC)), args(state="loaded"))
    assert [u.to_dict() for u in load.undo] == [
        {
            "target": "module hello_kmod",
            "action": "kmod",
            "args": {"name": "hello_kmod", "kernel_release": REL, "state": "unloaded"},
        }
    ]
    unload = plan_for(FakeConn(probe_text(loaded="yes")), args(state="unloaded"))
    (again,) = unload.undo
    assert again.args["state"] == "loaded" and again.args["src"] == "/root/src/hello"
    build_args(KmodAction, again.args)  # a valid task of its own
    no_src = plan_for(FakeConn(probe_text(loaded="yes")), args(state="unloaded", src=None))
    assert no_src.changes == ["unload hello_kmod"] and not no_src.undo  # cannot be rebuilt
    assert not plan_for(FakeConn(probe_text(loaded="yes")), args(state="loaded")).undo


def test_loading_an_unbuilt_module_builds_it_first() -> None:
    plan = plan_for(FakeConn(probe_text()), args(state="loaded"))
    assert plan.roles == ["build", "store", "record", "insmod", "verify"]
    assert len(plan.changes) == 2


def test_a_dash_in_the_name_is_an_underscore_in_sysfs() -> None:
    conn = FakeConn(probe_text(cache="hit", vermagic=VERMAGIC))
    plan_for(conn, args(name="hello-kmod", state="unloaded", src=None))
    assert "/sys/module/hello_kmod" in conn.ran[0]


# ---------------------------------------------------------------------------- lockdown


def test_lockdown_is_named_in_the_plan_and_in_a_refused_insmod() -> None:
    lockdown = "none [integrity] confidentiality"
    assert lockdown_mode(lockdown) == "integrity"
    assert lockdown_mode("[none] integrity confidentiality") is None
    assert lockdown_mode(None) is None
    probe = probe_text(cache="hit", vermagic=VERMAGIC, lockdown=lockdown)
    plan = plan_for(FakeConn(probe), args(state="loaded"))
    assert plan.changes[0].endswith(
        "kernel lockdown [integrity]: an unsigned module will be refused"
    )
    refused = f"insmod: ERROR: could not insert module {KO}: Key was rejected by service\n"
    conn = FakeConn(probe, {"insmod ": lambda t: result(t, 1, "", refused)})
    res = run_action(KmodAction(), ctx_for(conn), args(state="loaded"))
    assert res.failed
    assert res.msg == (
        f"srv1: insmod {KO} refused: the module is not signed by a key the kernel trusts "
        "(kernel lockdown [integrity], Secure Boot): sign it with an enrolled key or turn "
        "Secure Boot off"
    )
    assert conn.ran[-1] == f"insmod {KO}", "nothing runs after a refused insmod"


def test_operation_not_permitted_under_lockdown_names_lockdown() -> None:
    text = "insmod: ERROR: could not insert module x.ko: Operation not permitted\n"
    assert explain_insmod_failure("srv1", "x.ko", text, "none integrity [confidentiality]") == (
        "srv1: insmod x.ko refused by kernel lockdown [confidentiality] (Secure Boot): "
        "unsigned modules cannot be loaded"
    )
    assert explain_insmod_failure("srv1", "x.ko", text, "[none] integrity confidentiality") == (
        f"srv1: insmod x.ko: {text.strip()}"
    )


# ---------------------------------------------------------------------------- unloaded


def test_unload_removes_a_loaded_module_only() -> None:
    raw = args(state="unloaded", src=None)
    plan = plan_for(FakeConn(probe_text(loaded="yes")), raw)
    assert (commands(plan), plan.changes) == (["rmmod hello_kmod"], ["unload hello_kmod"])
    plan = plan_for(FakeConn(probe_text(loaded="no")), raw)
    assert (plan.steps, plan.output) == ([], {"loaded": False})


def test_a_failed_rmmod_reports_its_error() -> None:
    conn = FakeConn(
        probe_text(loaded="yes"),
        {"rmmod ": lambda t: result(t, 1, "", "rmmod: ERROR: Module hello_kmod is in use\n")},
    )
    res = run_action(KmodAction(), ctx_for(conn), args(state="unloaded", src=None))
    assert (res.failed, res.msg) == (True, "rmmod: ERROR: Module hello_kmod is in use")


# ---------------------------------------------------------------------------- headers


def test_installed_header_releases() -> None:
    debian = (
        "linux-headers-6.1.0-56-amd64\nlinux-headers-6.1.0-56-common\n"
        "linux-headers-6.1.0-56-common-rt\nlinux-headers-6.1.0-56-rt-amd64\n"
        "linux-kbuild-6.1\npython3.11\n"
    )
    assert installed_header_releases(debian) == ["6.1.0-56-amd64", "6.1.0-56-rt-amd64"]
    ubuntu = "linux-headers-6.8.0-45\nlinux-headers-6.8.0-45-generic\n"
    assert installed_header_releases(ubuntu) == ["6.8.0-45-generic"]
    assert installed_header_releases("python3.11\n") == []
    assert installed_header_releases("") == []


# ---------------------------------------------------------------------------- guard


def lab_facts() -> HostFacts:
    """A namespace-lab host: the SSH session on eth0, a veth."""
    facts = parse_host_facts("cli1", (DATA / "facts" / "lab-veth-host.txt").read_text())
    assert facts.ssh_interface == "eth0"
    assert facts.interface("eth0") is not None
    return facts


def with_interfaces(facts: HostFacts, *extra: Interface, ssh: str | None = "eth0") -> HostFacts:
    by_name = {i.name: i for i in facts.interfaces}
    by_name.update({i.name: i for i in extra})
    return dataclasses.replace(facts, interfaces=tuple(by_name.values()), ssh_interface=ssh)


def nic(name: str, driver: str | None, master: str | None = None) -> Interface:
    return Interface(name, None, 1500, "UP", (), master=master, driver=driver)


def test_the_guard_refuses_the_driver_of_the_ssh_interface_unless_forced() -> None:
    facts = with_interfaces(lab_facts(), nic("eth0", "ixgbe"))
    refused = mgmt_driver_guard(facts, "ixgbe", force=False)
    assert refused == dataclasses.replace(refused, allowed=False, arm_revert=False)
    assert refused.reason == (
        "cli1: eth0 carries the SSH session and uses ixgbe: refusing to unload ixgbe: "
        "set force_mgmt_driver_swap: true to swap it anyway, with a revert armed"
    )
    assert "\n" not in refused.reason
    forced = mgmt_driver_guard(facts, "ixgbe", force=True)
    assert (forced.allowed, forced.arm_revert) == (True, True)


def test_the_guard_allows_a_driver_on_other_interfaces() -> None:
    facts = with_interfaces(lab_facts(), nic("ens1f0", "ixgbe"), nic("ens1f1", "ixgbe"))
    decision = mgmt_driver_guard(facts, "ixgbe", force=False)
    assert (decision.allowed, decision.arm_revert) == (True, False)
    assert decision.reason == "cli1: ixgbe drives ens1f0, ens1f1; the SSH session is on eth0 (veth)"
    unused = mgmt_driver_guard(lab_facts(), "ixgbe", force=True)
    assert (unused.allowed, unused.arm_revert) == (True, False)


def test_the_guard_refuses_when_the_ssh_interface_is_unknown() -> None:
    facts = with_interfaces(lab_facts(), ssh=None)
    decision = mgmt_driver_guard(facts, "ixgbe", force=False)
    assert not decision.allowed and "cannot tell which interface" in decision.reason
    forced = mgmt_driver_guard(facts, "ixgbe", force=True)
    assert (forced.allowed, forced.arm_revert) == (True, True)


def test_the_guard_looks_under_bridges_and_refuses_unknown_lower_devices() -> None:
    bridged = with_interfaces(
        lab_facts(),
        nic("br0", "bridge"),
        nic("bond0", "bonding", master="br0"),
        nic("ens1f0", "ixgbe", master="bond0"),
        ssh="br0",
    )
    decision = mgmt_driver_guard(bridged, "ixgbe", force=False)
    assert not decision.allowed
    assert decision.reason.startswith("cli1: ens1f0 carries the SSH session and uses ixgbe")
    vlan = with_interfaces(lab_facts(), nic("eth0.7", "802.1Q VLAN Support"), ssh="eth0.7")
    assert not mgmt_driver_guard(vlan, "ixgbe", force=False).allowed
    with pytest.raises(ValueError, match=r"bad driver name"):
        mgmt_driver_guard(lab_facts(), "ixgbe; reboot", force=True)


# ---------------------------------------------------------------------------- revert


def test_revert_commands_are_argv() -> None:
    arm = revert_command("ixgbe", 120)
    assert arm[:2] == ["sh", "-c"] and len(arm) == 3
    assert "systemd-run --quiet --collect --on-active=120 --unit=labctl-revert-ixgbe" in arm[2]
    assert "sleep 120; rm -f /run/labctl-revert-ixgbe.pid; rmmod ixgbe" in arm[2]
    cancel = cancel_revert_command("ixgbe")
    assert cancel[:2] == ["sh", "-c"] and "systemctl stop labctl-revert-ixgbe.timer" in cancel[2]
    with pytest.raises(ValueError, match=r"positive number of seconds"):
        revert_command("ixgbe", 0)


@pytest.fixture
def fake_bin(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A PATH with no systemd-run and a modprobe/rmmod that only log their arguments."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    for tool in ("sh", "sleep", "rm", "cat", "setsid"):
        found = subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True, text=True)
        (bin_dir / tool).symlink_to(found.stdout.strip())
    for tool in ("modprobe", "rmmod"):
        (bin_dir / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> {log}\n')
        (bin_dir / tool).chmod(0o755)
    return {"PATH": str(bin_dir)}, log


def test_an_armed_revert_fires_unless_cancelled(
    fake_bin: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    env, log = fake_bin
    pidfile = tmp_path / "labctl-revert-ixgbe.pid"
    subprocess.run(revert_command("ixgbe", 1, str(tmp_path)), env=env, check=True, timeout=10)
    assert pidfile.exists()
    subprocess.run(cancel_revert_command("ixgbe", str(tmp_path)), env=env, check=True, timeout=10)
    assert not pidfile.exists()
    time.sleep(1.5)
    assert not log.exists(), "a cancelled revert ran"
    subprocess.run(revert_command("ixgbe", 1, str(tmp_path)), env=env, check=True, timeout=10)
    deadline = time.monotonic() + 5
    while not (log.exists() and "modprobe" in log.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert log.read_text() == "rmmod ixgbe\nmodprobe ixgbe\n"
    assert not pidfile.exists()


def test_a_cancel_says_whether_a_revert_was_pending(
    fake_bin: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    env, log = fake_bin

    def cancel() -> str:
        argv = cancel_revert_command("ixgbe", str(tmp_path))
        return subprocess.run(
            argv, env=env, check=True, timeout=10, capture_output=True, text=True
        ).stdout

    assert cancel() == "absent\n"  # never armed
    subprocess.run(revert_command("ixgbe", 30, str(tmp_path)), env=env, check=True, timeout=10)
    assert cancel() == "cancelled\n"
    subprocess.run(revert_command("ixgbe", 1, str(tmp_path)), env=env, check=True, timeout=10)
    deadline = time.monotonic() + 5
    while not (log.exists() and "modprobe" in log.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert cancel() == "absent\n"  # it fired: the driver action then reports the swap failed


@pytest.mark.parametrize("record", ["1 0", "0", "{pid} 1", "{pid}", "-{pid} {start}", "x y"])
def test_a_cancel_signals_only_the_recorded_process(
    fake_bin: tuple[dict[str, str], Path], tmp_path: Path, record: str
) -> None:
    """A pidfile naming PID 1, a reused PID (other start time) or garbage signals nothing."""
    env, _ = fake_bin
    bystander = subprocess.Popen(["setsid", "sleep", "60"])
    try:
        stat = Path(f"/proc/{bystander.pid}/stat").read_text()
        start = stat.rpartition(")")[2].split()[19]
        pidfile = tmp_path / "labctl-revert-ixgbe.pid"
        pidfile.write_text(record.format(pid=bystander.pid, start=start) + "\n")
        argv = cancel_revert_command("ixgbe", str(tmp_path))
        out = subprocess.run(argv, env=env, timeout=10, capture_output=True, text=True)
        assert out.stdout == "absent\n" and not pidfile.exists()
        assert bystander.poll() is None, "a process that was not the revert got a signal"
    finally:
        bystander.kill()
        bystander.wait(timeout=10)
