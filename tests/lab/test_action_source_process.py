"""source and process on the namespace lab: applied twice, checked, changed again, cleaned up.

Every test removes what it put on srv1 (dest trees under /root, its run dir, the processes it
started, by PID) whatever happens. Git needs no internet: a bare repo in the test's tmp dir is
reachable from srv1 as file:// because lab hosts share this machine's filesystem (not /root).
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labctl.actions.base import ActionFailed, ActionResult, TaskContext, run_action
from labctl.actions.process import ProcessAction, ProcStat, parse_pidfile, parse_proc_stat
from labctl.actions.source import SourceAction, directory_digest
from labctl.remote import HostConnection, ShellScript

pytestmark = pytest.mark.lab

RUN_DIR = "/root/labctl-test-process"


@pytest.fixture
def dest(srv: HostConnection, request: pytest.FixtureRequest) -> Iterator[str]:
    """A dest path of this test's own on srv1, removed with its side files afterwards."""
    path = f"/root/labctl-test-src-{request.node.name}"
    try:
        yield path
    finally:
        srv.run(ShellScript(f"rm -rf {shlex.quote(path)} {shlex.quote(path)}.labctl-*"))


def host_ls(srv: HostConnection, path: str) -> list[str]:
    """Everything under path (relative), with type and mode: what a tree looks like there."""
    res = srv.run(
        ShellScript(f"cd {shlex.quote(path)} && find . -mindepth 1 -printf '%P %y %m\\n' | sort"),
        check=True,
    )
    return res.stdout.splitlines()


def host_cat(srv: HostConnection, path: str) -> str:
    return srv.run(["cat", path], check=True).stdout


def side_files(srv: HostConnection, dest: str) -> str:
    """Upload or half-built trees left beside dest (there must be none)."""
    return srv.run(ShellScript(f"ls -d {shlex.quote(dest)}.labctl-* 2>/dev/null || true")).stdout


# ---------------------------------------------------------------------------- source: directory


def make_tree(root: Path) -> Path:
    (root / "LINUX" / "dkms").mkdir(parents=True)
    (root / "README").write_text("netmap v1\n")
    (root / "LINUX" / "configure").write_text("#!/bin/sh\necho configured\n")
    (root / "LINUX" / "configure").chmod(0o750)
    (root / "LINUX" / "dkms" / "dkms.conf").write_text("PACKAGE_NAME=netmap\n")
    (root / "LINUX" / "build").mkdir()
    (root / "LINUX" / "build" / "netmap.ko").write_text("not source\n")
    (root / "cfg").symlink_to("LINUX/configure")
    (root / "dangling").symlink_to("nowhere")
    return root


def test_directory_source_twice_then_changed(
    ctx: TaskContext, srv: HostConnection, dest: str, tmp_path: Path
) -> None:
    make_tree(tmp_path / "netmap")
    args = {"src": "netmap", "dest": dest, "exclude": ["build"]}  # relative: from base_dir
    digest = directory_digest(tmp_path / "netmap", ("build",))

    check = run_action(SourceAction(), ctx, args, check=True)
    assert check.changed and not check.failed
    assert check.changes == (f"put {tmp_path}/netmap (sha256:{digest[:12]}…) at {dest}",)
    assert srv.run(["test", "-e", dest]).exit_status == 1, "check mode touched the host"

    first = run_action(SourceAction(), ctx, args)
    assert first.changed and not first.failed, first.msg
    assert first.output["version"] == f"sha256:{digest}"
    assert host_ls(srv, dest) == [
        ".labctl-source f 644",
        "LINUX d 755",
        "LINUX/configure f 750",
        "LINUX/dkms d 755",
        "LINUX/dkms/dkms.conf f 644",
        "README f 644",
        "cfg l 777",
        "dangling l 777",
    ]
    assert host_cat(srv, f"{dest}/cfg") == "#!/bin/sh\necho configured\n"
    assert host_cat(srv, f"{dest}/.labctl-source") == f"sha256:{digest}\n"
    assert side_files(srv, dest) == ""

    second = run_action(SourceAction(), ctx, args)
    assert not second.changed and second.output["version"] == f"sha256:{digest}"

    # A touch is no change; an edit is, and check mode says so without doing it.
    os.utime(tmp_path / "netmap" / "README", (1, 1))
    assert not run_action(SourceAction(), ctx, args).changed
    (tmp_path / "netmap" / "README").write_text("netmap v2\n")
    check = run_action(SourceAction(), ctx, args, check=True)
    assert check.changed and check.changes[0].endswith(f"at {dest}, was sha256:{digest[:12]}…")
    assert host_cat(srv, f"{dest}/README") == "netmap v1\n"
    third = run_action(SourceAction(), ctx, args)
    assert third.changed and host_cat(srv, f"{dest}/README") == "netmap v2\n"
    assert not run_action(SourceAction(), ctx, args).changed
    assert side_files(srv, dest) == ""


