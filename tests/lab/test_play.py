"""Playbooks on the namespace lab, through the `labctl play` command line."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from labctl.remote import ShellScript
from tests.support import run_labctl

from .conftest import NamespaceLab

pytestmark = pytest.mark.lab

CANARY = "/tmp/labctl-test-canary"
NASTY = "semi; $(touch " + CANARY + ") `touch " + CANARY + "` 'single' \"double\"\nnewline $HOME"


def play(lab: NamespaceLab, book: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    proc = lab.labctl("play", str(book), "-i", str(lab.inventory_path), "--json", *args)
    doc = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return proc.returncode, doc, proc.stderr


def changed(doc: dict[str, Any]) -> dict[str, int]:
    return {h: r["changed"] for h, r in doc["recap"].items()}


def write_book(tmp_path: Path, text: str) -> Path:
    book = tmp_path / "book.yml"
    book.write_text(textwrap.dedent(text))
    return book


@pytest.fixture
def workdir(lab: NamespaceLab) -> Any:
    """A directory on every lab host, removed afterwards whatever happens."""
    path = "/root/labctl-test-play"
    yield path
    for name in ("srv1", "cli1", "cli2"):
        lab.host(name).run(["rm", "-rf", path, CANARY])


FILES_BOOK = """\
- name: files
  hosts: all
  vars:
    motd: "host {{ inventory_hostname }} runs {{ facts.kernel_release }}"
  tasks:
    - name: dir
      file: {path: "{{ dir }}", state: directory, mode: "0750"}
    - name: copy nasty content literally
      copy: {dest: "{{ dir }}/nasty", content: "{{ nasty }}", mode: "0600"}
    - name: template
      template: {src: motd.j2, dest: "{{ dir }}/motd"}
    - name: touch each
      file: {path: "{{ dir }}/{{ item }}", state: touch}
      loop: [a, b]
    - name: command with creates
      command: {argv: [cp, "{{ dir }}/motd", "{{ dir }}/motd.copy"], creates: "{{ dir }}/motd.copy"}
    - name: shell
      @SHELL@
"""


def test_every_file_action_applies_then_changes_nothing(
    lab: NamespaceLab, tmp_path: Path, workdir: str
) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "motd.j2").write_text("{{ motd }}\n")
    book = write_book(tmp_path, FILES_BOOK.replace("@SHELL@", "shell: ls\n      async: 10"))
    # `async` is an Ansible keyword labctl does not run: refused before any host is touched.
    rc, _, err = play(lab, book, "-e", f"dir={workdir}")
    assert rc == 2 and "task keyword 'async' is not supported" in err
    book = write_book(
        tmp_path,
        FILES_BOOK.replace(
            "@SHELL@",
            "shell: {cmd: \"printf '%s' {{ nasty | quote }} > {{ dir }}/nasty.sh\", "
            'creates: "{{ dir }}/nasty.sh"}',
        ),
    )
    extra = ["-e", f"dir={workdir}", "-e", json.dumps({"nasty": NASTY})]

    rc, first, err = play(lab, book, *extra)
    assert rc == 0, err
    assert changed(first) == {"srv1": 6, "cli1": 6, "cli2": 6}
    rc, second, err = play(lab, book, *extra)
    assert rc == 0, err
    assert changed(second) == {"srv1": 0, "cli1": 0, "cli2": 0}

    cli1 = lab.host("cli1")
    assert cli1.run(["cat", f"{workdir}/nasty"]).stdout == NASTY
    assert cli1.run(["cat", f"{workdir}/nasty.sh"]).stdout == NASTY
    assert cli1.run(["stat", "-c", "%a", f"{workdir}/nasty", workdir]).stdout.split() == [
        "600",
        "750",
    ]
    kernel = cli1.run(["uname", "-r"]).stdout.strip()
    assert cli1.run(["cat", f"{workdir}/motd"]).stdout == f"host cli1 runs {kernel}\n"
    assert cli1.run(["cat", f"{workdir}/motd.copy"]).stdout == f"host cli1 runs {kernel}\n"
    assert cli1.run(["test", "-e", CANARY]).exit_status == 1  # nothing was executed


def host_snapshot(lab: NamespaceLab) -> dict[str, Any]:
    """Files under each host's /root, a sysctl, and the programs in its network namespace."""
    import os
    import subprocess

    files = ShellScript(
        "find /root -xdev -printf '%p %m %s %T@\\n' | sort; cat /proc/sys/net/ipv4/tcp_tw_reuse"
    )
    snap: dict[str, Any] = {}
    for name in ("srv1", "cli1", "cli2"):
        pids = subprocess.run(
            ["ip", "netns", "pids", lab.lab.spec.netns(name)], capture_output=True, text=True
        ).stdout.split()
        programs = []
        for pid in pids:
            try:
                if os.readlink(f"/proc/{pid}/exe") != "/usr/sbin/sshd":
                    programs.append(Path(f"/proc/{pid}/cmdline").read_bytes())
            except OSError:
                continue  # gone meanwhile (a session ending)
        snap[name] = (lab.host(name).run(files).stdout, sorted(programs))
    return snap


