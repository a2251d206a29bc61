"""wait_for on the namespace lab through `labctl play`: the wait runs on the host (its own
loopback and addresses, its own /root), is never "changed", and a timeout fails in one line."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import NamespaceLab
from .test_play import changed, play, write_book

pytestmark = pytest.mark.lab

WORK = "/root/labctl-test-wait-for"


@pytest.fixture
def work(lab: NamespaceLab) -> Iterator[str]:
    try:
        lab.host("srv1").run(["mkdir", "-p", WORK], check=True)
        lab.host("srv1").run(["sh", "-c", f"echo 'state: READY 7' > {WORK}/log"], check=True)
        yield WORK
    finally:
        for name in ("srv1", "cli1", "cli2"):
            lab.host(name).run(["rm", "-rf", WORK])


def test_waits_pass_on_the_host_and_change_nothing(
    lab: NamespaceLab, tmp_path: Path, work: str
) -> None:
    srv1 = lab.inventory_host("srv1")
    book = write_book(
        tmp_path,
        f"""\
        - hosts: srv1
          gather_facts: false
          tasks:
            - name: sshd's port on the host's own address
              wait_for: {{host: "{srv1.address}", port: {srv1.port}, timeout: 10}}
              register: w
            - name: a closed port on the host's loopback
              wait_for: {{port: 1, state: stopped, timeout: 10}}
            - name: a file
              wait_for: {{path: {WORK}/log, timeout: 10}}
            - name: a string in it
              wait_for: {{path: {WORK}/log, search_regex: 'READY \\d+', timeout: 10}}
            - name: a path that is absent
              wait_for: {{path: {WORK}/nothing, state: absent, timeout: 10}}
            - name: a short sleep
              wait_for: {{timeout: 1}}
        """,
    )
    rc, doc, err = play(lab, book)
    assert rc == 0, err
    assert changed(doc) == {"srv1": 0}
    first = doc["results"][0]["output"]
    assert first["elapsed"] < 10 and first["port"] == srv1.port and not first["changed"]
    # Ansible's wait_for has no check mode: every wait is skipped, none waits
    rc, doc, err = play(lab, book, "--check")
    assert rc == 0, err
    assert {r["status"] for r in doc["results"]} == {"skipped"}


def test_a_timeout_fails_with_ansibles_message(
    lab: NamespaceLab, tmp_path: Path, work: str
) -> None:
    book = write_book(
        tmp_path,
        f"""\
        - hosts: srv1
          gather_facts: false
          tasks:
            - name: never there
              wait_for: {{path: {WORK}/never, timeout: 2, sleep: 1}}
        """,
    )
    started = time.monotonic()
    rc, doc, _ = play(lab, book)
    assert rc != 0 and time.monotonic() - started < 30
    (result,) = doc["results"]
    assert result["status"] == "failed"
    assert result["msg"].startswith(f"Timeout when waiting for file {WORK}/never (after ")