def test_fifo_and_socket_are_left_out(
    ctx: TaskContext, srv: HostConnection, dest: str, tmp_path: Path
) -> None:
    # Like netmap's LINUX/dkms, where `scp -r` gives up: the tree goes, the specials are named.
    root = make_tree(tmp_path / "t")
    os.mkfifo(root / "LINUX" / "dkms" / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(root / "LINUX" / "sock"))
        first = run_action(SourceAction(), ctx, {"src": str(root), "dest": dest})
        second = run_action(SourceAction(), ctx, {"src": str(root), "dest": dest})
    finally:
        sock.close()
    assert first.changed and not first.failed, first.msg
    assert "leaving out 2 special files (LINUX/dkms/fifo, LINUX/sock)" in first.changes[0]
    assert first.output["left_out"] == ["LINUX/dkms/fifo", "LINUX/sock"]
    listing = host_ls(srv, dest)
    assert "LINUX/dkms/dkms.conf f 644" in listing and "LINUX/build/netmap.ko f 644" in listing
    assert not [line for line in listing if "fifo" in line or "sock" in line]
    assert not second.changed


def test_tarball_source(ctx: TaskContext, srv: HostConnection, dest: str, tmp_path: Path) -> None:
    def write_tarball(name: str, version: str) -> None:
        payload = tmp_path / "payload"
        payload.mkdir(exist_ok=True)
        (payload / "VERSION").write_text(version)
        with tarfile.open(tmp_path / name, "w:xz" if name.endswith("xz") else "w:gz") as tar:
            tar.add(payload / "VERSION", "pkg/VERSION")

    write_tarball("pkg.tgz", "1\n")
    args = {"src": "pkg.tgz", "dest": dest}
    first = run_action(SourceAction(), ctx, args)
    assert first.changed and not first.failed, first.msg
    assert host_cat(srv, f"{dest}/pkg/VERSION") == "1\n"
    assert not run_action(SourceAction(), ctx, args).changed
    write_tarball("pkg.tgz", "2\n")
    assert run_action(SourceAction(), ctx, args).changed
    assert host_cat(srv, f"{dest}/pkg/VERSION") == "2\n"
    # Another kind of tarball replaces the tree as a whole.
    write_tarball("other.tar.xz", "3\n")
    xz = run_action(SourceAction(), ctx, {"src": str(tmp_path / "other.tar.xz"), "dest": dest})
    assert xz.changed and not xz.failed, xz.msg
    assert host_cat(srv, f"{dest}/pkg/VERSION") == "3\n"
    assert side_files(srv, dest) == ""


def test_a_failed_extract_leaves_the_old_tree(
    ctx: TaskContext, srv: HostConnection, dest: str, tmp_path: Path
) -> None:
    make_tree(tmp_path / "good")
    assert run_action(SourceAction(), ctx, {"src": "good", "dest": dest}).changed
    before = host_ls(srv, dest)
    (tmp_path / "bad.tar.gz").write_bytes(b"this is not gzip")
    bad = run_action(SourceAction(), ctx, {"src": "bad.tar.gz", "dest": dest})
    assert bad.failed and "gzip" in bad.msg
    assert host_ls(srv, dest) == before
    assert side_files(srv, dest) == ""


