"""Playbook loading and checking: every bad input is one line with file, line and task."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.actions.base import ArgsError, build_args
from labctl.actions.command import CommandAction
from labctl.actions.files import normalize_mode, parse_path_state
from labctl.cli.play import parse_extra_vars
from labctl.errors import InputError
from labctl.inventory import parse_inventory
from labctl.play.load import PlaybookError, load_playbook
from labctl.play.run import RunOptions, prepare
from labctl.templating import TemplateError, evaluate, render_value

INVENTORY = """
all:
  vars: {site: lab}
  children:
    servers: {hosts: {srv1: {ansible_host: 10.0.0.11, role: server}}}
    clients: {hosts: {cli1: {ansible_host: 10.0.0.21}}}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "book.yml"
    path.write_text(text)
    return path


GOOD = """\
- name: setup
  hosts: all
  vars: {dir: /root/x}
  tasks:
    - name: make dir
      file: {path: "{{ dir }}", state: directory}
    - name: list
      command: ls {{ dir }}
      register: listing
    - name: show
      command: echo {{ listing.stdout }}
      when: listing.rc == 0
      tags: [show]
    - name: each
      file: {path: "{{ dir }}/{{ item }}", state: touch}
      loop: "{{ ['a', 'b'] }}"
"""


def test_a_good_playbook_loads_into_plays_and_tasks(tmp_path: Path) -> None:
    book = load_playbook(write(tmp_path, GOOD))
    (play,) = book.plays
    assert (play.name, play.hosts, dict(play.vars)) == ("setup", "all", {"dir": "/root/x"})
    assert [t.name for t in play.tasks] == ["make dir", "list", "show", "each"]
    assert play.tasks[1].args == {"argv": ["ls", "{{ dir }}"]}  # free form, split into words
    assert play.tasks[1].register == "listing"
    assert play.tasks[2].when == ("listing.rc == 0",) and play.tasks[2].tags == {"show"}
    assert play.tasks[0].line == 5
    prepare(book, parse_inventory(INVENTORY), RunOptions())  # all names resolve


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("- hosts: all\n  tasks:\n    - name: x\n      command: [unclosed\n", 5, "invalid YAML"),
        ("hosts: all\n", 1, "a playbook is a list of plays"),
        ("- hosts: all\n  taks: []\n", 2, "unknown play keyword 'taks'"),
        ("- name: p\n  tasks: []\n", 1, "a play needs `hosts:`"),
        (
            "- hosts: all\n  tasks:\n    - name: t1\n      comand: ls\n",
            4,
            "task 't1': unknown module 'comand'",
        ),
        (
            "- hosts: all\n  tasks:\n    - name: t2\n      file: {state: directory}\n",
            4,
            "task 't2': file: missing argument 'path'",
        ),
        (
            "- hosts: all\n  tasks:\n    - name: t3\n      file: {path: /x, colour: red}\n",
            4,
            "task 't3': file: unknown argument 'colour'",
        ),
        (
            "- hosts: all\n  tasks:\n    - name: t4\n      command: ls\n      file: {path: /x}\n",
            5,
            "task 't4': one module per task",
        ),
        (
            "- hosts: all\n  tasks:\n    - name: t5\n      command: echo {{ x\n",
            4,
            "task 't5': template syntax error",
        ),
        (
            "- hosts: all\n  tasks:\n    - name: t6\n      command: ls\n      register: 1x\n",
            5,
            "task 't6': register needs a variable name",
        ),
        ("- hosts: all\n  tasks:\n    - name: t7\n", 3, "task 't7': no module"),
    ],
)
def test_bad_playbooks_fail_with_file_line_and_task(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InputError) as err:
        load_playbook(path)
    assert str(err.value).startswith(f"{path}:{line}: ")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("task", "message"),
    [
        ("command: echo {{ nope }}", "task 't': undefined variable 'nope' (for srv1, cli1)"),
        ("command: echo {{ role }}", "task 't': undefined variable 'role' (for cli1)"),
        (
            "command: ls\n      when: later.rc == 0",
            "task 't': undefined variable 'later' (for srv1, cli1)",
        ),
    ],
)
def test_undefined_variables_are_found_before_any_host(
    tmp_path: Path, task: str, message: str
) -> None:
    path = write(tmp_path, f"- hosts: all\n  tasks:\n    - name: t\n      {task}\n")
    with pytest.raises(PlaybookError) as err:
        prepare(load_playbook(path), parse_inventory(INVENTORY), RunOptions())
    assert str(err.value) == f"{path}:3: {message}"


