"""fetch without a host: the "host" is this machine's sh and filesystem (a local connection
whose `get` copies), the controller side is tmp_path."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from labctl.actions.base import ActionFailed, ArgsError, TaskContext, build_args, run_action
from labctl.actions.fetch import FetchAction, local_dest
from labctl.remote import CommandFailed, CommandResult, command_text


class LocalConn:
    def __init__(self, corrupt: bool = False) -> None:
        self.host = SimpleNamespace(name="srv1")
        self.gets: list[tuple[str, str]] = []
        self.corrupt = corrupt

    def run(self, command: Any, check: bool = False, **_: Any) -> CommandResult:
        text = command_text(command)
        proc = subprocess.run(["sh", "-c", text], capture_output=True, text=True)
        res = CommandResult("srv1", text, proc.returncode, proc.stdout, proc.stderr, 0.0)
        if check and not res.ok:
            raise CommandFailed(res)
        return res

    def get(self, remote: str, local: str) -> None:
        self.gets.append((remote, local))
        shutil.copyfile(remote, local)
        if self.corrupt:
            Path(local).write_bytes(b"garbled")


def fetch(
    base: Path, check: bool = False, conn: LocalConn | None = None, **raw: Any
) -> tuple[Any, LocalConn]:
    conn = conn or LocalConn()
    ctx = TaskContext(
        conn=conn,  # type: ignore[arg-type]
        vars={"inventory_hostname": "srv1"},
        base_dir=base,
    )
    return run_action(FetchAction(), ctx, raw, check=check), conn


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    src = tmp_path / "remote" / "etc" / "app.conf"
    src.parent.mkdir(parents=True)
    src.write_bytes(b"setting = 1\n")
    return src


def test_fetch_lands_under_host_and_path_then_is_unchanged(tmp_path: Path, remote: Path) -> None:
    book = tmp_path / "book"
    book.mkdir()
    result, conn = fetch(book, src=str(remote), dest="fetched")
    want = book / "fetched" / "srv1" / str(remote).lstrip("/")
    assert result.changed and not result.failed, result.msg
    assert want.read_bytes() == b"setting = 1\n"
    sha1 = hashlib.sha1(b"setting = 1\n").hexdigest()
    assert result.output["dest"] == str(want)
    assert result.output["checksum"] == result.output["remote_checksum"] == sha1
    assert result.output["md5sum"] == hashlib.md5(b"setting = 1\n").hexdigest()
    again, conn2 = fetch(book, src=str(remote), dest="fetched")
    assert not again.changed and not conn2.gets and again.output["checksum"] == sha1
    remote.write_bytes(b"setting = 2\n")
    third, _ = fetch(book, src=str(remote), dest="fetched")
    assert third.changed and want.read_bytes() == b"setting = 2\n"


def test_check_mode_copies_nothing(tmp_path: Path, remote: Path) -> None:
    result, conn = fetch(tmp_path, check=True, src=str(remote), dest=str(tmp_path / "out"))
    assert result.changed and not conn.gets and not (tmp_path / "out").exists()


def test_flat(tmp_path: Path, remote: Path) -> None:
    result, _ = fetch(tmp_path, src=str(remote), dest="one.conf", flat=True)
    assert (tmp_path / "one.conf").read_bytes() == b"setting = 1\n" and result.changed
    (tmp_path / "dir").mkdir()
    fetch(tmp_path, src=str(remote), dest="dir/", flat=True)
    assert (tmp_path / "dir" / "app.conf").exists()
    with pytest.raises(ValueError, match="use a trailing slash"):
        fetch(tmp_path, src=str(remote), dest="dir", flat=True)


def test_missing_and_directory_sources(tmp_path: Path, remote: Path) -> None:
    with pytest.raises(ValueError, match="the remote file does not exist"):
        fetch(tmp_path, src=str(tmp_path / "nope"), dest="d")
    ok, _ = fetch(tmp_path, src=str(tmp_path / "nope"), dest="d", fail_on_missing=False)
    assert not ok.changed and not ok.failed and "not transferring, ignored" in ok.msg
    with pytest.raises(ValueError, match="fetch cannot work on directories"):
        fetch(tmp_path, src=str(remote.parent), dest="d")


def test_a_corrupt_copy_fails_and_leaves_nothing(tmp_path: Path, remote: Path) -> None:
    with pytest.raises(ActionFailed, match="checksum mismatch"):
        fetch(tmp_path, conn=LocalConn(corrupt=True), src=str(remote), dest="d", flat=True)
    assert not (tmp_path / "d").exists() and list(tmp_path.glob(".d.*")) == []


def test_local_dest_rules(tmp_path: Path) -> None:
    assert local_dest(tmp_path, "/abs", "/etc/x", "h", False) == Path("/abs/h/etc/x")
    assert local_dest(tmp_path, "rel", "/etc/x", "h", False) == tmp_path / "rel/h/etc/x"
    assert local_dest(tmp_path, "rel/", "/etc/x", "h", True) == tmp_path / "rel/x"
    with pytest.raises(ValueError, match="directory traversal"):
        local_dest(tmp_path, "rel", "/../../x", "h", False)


def test_arguments() -> None:
    with pytest.raises(ArgsError, match="absolute"):
        build_args(FetchAction, {"src": "x", "dest": "d"})
    with pytest.raises(ArgsError, match="unknown argument"):
        build_args(FetchAction, {"src": "/x", "dest": "d", "mode": "0644"})
