"""One playbook that uses every action: the first run changes each host, the second nothing."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from labctl.actions import ACTIONS
from labctl.facts.host import installed_header_releases

from .conftest import NamespaceLab
from .test_play import host_snapshot

pytestmark = pytest.mark.lab

ANSIBLE_MODULES = {
    "stat",
    "lineinfile",
    "wait_for",
    "fetch",
    "get_url",
    "unarchive",
    "git",
    "service",
    "systemd",
    "systemd_service",
    "modprobe",
}

ROOT = Path(__file__).resolve().parents[2]
WORK = "/root/labctl-test-all"

BOOK = f"""\
- name: every action
  hosts: all
  vars:
    work: {WORK}
  tasks:
    - name: packages that are there already
      packages: {{names: [iproute2, procps]}}
    - name: a per-namespace sysctl
      sysctl: {{name: net.ipv4.tcp_tw_reuse, value: "{{{{ tw_reuse }}}}"}}
    - name: work directory
      file: {{path: "{{{{ work }}}}", state: directory, mode: "0755"}}
    - name: copy
      copy: {{dest: "{{{{ work }}}}/copied", content: "copied on {{{{ inventory_hostname }}}}\\n"}}
    - name: template
      template: {{src: host.j2, dest: "{{{{ work }}}}/host.conf", mode: "0640"}}
    - name: source from a controller directory
      source: {{src: tree, dest: "{{{{ work }}}}/tree"}}
    - name: command
      command:
        argv: [cp, "{{{{ work }}}}/copied", "{{{{ work }}}}/cmd"]
        creates: "{{{{ work }}}}/cmd"
    - name: shell
      shell:
        cmd: "wc -l < {{{{ work }}}}/tree/a.txt > {{{{ work }}}}/lines"
        creates: "{{{{ work }}}}/lines"
    - name: an out-of-tree module's source
      source: {{src: hello_kmod, dest: "{{{{ work }}}}/hello_kmod"}}
    - name: an out-of-tree module, built against the installed headers
      kmod:
        name: hello_kmod
        src: "{{{{ work }}}}/hello_kmod"
        kernel_release: "{{{{ headers_release }}}}"
        cache_dir: "{{{{ work }}}}/kmod-cache"
    - name: a root qdisc
      qdisc: {{interfaces: [eth0], kind: pfifo, limit: 100}}
    - name: a driver swap (skipped, this kernel loads no modules)
      driver: {{driver: veth}}
    - name: netmap unloaded (nothing to do, this kernel loads no modules)
      netmap: {{state: unloaded}}
    - name: a background program
      process: {{name: sleeper, argv: [sleep, "300"], run_dir: "{{{{ work }}}}/run"}}
"""

UNDO = f"""\
- hosts: all
  gather_facts: false
  tasks:
    - name: stop the program
      process: {{name: sleeper, state: stopped, run_dir: {WORK}/run}}
    - name: qdisc back
      qdisc: {{interfaces: [eth0], kind: noqueue}}
    - name: sysctl back
      sysctl: {{name: net.ipv4.tcp_tw_reuse, value: "{{{{ tw_reuse }}}}"}}
    - name: remove
      file: {{path: {WORK}, state: absent}}
"""


def test_a_playbook_with_every_action_runs_then_changes_nothing(
    lab: NamespaceLab, tmp_path: Path
) -> None:
    used = {
        line.split(":")[0].strip()
        for line in BOOK.splitlines()
        if line.startswith("      ") and ":" in line and not line.strip().startswith("-")
    }
    # Ansible's modules have a lab test each (tests/lab/test_action_<module>.py, and
    # test_play_ansible.py runs them beside real Ansible); labctl's own actions meet here.
    assert set(ACTIONS) - ANSIBLE_MODULES <= used, set(ACTIONS) - ANSIBLE_MODULES - used

    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "host.j2").write_text("name = {{ inventory_hostname }}\n")
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "a.txt").write_text("one\ntwo\n")
    shutil.copytree(ROOT / "fixtures" / "hello_kmod", tmp_path / "hello_kmod")
    releases = installed_header_releases("\n".join(os.listdir("/usr/src")))
    if not releases:
        pytest.skip("no kernel headers under /usr/src: apt-get install linux-headers-amd64")
    book = tmp_path / "all.yml"
    book.write_text(BOOK)
    undo = tmp_path / "undo.yml"
    undo.write_text(UNDO)
    srv1 = lab.host("srv1")
    tw_before = srv1.run(["cat", "/proc/sys/net/ipv4/tcp_tw_reuse"]).stdout.strip()
    wanted = "1" if tw_before != "1" else "0"

    def run(path: Path, tw: str) -> dict:
        proc = lab.labctl(
            "play",
            str(path),
            "-i",
            str(lab.inventory_path),
            "--json",
            "-e",
            f"tw_reuse={tw}",
            "-e",
            f"headers_release={releases[-1]}",
        )
        assert proc.returncode == 0, proc.stderr + proc.stdout[-2000:]
        return json.loads(proc.stdout)

    before = host_snapshot(lab)
    proc = lab.labctl(
        "play",
        str(book),
        "-i",
        str(lab.inventory_path),
        "--check",
        "--json",
        "-e",
        f"tw_reuse={wanted}",
        "-e",
        f"headers_release={releases[-1]}",
    )
    assert proc.returncode == 0, proc.stderr
    planned = json.loads(proc.stdout)["recap"]
    # command and shell do not run in check mode; with `creates` (as here) Ansible's report
    # them changed, as labctl's do
    assert {h: r["changed"] for h, r in planned.items()} == {"srv1": 11, "cli1": 11, "cli2": 11}
    assert host_snapshot(lab) == before  # check mode touched nothing

    try:
        first = run(book, wanted)
        # everything but the packages (already there) changed on every host
        assert {h: r["changed"] for h, r in first["recap"].items()} == {
            "srv1": 11,
            "cli1": 11,
            "cli2": 11,
        }
        second = run(book, wanted)
        assert {h: r["changed"] for h, r in second["recap"].items()} == {
            "srv1": 0,
            "cli1": 0,
            "cli2": 0,
        }
        assert srv1.run(["cat", f"{WORK}/lines"]).stdout.strip() == "2"
        assert srv1.run(["cat", f"{WORK}/host.conf"]).stdout == "name = srv1\n"
        assert srv1.run(["cat", "/proc/sys/net/ipv4/tcp_tw_reuse"]).stdout.strip() == wanted
        pid = json.loads(srv1.run(["cat", f"{WORK}/run/sleeper.pid"]).stdout)["pid"]
        assert srv1.run(["kill", "-0", str(pid)]).ok
    finally:
        run(undo, tw_before)
    assert srv1.run(["test", "-e", WORK]).exit_status == 1
    assert srv1.run(["cat", "/proc/sys/net/ipv4/tcp_tw_reuse"]).stdout.strip() == tw_before
