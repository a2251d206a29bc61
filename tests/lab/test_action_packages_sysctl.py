"""packages and sysctl on the namespace lab: applied twice (changed, then not), check mode
leaves the host alone, failures come back as one line. Values are read back from the hosts.

The lab's hosts share this machine's filesystem (and so its dpkg database) but each has its
own network namespace: per-namespace sysctls change on one host only, packages on all.
"""

from __future__ import annotations

import glob
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from labctl.actions.base import ActionResult, ArgsError, TaskContext, run_action
from labctl.actions.packages import PackagesAction
from labctl.actions.sysctl import SysctlAction
from labctl.remote import HostConnection

from .conftest import NamespaceLab

pytestmark = pytest.mark.lab

ARCHIVES = "/var/cache/apt/archives"
APT_ENV = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}


def ctx(lab: NamespaceLab, tmp_path: Path, host: str = "srv1") -> TaskContext:
    return TaskContext(conn=lab.host(host), vars={}, base_dir=tmp_path)


# ---------------------------------------------------------------------------- packages


def dpkg_status(conn: HostConnection, package: str) -> str:
    """`ii ` when installed; "" when dpkg has no record of it."""
    res = conn.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", package])
    return res.stdout if res.ok else ""


def installed_here(package: str) -> bool:
    res = subprocess.run(
        ["dpkg-query", "-W", "-f=${db:Status-Abbrev}", package], capture_output=True, text=True
    )
    return res.returncode == 0 and res.stdout[1:2] == "i"


