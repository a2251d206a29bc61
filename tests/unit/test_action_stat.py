"""stat without a host: its script run by the local shell on real files, and the parser."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from labctl.actions.base import ArgsError, TaskContext, build_args, run_action
from labctl.actions.stat import StatAction, parse_stat, stat_script
from labctl.remote import CommandResult, command_text


class LocalConn:
    """Runs each command with the local sh: stat's script is read-only."""

    def __init__(self) -> None:
        self.host = SimpleNamespace(name="local")
        self.ran: list[str] = []

    def run(self, command: Any, check: bool = False, **_: Any) -> CommandResult:
        text = command_text(command)
        self.ran.append(text)
        proc = subprocess.run(["sh", "-c", text], capture_output=True, text=True)
        assert not check or proc.returncode == 0, proc.stderr
        return CommandResult("local", text, proc.returncode, proc.stdout, proc.stderr, 0.0)


def stat_of(path: Path, **args: Any) -> dict[str, Any]:
    conn = LocalConn()
    ctx = TaskContext(conn=conn, vars={}, base_dir=Path("."))  # type: ignore[arg-type]
    result = run_action(StatAction(), ctx, {"path": str(path), **args}, check=True)
    assert not result.changed and not result.failed
    assert len(conn.ran) == 1  # one round trip
    return dict(result.output)["stat"]


def test_a_regular_file_has_ansibles_keys(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"hello\n")
    f.chmod(0o640)
    s = stat_of(f)
    st = os.stat(f)
    assert s["exists"] and s["isreg"] and not s["isdir"] and not s["islnk"]
    assert s["path"] == str(f)
    assert s["mode"] == "0640"
    assert (s["uid"], s["gid"], s["size"]) == (st.st_uid, st.st_gid, 6)
    assert s["pw_name"] == "root" and s["gr_name"] == "root"
    assert s["checksum"] == hashlib.sha1(b"hello\n").hexdigest()
    assert abs(s["mtime"] - st.st_mtime) < 0.001 and isinstance(s["mtime"], float)
    assert (s["rusr"], s["wusr"], s["xusr"], s["rgrp"], s["wgrp"], s["roth"]) == (
        True,
        True,
        False,
        True,
        False,
        False,
    )
    assert s["inode"] == st.st_ino and s["nlink"] == 1


def test_checksum_algorithm_and_get_checksum(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x")
    assert stat_of(f, checksum_algorithm="sha256")["checksum"] == hashlib.sha256(b"x").hexdigest()
    assert "checksum" not in stat_of(f, get_checksum=False)


def test_missing_path_is_exists_false(tmp_path: Path) -> None:
    assert stat_of(tmp_path / "nothing") == {"exists": False}


def test_directory_and_special_bits(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    d.chmod(0o1777)
    s = stat_of(d)
    assert s["isdir"] and not s["isreg"] and s["mode"] == "1777"
    assert "checksum" not in s


def test_a_link_is_a_link_unless_followed(tmp_path: Path) -> None:
    (tmp_path / "target").write_text("t")
    (tmp_path / "link").symlink_to("target")
    s = stat_of(tmp_path / "link")
    assert s["islnk"] and not s["isreg"]
    assert s["lnk_target"] == "target"
    assert s["lnk_source"] == str(tmp_path / "target")
    assert "checksum" not in s
    followed = stat_of(tmp_path / "link", follow=True)
    assert followed["isreg"] and not followed["islnk"] and followed["size"] == 1
    assert followed["checksum"] == hashlib.sha1(b"t").hexdigest()
    # a dangling link exists unless followed
    (tmp_path / "dangling").symlink_to("nowhere")
    assert stat_of(tmp_path / "dangling")["islnk"]
    assert stat_of(tmp_path / "dangling", follow=True) == {"exists": False}


def test_names_reach_the_shell_quoted(tmp_path: Path) -> None:
    nasty = tmp_path / "a b; $(touch pwned) 'q'"
    nasty.write_text("n")
    assert stat_of(nasty)["size"] == 1
    assert not (Path.cwd() / "pwned").exists() and not (tmp_path / "pwned").exists()


def test_parse_unknown_owner_leaves_names_out() -> None:
    text = (
        "exists=1\nrawmode=81a4\nuid=4242\ngid=4242\npw_name=UNKNOWN\ngr_name=UNKNOWN\n"
        "size=0\ninode=1\ndev=2\nnlink=1\natime=1.5\nmtime=2.000000000\nctime=3.0\n"
        "blocks=0\nblock_size=4096\n"
    )
    s = parse_stat(text, "/x")
    assert "pw_name" not in s and "gr_name" not in s
    assert s["mode"] == "0644" and s["isreg"] and s["mtime"] == 2.0


def test_args_are_checked() -> None:
    with pytest.raises(ArgsError, match="checksum_algorithm"):
        build_args(StatAction, {"path": "/x", "checksum_algorithm": "crc32"})
    with pytest.raises(ArgsError, match="absolute"):
        build_args(StatAction, {"path": "x"})
    with pytest.raises(ArgsError, match="unknown argument 'get_mime'"):
        build_args(StatAction, {"path": "/x", "get_mime": True})
    assert "-L" in stat_script("/x", True, None).text
    assert "sha1sum" not in stat_script("/x", False, None).text
