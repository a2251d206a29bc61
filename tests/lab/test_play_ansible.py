"""An ordinary Ansible project (tests/lab/data/ansible_project: roles, handlers, blocks,
includes, vars_files, group_vars, an INI inventory with ranges and host_vars) runs unchanged
under `labctl play`, and leaves on every host the same files, modes and registered values
as real Ansible (ansible-core from PyPI) leaves for the same playbook on the same lab.
`--check` changes nothing; a second run reports 0 changed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support import run_labctl

from .conftest import NamespaceLab

pytestmark = pytest.mark.lab

PROJECT = Path(__file__).parent / "data" / "ansible_project"
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
HOSTS = ("srv1", "cli1", "cli2")
RECAP = re.compile(
    r"^(\S+)\s*: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)"
    r"\s+skipped=(\d+)\s+rescued=(\d+)\s+ignored=(\d+)",
    re.M,
)
TREE = (
    'cd "$1" && find . -type f | LC_ALL=C sort | while read -r f; do '
    'printf "== %s %s\\n" "$f" "$(stat -c %a "$f")"; cat "$f"; printf "\\n"; done'
)


def write_project(lab: NamespaceLab, root: Path) -> Path:
    """The project beside an INI inventory of this lab (a range, :children, :vars, and the
    clients' addresses in host_vars/ beside the inventory)."""
    shutil.copytree(PROJECT, root / "project")
    inv_dir = root / "inventory"
    (inv_dir / "host_vars").mkdir(parents=True)
    srv = lab.inventory_host("srv1")
    lines = [
        "# the test lab as an Ansible INI inventory",
        "[servers]",
        f"srv1 ansible_host={srv.address}",
        "",
        "[clients]",
        "cli[1:2]",
        "",
        "[clients:vars]",
        f"ansible_port={srv.port}",
        "",
        "[lab:children]",
        "servers",
        "clients",
        "",
        "[lab:vars]",
        "ansible_user=root",
        f"ansible_ssh_private_key_file={srv.key_file}",
        f"labctl_known_hosts_file={srv.known_hosts_file}",
    ]
    (inv_dir / "hosts.ini").write_text("\n".join(lines) + "\n")
    for name in ("cli1", "cli2"):
        address = lab.inventory_host(name).address
        (inv_dir / "host_vars" / f"{name}.yml").write_text(f"ansible_host: {address}\n")
    return inv_dir / "hosts.ini"


def ansible_env(lab: NamespaceLab, root: Path) -> dict[str, str]:
    """Ansible kept inside the test's directory, host keys checked against the lab's own
    known_hosts, no ControlPersist (no ssh master outlives the test)."""
    known = lab.inventory_host("srv1").known_hosts_file
    (root / "ansible.cfg").write_text("[defaults]\n")
    return {
        **os.environ,
        "ANSIBLE_CONFIG": str(root / "ansible.cfg"),
        "ANSIBLE_HOME": str(root / "ansible-home"),
        "ANSIBLE_LOCAL_TEMP": str(root / "ansible-tmp"),
        "ANSIBLE_SSH_ARGS": f"-o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes",
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
    }


def trees(lab: NamespaceLab, dest: str) -> dict[str, str]:
    out = {}
    for name in HOSTS:
        res = lab.host(name).run(["sh", "-c", TREE, "tree", dest])
        out[name] = res.stdout if res.ok else f"absent ({res.first_error_line()})"
    return out


def labctl_play(
    inventory: Path, book: Path, dest: str, *flags: str
) -> tuple[int, dict[str, Any], str]:
    import json

    proc = run_labctl(
        "play",
        str(book),
        "-i",
        str(inventory),
        "-e",
        f"dest={dest}",
        "--json",
        *flags,
        timeout=300,
    )
    doc = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return proc.returncode, doc, proc.stderr


def recap_counts(recap: dict[str, dict[str, int]]) -> dict[str, tuple[int, ...]]:
    keys = ("changed", "unreachable", "failed", "skipped", "rescued", "ignored")
    return {h: tuple(r[k] for k in keys) for h, r in recap.items()}


def test_an_ansible_project_runs_unchanged_and_leaves_what_ansible_leaves(
    lab: NamespaceLab, tmp_path: Path
) -> None:
    if not ANSIBLE_PLAYBOOK.exists():
        pytest.skip("ansible-core is not installed in this environment (pip install '.[test]')")
    inventory = write_project(lab, tmp_path)
    book = tmp_path / "project" / "site.yml"
    dests = {k: f"/root/labctl-test-ansible-{k}" for k in ("check", "ansible", "labctl")}
    try:
        # --check plans everything from the real hosts and changes nothing
        rc, doc, err = labctl_play(inventory, book, dests["check"], "--check")
        assert rc == 0, err
        assert all(v.startswith("absent") for v in trees(lab, dests["check"]).values())

        ansible = subprocess.run(
            [
                str(ANSIBLE_PLAYBOOK),
                "-i",
                str(inventory),
                str(book),
                "-e",
                f"dest={dests['ansible']}",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            stdin=subprocess.DEVNULL,
            env=ansible_env(lab, tmp_path),
            cwd=tmp_path,
        )
        assert ansible.returncode == 0, ansible.stdout[-3000:] + ansible.stderr[-2000:]
        ansible_recap = {
            m[1]: tuple(int(x) for x in m.groups()[2:]) for m in RECAP.finditer(ansible.stdout)
        }

        rc, doc, err = labctl_play(inventory, book, dests["labctl"])
        assert rc == 0, err
        # changed, unreachable, failed, skipped, rescued, ignored: as Ansible counted them
        assert recap_counts(doc["recap"]) == ansible_recap
        assert trees(lab, dests["labctl"]) == trees(lab, dests["ansible"])
        report = lab.host("cli1").run(["cat", f"{dests['labctl']}/report"]).stdout
        assert "grep.rc=1 stdout=0 failed=False changed=False" in report
        assert "always_stat=True True 0644 5" in report

        rc, doc, err = labctl_play(inventory, book, dests["labctl"])
        assert rc == 0, err
        assert {h: r["changed"] for h, r in doc["recap"].items()} == dict.fromkeys(HOSTS, 0)
    finally:
        for name in HOSTS:
            lab.host(name).run(["rm", "-rf", *dests.values()])
