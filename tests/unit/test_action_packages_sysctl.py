"""packages and sysctl without a host: parsers, name checks, args, and plans from canned facts.

A `FakeConn` answers each read-only command with captured output (facts in) and the test
checks the plan (steps and change lines out), as pyinfra's operation tests do.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from labctl.actions.base import ArgsError, Plan, Run, TaskContext, Upload, build_args, run_action
from labctl.actions.packages import (
    QUERY_FORMAT,
    PackagesAction,
    PackagesArgs,
    PackageSpec,
    install_command,
    parse_dpkg_query,
    parse_spec,
    remove_command,
    split_installed,
)
from labctl.actions.sysctl import (
    SysctlAction,
    SysctlArgs,
    conf_key,
    dotted_name,
    normalize_value,
    proc_path,
    update_conf,
)
from labctl.remote import CommandFailed, CommandResult, command_text

# `dpkg-query -W -f=QUERY_FORMAT hello bash libc6 nosuchpkg zlib1g:amd64 gcc-12-base:i386
# cowsay` on a Debian 12 machine (exit status 1: hello and nosuchpkg are unknown to dpkg),
# with a removed-but-configured package (rc) and a half-configured one (iF) added.
DPKG_QUERY_OUT = (
    "bash\tamd64\tii \t5.2.15-2+b8\n"
    "libc6\tamd64\tii \t2.36-9+deb12u14\n"
    "zlib1g\tamd64\tii \t1:1.2.13.dfsg-1\n"
    "gcc-12-base\tamd64\tii \t12.2.0-14+deb12u1\n"
    "gcc-12-base\ti386\tii \t12.2.0-14+deb12u1\n"
    "cowsay\tall\trc \t3.03+dfsg2-8\n"
    "broken\tamd64\tiF \t1.0-1\n"
)


def result(command: str, rc: int = 0, stdout: str = "", stderr: str = "") -> CommandResult:
    return CommandResult("srv1", command, rc, stdout, stderr, 0.01)


class FakeConn:
    """Answers commands by their first matching prefix; records every command it ran."""

    def __init__(self, answers: list[tuple[str, Callable[[str], CommandResult]]]) -> None:
        self.host = SimpleNamespace(name="srv1")
        self.answers = answers
        self.ran: list[str] = []

    def run(self, command: Any, **_: Any) -> CommandResult:
        text = command_text(command)
        self.ran.append(text)
        for prefix, answer in self.answers:
            if text.startswith(prefix):
                return answer(text)
        raise AssertionError(f"unexpected command {text!r}")


def ctx_for(conn: FakeConn, want_diff: bool = False) -> TaskContext:
    return TaskContext(conn=conn, vars={}, base_dir=Path("."), want_diff=want_diff)  # type: ignore[arg-type]


def dpkg_answer(stdout: str, rc: int = 1) -> tuple[str, Callable[[str], CommandResult]]:
    return ("dpkg-query", lambda text: result(text, rc, stdout))


# ---------------------------------------------------------------------------- package names


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("hello", PackageSpec("hello", "hello")),
        ("libstdc++6", PackageSpec("libstdc++6", "libstdc++6")),
        ("python3.11", PackageSpec("python3.11", "python3.11")),
        ("gcc-12-base:i386", PackageSpec("gcc-12-base:i386", "gcc-12-base", "i386")),
        ("hello=2.10-3", PackageSpec("hello=2.10-3", "hello", None, "2.10-3")),
        (
            "zlib1g:amd64=1:1.2.13.dfsg-1",
            PackageSpec("zlib1g:amd64=1:1.2.13.dfsg-1", "zlib1g", "amd64", "1:1.2.13.dfsg-1"),
        ),
    ],
)
def test_good_package_names_parse(text: str, spec: PackageSpec) -> None:
    assert parse_spec(text) == spec


@pytest.mark.parametrize(
    "text",
    [
        "Hello",
        "h",
        "-y",
        "--purge",
        "hello world",
        "hello;rm -rf /",
        "hello*",
        "hello:",
        "hello=",
        "hello=x1",
        "$(id)",
        "",
    ],
)
def test_bad_package_names_are_refused_by_name(text: str) -> None:
    with pytest.raises(ValueError, match="^bad package name " + re.escape(repr(text))):
        parse_spec(text)


# ---------------------------------------------------------------------------- dpkg-query


def test_dpkg_query_output_parses() -> None:
    found = parse_dpkg_query(DPKG_QUERY_OUT)
    assert [(p.name, p.arch, p.installed, p.on_disk) for p in found] == [
        ("bash", "amd64", True, True),
        ("libc6", "amd64", True, True),
        ("zlib1g", "amd64", True, True),
        ("gcc-12-base", "amd64", True, True),
        ("gcc-12-base", "i386", True, True),
        ("cowsay", "all", False, False),  # rc: only config files are left
        ("broken", "amd64", False, True),  # iF: half-configured
    ]
    assert parse_dpkg_query("") == []
    with pytest.raises(ValueError, match="unexpected dpkg-query line"):
        parse_dpkg_query("hello ii\n")


def test_installed_and_missing_follow_name_arch_and_version() -> None:
    found = parse_dpkg_query(DPKG_QUERY_OUT)
    specs = [
        parse_spec(t)
        for t in (
            "bash",
            "hello",
            "nosuchpkg",
            "zlib1g:amd64",
            "zlib1g:i386",
            "libc6=2.36-9+deb12u14",
            "libc6=2.36-9",
            "cowsay",
            "broken",
            "gcc-12-base:i386",
        )
    ]
    installed, missing = split_installed(specs, found, "present")
    assert [s.text for s in installed] == [
        "bash",
        "zlib1g:amd64",
        "libc6=2.36-9+deb12u14",
        "gcc-12-base:i386",
    ]
    assert [s.text for s in missing] == [
        "hello",
        "nosuchpkg",
        "zlib1g:i386",
        "libc6=2.36-9",
        "cowsay",
        "broken",
    ]
    # For removal a half-configured package is there to remove; config files alone are not.
    installed, _ = split_installed(specs, found, "absent")
    assert "broken" in [s.text for s in installed] and "cowsay" not in [s.text for s in installed]


def test_apt_commands() -> None:
    specs = [parse_spec("hello=2.10-3"), parse_spec("cowsay:all")]
    assert install_command(specs) == [
        "env",
        "DEBIAN_FRONTEND=noninteractive",
        "apt-get",
        "-o",
        "DPkg::Lock::Timeout=300",
        "install",
        "-y",
        "--no-install-recommends",
        "hello=2.10-3",
        "cowsay:all",
    ]
    assert remove_command(specs)[-4:] == ["remove", "-y", "hello", "cowsay:all"]


# ---------------------------------------------------------------------------- packages args


def test_packages_args_coerce_and_check() -> None:
    args = build_args(PackagesAction, {"names": "hello"})
    assert args == PackagesArgs(names=("hello",), state="present", update_cache=False)
    args = build_args(
        PackagesAction, {"names": ["hello", "bash"], "state": "absent", "update_cache": "yes"}
    )
    assert args == PackagesArgs(("hello", "bash"), "absent", True)
    with pytest.raises(ArgsError, match=r"packages: missing argument 'names'"):
        build_args(PackagesAction, {"state": "present"})
    with pytest.raises(ArgsError, match=r"packages: unknown argument 'name' \(takes names, "):
        build_args(PackagesAction, {"name": "hello"})
    with pytest.raises(ArgsError, match=r"state must be present or absent, not 'latest'"):
        build_args(PackagesAction, {"names": "hello", "state": "latest"})
    with pytest.raises(ArgsError, match=r"bad package name 'Hello'"):
        build_args(PackagesAction, {"names": ["hello", "Hello"]})
    with pytest.raises(ArgsError, match=r"names must name at least one package"):
        build_args(PackagesAction, {"names": []})
    with pytest.raises(ValueError, match=r"bad package name '-y'"):
        PackagesArgs(names=("-y",))


# ---------------------------------------------------------------------------- packages plans


def plan_packages(raw: dict[str, Any], stdout: str, rc: int = 1) -> tuple[Plan, FakeConn]:
    conn = FakeConn([dpkg_answer(stdout, rc)])
    plan = PackagesAction().plan(ctx_for(conn), build_args(PackagesAction, raw))
    return plan, conn


def test_packages_plan_installs_only_what_is_missing() -> None:
    plan, conn = plan_packages({"names": ["bash", "hello", "bash"]}, DPKG_QUERY_OUT)
    assert conn.ran == [f"dpkg-query -W '-f={QUERY_FORMAT}' bash hello"]
    assert plan.changes == ["install hello"]
    assert plan.steps == [Run(install_command([parse_spec("hello")]))]
    assert plan.output == {"installed": ["bash"], "missing": ["hello"]}


def test_packages_plan_is_empty_when_all_are_there() -> None:
    plan, _ = plan_packages({"names": ["bash", "libc6"]}, DPKG_QUERY_OUT, rc=0)
    assert (plan.changed, plan.changes) == (False, [])
    plan, _ = plan_packages({"names": "hello", "state": "absent"}, DPKG_QUERY_OUT)
    assert (plan.changed, plan.output) == (False, {"installed": [], "missing": ["hello"]})


def test_packages_plan_updates_the_cache_when_asked() -> None:
    plan, _ = plan_packages({"names": "hello", "update_cache": True}, "")
    assert [s.command[5] for s in plan.steps if isinstance(s, Run)] == ["update", "install"]
    # Nothing to install: no update either, so a second run stays unchanged.
    plan, _ = plan_packages({"names": "bash", "update_cache": True}, DPKG_QUERY_OUT, rc=0)
    assert plan.steps == []


def test_packages_plan_removes_only_what_is_installed() -> None:
    plan, _ = plan_packages(
        {"names": ["bash", "hello", "cowsay"], "state": "absent"}, DPKG_QUERY_OUT
    )
    assert plan.changes == ["remove bash"]
    assert plan.steps == [Run(remove_command([parse_spec("bash")]))]


def test_packages_plan_fails_on_a_real_dpkg_query_error() -> None:
    with pytest.raises(CommandFailed, match=r"srv1: `dpkg-query .* exited 2"):
        plan_packages({"names": "hello"}, "", rc=2)
    with pytest.raises(Exception, match=r"srv1: packages: dpkg-query not found"):
        plan_packages({"names": "hello"}, "", rc=127)


def test_unknown_package_refreshes_the_cache_once_then_retries() -> None:
    installs: list[str] = []

    def install(text: str) -> CommandResult:
        installs.append(text)
        if len(installs) == 1:
            return result(
                text, 100, "Reading package lists...\n", "E: Unable to locate package hello\n"
            )
        return result(text, 0, "Setting up hello (2.10-3) ...\n")

    conn = FakeConn(
        [
            dpkg_answer(""),
            (
                "env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install",
                install,
            ),
            (
                "env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update",
                lambda text: result(text),
            ),
        ]
    )
    res = run_action(PackagesAction(), ctx_for(conn), {"names": "hello"})
    assert (res.changed, res.failed, res.changes) == (True, False, ("install hello",))
    assert [c.split()[5] for c in conn.ran[1:]] == ["install", "update", "install"]


def test_a_package_apt_cannot_find_fails_after_one_retry() -> None:
    def install(text: str) -> CommandResult:
        return result(text, 100, "", "E: Unable to locate package nosuchpkg\n")

    conn = FakeConn(
        [
            dpkg_answer(""),
            (
                "env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install",
                install,
            ),
            (
                "env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update",
                lambda text: result(text),
            ),
        ]
    )
    res = run_action(PackagesAction(), ctx_for(conn), {"names": "nosuchpkg"})
    assert (res.changed, res.failed) == (True, True)
    assert res.msg == "E: Unable to locate package nosuchpkg"
    assert [c.split()[5] for c in conn.ran[1:]] == ["install", "update", "install"]


def test_check_mode_runs_only_the_query() -> None:
    conn = FakeConn([dpkg_answer("")])
    res = run_action(PackagesAction(), ctx_for(conn), {"names": "hello"}, check=True)
    assert (res.changed, res.changes) == (True, ("install hello",))
    assert len(conn.ran) == 1 and conn.ran[0].startswith("dpkg-query")


# ---------------------------------------------------------------------------- sysctl names


@pytest.mark.parametrize(
    ("name", "dotted", "path"),
    [
        ("net.ipv4.tcp_tw_reuse", "net.ipv4.tcp_tw_reuse", "/proc/sys/net/ipv4/tcp_tw_reuse"),
        ("net/ipv4/tcp_tw_reuse", "net.ipv4.tcp_tw_reuse", "/proc/sys/net/ipv4/tcp_tw_reuse"),
        ("/net/core/somaxconn", "net.core.somaxconn", "/proc/sys/net/core/somaxconn"),
        # A VLAN interface's dot: '/' in the dotted form, literal in the slash form (procps).
        (
            "net.ipv4.conf.eth0/1.rp_filter",
            "net.ipv4.conf.eth0/1.rp_filter",
            "/proc/sys/net/ipv4/conf/eth0.1/rp_filter",
        ),
        (
            "net/ipv4/conf/eth0.1/rp_filter",
            "net.ipv4.conf.eth0/1.rp_filter",
            "/proc/sys/net/ipv4/conf/eth0.1/rp_filter",
        ),
    ],
)
def test_sysctl_names_map_to_proc_paths(name: str, dotted: str, path: str) -> None:
    assert (dotted_name(name), proc_path(name)) == (dotted, path)


@pytest.mark.parametrize(
    "name", ["", "net..ipv4", "net/../../etc/passwd", "net.ipv4.a b", "net.ipv4.x;id", "net.$(id)"]
)
def test_bad_sysctl_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match=r"bad sysctl name"):
        proc_path(name)


def test_values_compare_by_words() -> None:
    assert normalize_value("32768\t60999\n") == normalize_value("32768   60999") == "32768 60999"


def test_sysctl_args_coerce_and_check() -> None:
    assert build_args(SysctlAction, {"name": "net.ipv4.tcp_tw_reuse", "value": 1}) == SysctlArgs(
        "net.ipv4.tcp_tw_reuse", "1", False, "/etc/sysctl.d/99-labctl.conf"
    )
    with pytest.raises(ArgsError, match=r"sysctl: missing argument 'value'"):
        build_args(SysctlAction, {"name": "net.ipv4.tcp_tw_reuse"})
    with pytest.raises(ArgsError, match=r"sysctl: unknown argument 'state'"):
        build_args(SysctlAction, {"name": "a.b", "value": "1", "state": "present"})
    with pytest.raises(ArgsError, match=r"value must be one line"):
        build_args(SysctlAction, {"name": "a.b", "value": "1\nkernel.x = 2"})
    with pytest.raises(ArgsError, match=r"value must not be empty"):
        build_args(SysctlAction, {"name": "a.b", "value": " "})
    with pytest.raises(ArgsError, match=r"file 'x.conf' must be an absolute path"):
        build_args(SysctlAction, {"name": "a.b", "value": "1", "file": "x.conf"})


# ---------------------------------------------------------------------------- sysctl.d files


CONF = """\
# tuned for the lab
net.core.somaxconn = 4096
 net/ipv4/tcp_tw_reuse=0
