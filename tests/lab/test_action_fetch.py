"""fetch on the namespace lab through `labctl play`: each host's own file (their /root
differs) lands under dest/<host>/<path> beside the playbook; then nothing is copied again;
check mode writes nothing on the controller."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import NamespaceLab
from .test_play import changed, play, write_book

pytestmark = pytest.mark.lab

WORK = "/root/labctl-test-fetch"
HOSTS = ("srv1", "cli1", "cli2")


@pytest.fixture
def work(lab: NamespaceLab) -> Iterator[str]:
    try:
        for name in HOSTS:
            host = lab.host(name)
            host.run(["mkdir", "-p", WORK], check=True)
            host.run(["sh", "-c", f"echo 'data of {name}' > {WORK}/data"], check=True)
        yield WORK
    finally:
        for name in HOSTS:
            lab.host(name).run(["rm", "-rf", WORK])


BOOK = f"""\
- hosts: all
  gather_facts: false
  tasks:
    - name: per host
      fetch: {{src: {WORK}/data, dest: fetched}}
    - name: flat, one name per host
      fetch: {{src: {WORK}/data, dest: "flat/{{{{ inventory_hostname }}}}.txt", flat: true}}
    - name: missing but not required
      fetch: {{src: {WORK}/missing, dest: fetched, fail_on_missing: false}}
"""


def test_fetch_copies_each_hosts_file_once(lab: NamespaceLab, tmp_path: Path, work: str) -> None:
    book = write_book(tmp_path, BOOK)
    rc, doc, err = play(lab, book, "--check")
    assert rc == 0, err
    # Ansible's fetch has no check mode: skipped, and nothing is written
    assert changed(doc) == {h: 0 for h in HOSTS}
    assert {r["status"] for r in doc["results"]} == {"skipped"}
    assert not (tmp_path / "fetched").exists() and not (tmp_path / "flat").exists()

    rc, doc, err = play(lab, book)
    assert rc == 0, err
    assert changed(doc) == {h: 2 for h in HOSTS}
    for name in HOSTS:
        data = f"data of {name}\n".encode()
        path = tmp_path / "fetched" / name / WORK.lstrip("/") / "data"
        assert path.read_bytes() == data
        assert (tmp_path / "flat" / f"{name}.txt").read_bytes() == data
    out = next(r["output"] for r in doc["results"] if r["host"] == "srv1")
    assert out["checksum"] == out["remote_checksum"] == hashlib.sha1(b"data of srv1\n").hexdigest()
    assert out["dest"] == str(tmp_path / "fetched" / "srv1" / WORK.lstrip("/") / "data")
    missing = [r for r in doc["results"] if r["task"] == "missing but not required"]
    assert all("not transferring, ignored" in r["msg"] for r in missing)

    rc, doc, err = play(lab, book)
    assert rc == 0, err
    assert changed(doc) == {h: 0 for h in HOSTS}

    lab.host("cli2").run(["sh", "-c", f"echo changed > {WORK}/data"], check=True)
    rc, doc, err = play(lab, book)
    assert rc == 0, err
    assert changed(doc) == {"srv1": 0, "cli1": 0, "cli2": 2}
    assert (tmp_path / "flat" / "cli2.txt").read_text() == "changed\n"
