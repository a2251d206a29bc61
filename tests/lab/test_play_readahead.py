"""Reads taken ahead on real hosts: the same results as reading task by task, in check
mode too, with fewer round trips (labctl/play/readahead.py)."""

from __future__ import annotations

import logging
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from labctl.play.load import load_playbook
from labctl.play.run import QuietReporter, RunOptions, run_playbook

from .conftest import NamespaceLab

pytestmark = pytest.mark.lab

DIR = "/root/labctl-test-readahead"
HOSTS = ("srv1", "cli1", "cli2")
BOOK = f"""\
- name: read ahead
  hosts: all
  gather_facts: false
  tasks:
    - name: dir
      file: {{path: {DIR}, state: directory, mode: "0755"}}
    - name: fixed
      copy: {{dest: {DIR}/fixed, content: "fixed\\n", mode: "0644"}}
    - name: from a template
      template: {{src: conf.j2, dest: {DIR}/conf}}
    - name: made once
      command: {{argv: [touch, {DIR}/made], creates: {DIR}/made}}
    - name: look at what the copy wrote
      stat: {{path: {DIR}/fixed}}
      register: fixed
    - name: say it
      debug: {{msg: "fixed exists: {{{{ fixed.stat.exists }}}}"}}
    - name: a command makes a file
      command: {{argv: [touch, {DIR}/later]}}
      changed_when: false
    - name: the next task reads what it made
      file: {{path: {DIR}/later, state: file, mode: "0600"}}
"""


@pytest.fixture
def book(tmp_path: Path, lab: NamespaceLab) -> Iterator[Path]:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "conf.j2").write_text("# {{ inventory_hostname }}\n")
    path = tmp_path / "book.yml"
    path.write_text(textwrap.dedent(BOOK))
    _reset(lab)
    yield path
    _reset(lab)


def _reset(lab: NamespaceLab) -> None:
    for name in HOSTS:
        lab.host(name).run(["rm", "-rf", DIR], check=True)


class _Sends(logging.Handler):
    """Round trips per host: each command sent, not counting reads that rode along."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if " $ " in text and not text.endswith("(read ahead)"):
            self.count[text.split(" $ ", 1)[0]] += 1


def _run(
    lab: NamespaceLab, book: Path, read_ahead: bool, check: bool = False
) -> tuple[list[tuple[str, ...]], Counter[str]]:
    sends = _Sends()
    logger = logging.getLogger("labctl.remote")
    logger.addHandler(sends)
    old = logger.level
    logger.setLevel(logging.INFO)
    try:
        options = RunOptions(check=check, diff=True, read_ahead=read_ahead)
        done = run_playbook(load_playbook(book), lab.inventory, options, QuietReporter())
    finally:
        logger.removeHandler(sends)
        logger.setLevel(old)
    seen = [
        (r.task, r.host, r.status, r.msg, "|".join(r.changes), r.diff or "")
        for r in sorted(done.results, key=lambda r: (r.host, r.task))
    ]
    return seen, sends.count


def _sequence(lab: NamespaceLab, book: Path, read_ahead: bool) -> list[list[tuple[str, ...]]]:
    """Check mode on nothing, a first run, a no-op run, check mode on what is there."""
    _reset(lab)
    return [
        _run(lab, book, read_ahead, check=True)[0],
        _run(lab, book, read_ahead)[0],
        _run(lab, book, read_ahead)[0],
        _run(lab, book, read_ahead, check=True)[0],
    ]


def test_results_are_those_of_reading_task_by_task(lab: NamespaceLab, book: Path) -> None:
    ahead = _sequence(lab, book, read_ahead=True)
    one_by_one = _sequence(lab, book, read_ahead=False)
    assert ahead == one_by_one
    first_run = ahead[1]
    # the stat after the copy saw the file the copy wrote, not the read taken before it
    assert ("say it", "srv1", "ok", "fixed exists: True", "", "") in first_run
    # the file task after the command read the file the command made
    later = [r for r in first_run if r[0] == "the next task reads what it made"]
    assert {r[2] for r in later} == {"changed"}, later
    # and a no-op run changes nothing
    assert {r[2] for r in ahead[2] if r[0] != "a command makes a file"} <= {"ok", "skipped"}


def test_a_no_op_run_reads_its_files_in_one_round_trip(lab: NamespaceLab, book: Path) -> None:
    _run(lab, book, read_ahead=True)
    _, ahead = _run(lab, book, read_ahead=True)
    _, one_by_one = _run(lab, book, read_ahead=False)
    # dir, fixed, conf, made and the stat in one; the command, with the read of the file
    # it made after it
    assert ahead == dict.fromkeys(HOSTS, 2)
    assert one_by_one == dict.fromkeys(HOSTS, 7)


def test_the_command_line_shows_reads_ahead_and_can_turn_them_off(
    lab: NamespaceLab, book: Path
) -> None:
    inv = str(lab.inventory_path)
    ahead = lab.labctl("play", str(book), "-i", inv, "--json", "-v")
    assert ahead.returncode == 0, ahead.stderr
    assert any(line.endswith("(read ahead)") for line in ahead.stderr.splitlines())
    alone = lab.labctl("play", str(book), "-i", inv, "--json", "-v", "--no-read-ahead")
    assert alone.returncode == 0, alone.stderr
    assert not any(line.endswith("(read ahead)") for line in alone.stderr.splitlines())