def test_a_directory_labctl_did_not_put_is_not_replaced(
    ctx: TaskContext, srv: HostConnection, dest: str, tmp_path: Path
) -> None:
    srv.run(ShellScript(f"mkdir -p {dest} && echo mine > {dest}/precious"), check=True)
    make_tree(tmp_path / "t")
    with pytest.raises(ActionFailed, match="was not put there by labctl"):
        run_action(SourceAction(), ctx, {"src": "t", "dest": dest}, check=True)
    with pytest.raises(ActionFailed, match="was not put there by labctl"):
        run_action(SourceAction(), ctx, {"src": "t", "dest": dest})
    assert host_cat(srv, f"{dest}/precious") == "mine\n"


# ---------------------------------------------------------------------------- source: git


class Upstream:
    """A bare repo with a work clone, made with the controller's git."""

    def __init__(self, tmp: Path) -> None:
        self.bare, self.work = tmp / "upstream.git", tmp / "work"
        self.env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@example.invalid",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.invalid",
            "GIT_CONFIG_NOSYSTEM": "1",
        }
        self.git("init", "-q", "--bare", "-b", "main", str(self.bare), cwd=tmp)
        self.git("clone", "-q", str(self.bare), str(self.work), cwd=tmp)
        self.url = f"file://{self.bare}"

    def git(self, *args: str, cwd: Path | None = None) -> str:
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd or self.work,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return proc.stdout.strip()

    def commit(self, version: str, tag: str | None = None) -> str:
        (self.work / "VERSION").write_text(version)
        self.git("add", "VERSION")
        self.git("commit", "-q", "-m", f"version {version.strip()}")
        if tag:
            self.git("tag", "-a", tag, "-m", tag)
        self.git("push", "-q", "--tags", "origin", "HEAD:main")
        return self.git("rev-parse", "HEAD")


def host_head(srv: HostConnection, dest: str) -> str:
    return srv.run(["git", "-C", dest, "rev-parse", "HEAD"], check=True).stdout.strip()


def test_git_source_tag_branch_and_commit(
    ctx: TaskContext, srv: HostConnection, dest: str, tmp_path: Path
) -> None:
    if srv.run(["git", "--version"]).exit_status != 0:
        pytest.fail("git is missing on the lab host: run scripts/setup.sh")
    up = Upstream(tmp_path)
    c1 = up.commit("1\n", tag="v1")
    c2 = up.commit("2\n")

    v1 = {"src": up.url, "dest": dest, "ref": "v1"}
    check = run_action(SourceAction(), ctx, v1, check=True)
    assert check.changes == (f"checkout v1 ({c1[:12]}) at {dest}",)
    assert srv.run(["test", "-e", dest]).exit_status == 1, "check mode touched the host"

    first = run_action(SourceAction(), ctx, v1)
    assert first.changed and not first.failed, first.msg
    assert first.output["version"] == f"git {up.url} {c1}"
    assert host_head(srv, dest) == c1 and host_cat(srv, f"{dest}/VERSION") == "1\n"
    assert host_cat(srv, f"{dest}/.labctl-source") == f"git {up.url} {c1}\n"
    assert not run_action(SourceAction(), ctx, v1).changed

    main = {**v1, "ref": "main"}
    check = run_action(SourceAction(), ctx, main, check=True)
    assert check.changes == (f"checkout main ({c2[:12]}) at {dest}, was {c1[:12]}",)
    assert host_head(srv, dest) == c1
    assert run_action(SourceAction(), ctx, main).changed and host_head(srv, dest) == c2
    assert not run_action(SourceAction(), ctx, main).changed

    # The branch moves upstream: the same task is a change again.
    c3 = up.commit("3\n")
    moved = run_action(SourceAction(), ctx, main)
    assert moved.changed and host_head(srv, dest) == c3
    assert host_cat(srv, f"{dest}/VERSION") == "3\n"
    # A full commit is compared without asking upstream; an abbreviated one works too.
    assert run_action(SourceAction(), ctx, {**v1, "ref": c1}).changed
    assert host_head(srv, dest) == c1
    assert not run_action(SourceAction(), ctx, {**v1, "ref": c1[:10]}).changed
    assert run_action(SourceAction(), ctx, {**v1, "ref": c2[:10]}).changed
    assert host_head(srv, dest) == c2
    status = srv.run(["git", "-C", dest, "status", "--porcelain"], check=True).stdout
    assert status == "", "the stamp shows up as an untracked file"
    assert side_files(srv, dest) == ""

    with pytest.raises(ValueError, match="give `ref`"):
        run_action(SourceAction(), ctx, {"src": up.url, "dest": dest})
    with pytest.raises(ActionFailed, match="ref 'nope' not found"):
        run_action(SourceAction(), ctx, {**v1, "ref": "nope"})
    assert host_head(srv, dest) == c2


