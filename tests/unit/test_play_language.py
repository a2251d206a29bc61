"""The playbook language as Ansible users write it: loading, folding of block and role
keywords into tasks, Ansible module names, and every mistake as one line with file and line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from labctl.errors import InputError
from labctl.inventory import parse_inventory
from labctl.play.load import load_playbook
from labctl.play.model import Block, Include, Task, walk_tasks
from labctl.play.modules import split_kv, translate
from labctl.play.run import RunOptions, batches, prepare

INVENTORY = """\
all:
  hosts:
    srv1: {ansible_host: 10.0.0.1}
    cli1: {ansible_host: 10.0.0.2}
"""


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root / "site.yml"


def tasks_of(book_path: Path) -> list[Task]:
    (play,) = load_playbook(book_path).plays
    return [t for t in walk_tasks(play.tasks) if t.action != "meta"]


def test_ansible_module_names_and_arguments_become_labctl_actions() -> None:
    assert translate("ansible.builtin.apt", {"name": ["gcc"], "state": "installed"}) == (
        "packages",
        {"names": ["gcc"], "state": "present"},
    )
    assert translate("package", {"name": "make"}) == ("packages", {"names": "make"})
    assert translate("ansible.builtin.file", {"dest": "/x", "state": "touch"}) == (
        "file",
        {"path": "/x", "state": "touch"},
    )
    action, args = translate("ansible.posix.sysctl", {"name": "a.b", "value": "1", "reload": True})
    assert (action, args) == (
        "sysctl",
        {"name": "a.b", "value": "1", "persist": True, "file": "/etc/sysctl.conf"},
    )
    assert translate("ansible.builtin.copy", {"dest": "/x"}) == ("copy", {"dest": "/x"})


def test_one_line_key_value_arguments() -> None:
    assert split_kv("name=gcc state=present", None, lambda k: True) == {
        "name": "gcc",
        "state": "present",
    }
    assert split_kv('ls -l "a b" chdir=/tmp', "cmd", lambda k: k == "chdir") == {
        "chdir": "/tmp",
        "cmd": 'ls -l "a b"',
    }
    # `a=b` is not an argument of command: it stays part of the command line
    assert split_kv("echo a=b", "cmd", lambda k: k == "chdir") == {"cmd": "echo a=b"}
    with pytest.raises(ValueError, match="expected key=value"):
        split_kv("path=/x directory", None, lambda k: True)


def test_key_value_form_takes_ansibles_argument_names(tmp_path: Path) -> None:
    book = write(
        tmp_path,
        {
            "site.yml": "- hosts: all\n  tasks:\n    - apt: name=gcc state=installed\n"
            "    - lineinfile: dest=/etc/x line=y\n    - command: ls chdir=/tmp\n"
        },
    )
    apt, line, cmd = tasks_of(book)
    assert (apt.action, dict(apt.args)) == ("packages", {"names": "gcc", "state": "present"})
    assert (line.action, dict(line.args)) == ("lineinfile", {"path": "/etc/x", "line": "y"})
    assert cmd.args["chdir"] == "/tmp" and cmd.args["argv"] == ["ls"]
    bad = write(
        tmp_path / "bad", {"site.yml": "- hosts: all\n  tasks:\n    - apt: name=gcc state=latest\n"}
    )
    with pytest.raises(
        InputError, match=r"site.yml:3: task 'apt': .*state must be present or absent"
    ):
        load_playbook(bad)


def test_blocks_roles_and_imports_fold_their_keywords_into_each_task(tmp_path: Path) -> None:
    book = write(
        tmp_path,
        {
            "site.yml": """\
            - hosts: all
              roles:
                - role: web
                  vars: {port: 81}
                  tags: [web]
              tasks:
                - block:
                    - name: inner
                      command: echo {{ port | default(1) }}
                      when: b
                  when: a
                  tags: [outer]
                  become: true
                  become_user: nobody
                  rescue:
                    - name: fix
                      debug: msg=rescued
                  always:
                    - name: last
                      debug: {msg: done}
                - import_tasks: more.yml
                  when: c
                - include_tasks: more.yml
                  loop: [1, 2]
            """,
            "more.yml": "- name: more\n  shell: echo more\n  when: d\n",
            "roles/web/tasks/main.yml": "- name: role task\n  template: {src: a.j2, dest: /x}\n",
            "roles/web/defaults/main.yml": "port: 80\nroot: /srv\n",
            "roles/web/vars/main.yml": "name: web\n",
        },
    )
    (play,) = load_playbook(book).plays
    role_task = play.tasks[0]
    assert isinstance(role_task, Task)
    assert role_task.role == "web" and "web" in role_task.tags
    assert dict(role_task.defaults) == {"port": 80, "root": "/srv"}
    assert role_task.vars["name"] == "web" and role_task.vars["port"] == 81
    assert role_task.search_dirs[0] == (tmp_path / "roles" / "web").resolve() or (
        role_task.search_dirs[0] == tmp_path / "roles" / "web"
    )
    block = play.tasks[1]
    assert isinstance(block, Block)
    inner = block.block[0]
    assert isinstance(inner, Task)
    assert inner.when == ("a", "b") and inner.tags == {"outer"}
    assert (inner.become, inner.become_user) == (True, "nobody")
    assert [t.name for t in block.rescue + block.always] == ["fix", "last"]
    imported = play.tasks[2]
    assert isinstance(imported, Block) and imported.block[0].when == ("c", "d")  # type: ignore[union-attr]
    included = play.tasks[3]
    assert isinstance(included, Include) and included.loop == [1, 2]


@pytest.mark.parametrize(
    ("files", "line", "message"),
    [
        (
            {
                "site.yml": "- hosts: all\n  tasks:\n    - name: t\n"
                "      apt: {name: gcc, purge: true}\n"
            },
            4,
            "task 't': packages: unknown argument 'purge'",
        ),
        (
            {"site.yml": "- hosts: all\n  tasks:\n    - name: t\n      ansible.builtin.nope: {}\n"},
            4,
            "unknown module 'ansible.builtin.nope'",
        ),
        (
            {
                "site.yml": "- hosts: all\n  tasks:\n    - name: t\n      command: ls\n"
                "      notify: x\n"
            },
            3,
            "notify 'x': no handler has that name",
        ),
        (
            {"site.yml": "- hosts: all\n  vars_files: [missing.yml]\n  tasks: []\n"},
            2,
            "vars_files: 'missing.yml' not found",
        ),
        ({"site.yml": "- hosts: all\n  roles: [nope]\n"}, None, "role 'nope' not found"),
        (
            {
                "site.yml": "- hosts: all\n  tasks:\n    - import_tasks: a.yml\n",
                "a.yml": "- import_tasks: a.yml\n",
            },
            1,
            "includes itself",
        ),
        (
            {"site.yml": "- hosts: all\n  tasks:\n    - name: t\n      meta: reboot\n"},
            4,
            "meta: one of",
        ),
        (
            {"site.yml": "- hosts: all\n  tasks:\n    - name: t\n      debug: {msg: a, var: b}\n"},
            4,
            "debug: give msg or var",
        ),
        (
            {
                "site.yml": "- hosts: all\n  tasks:\n    - name: t\n      command: ls\n"
                "      loop_control: {loop_var: 1x}\n"
            },
            5,
            "loop_var must be a variable name",
        ),
        ({"site.yml": "- hosts: all\n  serial: zero\n  tasks: []\n"}, 2, "serial: 'zero'"),
        (
            {
                "site.yml": "- hosts: all\n  tasks:\n    - name: t\n      command: ls\n"
                "      delegate_to: other\n"
            },
            5,
            "only localhost",
        ),
        (
            {
                "site.yml": "- hosts: all\n  tasks:\n    - name: t\n      shell: ls\n"
                "      when: x ==\n"
            },
            5,
            "when: template syntax error",
        ),
        (
            {"site.yml": "- import_playbook: other.yml\n"},
            1,
            "import_playbook: 'other.yml' not found",
        ),
    ],
)
def test_mistakes_are_one_line_with_file_and_line(
    tmp_path: Path, files: dict[str, str], line: int | None, message: str
) -> None:
    book = write(tmp_path, files)
    with pytest.raises(InputError) as err:
        load_playbook(book)
    text = str(err.value)
    assert message in text
    assert "\n" not in text
    if line is not None:
        assert f":{line}: " in text


def test_set_fact_and_register_define_names_for_later_tasks_only(tmp_path: Path) -> None:
    inv = parse_inventory(INVENTORY)
    good = write(
        tmp_path,
        {
            "site.yml": """\
            - hosts: all
              tasks:
                - set_fact: {a: 1}
                - debug: {var: a}
                - command: ls
                  register: out
                  changed_when: out.rc != 0
                  until: out.rc == 0
                - assert: {that: [a == 1, out.rc == 0]}
              handlers: []
            """
        },
    )
    prepare(load_playbook(good), inv, RunOptions())
    bad = write(
        tmp_path / "bad",
        {"site.yml": "- hosts: all\n  tasks:\n    - debug: {var: b}\n    - set_fact: {b: 1}\n"},
    )
    with pytest.raises(InputError, match=r"site.yml:3: task 'debug': undefined variable 'b'"):
        prepare(load_playbook(bad), inv, RunOptions())


def test_extra_vars_from_a_file(tmp_path: Path) -> None:
    from labctl.cli.play import parse_extra_vars

    (tmp_path / "v.yml").write_text("a: 1\nb: [x, y]\n")
    assert parse_extra_vars([f"@{tmp_path / 'v.yml'}", "c=3"]) == {
        "a": 1,
        "b": ["x", "y"],
        "c": "3",
    }
    (tmp_path / "bad.yml").write_text("- a\n")
    with pytest.raises(InputError, match="mapping of variables"):
        parse_extra_vars([f"@{tmp_path / 'bad.yml'}"])
    (tmp_path / "broken.yml").write_text("a: [\n")
    with pytest.raises(InputError, match=r"broken.yml:\d+:"):
        parse_extra_vars([f"@{tmp_path / 'broken.yml'}"])


def test_serial_batches_like_ansible() -> None:
    names = [f"h{i}" for i in range(7)]
    assert batches(names, ()) == [names]
    assert batches(names, (2,)) == [names[:2], names[2:4], names[4:6], names[6:]]
    assert batches(names, (1, 3)) == [names[:1], names[1:4], names[4:7]]
    assert batches(names, ("50%",)) == [names[:3], names[3:6], names[6:]]
    assert batches([], (2,)) == []


def test_tags_all_tagged_and_untagged_as_ansible() -> None:
    from labctl.play.run import task_selected

    tagged, untagged = frozenset({"x"}), frozenset()
    assert task_selected(tagged, frozenset({"all"})) and task_selected(untagged, frozenset({"all"}))
    assert task_selected(tagged, frozenset({"tagged"}))
    assert not task_selected(untagged, frozenset({"tagged"}))
    assert task_selected(untagged, frozenset({"untagged"}))
    assert not task_selected(tagged, frozenset({"untagged"}))
    assert not task_selected(frozenset({"never"}), frozenset({"all"}))


def test_key_value_keeps_a_template_whole() -> None:
    assert split_kv("./run.sh chdir={{ app_dir }}", "cmd", lambda k: k == "chdir") == {
        "chdir": "{{ app_dir }}",
        "cmd": "./run.sh",
    }
    assert split_kv('msg={{ x | default("a b") }}', None, lambda k: True) == {
        "msg": '{{ x | default("a b") }}'
    }


def test_include_tasks_sees_its_roles_defaults_and_keeps_its_tags(tmp_path: Path) -> None:
    book = write(
        tmp_path,
        {
            "site.yml": "- hosts: all\n  roles: [r]\n",
            "roles/r/defaults/main.yml": "people: [a]\n",
            "roles/r/tasks/main.yml": "- include_tasks: one.yml\n  loop: '{{ people }}'\n"
            "  tags: [inc]\n",
            "roles/r/tasks/one.yml": "- debug: {msg: '{{ item }}'}\n",
        },
    )
    playbook = load_playbook(book)
    prepare(playbook, parse_inventory(INVENTORY), RunOptions())  # `people` is defined
    (include,) = playbook.plays[0].tasks
    assert isinstance(include, Include) and include.tags == {"inc"}
    assert include.items[0].tags == frozenset()  # type: ignore[union-attr]
