"""git without a host: this machine's git on repositories made in tmp_path (no network),
run through the action with a local connection; and version resolution on canned output."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from labctl.actions.base import ArgsError, TaskContext, build_args, run_action
from labctl.actions.git import GitAction, Target, parse_checkout, resolve
from labctl.remote import CommandFailed, CommandResult, command_text

ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
    "GIT_CONFIG_GLOBAL": "/dev/null",
}


class LocalConn:
    def __init__(self) -> None:
        self.host = SimpleNamespace(name="local")
        self.ran: list[str] = []

    def run(self, command: Any, check: bool = False, **_: Any) -> CommandResult:
        text = command_text(command)
        self.ran.append(text)
        proc = subprocess.run(["sh", "-c", text], capture_output=True, text=True, env=ENV)
        res = CommandResult("local", text, proc.returncode, proc.stdout, proc.stderr, 0.0)
        if check and not res.ok:
            raise CommandFailed(res)
        return res


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=ENV, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    """A bare repository: main with two commits, a branch `dev`, an annotated tag v1."""
    work = tmp_path / "work"
    work.mkdir()
    git("init", "-q", "-b", "main", cwd=work)
    (work / "f").write_text("one\n")
    git("add", "f", cwd=work)
    git("commit", "-qm", "one", cwd=work)
    git("tag", "-a", "v1", "-m", "release 1", cwd=work)
    git("branch", "dev", cwd=work)
    (work / "f").write_text("two\n")
    git("commit", "-qam", "two", cwd=work)
    bare = tmp_path / "origin.git"
    git("clone", "-q", "--bare", str(work), str(bare))
    return bare


def run(check: bool = False, **raw: Any) -> Any:
    ctx = TaskContext(conn=LocalConn(), vars={}, base_dir=Path("."))  # type: ignore[arg-type]
    return run_action(GitAction(), ctx, raw, check=check)


def test_clone_then_nothing_then_versions(tmp_path: Path, origin: Path) -> None:
    dest = tmp_path / "co"
    main = git("rev-parse", "main", cwd=origin)
    v1 = git("rev-parse", "v1^{commit}", cwd=origin)
    planned = run(check=True, repo=str(origin), dest=str(dest))
    assert planned.changed and not dest.exists()
    assert planned.output["before"] is None and planned.output["after"] == main
    first = run(repo=str(origin), dest=str(dest))
    assert first.changed and not first.failed, first.msg
    assert first.output["after"] == main and (dest / "f").read_text() == "two\n"
    again = run(repo=str(origin), dest=str(dest))
    assert not again.changed and again.output["before"] == again.output["after"] == main
    tag = run(repo=str(origin), dest=str(dest), version="v1")
    assert tag.changed and tag.output["before"] == main and tag.output["after"] == v1
    assert (dest / "f").read_text() == "one\n"
    assert not run(repo=str(origin), dest=str(dest), version="v1").changed
    sha = run(repo=str(origin), dest=str(dest), version=main[:10])
    assert sha.changed and sha.output["after"] == main
    assert not run(repo=str(origin), dest=str(dest), version=main[:10]).changed
    branch = run(repo=str(origin), dest=str(dest), version="dev")
    assert branch.changed and git("rev-parse", "--abbrev-ref", "HEAD", cwd=dest) == "dev"
    assert not run(repo=str(origin), dest=str(dest), version="dev").changed


def test_new_commits_are_fetched(tmp_path: Path, origin: Path) -> None:
    dest = tmp_path / "co"
    run(repo=str(origin), dest=str(dest))
    other = tmp_path / "other"
    git("clone", "-q", str(origin), str(other))
    (other / "f").write_text("three\n")
    git("commit", "-qam", "three", cwd=other)
    git("push", "-q", "origin", "main", cwd=other)
    result = run(repo=str(origin), dest=str(dest))
    assert result.changed and (dest / "f").read_text() == "three\n"
    assert result.output["after"] == git("rev-parse", "HEAD", cwd=other)


def test_local_changes_need_force(tmp_path: Path, origin: Path) -> None:
    dest = tmp_path / "co"
    run(repo=str(origin), dest=str(dest))
    (dest / "f").write_text("mine\n")
    with pytest.raises(ValueError, match=r"Local modifications exist .*\(force=no\)\."):
        run(repo=str(origin), dest=str(dest))
    assert not run(repo=str(origin), dest=str(dest), update=False).changed
    forced = run(repo=str(origin), dest=str(dest), force=True)
    assert forced.changed and (dest / "f").read_text() == "two\n"


def test_clone_false_and_depth_and_refusals(tmp_path: Path, origin: Path) -> None:
    absent = run(repo=str(origin), dest=str(tmp_path / "no"), clone=False)
    assert not absent.changed and absent.output["before"] is None
    shallow = tmp_path / "shallow"
    run(repo=origin.as_uri(), dest=str(shallow), depth=1)
    assert git("rev-list", "--count", "HEAD", cwd=shallow) == "1"
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(ValueError, match="not empty"):
        run(repo=str(origin), dest=str(tmp_path / "full"))
    with pytest.raises(ValueError, match="Could not determine remote revision for nosuch"):
        run(repo=str(origin), dest=str(tmp_path / "x"), version="nosuch")
    with pytest.raises(ArgsError, match="start with '-'"):
        build_args(GitAction, {"repo": "--upload-pack=x", "dest": "/d"})


LS_REMOTE = (
    "ref: refs/heads/main\tHEAD\n"
    "1111111111111111111111111111111111111111\tHEAD\n"
    "1111111111111111111111111111111111111111\trefs/heads/main\n"
    "2222222222222222222222222222222222222222\trefs/heads/dev\n"
    "3333333333333333333333333333333333333333\trefs/tags/v1\n"
    "4444444444444444444444444444444444444444\trefs/tags/v1^{}\n"
    "5555555555555555555555555555555555555555\trefs/tags/light\n"
)


def test_resolve() -> None:
    assert resolve("HEAD", LS_REMOTE) == Target("1" * 40, branch="main")
    assert resolve("dev", LS_REMOTE) == Target("2" * 40, branch="dev")
    assert resolve("v1", LS_REMOTE) == Target("4" * 40, tag="v1")  # the tag's commit
    assert resolve("light", LS_REMOTE) == Target("5" * 40, tag="light")
    assert resolve("abcdef1", LS_REMOTE) == Target("abcdef1")
    with pytest.raises(ValueError, match="empty repository"):
        resolve("HEAD", "")


def test_parse_checkout() -> None:
    assert parse_checkout("absent\n").kind == "absent"
    got = parse_checkout("repo\nhead=abc\nurl=/r.git\ndirty=1\n")
    assert (got.head, got.url, got.dirty) == ("abc", "/r.git", True)
    assert parse_checkout("repo\nhead=\nurl=\n").head is None
