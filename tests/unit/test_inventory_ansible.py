"""`labctl inventory` against real `ansible-inventory` (ansible-core, the test extra): for the
same files, --list, --graph and --host must print the same thing. Skipped only when
ansible-inventory is not installed. Each ansible-inventory run takes about a second, so the
inventories below each pack several features."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support import run_labctl

ANSIBLE_INVENTORY = shutil.which(
    "ansible-inventory", path=os.pathsep.join([str(Path(sys.executable).parent), os.defpath])
)

pytestmark = pytest.mark.skipif(
    ANSIBLE_INVENTORY is None, reason="ansible-inventory not installed (pip install ansible-core)"
)

INI_LAB = {
    "inv/hosts": """
        # hosts before any section are ungrouped
        jump.example.net
        lone ansible_host=10.0.0.9

        [web]
        web[01:03] http_port=80 tags="[1, 2]" name='a b' flag=True n=007 f=1.5 d="{'a': 1}"
        both

        [db]
        both x=hostline
        db-[a:b]:2222
        [2001:db8::1]:2200

        [lab:children]
        web
        db

        [web:vars]
        x = webvar
        i = 42
        b = yes
        l = [1, 'two']
        c = 5 # trailing comment

        [all:vars]
        x = allvar
        y = ally

        ; semicolon comment
        [db:vars]
        x=dbvar
        ansible_user=dbadmin
        """,
    "inv/group_vars/all.yml": "x: gv_all\nz: gv_all\n",
    "inv/group_vars/web/a.yml": "x: gv_web_a\nw1: a\n",
    "inv/group_vars/web/b": "x: gv_web_b\nw2: b\n",
    "inv/group_vars/web/.hidden.yml": "skip: me\n",
    "inv/group_vars/web/sub/c.yaml": "w3: c\n",
    "inv/group_vars/db.yaml": "x: gv_db_yaml\n",
    "inv/group_vars/db": "x: gv_db_plain\n",
    "inv/host_vars/both.yml": "x: hv_both\n",
    "inv/host_vars/db-a": "ansible_port: 2022\n",
    "book/group_vars/all.yml": "x: book_all\npz: book\n",
    "book/group_vars/web.yml": "x: book_web\n",
    "book/host_vars/both.json": '{"x": "book_both"}\n',
}

INI_TREE = {
    "inv/tree.ini": """
        [top:children]
        mid
        other

        [mid:children]
        leaf

        [leaf]
        h1 v=leaf_inline

        [other]
        h1
        h2

        [mid:vars]
        v=mid
        w=mid

        [other:vars]
        w=other
        ansible_group_priority=5

        [all]
        h3

        [empty]
        """,
    "inv/group_vars/other.yml": "u: other_file\n",
    "inv/group_vars/mid.yml": "u: mid_file\n",
}

YAML_LAB = {
    "inv/lab.yml": """
        all:
          vars:
            site: lab
          hosts:
            jump.example.net:
          children:
            servers:
              vars: {role: server, port_note: 1}
              hosts:
                srv[1:2]:
                  ansible_port: 2222
            clients:
              hosts:
                cli1: {role: client}
                srv2:
        """,
    "inv/group_vars/servers.yml": "role: from_file\nlist: [1, 2]\n",
    "inv/group_vars/all/10-base.yml": "site: file\nbase: 1\n",
    "inv/group_vars/all/20-more.json": '{"more": true}\n',
    "inv/host_vars/cli1.yml": "role: host_file\n",
}


def make(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))


def ansible(root: Path, *args: str) -> str:
    assert ANSIBLE_INVENTORY is not None
    env = {
        **os.environ,
        "ANSIBLE_HOME": str(root / "ansible-home"),  # nothing written under ~
        "ANSIBLE_LOCAL_TEMP": str(root / "ansible-tmp"),
        "ANSIBLE_INVENTORY_ENABLED": "yaml,ini",  # the formats labctl reads
        "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true",  # fail rather than print nothing
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_DEPRECATION_WARNINGS": "false",
    }
    proc = subprocess.run(
        [ANSIBLE_INVENTORY, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=root,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def labctl(root: Path, *args: str) -> str:
    proc = run_labctl("inventory", *args, timeout=60, cwd=root)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def same(root: Path, *args: str) -> str:
    """Run both with ``args``; their outputs must be equal. Returns labctl's."""
    theirs, ours = ansible(root, *args), labctl(root, *args)
    if "--graph" not in args:
        assert json.loads(ours) == json.loads(theirs)
    assert ours == theirs
    return ours


def test_ini_with_vars_dirs(tmp_path: Path) -> None:
    make(tmp_path, INI_LAB)
    listed = json.loads(same(tmp_path, "-i", "inv/hosts", "--list"))
    assert listed["all"]["children"] == ["ungrouped", "lab"]
    assert listed["_meta"]["hostvars"]["web01"]["x"] == "gv_web_b"
    same(tmp_path, "-i", "inv/hosts", "--graph")
    assert json.loads(same(tmp_path, "-i", "inv/hosts", "--host", "both"))["x"] == "hv_both"


def test_ini_with_playbook_dir(tmp_path: Path) -> None:
    make(tmp_path, INI_LAB)
    args = ("-i", "inv/hosts", "--playbook-dir", "book", "--list")
    hostvars = json.loads(same(tmp_path, *args))["_meta"]["hostvars"]
    assert hostvars["both"]["x"] == "book_both"
    assert hostvars["lone"]["x"] == "book_all"


def test_ini_tree_pending_children_and_priority(tmp_path: Path) -> None:
    make(tmp_path, INI_TREE)
    hostvars = json.loads(same(tmp_path, "-i", "inv/tree.ini", "--list"))["_meta"]["hostvars"]
    assert hostvars["h1"]["w"] == "other"  # priority 5 beats mid at equal depth
    same(tmp_path, "-i", "inv/tree.ini", "--graph", "top")


def test_yaml_with_vars_dirs(tmp_path: Path) -> None:
    make(tmp_path, YAML_LAB)
    hostvars = json.loads(same(tmp_path, "-i", "inv/lab.yml", "--list"))["_meta"]["hostvars"]
    assert hostvars["cli1"]["role"] == "host_file"
    same(tmp_path, "-i", "inv/lab.yml", "--graph")
