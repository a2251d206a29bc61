"""get_url without a host: the "host" is this machine's sh (file:// URLs, no network), each
tool (curl, wget, python3) by a PATH that holds only it; checksum parsing; plans."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from labctl.actions.base import ArgsError, TaskContext, build_args, run_action
from labctl.actions.get_url import Checksum, GetUrlAction, parse_checksum, url_filename
from labctl.remote import CommandFailed, CommandResult, command_text

TOOLS = ("sh", "mktemp", "rm", "sha1sum", "sha256sum", "md5sum", "cut", "cmp", "chmod", "chown")
TOOLS += ("mv", "stat", "cat", "python3", "curl", "wget")


class LocalConn:
    def __init__(self, path: str | None = None) -> None:
        self.host = SimpleNamespace(name="local")
        self.ran: list[str] = []
        self.env = {**os.environ, "PATH": path} if path else None

    def run(self, command: Any, check: bool = False, **_: Any) -> CommandResult:
        text = command_text(command)
        self.ran.append(text)
        proc = subprocess.run(["sh", "-c", text], capture_output=True, text=True, env=self.env)
        res = CommandResult("local", text, proc.returncode, proc.stdout, proc.stderr, 0.0)
        if check and not res.ok:
            raise CommandFailed(res)
        return res


def only_tool(tmp_path: Path, tool: str) -> str:
    """A PATH with the basic tools and, of the downloaders, only `tool`."""
    bin_dir = tmp_path / f"bin-{tool}"
    bin_dir.mkdir()
    for name in TOOLS:
        if name in ("curl", "wget", "python3") and name != tool:
            continue
        found = shutil.which(name, path="/usr/bin:/bin")
        if found:
            (bin_dir / name).symlink_to(found)
    return str(bin_dir)


def get(check: bool = False, conn: LocalConn | None = None, **raw: Any) -> Any:
    conn = conn or LocalConn()
    ctx = TaskContext(conn=conn, vars={}, base_dir=Path("."))  # type: ignore[arg-type]
    return run_action(GetUrlAction(), ctx, raw, check=check)


@pytest.fixture
def served(tmp_path: Path) -> Path:
    src = tmp_path / "served" / "pkg-1.0.tar.gz"
    src.parent.mkdir()
    src.write_bytes(b"payload\n")
    return src


@pytest.mark.parametrize("tool", ["curl", "python3"])
def test_download_then_ok_with_each_tool(tmp_path: Path, served: Path, tool: str) -> None:
    if not shutil.which(tool, path="/usr/bin:/bin"):
        pytest.skip(f"no {tool} here")
    conn = LocalConn(only_tool(tmp_path, tool))
    dest = tmp_path / "out"
    url = served.as_uri()
    first = get(conn=conn, url=url, dest=str(dest), mode="0600")
    assert first.changed and not first.failed, first.msg
    assert dest.read_bytes() == b"payload\n" and dest.stat().st_mode & 0o777 == 0o600
    assert first.output["checksum_src"] == hashlib.sha1(b"payload\n").hexdigest()
    assert first.output["checksum_dest"] is None and first.output["dest"] == str(dest)
    second = get(conn=conn, url=url, dest=str(dest), mode="0600")
    assert not second.changed and second.output["msg"] == "file already exists"
    forced = get(conn=conn, url=url, dest=str(dest), mode="0600", force=True)
    assert not forced.changed  # the same bytes again: nothing changed
    assert list(tmp_path.glob("out.labctl-*")) == []


def test_checksum_decides_and_is_enforced(tmp_path: Path, served: Path) -> None:
    digest = hashlib.sha256(b"payload\n").hexdigest()
    dest = tmp_path / "out"
    dest.write_bytes(b"old\n")
    result = get(url=served.as_uri(), dest=str(dest), checksum=f"sha256:{digest}")
    assert result.changed and dest.read_bytes() == b"payload\n"
    again = get(url=served.as_uri(), dest=str(dest), checksum=f"sha256:{digest.upper()}")
    assert not again.changed
    dest.unlink()
    bad = get(url=served.as_uri(), dest=str(dest), checksum="sha256:" + "0" * 64)
    assert bad.failed and "The checksum for" in bad.msg and "did not match" in bad.msg
    assert not dest.exists() and list(tmp_path.glob("out.labctl-*")) == []


def test_dest_directory_takes_the_urls_file_name(tmp_path: Path, served: Path) -> None:
    (tmp_path / "dl").mkdir()
    result = get(url=served.as_uri(), dest=str(tmp_path / "dl"))
    assert result.output["dest"] == str(tmp_path / "dl" / "pkg-1.0.tar.gz")
    assert (tmp_path / "dl" / "pkg-1.0.tar.gz").read_bytes() == b"payload\n"


def test_check_mode_downloads_nothing(tmp_path: Path, served: Path) -> None:
    conn = LocalConn()
    result = get(check=True, conn=conn, url=served.as_uri(), dest=str(tmp_path / "out"))
    assert result.changed and not (tmp_path / "out").exists() and len(conn.ran) == 1


def test_a_missing_url_fails(tmp_path: Path) -> None:
    result = get(url=(tmp_path / "nothing").as_uri(), dest=str(tmp_path / "out"))
    assert result.failed and not (tmp_path / "out").exists()


def test_existing_file_keeps_or_fixes_attributes(tmp_path: Path, served: Path) -> None:
    dest = tmp_path / "out"
    dest.write_bytes(b"anything\n")
    dest.chmod(0o600)
    result = get(url=served.as_uri(), dest=str(dest), mode="0640")
    assert result.changed and dest.read_bytes() == b"anything\n"  # force=no: not downloaded
    assert dest.stat().st_mode & 0o777 == 0o640
    assert "attributes changed" in result.output["msg"]


def test_parse_checksum() -> None:
    assert parse_checksum("") is None
    assert parse_checksum("sha256: AB-cd") == Checksum("sha256", "abcd")
    with pytest.raises(ValueError, match="algorithm one of"):
        parse_checksum("crc:00")
    with pytest.raises(ValueError, match="not supported"):
        parse_checksum("sha256:http://x/SHA256SUMS")
    with pytest.raises(ValueError, match="format is invalid"):
        parse_checksum("sha1:xyz")


def test_url_filename() -> None:
    assert url_filename("http://h/a/b%20c.tgz?x=1") == "b c.tgz"
    assert url_filename("http://h/") == "index.html"


def test_arguments_and_quoting(tmp_path: Path) -> None:
    with pytest.raises(ArgsError, match="scheme"):
        build_args(GetUrlAction, {"url": "/etc/passwd", "dest": "/x"})
    with pytest.raises(ArgsError, match="unknown argument 'headers'"):
        build_args(GetUrlAction, {"url": "http://h/x", "dest": "/x", "headers": {}})
    canary = tmp_path / "pwned"
    nasty = f"http://127.0.0.1:9/x;touch {canary};$(touch {canary})"
    result = get(url=nasty, dest=str(tmp_path / "o"), timeout=1)
    assert result.failed and not canary.exists()
