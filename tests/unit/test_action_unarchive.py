"""unarchive without a host: the "host" is this machine (local sh, put/get copy files), the
archives are made here with tarfile/zipfile; plus the comparison on canned listings."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from labctl.actions.base import ArgsError, TaskContext, build_args, run_action
from labctl.actions.unarchive import (
    Found,
    Member,
    UnarchiveAction,
    differences,
    parse_find,
    read_members,
)
from labctl.remote import CommandFailed, CommandResult, command_text


class LocalConn:
    def __init__(self) -> None:
        self.host = SimpleNamespace(name="local")
        self.ran: list[str] = []

    def run(self, command: Any, check: bool = False, **_: Any) -> CommandResult:
        text = command_text(command)
        self.ran.append(text)
        proc = subprocess.run(["sh", "-c", text], capture_output=True, text=True)
        res = CommandResult("local", text, proc.returncode, proc.stdout, proc.stderr, 0.0)
        if check and not res.ok:
            raise CommandFailed(res)
        return res

    def put(self, local: str, remote: str) -> None:
        shutil.copyfile(local, remote)

    def get(self, remote: str, local: str) -> None:
        shutil.copyfile(remote, local)


def unarchive(base: Path, check: bool = False, **raw: Any) -> Any:
    ctx = TaskContext(conn=LocalConn(), vars={}, base_dir=base)  # type: ignore[arg-type]
    return run_action(UnarchiveAction(), ctx, raw, check=check)


def make_tar(path: Path, mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as t:  # type: ignore[call-overload]
        for name, data in (("app/bin/run", b"#!/bin/sh\n"), ("app/README", b"read me\n")):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 1_700_000_000, 0o755
            t.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("app/latest")
        link.type, link.linkname = tarfile.SYMTYPE, "bin/run"
        t.addfile(link)
    return path


@pytest.fixture
def book(tmp_path: Path) -> Path:
    (tmp_path / "book" / "files").mkdir(parents=True)
    (tmp_path / "dest").mkdir()
    return tmp_path / "book"


@pytest.mark.parametrize(
    ("name", "mode"), [("a.tgz", "w:gz"), ("a.tar.xz", "w:xz"), ("a.tar", "w")]
)
def test_tar_unpacks_once(tmp_path: Path, book: Path, name: str, mode: str) -> None:
    make_tar(book / "files" / name, mode)
    dest = tmp_path / "dest"
    planned = unarchive(book, check=True, src=name, dest=str(dest))
    assert planned.changed and not (dest / "app").exists()
    first = unarchive(book, src=name, dest=str(dest), list_files=True)
    assert first.changed and not first.failed, first.msg
    assert (dest / "app/README").read_bytes() == b"read me\n"
    assert os.readlink(dest / "app/latest") == "bin/run"
    assert "app/bin/run" in first.output["files"]
    assert list(Path("/tmp").glob("labctl-unarchive-*")) == []  # the upload is gone
    assert not unarchive(book, src=name, dest=str(dest)).changed
    (dest / "app/README").write_bytes(b"edited!!\n")
    assert unarchive(book, src=name, dest=str(dest)).changed
    assert (dest / "app/README").read_bytes() == b"read me\n"


def test_zip_and_mode(tmp_path: Path, book: Path) -> None:
    if not shutil.which("unzip"):
        pytest.skip("no unzip here")
    with zipfile.ZipFile(book / "files" / "z.zip", "w") as z:
        z.writestr("top/a.txt", "aaa")
        z.writestr("top/sub/", "")
    dest = tmp_path / "dest"
    first = unarchive(book, src="z.zip", dest=str(dest), mode="0640")
    assert first.changed and first.output["handler"] == "ZipArchive"
    assert (dest / "top/a.txt").read_text() == "aaa"
    assert (dest / "top/a.txt").stat().st_mode & 0o777 == 0o640
    assert not unarchive(book, src="z.zip", dest=str(dest), mode="0640").changed
    assert unarchive(book, src="z.zip", dest=str(dest), mode="0644").changed


def test_remote_src_and_creates(tmp_path: Path, book: Path) -> None:
    archive = make_tar(tmp_path / "on-host.tar.gz")
    dest = tmp_path / "dest"
    result = unarchive(book, src=str(archive), dest=str(dest), remote_src=True)
    assert result.changed and (dest / "app/README").exists() and archive.exists()
    skipped = unarchive(book, src=str(archive), dest=str(dest), creates=str(dest / "app"))
    assert not skipped.changed and skipped.msg == f"skipped, since {dest / 'app'} exists"
    with pytest.raises(ValueError, match="does not exist"):
        unarchive(book, src=str(tmp_path / "nope.tgz"), dest=str(dest), remote_src=True)


def test_refusals(tmp_path: Path, book: Path) -> None:
    make_tar(book / "files" / "a.tgz")
    with pytest.raises(ValueError, match="is not a directory"):
        unarchive(book, src="a.tgz", dest=str(tmp_path / "nodir"))
    with tarfile.open(book / "files" / "evil.tar", "w") as t:
        info = tarfile.TarInfo("../escape")
        t.addfile(info, io.BytesIO(b""))
    with pytest.raises(ValueError, match="outside dest"):
        unarchive(book, src="evil.tar", dest=str(tmp_path / "dest"))
    (book / "files" / "junk.tgz").write_bytes(b"not an archive")
    with pytest.raises(ValueError, match="not a tar or zip"):
        unarchive(book, src="junk.tgz", dest=str(tmp_path / "dest"))
    with pytest.raises(ArgsError, match="unknown argument 'extra_opts'"):
        build_args(UnarchiveAction, {"src": "a", "dest": "/d", "extra_opts": ["-v"]})


def test_comparison() -> None:
    found = parse_find(
        "f\t3\t1700000000.5\t644\troot\troot\ta/x\0d\t4096\t1.0\t755\troot\troot\ta\0"
        "f\t1\t1.0\t644\troot\troot\tname\twith tab\0"
    )
    assert found["name\twith tab"].size == 1
    members = [Member("a", "d"), Member("a/x", "f", 3, 1_700_000_000)]
    assert differences(members, found, None, None, None) == []
    assert differences(members, found, "600", None, None) == [
        "a: mode 755, wanted 600",
        "a/x: mode 644, wanted 600",
    ]
    assert differences([Member("a/x", "f", 3, 5)], found, None, None, None)
    assert differences([Member("a/y", "f", 3)], found, None, None, None) == ["a/y: missing"]
    assert differences(members, found, None, "nobody", None)
    assert found["a"] == Found("d", 4096, 1.0, "755", "root", "root")


def test_read_members_handler_names(tmp_path: Path) -> None:
    assert read_members(make_tar(tmp_path / "x.tar.xz", "w:xz"))[0] == "TarXzArchive"
    assert read_members(make_tar(tmp_path / "x.tgz", "w:gz"))[0] == "TgzArchive"
    assert read_members(make_tar(tmp_path / "x.tar", "w"))[0] == "TarArchive"


def test_a_hard_link_member_does_not_make_it_change_forever(tmp_path: Path, book: Path) -> None:
    with tarfile.open(book / "files" / "h.tar", "w") as t:
        info = tarfile.TarInfo("d/file")
        info.size, info.mtime = 4, 1_700_000_000
        t.addfile(info, io.BytesIO(b"data"))
        hard = tarfile.TarInfo("d/hard")
        hard.type, hard.linkname, hard.mtime = tarfile.LNKTYPE, "d/file", 1_700_000_000
        t.addfile(hard)
    dest = tmp_path / "dest"
    assert unarchive(book, src="h.tar", dest=str(dest)).changed
    assert (dest / "d/hard").read_bytes() == b"data"
    assert not unarchive(book, src="h.tar", dest=str(dest)).changed