@pytest.fixture
def hello_not_installed() -> Iterator[None]:
    """GNU hello, absent before and after; its .deb in apt's cache for the test's length.

    The lab's hosts have no route out, so apt on them cannot download: the controller fetches
    the .deb into the cache they share, and deletes it afterwards if it was not there before.
    """
    if installed_here("hello"):
        pytest.skip("hello is installed on this machine: the test must not remove it")
    cached_before = set(glob.glob(f"{ARCHIVES}/hello_*.deb"))
    if not cached_before:
        res = subprocess.run(
            [
                "apt-get",
                "install",
                "--download-only",
                "-y",
                "--no-install-recommends",
                "-o",
                "DPkg::Lock::Timeout=300",
                "hello",
            ],
            capture_output=True,
            text=True,
            env=APT_ENV,
            timeout=600,
            stdin=subprocess.DEVNULL,
        )
        if res.returncode != 0 or not glob.glob(f"{ARCHIVES}/hello_*.deb"):
            pytest.skip(f"cannot download hello's .deb: {res.stderr.strip()[-200:]}")
    try:
        yield
    finally:
        if installed_here("hello"):
            subprocess.run(
                ["apt-get", "purge", "-y", "-o", "DPkg::Lock::Timeout=300", "hello"],
                capture_output=True,
                env=APT_ENV,
                timeout=600,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        for deb in set(glob.glob(f"{ARCHIVES}/hello_*.deb")) - cached_before:
            os.unlink(deb)


@pytest.mark.usefixtures("hello_not_installed")
def test_packages_install_and_remove_twice(lab: NamespaceLab, tmp_path: Path) -> None:
    srv1, cli1 = lab.host("srv1"), lab.host("cli1")
    action, c = PackagesAction(), ctx(lab, tmp_path)
    present, absent = {"names": "hello"}, {"names": ["hello"], "state": "absent"}

    check = run_action(action, c, present, check=True)
    assert (check.changed, check.failed, check.changes) == (True, False, ("install hello",))
    assert check.output == {"installed": [], "missing": ["hello"]}
    assert dpkg_status(srv1, "hello") == ""  # check mode left it exactly as it was
    assert srv1.run(["test", "-e", "/usr/bin/hello"]).exit_status == 1

    first = run_action(action, c, present)
    assert (first.changed, first.failed, first.changes) == (True, False, ("install hello",)), (
        first.msg
    )
    assert dpkg_status(srv1, "hello") == "ii "
    assert srv1.run(["hello"]).stdout == "Hello, world!\n"
    # One dpkg database for all the lab's hosts: cli1 sees it too.
    assert dpkg_status(cli1, "hello") == "ii "

    second = run_action(action, c, present)
    assert (second.changed, second.failed, second.changes) == (False, False, ())
    assert second.output == {"installed": ["hello"], "missing": []}

    check = run_action(action, c, absent, check=True)
    assert (check.changed, check.changes) == (True, ("remove hello",))
    assert dpkg_status(srv1, "hello") == "ii "

    removed = run_action(action, c, absent)
    assert (removed.changed, removed.failed, removed.changes) == (True, False, ("remove hello",))
    assert dpkg_status(srv1, "hello")[1:2] in ("", "n", "c")
    assert srv1.run(["test", "-e", "/usr/bin/hello"]).exit_status == 1

    again = run_action(action, c, absent)
    assert (again.changed, again.failed) == (False, False)
    assert again.output == {"installed": [], "missing": ["hello"]}


def test_packages_bad_name_never_reaches_the_host(lab: NamespaceLab, tmp_path: Path) -> None:
    with pytest.raises(ArgsError, match=r"^packages: bad package name 'hello; touch /tmp/x'"):
        run_action(PackagesAction(), ctx(lab, tmp_path), {"names": "hello; touch /tmp/x"})


# ---------------------------------------------------------------------------- sysctl


def read_proc(conn: HostConnection, path: str) -> str:
    return conn.run(["cat", f"/proc/sys/{path}"], check=True).stdout


@pytest.fixture
def restore_sysctls(lab: NamespaceLab) -> Iterator[None]:
    """Whatever a test sets on srv1, srv1 gets its values back."""
    names = ("net.ipv4.tcp_tw_reuse", "net.ipv4.ip_local_port_range")
    srv1 = lab.host("srv1")
    saved = {n: " ".join(read_proc(srv1, n.replace(".", "/")).split()) for n in names}
    try:
        yield
    finally:
        for name, value in saved.items():
            srv1.run(["sysctl", "-w", f"{name}={value}"], check=True)


def changed_twice(lab: NamespaceLab, tmp_path: Path, raw: dict[str, object]) -> ActionResult:
    first = run_action(SysctlAction(), ctx(lab, tmp_path), raw)
    second = run_action(SysctlAction(), ctx(lab, tmp_path), raw)
    assert (first.changed, first.failed) == (True, False), first.msg
    assert (second.changed, second.failed, second.changes) == (False, False, ())
    return first


@pytest.mark.usefixtures("restore_sysctls")
def test_sysctl_set_twice_on_one_namespace_only(lab: NamespaceLab, tmp_path: Path) -> None:
    srv1, cli1 = lab.host("srv1"), lab.host("cli1")
    before = read_proc(srv1, "net/ipv4/tcp_tw_reuse").strip()
    cli1_before = read_proc(cli1, "net/ipv4/tcp_tw_reuse")
    want = "1" if before != "1" else "0"
    raw = {"name": "net.ipv4.tcp_tw_reuse", "value": int(want)}

    check = run_action(SysctlAction(), ctx(lab, tmp_path), raw, check=True)
    assert (check.changed, check.changes) == (True, (f"net.ipv4.tcp_tw_reuse {before} -> {want}",))
    assert read_proc(srv1, "net/ipv4/tcp_tw_reuse").strip() == before  # check mode: untouched

    first = changed_twice(lab, tmp_path, raw)
    assert first.changes == (f"net.ipv4.tcp_tw_reuse {before} -> {want}",)
    assert first.output["previous"] == before and first.output["value"] == want
    assert read_proc(srv1, "net/ipv4/tcp_tw_reuse") == f"{want}\n"
    assert read_proc(cli1, "net/ipv4/tcp_tw_reuse") == cli1_before  # another namespace
    assert not check.undo  # check mode changed nothing: nothing to put back
    (undo,) = first.undo  # what puts it back, run as a task of its own
    assert undo.to_dict() == {
        "target": "sysctl net.ipv4.tcp_tw_reuse",
        "action": "sysctl",
        "args": {"name": "net.ipv4.tcp_tw_reuse", "value": before},
    }
    back = run_action(SysctlAction(), ctx(lab, tmp_path), undo.args)
    assert back.changed and read_proc(srv1, "net/ipv4/tcp_tw_reuse") == f"{before}\n"
    assert not run_action(SysctlAction(), ctx(lab, tmp_path), undo.args).changed


@pytest.mark.usefixtures("restore_sysctls")
def test_sysctl_multi_value_in_slash_form(lab: NamespaceLab, tmp_path: Path) -> None:
    srv1 = lab.host("srv1")
    before = read_proc(srv1, "net/ipv4/ip_local_port_range")
    want = "40001 50001" if before != "40001\t50001\n" else "40002 50002"
    first = changed_twice(lab, tmp_path, {"name": "net/ipv4/ip_local_port_range", "value": want})
    assert first.changes == (f"net.ipv4.ip_local_port_range {' '.join(before.split())} -> {want}",)
    assert read_proc(srv1, "net/ipv4/ip_local_port_range") == want.replace(" ", "\t") + "\n"
    # Other spacing, same words: nothing to do.
    spaced = run_action(
        SysctlAction(),
        ctx(lab, tmp_path),
        {"name": "net.ipv4.ip_local_port_range", "value": want.replace(" ", "\t ")},
    )
    assert spaced.changed is False


@pytest.mark.usefixtures("restore_sysctls")
def test_sysctl_persist_edits_only_its_line(lab: NamespaceLab, tmp_path: Path) -> None:
    srv1, cli1 = lab.host("srv1"), lab.host("cli1")
    conf = "/root/labctl-test-sysctl.conf"  # the lab host's private home, never /etc
    original = "# lab tuning\nnet.core.somaxconn = 4096\nnet.ipv4.tcp_tw_reuse = 2\n"
    (tmp_path / "sysctl.conf").write_text(original)
    srv1.put(str(tmp_path / "sysctl.conf"), conf)
    try:
        before = read_proc(srv1, "net/ipv4/tcp_tw_reuse").strip()
        want = "1" if before != "1" else "0"
        raw = {"name": "net.ipv4.tcp_tw_reuse", "value": want, "persist": "yes", "file": conf}

        check = run_action(SysctlAction(), ctx(lab, tmp_path), raw, check=True)
        assert check.changes == (
            f"net.ipv4.tcp_tw_reuse {before} -> {want}",
            f"{conf}: net.ipv4.tcp_tw_reuse = {want}",
        )
        assert srv1.run(["cat", conf], check=True).stdout == original
        assert read_proc(srv1, "net/ipv4/tcp_tw_reuse").strip() == before

        changed_twice(lab, tmp_path, raw)
        assert srv1.run(["cat", conf], check=True).stdout == original.replace(
            "tcp_tw_reuse = 2", f"tcp_tw_reuse = {want}"
        )
        assert srv1.run(["stat", "-c", "%a", conf], check=True).stdout == "644\n"
        assert read_proc(srv1, "net/ipv4/tcp_tw_reuse") == f"{want}\n"
        assert cli1.run(["test", "-e", conf]).exit_status == 1  # srv1's /root only

        # The kernel already has the value; only the file lacks the line.
        other = {**raw, "file": "/root/labctl-test-sysctl-2.conf"}
        only_file = changed_twice(lab, tmp_path, other)
        assert only_file.changes == (
            f"/root/labctl-test-sysctl-2.conf: net.ipv4.tcp_tw_reuse = {want}",
        )
        assert (
            srv1.run(["cat", other["file"]], check=True).stdout
            == f"net.ipv4.tcp_tw_reuse = {want}\n"
        )
    finally:
        srv1.run(["rm", "-f", conf, "/root/labctl-test-sysctl-2.conf"])


def test_sysctl_missing_in_a_namespace_fails_in_one_line(lab: NamespaceLab, tmp_path: Path) -> None:
    # net.core.default_qdisc exists only in the initial network namespace (docs/qdiscs.md).
    with pytest.raises(ValueError) as exc:
        run_action(
            SysctlAction(),
            ctx(lab, tmp_path),
            {"name": "net.core.default_qdisc", "value": "pfifo_fast"},
        )
    assert str(exc.value) == (
        "sysctl net.core.default_qdisc: not available on srv1 "
        "(only in the initial network namespace?)"
    )
    with pytest.raises(ValueError, match=r"^sysctl kernel.labctl_nope: not available on cli1$"):
        run_action(
            SysctlAction(), ctx(lab, tmp_path, "cli1"), {"name": "kernel.labctl_nope", "value": "1"}
        )


@pytest.mark.usefixtures("restore_sysctls")
def test_sysctl_bad_value_fails_cleanly(lab: NamespaceLab, tmp_path: Path) -> None:
    srv1 = lab.host("srv1")
    before = read_proc(srv1, "net/ipv4/tcp_tw_reuse")
    res = run_action(
        SysctlAction(), ctx(lab, tmp_path), {"name": "net.ipv4.tcp_tw_reuse", "value": "abc"}
    )
    assert (res.changed, res.failed) == (True, True)
    assert res.msg == 'sysctl: setting key "net.ipv4.tcp_tw_reuse": Invalid argument'
    assert read_proc(srv1, "net/ipv4/tcp_tw_reuse") == before
    # Out of range (0..2) is refused by the kernel the same way.
    res = run_action(
        SysctlAction(), ctx(lab, tmp_path), {"name": "net.ipv4.tcp_tw_reuse", "value": 7}
    )
    assert res.failed and "Invalid argument" in res.msg
    assert read_proc(srv1, "net/ipv4/tcp_tw_reuse") == before
