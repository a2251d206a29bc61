"""The read file, copy and template start with, run by a real sh on real paths: without
attributes (no mode, owner or group asked) it tells the same type and content as with them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from labctl.actions.files import _stat_script, parse_path_state


def _state(path: Path, attributes: bool) -> tuple[str, str | None, str | None]:
    text = _stat_script(str(path), attributes).text
    out = subprocess.run(["sh", "-c", text], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    state = parse_path_state(out.stdout)
    return state.kind, state.sha256, state.mode


@pytest.mark.parametrize("what", ["file", "empty", "directory", "link", "dangling", "absent"])
def test_the_type_and_content_are_the_same_without_stat(tmp_path: Path, what: str) -> None:
    path = tmp_path / "p"
    if what == "file":
        path.write_text("content 'q' $(x)\n")
    elif what == "empty":
        path.write_text("")
    elif what == "directory":
        path.mkdir()
    elif what in ("link", "dangling"):
        target = tmp_path / "t"
        if what == "link":
            target.write_text("x")
        os.symlink(target, path)
    full = _state(path, attributes=True)
    short = _state(path, attributes=False)
    assert short[:2] == full[:2]
    assert short[2] is None and (full[2] is not None or what == "absent")
