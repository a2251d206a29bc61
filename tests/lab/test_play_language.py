"""The Ansible keywords the big Ansible comparison (test_play_ansible.py) does not reach,
each on the namespace lab through `labctl play`: serial, run_once, become_user, no_log,
fail/ignore_errors, meta end_host and flush_handlers, import_playbook, tags always/never,
-e @file."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from .conftest import NamespaceLab

pytestmark = pytest.mark.lab

SHARED = "/tmp/labctl-test-play-language"  # /tmp is one filesystem for every lab host


def play(lab: NamespaceLab, book: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    proc = lab.labctl("play", str(book), "-i", str(lab.inventory_path), "--json", *args)
    doc = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return proc.returncode, doc, proc.stderr


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def results(doc: dict[str, Any], task: str) -> dict[str, dict[str, Any]]:
    return {r["host"]: r for r in doc["results"] if r["task"] == task}


@pytest.fixture
def shared(lab: NamespaceLab) -> Any:
    lab.host("srv1").run(["mkdir", "-p", SHARED])
    yield SHARED
    lab.host("srv1").run(["rm", "-rf", SHARED])


def test_serial_batches_run_every_task_before_the_next_batch(
    lab: NamespaceLab, tmp_path: Path, shared: str
) -> None:
    book = write(
        tmp_path,
        "serial.yml",
        f"""\
        - hosts: all
          gather_facts: false
          serial: [1, 2]
          tasks:
            - name: first
              shell: echo "first {{{{ inventory_hostname }}}}" >> {shared}/order
            - name: second
              shell: echo "second {{{{ inventory_hostname }}}}" >> {shared}/order
            - name: once per batch
              shell: echo "once {{{{ ansible_play_batch | join(',') }}}}" >> {shared}/order
              run_once: true
        """,
    )
    rc, doc, err = play(lab, book)
    assert rc == 0, err
    lines = lab.host("srv1").run(["cat", f"{shared}/order"]).stdout.splitlines()
    assert lines[:3] == ["first srv1", "second srv1", "once srv1"]
    assert sorted(lines[3:5]) == ["first cli1", "first cli2"]
    assert sorted(lines[5:7]) == ["second cli1", "second cli2"]
    assert lines[7:] == ["once cli1,cli2"]


def test_become_user_no_log_and_failures(lab: NamespaceLab, tmp_path: Path, shared: str) -> None:
    book = write(
        tmp_path,
        "mixed.yml",
        f"""\
        - hosts: srv1
          gather_facts: false
          become: true
          tasks:
            - name: as nobody
              command: id -un
              become_user: nobody
              register: who
              changed_when: false
            - name: a secret
              shell: echo s3cr3t-value
              register: secret
              no_log: true
              changed_when: false
            - name: the secret still reaches later tasks
              copy:
                dest: {shared}/secret
                content: "{{{{ secret.stdout }}}} {{{{ who.stdout }}}}\\n"
            - name: fails, ignored
              fail: {{msg: "on purpose"}}
              ignore_errors: true
            - name: the host ends here
              meta: end_host
            - name: never reached
              file: {{path: {shared}/never, state: touch}}
        """,
    )
    rc, doc, err = play(lab, book)
    assert rc == 0, err
    assert "s3cr3t-value" not in json.dumps(results(doc, "a secret"))
    assert lab.host("srv1").run(["cat", f"{shared}/secret"]).stdout == "s3cr3t-value nobody\n"
    assert results(doc, "fails, ignored")["srv1"]["ignored"] is True
    assert doc["recap"]["srv1"]["ignored"] == 1 and doc["recap"]["srv1"]["failed"] == 0
    assert not results(doc, "never reached")
    assert not lab.host("srv1").run(["test", "-e", f"{shared}/never"]).ok


def test_handlers_flush_imported_plays_tags_and_extra_var_files(
    lab: NamespaceLab, tmp_path: Path, shared: str
) -> None:
    write(
        tmp_path,
        "second.yml",
        f"""\
        - name: second play
          hosts: cli1
          gather_facts: false
          tasks:
            - name: always, whatever the tags
              shell: echo "always {{{{ greeting }}}}" >> {shared}/log
              tags: [always]
            - name: only asked for
              shell: echo never >> {shared}/log
              tags: [never, extra]
        """,
    )
    book = write(
        tmp_path,
        "main.yml",
        f"""\
        - name: first play
          hosts: srv1
          gather_facts: false
          tasks:
            - name: change something
              copy: {{dest: "{shared}/conf", content: "{{{{ greeting }}}}\\n"}}
              notify: [log change]
              tags: [conf]
            - name: handlers now
              meta: flush_handlers
              tags: [conf]
            - name: after the flush
              shell: echo after >> {shared}/log
              tags: [conf]
          handlers:
            - name: log change
              shell: echo handler >> {shared}/log
        - import_playbook: second.yml
        """,
    )
    (tmp_path / "vars.yml").write_text("greeting: hi there\n")
    rc, doc, err = play(lab, book, "-e", f"@{tmp_path / 'vars.yml'}", "--tags", "conf")
    assert rc == 0, err
    log = lab.host("srv1").run(["cat", f"{shared}/log"]).stdout.splitlines()
    assert log == ["handler", "after", "always hi there"]
    # a second run changes nothing, so nothing is notified
    lab.host("srv1").run(["rm", "-f", f"{shared}/log"])
    rc, doc, err = play(lab, book, "-e", f"@{tmp_path / 'vars.yml'}", "--tags", "conf")
    assert rc == 0, err
    log = lab.host("srv1").run(["cat", f"{shared}/log"]).stdout.splitlines()
    assert log == ["after", "always hi there"]


def test_loops_includes_rescues_and_end_play(
    lab: NamespaceLab, tmp_path: Path, shared: str
) -> None:
    role = tmp_path / "roles" / "users" / "tasks"
    role.mkdir(parents=True)
    (tmp_path / "roles" / "users" / "defaults").mkdir()
    (tmp_path / "roles" / "users" / "defaults" / "main.yml").write_text("people: [ann, bob]\n")
    (role / "main.yml").write_text("- include_tasks: one.yml\n  loop: '{{ people }}'\n")
    (role / "one.yml").write_text(
        f"- shell: echo 'user {{{{ item }}}} on {{{{ inventory_hostname }}}}' >> {shared}/log\n"
    )
    book = write(
        tmp_path,
        "more.yml",
        f"""\
        - hosts: all
          gather_facts: false
          serial: 1
          max_fail_percentage: 0
          roles: [users]
          tasks:
            - name: a loop over what only some hosts define
              shell: echo "pkg {{{{ item }}}}" >> {shared}/log
              with_items: "{{{{ extra_pkgs }}}}"
              when: extra_pkgs is defined
            - name: rescued, so not a failed host
              block:
                - command: "false"
              rescue:
                - shell: echo "rescued {{{{ inventory_hostname }}}}" >> {shared}/log
            - name: the whole play ends here, later batches too
              meta: end_play
            - name: never
              shell: echo never >> {shared}/log
        """,
    )
    rc, doc, err = play(lab, book)
    assert rc == 0, err
    log = lab.host("srv1").run(["cat", f"{shared}/log"]).stdout.splitlines()
    assert log == ["user ann on srv1", "user bob on srv1", "rescued srv1"]
    assert results(doc, "a loop over what only some hosts define")["srv1"]["status"] == "skipped"
    assert doc["recap"]["srv1"]["rescued"] == 1 and doc["recap"]["srv1"]["failed"] == 0
    assert set(doc["recap"]) == {"srv1", "cli1", "cli2"}
    assert not [r for r in doc["results"] if r["host"] != "srv1"]