def test_check_mode_lists_changes_and_leaves_hosts_exactly_as_they_were(
    lab: NamespaceLab, tmp_path: Path, workdir: str
) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "motd.j2").write_text("{{ motd }}\n")
    book = write_book(
        tmp_path,
        FILES_BOOK.replace("@SHELL@", 'shell: {cmd: "touch {{ dir }}/ran"}'),
    )
    before = host_snapshot(lab)
    proc = lab.labctl(
        "play",
        str(book),
        "-i",
        str(lab.inventory_path),
        "--check",
        "--diff",
        "-e",
        f"dir={workdir}",
        "-e",
        "nasty=x",
    )
    assert proc.returncode == 0, proc.stderr
    assert "(check mode)" in proc.stdout
    assert f"create directory {workdir}" in proc.stdout
    assert "+host srv1 runs" in proc.stdout  # the template's diff
    assert host_snapshot(lab) == before


def sshd_logins(lab: NamespaceLab) -> int:
    return sum(
        (lab.lab.spec.host_dir(h) / "sshd.log").read_text().count("Accepted publickey")
        for h in ("srv1", "cli1", "cli2")
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "- hosts: all\n  tasks:\n    - name: t\n      command: echo {{ typo }}\n",
            ":3: task 't': undefined variable 'typo' (for srv1, cli1, cli2)",
        ),
        (
            "- hosts: all\n  tasks:\n    - name: t\n      nosuch: {}\n",
            ":4: task 't': unknown module",
        ),
        (
            "- hosts: all\n  tasks:\n    - name: t\n      file: {mode: '0600'}\n",
            ":4: task 't': file: missing argument 'path'",
        ),
        ("- hosts: all\n  tasks: [\n", ":3: invalid YAML"),
        ("- hosts: nosuchgroup\n  tasks: []\n", "unknown host or group 'nosuchgroup'"),
    ],
)
def test_bad_input_is_one_line_and_touches_no_host(
    lab: NamespaceLab, tmp_path: Path, text: str, message: str
) -> None:
    book = write_book(tmp_path, text)
    logins = sshd_logins(lab)
    proc = lab.labctl("play", str(book), "-i", str(lab.inventory_path))
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert sshd_logins(lab) == logins  # not one SSH login happened


