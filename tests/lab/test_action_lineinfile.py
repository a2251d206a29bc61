"""lineinfile on the namespace lab through `labctl play`: edits applied once, then nothing;
check mode and --diff leave the file alone; values with shell syntax arrive literally."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import NamespaceLab
from .test_play import changed, play, write_book

pytestmark = pytest.mark.lab

WORK = "/root/labctl-test-lineinfile"
CONF = f"{WORK}/sshd_config"
BEFORE = "# sample\n#Port 22\nPermitRootLogin yes\n#Listen 80\nX11Forwarding yes\nold = 1\n"
NASTY = "Banner $(touch /tmp/labctl-test-li-canary) `id` 'q' \"d\""

BOOK = f"""\
- hosts: all
  gather_facts: false
  tasks:
    - name: replace by regexp
      lineinfile: {{path: {CONF}, regexp: '^PermitRootLogin', line: PermitRootLogin no}}
    - name: insert after an anchor
      lineinfile: {{path: {CONF}, regexp: '^Listen ', insertafter: '^#Listen ', line: Listen 8080}}
    - name: at the top
      lineinfile: {{path: {CONF}, insertbefore: BOF, line: '# managed by labctl'}}
    - name: remove
      lineinfile: {{path: {CONF}, regexp: '^X11', state: absent}}
    - name: backrefs
      lineinfile: {{path: {CONF}, regexp: '^old = (\\d+)$', line: 'new = \\1', backrefs: true}}
    - name: a literal value
      lineinfile: {{path: {CONF}, line: "{{{{ nasty }}}}", mode: "0600"}}
    - name: a new file
      lineinfile: {{path: {WORK}/sub/new.conf, line: 'a = 1', create: true}}
"""

AFTER = (
    "# managed by labctl\n# sample\n#Port 22\nPermitRootLogin no\n#Listen 80\nListen 8080\n"
    f"new = 1\n{NASTY}\n"
)


@pytest.fixture
def work(lab: NamespaceLab) -> Iterator[str]:
    try:
        for name in ("srv1", "cli1", "cli2"):
            host = lab.host(name)
            host.run(["mkdir", "-p", WORK], check=True)
            host.run(["sh", "-c", f"printf '%s' '{BEFORE}' > {CONF}"], check=True)
        yield WORK
    finally:
        for name in ("srv1", "cli1", "cli2"):
            lab.host(name).run(["rm", "-rf", WORK, "/tmp/labctl-test-li-canary"])


def test_lineinfile_edits_once_then_nothing(lab: NamespaceLab, tmp_path: Path, work: str) -> None:
    book = write_book(tmp_path, BOOK)
    nasty = ["-e", json.dumps({"nasty": NASTY})]
    srv1 = lab.host("srv1")
    assert srv1.run(["cat", CONF]).stdout == BEFORE

    rc, doc, err = play(lab, book, "--check", "--diff", *nasty)
    assert rc == 0, err
    assert changed(doc) == {"srv1": 7, "cli1": 7, "cli2": 7}
    assert srv1.run(["cat", CONF]).stdout == BEFORE  # check mode wrote nothing
    assert srv1.run(["test", "-e", f"{work}/sub"]).exit_status == 1
    diffs = [r["diff"] for r in doc["results"] if r["host"] == "srv1" and r["diff"]]
    assert any("+PermitRootLogin no" in d for d in diffs)

    rc, doc, err = play(lab, book, *nasty)
    assert rc == 0, err
    assert changed(doc) == {"srv1": 7, "cli1": 7, "cli2": 7}
    for name in ("srv1", "cli1", "cli2"):
        host = lab.host(name)
        assert host.run(["cat", CONF]).stdout == AFTER
        assert host.run(["stat", "-c", "%a", CONF]).stdout.strip() == "600"
        assert host.run(["cat", f"{work}/sub/new.conf"]).stdout == "a = 1\n"
    msgs = {r["task"]: r["msg"] for r in doc["results"] if r["host"] == "srv1"}
    assert msgs["replace by regexp"] == "line replaced"
    assert msgs["insert after an anchor"] == "line added"
    assert srv1.run(["test", "-e", "/tmp/labctl-test-li-canary"]).exit_status == 1

    rc, doc, err = play(lab, book, *nasty)
    assert rc == 0, err
    assert changed(doc) == {"srv1": 0, "cli1": 0, "cli2": 0}


def test_a_missing_file_without_create_fails_in_one_line(
    lab: NamespaceLab, tmp_path: Path, work: str
) -> None:
    book = write_book(
        tmp_path,
        f"""\
        - hosts: srv1
          gather_facts: false
          tasks:
            - name: t
              lineinfile: {{path: {WORK}/missing, line: x}}
        """,
    )
    rc, doc, _ = play(lab, book)
    assert rc != 0
    (failed,) = [r for r in doc["results"] if r["status"] == "failed"]
    assert failed["msg"] == f"Destination {WORK}/missing does not exist !"


def test_backup_and_validate(lab: NamespaceLab, tmp_path: Path, work: str) -> None:
    book = write_book(
        tmp_path,
        f"""\
        - hosts: srv1
          gather_facts: false
          tasks:
            - name: accepted
              lineinfile: {{path: {CONF}, line: "ok = 1", backup: true, validate: "grep -q ok %s"}}
              register: accepted
            - name: rejected
              lineinfile: {{path: {CONF}, line: "bad = 1", validate: "grep -q nomatch %s"}}
        """,
    )
    srv1 = lab.host("srv1")
    rc, doc, _ = play(lab, book)
    assert rc != 0
    accepted, rejected = doc["results"]
    assert accepted["status"] == "changed" and rejected["status"] == "failed"
    backup = accepted["output"]["backup"]
    assert backup.startswith(f"{CONF}.") and backup.endswith("~")
    assert srv1.run(["cat", backup]).stdout == BEFORE
    assert srv1.run(["cat", CONF]).stdout == BEFORE + "ok = 1\n"
    listing = srv1.run(["ls", WORK]).stdout.split()
    assert sorted(listing) == sorted(["sshd_config", backup.rsplit("/", 1)[1]])