def test_known_names_pass_the_check(tmp_path: Path) -> None:
    text = (
        "- hosts: all\n  tasks:\n    - name: t\n      command: echo {{ site }} {{ extra }} "
        "{{ facts.kernel_release }} {{ inventory_hostname }} {{ groups['servers'] }}\n"
    )
    book = load_playbook(write(tmp_path, text))
    prepare(book, parse_inventory(INVENTORY), RunOptions(extra_vars={"extra": "1"}))
    with pytest.raises(PlaybookError, match="undefined variable 'extra'"):
        prepare(book, parse_inventory(INVENTORY), RunOptions())
    # role is defined on srv1 only: fine when the run is limited to the servers
    role = load_playbook(write(tmp_path, text.replace("{{ site }}", "{{ role }}")))
    prepare(role, parse_inventory(INVENTORY), RunOptions(limit="servers", extra_vars={"extra": 1}))


def test_rendering_keeps_native_types_and_is_strict() -> None:
    scope = {"n": 3, "names": ["a", "b"], "s": "x y"}
    assert render_value("{{ names }}", scope) == ["a", "b"]
    assert render_value("{{ n + 1 }}", scope) == 4
    assert render_value("n={{ n }}", scope) == "n=3"
    assert render_value({"k": ["{{ s | quote }}"]}, scope) == {"k": ["'x y'"]}
    assert evaluate("n > 2 and 'a' in names", scope) is True
    with pytest.raises(TemplateError, match="undefined variable"):
        render_value("{{ missing }}", scope)
    with pytest.raises(TemplateError, match="undefined variable"):
        evaluate("missing == 1", scope)


def test_args_are_typed_and_checked() -> None:
    args = build_args(CommandAction, {"argv": ["ls", "-l"], "creates": "/x"})
    assert args.argv == ("ls", "-l") and args.creates == "/x"
    with pytest.raises(ArgsError, match="unknown argument 'bogus'"):
        build_args(CommandAction, {"cmd": "ls", "bogus": 1})
    with pytest.raises(ArgsError, match="argument 'creates' must be a string"):
        build_args(CommandAction, {"cmd": "ls", "creates": ["a"]})


def test_modes_must_be_quoted_octal() -> None:
    assert normalize_mode("0644") == "644" and normalize_mode("750") == "750"
    with pytest.raises(ValueError, match="quoted octal"):
        normalize_mode(420)  # what YAML makes of an unquoted 0644
    with pytest.raises(ValueError, match="not an octal mode"):
        normalize_mode("rw-r--r--")


def test_path_state_parser() -> None:
    assert parse_path_state("absent\n").kind == "absent"
    state = parse_path_state("regular file|640|root|adm\nabc123  /etc/x\n")
    assert (state.kind, state.mode, state.owner, state.group, state.sha256) == (
        "file",
        "640",
        "root",
        "adm",
        "abc123",
    )
    assert parse_path_state("directory|755|root|root\n").sha256 is None


def test_extra_vars() -> None:
    assert parse_extra_vars(["a=1", "b=x=y", '{"n": 2}']) == {"a": "1", "b": "x=y", "n": 2}
    with pytest.raises(InputError, match="expected key=value"):
        parse_extra_vars(["novalue"])


@pytest.mark.parametrize(
    ("task", "refused"),
    [
        ("command: echo {{ opt | default('x') }}", None),
        ("command: echo {{ opt }}\n      when: opt is defined", None),
        ("command: echo {{ opt | default(1) }} {{ opt }}", "opt"),  # also read bare
        ("command: echo {{ opt }}\n      when: other is defined", "opt"),
    ],
)
def test_optional_variables_guarded_by_default_or_defined(
    tmp_path: Path, task: str, refused: str | None
) -> None:
    book = load_playbook(write(tmp_path, f"- hosts: all\n  tasks:\n    - name: t\n      {task}\n"))
    inventory = parse_inventory(INVENTORY)
    if refused is None:
        prepare(book, inventory, RunOptions(extra_vars={"other": 1}))
    else:
        with pytest.raises(PlaybookError, match=f"undefined variable '{refused}'"):
            prepare(book, inventory, RunOptions(extra_vars={"other": 1}))