def test_a_failed_host_leaves_the_play_and_the_others_go_on(
    lab: NamespaceLab, tmp_path: Path, workdir: str
) -> None:
    book = write_book(
        tmp_path,
        f"""\
        - hosts: all
          gather_facts: false
          tasks:
            - name: fail on cli1
              command: "false"
              when: inventory_hostname == 'cli1'
            - name: after
              file: {{path: {workdir}, state: directory}}
        """,
    )
    rc, doc, _ = play(lab, book)
    assert rc == 2
    after = {r["host"]: r["status"] for r in doc["results"] if r["task"] == "after"}
    assert after == {"srv1": "changed", "cli2": "changed"}
    assert doc["recap"]["cli1"]["failed"] == 1
    assert lab.host("cli1").run(["test", "-d", workdir]).exit_status == 1

    fatal = write_book(
        tmp_path,
        book.read_text()
        .replace("gather_facts: false", "gather_facts: false\n  any_errors_fatal: true")
        .replace(workdir, workdir + "/fatal"),
    )
    rc, doc, _ = play(lab, fatal)
    assert rc == 2
    assert not [r for r in doc["results"] if r["task"] == "after"]


def with_cli2_unreachable(lab: NamespaceLab, tmp_path: Path) -> Path:
    """The lab's inventory with cli2 on a port nothing listens on: refused at once."""
    import yaml

    inv = tmp_path / "inventory.yml"
    doc = yaml.safe_load(lab.inventory_path.read_text())
    clients = doc["all"]["children"]["local_lab"]["children"]["clients"]["hosts"]
    clients["cli2"]["ansible_port"] = 2222
    inv.write_text(yaml.safe_dump(doc))
    return inv


def test_unreachable_is_reported_as_unreachable(lab: NamespaceLab, tmp_path: Path) -> None:
    inv = with_cli2_unreachable(lab, tmp_path)
    book = write_book(tmp_path, "- hosts: all\n  tasks:\n    - name: t\n      command: 'true'\n")
    proc = lab.labctl("play", str(book), "-i", str(inv), "--json")
    doc = json.loads(proc.stdout)
    assert proc.returncode == 4
    assert doc["recap"]["cli2"] == {
        "ok": 0,
        "changed": 0,
        "unreachable": 1,
        "failed": 0,
        "skipped": 0,
        "rescued": 0,
        "ignored": 0,
    }
    assert doc["recap"]["srv1"]["changed"] == 1
    (unreach,) = [r for r in doc["results"] if r["status"] == "unreachable"]
    assert unreach["msg"] == "cli2: unreachable: connection refused"


def test_register_when_loop_and_tags(lab: NamespaceLab, tmp_path: Path) -> None:
    book = write_book(
        tmp_path,
        """\
        - hosts: servers
          tasks:
            - name: read
              command: echo one two
              register: words
            - name: loop over registered output
              command: {argv: [echo, "{{ item }}"]}
              loop: "{{ words.stdout.split() }}"
              register: echoed
              tags: [echo]
            - name: skipped by when
              command: echo never
              when: words.rc != 0
        """,
    )
    rc, doc, err = play(lab, book)
    assert rc == 0, err
    loop = next(r for r in doc["results"] if r["task"] == "loop over registered output")
    # as Ansible registers it: the trailing newline taken off
    assert [i["stdout"] for i in loop["output"]["results"]] == ["one", "two"]
    assert next(r for r in doc["results"] if r["task"] == "skipped by when")["status"] == "skipped"
    rc, doc, err = play(lab, book, "--tags", "echo")
    # Only the tagged task runs: `words` was never registered, so it fails on the host.
    assert rc == 2
    tasks = {r["task"] for r in doc["results"]}
    assert tasks == {"Gathering Facts", "loop over registered output"}


def test_a_templated_value_is_one_argument_of_a_command(
    lab: NamespaceLab, tmp_path: Path, workdir: str
) -> None:
    book = write_book(
        tmp_path,
        """\
        - hosts: srv1
          gather_facts: false
          tasks:
            - name: args
              command: printf '<%s>' {{ f }} "{{ g }} tail"
              register: out
        """,
    )
    rc, doc, err = play(lab, book, "-e", "f=-rf /root/labctl " + CANARY, "-e", "g=$(touch x)")
    assert rc == 0, err
    (result,) = [r for r in doc["results"] if r["task"] == "args"]
    assert result["output"]["stdout"] == f"<-rf /root/labctl {CANARY}><$(touch x) tail>"
    assert lab.host("srv1").run(["test", "!", "-e", CANARY]).ok