# ---------------------------------------------------------------------------- process


def host_stat(srv: HostConnection, pid: int) -> ProcStat | None:
    return parse_proc_stat(srv.run(ShellScript(f"cat /proc/{pid}/stat 2>/dev/null")).stdout)


def alive(srv: HostConnection, pid: int, start: int) -> bool:
    """Running and still the same process (a zombie is dead: this PID 1 does not reap)."""
    stat = host_stat(srv, pid)
    return stat is not None and stat.state not in ("Z", "X") and stat.start == start


class Procs:
    """Starts processes on srv1 through the action, remembering each (pid, start) it saw."""

    def __init__(self, ctx: TaskContext) -> None:
        self.ctx = ctx
        self.seen: set[tuple[int, int]] = set()

    def run(self, check: bool = False, **args: Any) -> ActionResult:
        result = run_action(ProcessAction(), self.ctx, {"run_dir": RUN_DIR, **args}, check=check)
        pid = result.output.get("pid")
        if pid:
            stat = host_stat(self.ctx.conn, pid)
            if stat:
                self.seen.add((pid, stat.start))
        return result

    def pidfile(self, name: str) -> str:
        return host_cat(self.ctx.conn, f"{RUN_DIR}/{name}.pid")


@pytest.fixture
def procs(ctx: TaskContext, srv: HostConnection) -> Iterator[Procs]:
    p = Procs(ctx)
    try:
        yield p
    finally:
        # What still has a pidfile is stopped with its whole session (children included)...
        listed = srv.run(ShellScript(f"ls {RUN_DIR} 2>/dev/null || true")).stdout.split()
        for name in (f.removesuffix(".pid") for f in listed if f.endswith(".pid")):
            p.run(name=name, state="stopped")
        # ...and anything this test saw that is still alive, by PID and start time.
        for pid, start in p.seen:
            if alive(srv, pid, start):  # only what this test started, checked by start time
                srv.run(["kill", "-s", "KILL", str(pid)])
        srv.run(["rm", "-rf", RUN_DIR])


