"""source and process without a host: tree hashes, classification, parsers, plans from facts."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labctl.actions.base import Run, TaskContext
from labctl.actions.process import (
    PidRecord,
    ProcessAction,
    ProcessArgs,
    ProcessState,
    ProcStat,
    check_args,
    format_pidfile,
    parse_pidfile,
    parse_probe,
    parse_proc_stat,
    probe_process,
)
from labctl.actions.source import (
    SourceAction,
    SourceArgs,
    controller_path,
    directory_digest,
    is_git_url,
    pack_tree,
    parse_dest_state,
    parse_ls_remote,
    scan_tree,
    tarball_suffix,
    tree_digest,
)
from labctl.remote import CommandResult, command_text

# ---------------------------------------------------------------------------- directory hash


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    (root / "LINUX" / "dkms").mkdir(parents=True)
    (root / "README").write_text("netmap\n")
    (root / "LINUX" / "configure").write_text("#!/bin/sh\n")
    (root / "LINUX" / "configure").chmod(0o755)
    (root / "LINUX" / "dkms" / "dkms.conf").write_text("PACKAGE_NAME=netmap\n")
    (root / "link").symlink_to("LINUX/configure")
    return root


def test_digest_is_stable_and_ignores_mtime(tree: Path) -> None:
    before = directory_digest(tree)
    assert before == directory_digest(tree)
    os.utime(tree / "README", (1, 1))
    os.utime(tree / "LINUX", (2, 2))
    assert directory_digest(tree) == before


@pytest.mark.parametrize(
    "edit",
    [
        lambda r: (r / "README").write_text("netmap!\n"),
        lambda r: (r / "README").chmod(0o600),
        lambda r: (r / "LINUX" / "new.c").write_text(""),
        lambda r: (r / "LINUX" / "emptydir").mkdir(),
        lambda r: ((r / "link").unlink(), (r / "link").symlink_to("README")),
        lambda r: (r / "README").rename(r / "README.md"),
        lambda r: (r / "LINUX" / "dkms" / "dkms.conf").unlink(),
    ],
    ids=["content", "mode", "new-file", "new-empty-dir", "link-target", "rename", "removed"],
)
def test_digest_changes_with_the_tree(tree: Path, edit: Any) -> None:
    before = directory_digest(tree)
    edit(tree)
    assert directory_digest(tree) != before


def test_same_content_elsewhere_has_the_same_digest(tree: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tree, copy, symlinks=True)
    assert directory_digest(copy) == directory_digest(tree)


def test_exclude_matches_paths_and_names(tree: Path) -> None:
    before = directory_digest(tree, ("*.o", "build", "LINUX/dkms"))
    (tree / "x.o").write_text("obj")
    (tree / "LINUX" / "y.o").write_text("obj")
    (tree / "build").mkdir()
    (tree / "build" / "netmap.ko").write_text("ko")
    (tree / "LINUX" / "dkms" / "more").write_text("more")
    assert directory_digest(tree, ("*.o", "build", "LINUX/dkms")) == before
    rel = [e.relpath for e in scan_tree(tree, ("*.o", "build", "LINUX/dkms")).entries]
    assert rel == ["LINUX", "LINUX/configure", "README", "link"]


def test_special_files_are_left_out_and_named(tree: Path) -> None:
    before = directory_digest(tree)
    os.mkfifo(tree / "LINUX" / "dkms" / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(tree / "LINUX" / "sock"))
        scanned = scan_tree(tree)
    finally:
        sock.close()
    assert scanned.special == ("LINUX/dkms/fifo", "LINUX/sock")
    assert tree_digest(scanned) == before


def test_pack_tree_sends_what_it_hashes(tree: Path) -> None:
    scanned = scan_tree(tree)
    buf = io.BytesIO()
    digest = pack_tree(scanned, buf)
    assert digest == tree_digest(scanned)
    buf.seek(0)
    with tarfile.open(fileobj=buf, mode="r:gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert sorted(members) == [
            "LINUX",
            "LINUX/configure",
            "LINUX/dkms",
            "LINUX/dkms/dkms.conf",
            "README",
            "link",
        ]
        assert members["LINUX/configure"].mode == 0o755
        assert members["link"].issym() and members["link"].linkname == "LINUX/configure"
        assert (members["README"].uid, members["README"].uname) == (0, "")
        readme = tar.extractfile("README")
        assert readme is not None and readme.read() == b"netmap\n"


# ---------------------------------------------------------------------------- classification


@pytest.mark.parametrize(
    ("src", "git"),
    [
        ("https://github.com/luigirizzo/netmap", True),
        ("file:///tmp/repo", True),
        ("git@github.com:luigirizzo/netmap.git", True),
        ("user@host:src/netmap", True),
        ("/srv/mirror/netmap.git", True),
        ("/srv/mirror/netmap.git/", True),
        ("netmap", False),
        ("../src/netmap", False),
        ("/home/me/netmap-1.0.tar.gz", False),
        ("host:path", False),
    ],
)
def test_git_url_or_controller_path(src: str, git: bool) -> None:
    assert is_git_url(src) is git


@pytest.mark.parametrize(
    ("name", "suffix"),
    [
        ("a.tar", ".tar"),
        ("a.tar.gz", ".tar.gz"),
        ("a.tgz", ".tgz"),
        ("a.tar.xz", ".tar.xz"),
        ("a.zip", None),
        ("a.gz", None),
    ],
)
def test_tarball_suffix(name: str, suffix: str | None) -> None:
    assert tarball_suffix(name) == suffix


LS_REMOTE = (
    "1111111111111111111111111111111111111111\tHEAD\n"
    "1111111111111111111111111111111111111111\trefs/heads/main\n"
    "2222222222222222222222222222222222222222\trefs/heads/v1\n"
    "3333333333333333333333333333333333333333\trefs/tags/v1\n"
    "4444444444444444444444444444444444444444\trefs/tags/v1^{}\n"
    "5555555555555555555555555555555555555555\trefs/tags/light\n"
    "6666666666666666666666666666666666666666\trefs/heads/feature/main\n"
)


@pytest.mark.parametrize(
    ("ref", "commit"),
    [
        ("main", "1" * 40),  # not feature/main, which ls-remote's pattern also matches
        ("v1", "4" * 40),  # tag before branch (as git does), peeled to its commit
        ("light", "5" * 40),
        ("refs/heads/v1", "2" * 40),
        ("HEAD", "1" * 40),
        ("missing", None),
    ],
)
def test_ls_remote_resolution(ref: str, commit: str | None) -> None:
    assert parse_ls_remote(LS_REMOTE, ref) == commit


def test_dest_state_parse() -> None:
    assert parse_dest_state("stamped sha256:ab\n").stamp == "sha256:ab"
    assert parse_dest_state("absent\n").kind == "absent"
    assert parse_dest_state("empty\n").kind == "empty"
    assert parse_dest_state("foreign\n").kind == "foreign"


# ---------------------------------------------------------------------------- plans from facts


class FakeConn:
    """Answers each command with the next canned output and records what was asked."""

    class host:  # noqa: N801 - stands in for an inventory Host
        name = "fake"

    def __init__(self, *stdouts: str) -> None:
        self.stdouts = list(stdouts)
        self.asked: list[str] = []

    def run(self, command: Any, **_: Any) -> CommandResult:
        self.asked.append(command_text(command))
        return CommandResult("fake", self.asked[-1], 0, self.stdouts.pop(0), "", 0.0)


def ctx_with(conn: FakeConn, base_dir: Path) -> TaskContext:
    return TaskContext(conn=conn, vars={}, base_dir=base_dir)  # type: ignore[arg-type]


def test_source_same_stamp_is_no_change(tree: Path) -> None:
    stamp = "sha256:" + directory_digest(tree)
    conn = FakeConn(f"stamped {stamp}\n")
    plan = SourceAction().plan(ctx_with(conn, tree.parent), SourceArgs("tree", "/root/netmap"))
    assert (plan.steps, plan.output) == ([], {"dest": "/root/netmap", "version": stamp})
    assert len(conn.asked) == 1


def test_source_other_stamp_plans_one_swap(tree: Path) -> None:
    conn = FakeConn("stamped sha256:0000\n")
    plan = SourceAction().plan(ctx_with(conn, tree.parent), SourceArgs(str(tree), "/root/netmap"))
    assert plan.changes[0].startswith(f"put {tree} (sha256:")
    assert plan.changes[0].endswith("…) at /root/netmap, was sha256:0000")
    [step] = plan.steps
    assert isinstance(step, Run)
    text = command_text(step.command)
    assert 'tar -x --no-same-owner -p -z -f "$u" -C "$n"' in text
    assert "u=/root/netmap.labctl-upload.tar.gz" in text


def test_git_without_ref_is_refused_before_asking_the_host(tmp_path: Path) -> None:
    conn = FakeConn()
    with pytest.raises(ValueError, match="give `ref`"):
        SourceAction().plan(ctx_with(conn, tmp_path), SourceArgs("file:///tmp/r.git", "/root/r"))
    assert conn.asked == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (SourceArgs("/x", "relative/dest"), "absolute"),
        (SourceArgs("/x", "/root"), "too close to /"),
        (SourceArgs("https://h/n.tar.gz", "/root/n", ref="v1"), "tarball URL"),
        (SourceArgs("file:///r.git", "/root/r", ref="-oops"), "usable git ref"),
        (SourceArgs("file:///r.git", "/root/r", ref="v1", exclude=("x",)), "exclude"),
        (SourceArgs("missing-dir", "/root/r"), "does not exist on the controller"),
    ],
)
def test_source_bad_args(args: SourceArgs, message: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=message):
        SourceAction().plan(ctx_with(FakeConn("absent\n"), tmp_path), args)


def test_git_pinned_to_a_full_commit_needs_no_ls_remote(tmp_path: Path) -> None:
    sha = "ab" * 20
    conn = FakeConn(f"stamped git file:///r.git {sha}\n")
    plan = SourceAction().plan(
        ctx_with(conn, tmp_path), SourceArgs("file:///r.git", "/root/r", ref=sha.upper())
    )
    assert plan.steps == [] and "ls-remote" not in conn.asked[0]


def test_git_branch_that_moved_is_a_change(tmp_path: Path) -> None:
    conn = FakeConn(f"stamped git file:///r.git {'2' * 40}\n\n{LS_REMOTE}")
    plan = SourceAction().plan(
        ctx_with(conn, tmp_path), SourceArgs("file:///r.git", "/root/r", ref="main")
    )
    assert "git ls-remote -- file:///r.git main 'main^{}'" in conn.asked[0]
    assert plan.changes == ["checkout main (111111111111) at /root/r, was 222222222222"]
    assert plan.output["version"] == f"git file:///r.git {'1' * 40}"


# ---------------------------------------------------------------------------- process


@pytest.mark.parametrize("name", ["iperf3", "srv_1.log-a", "A"])
def test_good_process_names(name: str) -> None:
    check_args(ProcessArgs(name=name, argv=("true",)))


@pytest.mark.parametrize("name", ["", "a b", "../x", "a/b", "x;rm", "é"])
def test_bad_process_names(name: str) -> None:
    with pytest.raises(ValueError, match="must match"):
        check_args(ProcessArgs(name=name, argv=("true",)))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (ProcessArgs(name="a"), "needs `argv`"),
        (ProcessArgs(name="a", state="restarted"), "needs `argv`"),
        (ProcessArgs(name="a", argv=("x",), state="running"), "state must be"),
        (ProcessArgs(name="a", argv=("x",), run_dir="run"), "absolute"),
        (ProcessArgs(name="a", argv=("x",), env={"A B": "1"}), "environment"),
    ],
)
def test_bad_process_args(args: ProcessArgs, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_args(args)
    check_args(ProcessArgs(name="a", state="stopped"))  # stopping needs no argv


def test_pidfile_round_trip() -> None:
    record = PidRecord(4242, 98765, ("sh", "-c", "echo 'hi' \"there\"\n"))
    text = format_pidfile(record)
    assert text.count("\n") == 1 and text.startswith('{"pid": 4242, ')
    assert parse_pidfile(text) == record


@pytest.mark.parametrize(
    "text",
    [
        "",
        "4242\n",
        "[]",
        '{"pid": "4242", "start": 1, "argv": []}',
        '{"pid": 4242, "argv": []}',
        '{"pid": 1, "start": 1, "argv": []}',
        '{"pid": 4242, "start": true, "argv": []}',
        '{"pid": 4242, "start": 1, "argv": [1]}',
        '{"pid": 4242, "start": 1, "argv": []',
    ],
)
def test_pidfile_garbage_is_none(text: str) -> None:
    assert parse_pidfile(text) is None


def test_proc_stat_with_a_nasty_command_name() -> None:
    fields = "S 1 777 777 0 -1 4194304 0 0 0 0 0 0 0 0 20 0 1 0 123456 8192 1"
    assert parse_proc_stat(f"777 (a) (b\nc) {fields}") == ProcStat("S", 777, 123456)
    assert parse_proc_stat("777 (sleep) Z 1 2") is None
    assert parse_proc_stat("") is None


def _probe(record: PidRecord, stat_line: str | None, members: str = "") -> str:
    text = "pidfile\n" + format_pidfile(record) + members
    return text + (f"stat\n{stat_line}\n" if stat_line is not None else "")


REC = PidRecord(777, 123456, ("sleep", "300"))
STAT = "777 (sleep) {state} 1 777 777 0 -1 4194304 0 0 0 0 0 0 0 0 20 0 1 0 {start} 8192 1"


@pytest.mark.parametrize(
    ("probe", "running", "reason"),
    [
        (_probe(REC, STAT.format(state="S", start=123456)), True, None),
        (_probe(REC, STAT.format(state="Z", start=123456)), False, "had exited"),
        (_probe(REC, None), False, "had exited"),
        (_probe(REC, STAT.format(state="S", start=999)), False, "another process"),
        ("pidfile\nnot json\n", False, "unreadable"),
    ],
)
def test_process_state_from_probe(probe: str, running: bool, reason: str | None) -> None:
    state = parse_probe(probe)
    assert state.pidfile and state.running is running
    if reason:
        assert reason in state.gone_reason()
    assert parse_probe("nopidfile\n") == ProcessState(None, False, None)


@pytest.mark.parametrize(
    ("stat_line", "members", "orphans"),
    [
        # the program died (zombie): its live children started after it are what is left
        (
            STAT.format(state="Z", start=123456),
            "member 777 Z 123456\nmember 801 S 123460\nmember 802 R 123461\nmember 803 Z 1234\n",
            (801, 802),
        ),
        (None, "member 900 S 123500\n", (900,)),  # reaped: gone from /proc altogether
        # a member older than the program cannot be its child: not ours
        (None, "member 5 S 100\n", ()),
        # the PID is another process's now: its session is not ours, whatever it holds
        (STAT.format(state="S", start=999), "member 777 S 999\nmember 778 S 1000\n", ()),
        # a reused PID whose command name holds lines that look like the probe's own
        (
            "777 (a\nmember 1 S 2\nstat\nx) S 1 777 777 0 -1 4 0 0 0 0 0 0 0 0 20 0 1 0 999 8 1",
            "member 790 S 123457\n",
            (),
        ),
    ],
)
def test_processes_a_program_left_in_its_session(
    stat_line: str | None, members: str, orphans: tuple[int, ...]
) -> None:
    state = parse_probe(_probe(REC, stat_line, members))
    assert state.orphans == orphans


@pytest.fixture
def proc_ctx(tmp_path: Path) -> Iterator[Any]:
    def make(probe: str) -> tuple[FakeConn, TaskContext]:
        conn = FakeConn(probe)
        return conn, ctx_with(conn, tmp_path)

    yield make


def test_process_plans(proc_ctx: Any) -> None:
    running = _probe(REC, STAT.format(state="S", start=123456))
    reused = _probe(REC, STAT.format(state="S", start=999))
    act = ProcessAction()
    want = ProcessArgs(name="svc", argv=("sleep", "300"))
    conn, ctx = proc_ctx(running)
    plan = act.plan(ctx, want)
    assert plan.steps == [] and plan.output == {
        "pid": 777,
        "log": "/root/labctl/run/svc.log",
        "running": True,
    }
    assert len(conn.asked) == 1

    _, ctx = proc_ctx(reused)
    plan = act.plan(ctx, want)
    assert plan.changes == [
        "start svc: sleep 300 (the old one was gone: pid 777 now belongs to another process)"
    ]
    assert "kill" not in command_text(plan.steps[0].command)  # type: ignore[union-attr]

    _, ctx = proc_ctx(running)
    plan = act.plan(ctx, ProcessArgs(name="svc", argv=("sleep", "301")))
    assert plan.changes == ["restart svc (pid 777, argv changed from sleep 300): sleep 301"]

    _, ctx = proc_ctx(reused)
    plan = act.plan(ctx, ProcessArgs(name="svc", state="stopped"))
    assert plan.changes == ["remove svc's stale pidfile: pid 777 now belongs to another process"]
    assert command_text(plan.steps[0].command) == "rm -f /root/labctl/run/svc.pid"  # type: ignore[union-attr]

    _, ctx = proc_ctx("nopidfile\n")
    assert act.plan(ctx, ProcessArgs(name="svc", state="stopped")).steps == []


class ShConn:
    """Runs the action's own script with this machine's sh, with `bin_dir` first on PATH."""

    def __init__(self, bin_dir: Path) -> None:
        self.env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}

    def run(self, command: Any, check: bool = False, timeout: float = 30) -> CommandResult:
        text = command_text(command)
        res = subprocess.run(
            ["sh", "-c", text], capture_output=True, text=True, env=self.env, timeout=timeout
        )
        assert not (check and res.returncode), f"exit {res.returncode}: {res.stderr}"
        return CommandResult("local", text, res.returncode, res.stdout, res.stderr, 0.0)


def test_a_program_that_exits_while_it_is_probed_is_gone_not_an_error(tmp_path: Path) -> None:
    """pkt-gen tx given a count ends by itself; it once ended between the probe's test of
    /proc/PID/stat and its read, and the probe failed with exit 1. Here `cat` cannot read
    /proc (as when the PID has just gone): the probe answers "not running"."""
    bin_dir, run_dir = tmp_path / "bin", tmp_path / "run"
    bin_dir.mkdir()
    run_dir.mkdir()
    real_cat = shutil.which("cat")
    (bin_dir / "cat").write_text(
        f'#!/bin/sh\ncase "$1" in /proc/*) exit 1;; esac\nexec {real_cat} "$@"\n'
    )
    (bin_dir / "cat").chmod(0o755)
    me = parse_proc_stat(Path(f"/proc/{os.getpid()}/stat").read_text())
    assert me is not None
    record = PidRecord(os.getpid(), me.start, ("python3",))
    (run_dir / "tx.pid").write_text(format_pidfile(record))
    state = probe_process(ShConn(bin_dir), "tx", str(run_dir))  # type: ignore[arg-type]
    assert state.pidfile and state.record == record and not state.running
    bin_dir.joinpath("cat").unlink()  # and with /proc readable: this very process, running
    assert probe_process(ShConn(bin_dir), "tx", str(run_dir)).running  # type: ignore[arg-type]


def test_a_controller_path_is_beside_the_playbook_else_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One reading for source, kmod and netmap (netmap's controller build and its build on a
    host once read a relative `netmap_src` in two ways)."""
    book, here = tmp_path / "playbooks", tmp_path / "here"
    (book / "netmap").mkdir(parents=True)
    here.mkdir()
    monkeypatch.chdir(here)
    assert controller_path(book, "netmap") == book / "netmap"
    assert controller_path(book, "elsewhere") == here / "elsewhere"
    assert controller_path(book, "/abs/netmap") == Path("/abs/netmap")
    assert controller_path(book, "~/netmap") == Path.home() / "netmap"
