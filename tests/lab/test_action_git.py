"""git on the namespace lab through `labctl play`: srv1's git clones a bare repository the
test makes on the shared filesystem (no network), then nothing, then another version."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import NamespaceLab
from .test_play import changed, play, write_book

pytestmark = pytest.mark.lab

DEST = "/root/labctl-test-git/co"  # srv1's own /root
ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
    "GIT_CONFIG_GLOBAL": "/dev/null",
}


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=ENV, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def origin(lab: NamespaceLab) -> Iterator[Path]:
    """/tmp/labctl-test-git-<pid>/origin.git: main with two commits, tag v1 on the first."""
    top = Path(f"/tmp/labctl-test-git-{os.getpid()}")
    try:
        work = top / "work"
        work.mkdir(parents=True)
        git("init", "-q", "-b", "main", cwd=work)
        (work / "f").write_text("one\n")
        git("add", "f", cwd=work)
        git("commit", "-qm", "one", cwd=work)
        git("tag", "-a", "v1", "-m", "one", cwd=work)
        (work / "f").write_text("two\n")
        git("commit", "-qam", "two", cwd=work)
        git("clone", "-q", "--bare", str(work), str(top / "origin.git"))
        yield top / "origin.git"
    finally:
        shutil.rmtree(top, ignore_errors=True)
        lab.host("srv1").run(["rm", "-rf", str(Path(DEST).parent)])


def test_git_clones_then_nothing_then_a_tag(
    lab: NamespaceLab, tmp_path: Path, origin: Path
) -> None:
    srv1 = lab.host("srv1")
    book = write_book(
        tmp_path,
        """\
        - hosts: srv1
          gather_facts: false
          tasks:
            - name: checkout
              git: {repo: "{{ repo }}", dest: "{{ dest }}", version: "{{ version }}"}
              register: co
        """,
    )
    main, v1 = git("rev-parse", "main", cwd=origin), git("rev-parse", "v1^{}", cwd=origin)
    extra = ["-e", f"repo={origin}", "-e", f"dest={DEST}"]

    rc, doc, err = play(lab, book, "--check", *extra, "-e", "version=HEAD")
    assert rc == 0, err
    assert changed(doc) == {"srv1": 1}
    assert srv1.run(["test", "-e", DEST]).exit_status == 1

    rc, doc, err = play(lab, book, *extra, "-e", "version=HEAD")
    assert rc == 0, err
    out = doc["results"][0]["output"]
    assert changed(doc) == {"srv1": 1} and out["before"] is None and out["after"] == main
    assert srv1.run(["git", "-C", DEST, "rev-parse", "HEAD"]).stdout.strip() == main
    assert srv1.run(["cat", f"{DEST}/f"]).stdout == "two\n"

    rc, doc, err = play(lab, book, *extra, "-e", "version=HEAD")
    assert rc == 0 and changed(doc) == {"srv1": 0}, err

    rc, doc, err = play(lab, book, *extra, "-e", "version=v1")
    assert rc == 0, err
    out = doc["results"][0]["output"]
    assert changed(doc) == {"srv1": 1} and (out["before"], out["after"]) == (main, v1)
    assert srv1.run(["cat", f"{DEST}/f"]).stdout == "one\n"
    rc, doc, err = play(lab, book, *extra, "-e", "version=v1")
    assert rc == 0 and changed(doc) == {"srv1": 0}, err