def test_process_start_twice_stop_twice(procs: Procs, srv: HostConnection) -> None:
    check = procs.run(name="sleeper", argv=["sleep", "300"], check=True)
    assert check.changed and check.changes == ("start sleeper: sleep 300",)
    assert srv.run(["test", "-e", f"{RUN_DIR}/sleeper.pid"]).exit_status == 1

    first = procs.run(name="sleeper", argv=["sleep", "300"])
    assert first.changed and not first.failed, first.msg
    pid = first.output["pid"]
    assert first.output == {"pid": pid, "log": f"{RUN_DIR}/sleeper.log", "running": True}
    stat = host_stat(srv, pid)
    assert stat is not None and stat.state != "Z"
    assert stat.pgrp == pid, "not in a process group of its own"
    cmdline = srv.run(ShellScript(f"tr '\\0' ' ' < /proc/{pid}/cmdline"), check=True).stdout
    assert cmdline == "sleep 300 "
    record = parse_pidfile(procs.pidfile("sleeper"))
    assert record is not None and (record.pid, record.start) == (pid, stat.start)
    assert record.argv == ("sleep", "300")

    second = procs.run(name="sleeper", argv=["sleep", "300"])
    assert not second.changed and second.output["pid"] == pid

    check = procs.run(name="sleeper", state="stopped", check=True)
    assert check.changed and alive(srv, pid, stat.start)
    stopped = procs.run(name="sleeper", state="stopped")
    assert stopped.changed and stopped.changes == (f"stop sleeper (pid {pid})",)
    assert stopped.output["running"] is False
    assert not alive(srv, pid, stat.start)
    assert srv.run(["test", "-e", f"{RUN_DIR}/sleeper.pid"]).exit_status == 1
    assert not procs.run(name="sleeper", state="stopped").changed


def test_chdir_env_and_log(procs: Procs, srv: HostConnection) -> None:
    script = 'pwd; echo "FOO=$FOO"; echo to-stderr >&2; exec sleep 300'
    res = procs.run(
        name="envy", argv=["sh", "-c", script], chdir="/tmp", env={"FOO": "a b 'c' $HOME"}
    )
    assert res.changed and not res.failed, res.msg
    log = host_cat(srv, f"{RUN_DIR}/envy.log")
    assert log == "/tmp\nFOO=a b 'c' $HOME\nto-stderr\n"
    # A changed argv restarts it.
    again = procs.run(name="envy", argv=["sleep", "301"])
    assert again.changed and again.output["pid"] != res.output["pid"]
    assert again.changes[0].startswith(f"restart envy (pid {res.output['pid']}, argv changed")


def test_a_program_that_dies_at_once_fails(procs: Procs, srv: HostConnection) -> None:
    res = procs.run(name="boom", argv=["sh", "-c", "echo boom >&2; exit 3"])
    assert res.failed and res.changed
    assert "boom exited with status 3 within 0.3 s" in res.msg and "\nboom" in res.msg
    assert res.output["log_tail"] == ["boom"] and res.output["running"] is False
    assert srv.run(["test", "-e", f"{RUN_DIR}/boom.pid"]).exit_status == 1
    missing = procs.run(name="nope", argv=["/nonexistent/program"])
    assert missing.failed and "No such file or directory" in missing.msg


def test_stale_pidfiles(procs: Procs, srv: HostConnection) -> None:
    # A live process of our own whose PID a stale pidfile names: it must not be signalled.
    bystander = procs.run(name="bystander", argv=["sleep", "300"])
    assert bystander.changed and not bystander.failed, bystander.msg
    by_pid = bystander.output["pid"]
    by_stat = host_stat(srv, by_pid)
    assert by_stat is not None

    def plant(pid: int, start: int) -> None:
        line = f'{{"pid": {pid}, "start": {start}, "argv": ["sleep", "300"]}}'
        srv.run(ShellScript(f"printf '%s\\n' {shlex.quote(line)} > {RUN_DIR}/svc.pid"), check=True)

    plant(by_pid, by_stat.start + 1)  # the PID was "reused" by the bystander
    stop = procs.run(name="svc", state="stopped")
    assert stop.changed and "now belongs to another process" in stop.changes[0]
    assert alive(srv, by_pid, by_stat.start)
    assert not procs.run(name="svc", state="stopped").changed

    plant(by_pid, by_stat.start + 1)
    start = procs.run(name="svc", argv=["sleep", "300"])
    assert start.changed and not start.failed, start.msg
    assert "the old one was gone: pid" in start.changes[0]
    assert start.output["pid"] != by_pid and alive(srv, by_pid, by_stat.start)
    assert procs.run(name="svc", state="stopped").changed
    assert alive(srv, by_pid, by_stat.start)

    # A PID that has exited.
    dead = int(srv.run(ShellScript("sh -c 'echo $$'"), check=True).stdout)
    plant(dead, 1)
    again = procs.run(name="svc", argv=["sleep", "300"])
    assert again.changed and f"pid {dead} had exited" in again.changes[0]


