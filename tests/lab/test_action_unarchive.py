"""unarchive on the namespace lab through `labctl play`: a controller archive (found under
files/ beside the playbook) and one already on the host (remote_src), unpacked once; check
mode leaves the host alone; the uploaded temp archive does not stay behind."""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import NamespaceLab
from .test_play import changed, play, write_book

pytestmark = pytest.mark.lab

WORK = "/root/labctl-test-unarchive"
HOSTS = ("srv1", "cli1", "cli2")

BOOK = f"""\
- hosts: all
  gather_facts: false
  tasks:
    - name: a controller tgz
      unarchive: {{src: app.tgz, dest: {WORK}/tgz, owner: nobody}}
    - name: a controller zip
      unarchive: {{src: app.zip, dest: {WORK}/zip, mode: "0640"}}
    - name: an archive on the host
      unarchive: {{src: {WORK}/on-host.tar.xz, dest: {WORK}/remote, remote_src: true}}
    - name: creates
      unarchive: {{src: app.tgz, dest: {WORK}/tgz, creates: {WORK}/tgz/app}}
"""


def tar_bytes(mode: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as t:  # type: ignore[call-overload]
        for name, data in (("app/bin/run", b"#!/bin/sh\necho hi\n"), ("app/etc/conf", b"x=1\n")):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 1_700_000_000, 0o755
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def work(lab: NamespaceLab, tmp_path: Path) -> Iterator[Path]:
    files = tmp_path / "files"
    files.mkdir()
    (files / "app.tgz").write_bytes(tar_bytes("w:gz"))
    with zipfile.ZipFile(files / "app.zip", "w") as z:
        z.writestr("docs/readme.txt", "read me\n")
    (tmp_path / "on-host.tar.xz").write_bytes(tar_bytes("w:xz"))
    try:
        for name in HOSTS:
            host = lab.host(name)
            host.run(["mkdir", "-p", f"{WORK}/tgz", f"{WORK}/zip", f"{WORK}/remote"], check=True)
            host.put(str(tmp_path / "on-host.tar.xz"), f"{WORK}/on-host.tar.xz")
        yield tmp_path
    finally:
        for name in HOSTS:
            lab.host(name).run(["rm", "-rf", WORK])


def uploads(lab: NamespaceLab) -> set[str]:
    """The temp archives in /tmp (shared by the lab's hosts)."""
    return set(lab.host("srv1").run(["sh", "-c", "ls /tmp | grep labctl-unarchive"]).stdout.split())


def test_unarchive_unpacks_once(lab: NamespaceLab, work: Path) -> None:
    book = write_book(work, BOOK)
    srv1 = lab.host("srv1")
    uploads_before = set(
        srv1.run(["sh", "-c", "ls /tmp | grep labctl-unarchive || true"]).stdout.split()
    )
    rc, doc, err = play(lab, book, "--check")
    assert rc == 0, err
    assert changed(doc) == {h: 4 for h in HOSTS}  # creates too: nothing is there yet
    assert srv1.run(["test", "-e", f"{WORK}/tgz/app"]).exit_status == 1

    rc, doc, err = play(lab, book)
    assert rc == 0, err
    assert changed(doc) == {h: 3 for h in HOSTS}
    for name in HOSTS:
        host = lab.host(name)
        assert host.run(["cat", f"{WORK}/tgz/app/etc/conf"]).stdout == "x=1\n"
        assert host.run(["stat", "-c", "%U", f"{WORK}/tgz/app/bin/run"]).stdout.strip() == "nobody"
        assert host.run(["cat", f"{WORK}/zip/docs/readme.txt"]).stdout == "read me\n"
        assert host.run(["stat", "-c", "%a", f"{WORK}/zip/docs/readme.txt"]).stdout.strip() == "640"
        assert host.run(["test", "-x", f"{WORK}/remote/app/bin/run"]).ok
    skipped = [r for r in doc["results"] if r["task"] == "creates"]
    assert all(r["msg"] == f"skipped, since {WORK}/tgz/app exists" for r in skipped)
    uploads_after = set(
        srv1.run(["sh", "-c", "ls /tmp | grep labctl-unarchive || true"]).stdout.split()
    )
    assert uploads_after == uploads_before

    rc, doc, err = play(lab, book)
    assert rc == 0, err
    assert changed(doc) == {h: 0 for h in HOSTS}

    srv1.run(["sh", "-c", f"echo edited > {WORK}/tgz/app/etc/conf"], check=True)
    rc, doc, err = play(lab, book)
    assert rc == 0, err
    assert changed(doc) == {"srv1": 1, "cli1": 0, "cli2": 0}
    assert srv1.run(["cat", f"{WORK}/tgz/app/etc/conf"]).stdout == "x=1\n"
