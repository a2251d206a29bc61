"""stat on the namespace lab through `labctl play`: registered values read from the JSON
result, checked against the host's own view; never changed, check mode the same."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import NamespaceLab
from .test_play import changed, play, write_book

pytestmark = pytest.mark.lab

WORK = "/root/labctl-test-stat"

BOOK = f"""\
- hosts: srv1
  gather_facts: false
  tasks:
    - name: a file
      stat: {{path: {WORK}/f}}
      register: f
    - name: a link, as a link
      stat: {{path: {WORK}/link, checksum_algorithm: sha256}}
    - name: a link, followed
      stat: {{path: {WORK}/link, follow: true, get_checksum: false}}
    - name: nothing
      stat: {{path: {WORK}/nothing}}
    - name: the registered value is usable in a condition
      file: {{path: {WORK}/seen, state: touch}}
      when: f.stat.exists and f.stat.mode == '0640' and f.stat.size == 6
"""


@pytest.fixture
def work(lab: NamespaceLab) -> Iterator[str]:
    srv1 = lab.host("srv1")
    try:
        srv1.run(["mkdir", "-p", WORK], check=True)
        srv1.run(["sh", "-c", f"printf 'hello\\n' > {WORK}/f"], check=True)
        srv1.run(["chmod", "0640", f"{WORK}/f"], check=True)
        srv1.run(["ln", "-s", "f", f"{WORK}/link"], check=True)
        yield WORK
    finally:
        srv1.run(["rm", "-rf", WORK])


def outputs(doc: dict[str, Any]) -> dict[str, Any]:
    return {r["task"]: r["output"] for r in doc["results"] if r["host"] == "srv1"}


def test_stat_registers_ansibles_keys(lab: NamespaceLab, tmp_path: Path, work: str) -> None:
    book = write_book(tmp_path, BOOK)
    rc, doc, err = play(lab, book, "--check")
    assert rc == 0, err
    assert changed(doc) == {"srv1": 1}  # only the touch, planned
    assert lab.host("srv1").run(["test", "-e", f"{work}/seen"]).exit_status == 1

    rc, doc, err = play(lab, book)
    assert rc == 0, err
    out = outputs(doc)
    f = out["a file"]["stat"]
    assert out["a file"]["changed"] is False
    host_says = lab.host("srv1").run(["stat", "-c", "%u %g %i %Y", f"{work}/f"]).stdout.split()
    assert [f["uid"], f["gid"], f["inode"], int(f["mtime"])] == [int(x) for x in host_says]
    assert (f["exists"], f["isreg"], f["isdir"], f["islnk"]) == (True, True, False, False)
    assert (f["mode"], f["size"], f["pw_name"], f["path"]) == ("0640", 6, "root", f"{work}/f")
    assert f["checksum"] == hashlib.sha1(b"hello\n").hexdigest()
    link = out["a link, as a link"]["stat"]
    assert link["islnk"] and link["lnk_target"] == "f" and "checksum" not in link
    followed = out["a link, followed"]["stat"]
    assert followed["isreg"] and followed["size"] == 6 and "checksum" not in followed
    assert out["nothing"]["stat"] == {"exists": False}
    assert lab.host("srv1").run(["test", "-e", f"{work}/seen"]).ok  # the condition held

    rc, doc, err = play(lab, book)
    assert rc == 0 and changed(doc) == {"srv1": 0}, err