def test_owner_alone_keeps_a_files_group(lab: NamespaceLab, tmp_path: Path, workdir: str) -> None:
    host = lab.host("srv1")
    host.run(["mkdir", "-p", workdir], check=True)
    host.run(["sh", "-c", f"touch {workdir}/f && chown daemon:daemon {workdir}/f"], check=True)
    book = write_book(
        tmp_path,
        f"""\
        - hosts: srv1
          gather_facts: false
          tasks:
            - name: owner only
              file: {{path: {workdir}/f, state: file, owner: root}}
        """,
    )
    rc, _, err = play(lab, book)
    assert rc == 0, err
    assert host.run(["stat", "-c", "%U:%G", f"{workdir}/f"]).stdout.strip() == "root:daemon"


def test_check_mode_calls_an_unreachable_host_unreachable(
    lab: NamespaceLab, tmp_path: Path
) -> None:
    inv = with_cli2_unreachable(lab, tmp_path)
    book = write_book(
        tmp_path,
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: t\n"
        "      file: {path: /root/labctl-test-check-only, state: touch}\n",
    )
    proc = lab.labctl("play", str(book), "-i", str(inv), "--json", "--check")
    recap = json.loads(proc.stdout)["recap"]
    assert proc.returncode == 4, proc.stderr
    assert recap["cli2"]["unreachable"] == 1 and recap["cli2"]["changed"] == 0
    assert recap["srv1"]["changed"] == 1


def test_a_playbook_runs_changes_are_recorded_and_restore_puts_them_back(
    lab: NamespaceLab, tmp_path: Path
) -> None:
    """A sysctl and a root qdisc changed by a play: recorded as a run of their own; restore
    puts back what the play found (not a default), and a second restore changes nothing."""
    srv = lab.host("srv1")
    sysctl = "net.ipv4.tcp_fin_timeout"
    was = srv.run(["sysctl", "-n", sysctl], check=True).stdout.strip()
    srv.run(["tc", "qdisc", "replace", "dev", "eth0", "root", "pfifo", "limit", "33"], check=True)
    book = write_book(
        tmp_path,
        f"""\
        - hosts: srv1
          gather_facts: false
          tasks:
            - name: a sysctl
              sysctl: {{name: {sysctl}, value: "{int(was) + 7}"}}
            - name: a qdisc
              qdisc: {{interfaces: [eth0], kind: bfifo, limit: 20000}}
        """,
    )
    try:
        # the store the settings name (labctl.toml here), whatever directory labctl runs in
        (tmp_path / "labctl.toml").write_text('store = "results/labctl.db"\n')
        (tmp_path / "sub").mkdir()
        proc = run_labctl(
            "play", str(book), "-i", str(lab.inventory_path), timeout=120, cwd=tmp_path / "sub"
        )
        assert proc.returncode == 0, proc.stderr
        assert "is recorded as run 1: `labctl restore 1` puts it back" in proc.stderr
        store = str(tmp_path / "results" / "labctl.db")
        restore = lab.labctl("restore", "1", "-i", str(lab.inventory_path), "--store", store)
        assert restore.returncode == 0, restore.stderr
        assert f"srv1: {sysctl} {int(was) + 7} -> {was}" in restore.stdout
        assert "srv1: eth0: root bfifo limit 20000 -> pfifo limit 33" in restore.stdout
        assert srv.run(["sysctl", "-n", sysctl]).stdout.strip() == was
        twice = lab.labctl("restore", "1", "-i", str(lab.inventory_path), "--store", store)
        assert "nothing to put back" in twice.stdout, twice.stdout
        shown = lab.labctl("results.show", "1", "--store", store)
        assert shown.returncode == 2 and "is a playbook run" in shown.stderr
    finally:
        srv.run(["sysctl", "-w", f"{sysctl}={was}"])
        srv.run(["tc", "qdisc", "del", "dev", "eth0", "root"])