def test_restarted_gives_a_new_pid(procs: Procs, srv: HostConnection) -> None:
    first = procs.run(name="r", argv=["sleep", "300"], state="restarted")
    assert first.changed and first.changes == ("start r: sleep 300",)
    old = first.output["pid"]
    old_stat = host_stat(srv, old)
    assert old_stat is not None
    check = procs.run(name="r", argv=["sleep", "300"], state="restarted", check=True)
    assert check.changed and check.output["pid"] == old and alive(srv, old, old_stat.start)
    second = procs.run(name="r", argv=["sleep", "300"], state="restarted")
    assert second.changed and second.output["pid"] not in (None, old)
    assert not alive(srv, old, old_stat.start)
    assert alive(srv, second.output["pid"], host_stat(srv, second.output["pid"]).start)  # type: ignore[union-attr]


def test_a_term_ignoring_program_is_killed(procs: Procs, srv: HostConnection) -> None:
    argv = ["sh", "-c", "trap '' TERM; while :; do sleep 0.2; done"]
    res = procs.run(name="stubborn", argv=argv)
    assert res.changed and not res.failed, res.msg
    stat = host_stat(srv, res.output["pid"])
    assert stat is not None
    stop = procs.run(name="stubborn", state="stopped")
    assert stop.changed and not stop.failed, stop.msg
    assert not alive(srv, res.output["pid"], stat.start)


def _session_members(srv: HostConnection, sid: int) -> list[int]:
    out = srv.run(["ps", "-o", "pid=", "-s", str(sid)]).stdout
    return sorted(int(p) for p in out.split())


@pytest.mark.parametrize("then", ["stopped", "started"])
def test_children_of_a_program_killed_under_them_are_stopped(
    procs: Procs, srv: HostConnection, then: str
) -> None:
    """An OOM-killed server's workers keep its port: stopping (or starting it again) stops
    what it left in its session, and nothing else."""
    argv = ["sh", "-c", "sleep 300 & sleep 301 & wait"]
    res = procs.run(name="family", argv=argv)
    assert res.changed and not res.failed, res.msg
    leader = res.output["pid"]
    bystander = procs.run(name="bystander", argv=["sleep", "302"])
    assert not bystander.failed, bystander.msg
    for _ in range(50):  # the children appear a moment after the start
        children = [p for p in _session_members(srv, leader) if p != leader]
        if len(children) == 2:
            break
        time.sleep(0.1)
    starts = {p: host_stat(srv, p).start for p in children}  # type: ignore[union-attr]
    procs.seen.update(starts.items())  # removed by the fixture, whatever happens
    srv.run(["kill", "-s", "KILL", str(leader)], check=True)  # as the OOM killer would

    if then == "stopped":
        result = procs.run(name="family", state="stopped")
        assert result.changes == (
            f"stop family's 2 process(es) it left running ({children[0]}, {children[1]}): "
            f"pid {leader} had exited",
        )
    else:
        result = procs.run(name="family", argv=argv)
        assert "after stopping the 2 process(es) it left running" in result.changes[0]
        assert result.output["pid"] not in (None, leader)
    assert result.changed and not result.failed, result.msg
    assert not [p for p, start in starts.items() if alive(srv, p, start)]
    by_pid = bystander.output["pid"]
    assert alive(srv, by_pid, host_stat(srv, by_pid).start)  # type: ignore[union-attr]
    assert not procs.run(
        name="family", state="stopped" if then == "stopped" else "started", argv=argv
    ).changed