; another comment
-net.ipv4.ip_local_port_range = 1024 65535
"""


def test_conf_keys() -> None:
    assert [conf_key(line) for line in CONF.splitlines()] == [
        None,
        "net.core.somaxconn",
        "net.ipv4.tcp_tw_reuse",
        None,
        "net.ipv4.ip_local_port_range",
    ]


def test_update_conf_changes_only_this_key() -> None:
    assert update_conf(CONF, "net.ipv4.tcp_tw_reuse", "1") == CONF.replace(
        " net/ipv4/tcp_tw_reuse=0", "net.ipv4.tcp_tw_reuse = 1"
    )
    assert update_conf(CONF, "net.ipv4.ip_local_port_range", "40000 50000") == CONF.replace(
        "1024 65535", "40000 50000"
    )
    assert update_conf(CONF, "vm.swappiness", "10") == CONF + "vm.swappiness = 10\n"
    assert update_conf("", "vm.swappiness", "10") == "vm.swappiness = 10\n"
    assert update_conf("a.b = 1", "c.d", "2") == "a.b = 1\nc.d = 2\n"
    done = update_conf(CONF, "net.core.somaxconn", "4096")
    assert update_conf(done, "net.core.somaxconn", "4096") == done


# ---------------------------------------------------------------------------- sysctl plans


def sysctl_conn(proc: dict[str, str], files: dict[str, str]) -> FakeConn:
    def cat(text: str) -> CommandResult:
        path = text.split()[-1]
        if path in proc:
            return result(text, 0, proc[path])
        if path in files:
            return result(text, 0, files[path])
        return result(text, 1, "", f"cat: {path}: No such file or directory\n")

    return FakeConn([("cat -- ", cat)])


def plan_sysctl(
    raw: dict[str, Any],
    proc: dict[str, str],
    files: dict[str, str] | None = None,
    want_diff: bool = False,
) -> Plan:
    conn = sysctl_conn(proc, files or {})
    return SysctlAction().plan(ctx_for(conn, want_diff), build_args(SysctlAction, raw))


TW = "/proc/sys/net/ipv4/tcp_tw_reuse"
RANGE = "/proc/sys/net/ipv4/ip_local_port_range"


def test_sysctl_plan_sets_what_differs() -> None:
    plan = plan_sysctl({"name": "net.ipv4.tcp_tw_reuse", "value": 1}, {TW: "2\n"})
    assert plan.steps == [Run(["sysctl", "-w", "net.ipv4.tcp_tw_reuse=1"])]
    assert plan.changes == ["net.ipv4.tcp_tw_reuse 2 -> 1"]
    assert plan.output == {"previous": "2", "value": "1"}
    same = plan_sysctl({"name": "net/ipv4/tcp_tw_reuse", "value": "2"}, {TW: "2\n"})
    assert (same.steps, same.changes) == ([], [])


def test_sysctl_plan_ignores_tabs_against_spaces() -> None:
    plan = plan_sysctl(
        {"name": "net.ipv4.ip_local_port_range", "value": "32768  60999"}, {RANGE: "32768\t60999\n"}
    )
    assert plan.steps == [] and plan.output == {"previous": "32768 60999", "value": "32768 60999"}


def test_sysctl_plan_names_a_missing_key() -> None:
    with pytest.raises(
        ValueError,
        match=r"^sysctl net.core.default_qdisc: not available on srv1 "
        r"\(only in the initial network namespace\?\)$",
    ):
        plan_sysctl({"name": "net.core.default_qdisc", "value": "fq"}, {})
    with pytest.raises(ValueError, match=r"^sysctl kernel.nope: not available on srv1$"):
        plan_sysctl({"name": "kernel.nope", "value": "1"}, {})


def test_sysctl_persist_writes_the_file_only_when_the_line_differs() -> None:
    conf = "/root/sysctl.conf"
    raw = {"name": "net.ipv4.tcp_tw_reuse", "value": "1", "persist": True, "file": conf}
    plan = plan_sysctl(raw, {TW: "1\n"}, {conf: CONF}, want_diff=True)
    expected = update_conf(CONF, "net.ipv4.tcp_tw_reuse", "1")
    assert plan.steps == [Upload(expected.encode(), conf, mode="644")]
    assert plan.changes == [f"{conf}: net.ipv4.tcp_tw_reuse = 1"]
    assert plan.diff is not None and "+net.ipv4.tcp_tw_reuse = 1" in plan.diff
    assert plan_sysctl(raw, {TW: "1\n"}, {conf: expected}).steps == []
    # No file yet: it is created with the one line.
    new = plan_sysctl(raw, {TW: "2\n"})
    assert [type(s).__name__ for s in new.steps] == ["Run", "Upload"]
    upload = new.steps[1]
    assert isinstance(upload, Upload) and upload.content == b"net.ipv4.tcp_tw_reuse = 1\n"


def test_sysctl_read_back_catches_a_value_the_kernel_did_not_keep() -> None:
    conn = FakeConn(
        [
            ("cat -- ", lambda text: result(text, 0, "0\n")),
            ("sysctl -w", lambda text: result(text, 0, "net.ipv4.tcp_tw_reuse = 1\n")),
        ]
    )
    res = run_action(SysctlAction(), ctx_for(conn), {"name": "net.ipv4.tcp_tw_reuse", "value": 1})
    assert (res.changed, res.failed) == (True, True)
    assert res.msg == "sysctl net.ipv4.tcp_tw_reuse: wrote '1' but the kernel kept '0'"
