"""Bad input is refused before any host, in one line naming file and line (exit 2 on the
command line), and read commands write nothing. Each case here failed before its fix."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from labctl.actions.base import ArgsError, build_args, chown_spec
from labctl.actions.command import CommandAction
from labctl.errors import InputError
from labctl.inventory import parse_inventory
from labctl.nightly.suite import load_suite
from labctl.play.load import load_playbook
from labctl.play.run import RunOptions, prepare
from labctl.results.export import export_run
from labctl.results.store import ResultsStore, StoreError, TrialRecord
from labctl.templating import render_value, split_words
from labctl.yamlfile import MAX_VALUES, load_yaml

from .test_cli import labctl

INVENTORY = (
    "all:\n  hosts:\n    srv1: {ansible_host: 10.0.0.11}\n    cli1: {ansible_host: 10.0.0.21}\n"
)


def write(tmp_path: Path, text: str | bytes, name: str = "book.yml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def refused(call: object, *args: object) -> str:
    with pytest.raises(InputError) as err:
        call(*args)  # type: ignore[operator]
    message = str(err.value)
    assert "\n" not in message
    return message


# -- a templated command is split into words before it is rendered


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("rm -f {{ f }}", ["rm", "-f", "{{ f }}"]),
        ("echo '{{ a }} b' c", ["echo", "{{ a }} b", "c"]),
        ("ls {{ d | default('/x y') }}/sub", ["ls", "{{ d | default('/x y') }}/sub"]),
        (
            'printf "%s\\n" {% if x %}yes{% endif %}',
            ["printf", "%s\\n", "{% if x %}yes{% endif %}"],
        ),
        ("a  b\tc", ["a", "b", "c"]),
    ],
)
def test_split_words_keeps_template_tags_whole(text: str, words: list[str]) -> None:
    assert split_words(text) == words


@pytest.mark.parametrize("text", ["echo 'unclosed", "echo {{ x"])
def test_split_words_refuses_what_cannot_be_split(text: str) -> None:
    with pytest.raises(ValueError):
        split_words(text)


def test_a_value_reaches_the_command_as_one_argument(tmp_path: Path) -> None:
    book = load_playbook(
        write(tmp_path, "- hosts: all\n  tasks:\n    - name: rm\n      command: rm -f {{ f }}\n")
    )
    (task,) = book.plays[0].tasks
    rendered = render_value(task.args, {"f": "-rf /root/labctl"})
    args = build_args(CommandAction, rendered)
    assert args.argv == ("rm", "-f", "-rf /root/labctl")


def test_a_command_with_an_unclosed_quote_is_the_files_error(tmp_path: Path) -> None:
    path = write(tmp_path, "- hosts: all\n  tasks:\n    - name: q\n      command: echo 'oops\n")
    assert refused(load_playbook, path).startswith(f"{path}:4: task 'q': ")


def test_a_list_where_an_argument_goes_is_an_error_not_extra_arguments() -> None:
    with pytest.raises(ArgsError, match="must be a string"):
        build_args(CommandAction, render_value({"argv": ["ls", "{{ x }}"]}, {"x": ["-l", "/"]}))


# -- a key written twice is an error, wherever YAML is read


def test_a_task_with_two_actions_of_one_name(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "- hosts: all\n  tasks:\n    - name: t\n      command: ls\n      command: rm -rf /x\n",
    )
    assert refused(load_playbook, path) == (
        f"{path}:5: invalid YAML: duplicate key 'command' (first on line 4)"
    )


def test_an_argument_given_twice(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "- hosts: all\n  tasks:\n    - name: t\n      file:\n        path: /x\n"
        "        state: directory\n        state: absent\n",
    )
    assert refused(load_playbook, path).startswith(f"{path}:7: invalid YAML: duplicate key 'state'")


def test_a_suite_param_given_twice(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "experiments:\n  - name: a\n    experiment: reuseport\n"
        "    params:\n      duration: 1\n      duration: 600\n",
        "suite.yml",
    )
    assert "duplicate key 'duration' (first on line 5)" in refused(load_suite, path)


def test_a_host_listed_twice_in_one_group() -> None:
    text = "all:\n  hosts:\n    a: {ansible_host: 10.0.0.1}\n    a: {ansible_host: 10.0.0.2}\n"
    message = refused(parse_inventory, text, "inv.yml")
    assert message == "inv.yml:4: hosts of group 'all': duplicate key 'a' (first on line 3)"


def test_merge_keys_may_still_repeat_a_key(tmp_path: Path) -> None:
    path = write(tmp_path, "base: &b {x: 1, y: 1}\nm:\n  <<: *b\n  x: 2\n", "m.yml")
    assert load_yaml(path)["m"] == {"x": 2, "y": 1}
    inv = parse_inventory(
        "all:\n  vars: &v {ansible_user: a}\n  hosts:\n"
        "    h: {<<: *v, ansible_user: b, ansible_host: 10.0.0.1}\n"
    )
    assert inv.host("h").user == "b"


# -- YAML that would expand without bound, or is not text


def _alias_bomb(levels: int = 9) -> str:
    text = 'a0: &a0 ["x","x","x","x","x","x","x","x","x"]\n'
    for i in range(1, levels):
        text += f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]\n"
    return text


def test_an_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    bomb = _alias_bomb()
    assert len(bomb) < 800 and MAX_VALUES < 9**9  # 9**9 values when expanded
    play = "- hosts: all\n  vars:\n" + "".join("    " + line + "\n" for line in bomb.splitlines())
    play += "  tasks:\n    - name: t\n      command: echo {{ a8 }}\n"
    assert "expands to more than" in refused(load_playbook, write(tmp_path, play))
    suite = write(tmp_path, bomb + "experiments: []\n", "suite.yml")
    assert "expands to more than" in refused(load_suite, suite)
    inventory = "all:\n  vars:\n" + "".join("    " + line + "\n" for line in bomb.splitlines())
    assert "expands to more than" in refused(parse_inventory, inventory, "inv.yml")


def test_a_recursive_alias_and_deep_nesting_are_refused(tmp_path: Path) -> None:
    assert "contains it" in refused(load_yaml, write(tmp_path, "a: &x [*x]\n", "r.yml"))
    deep = write(tmp_path, "[" * 500 + "]" * 500, "d.yml")
    assert "nested deeper than" in refused(load_yaml, deep)


def test_text_that_is_not_utf8_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, b"- hosts: all\n  tasks:\n    - name: caf\xe9\n")
    assert refused(load_playbook, path) == f"{path}:3: not UTF-8 text (byte 0xe9 at offset 37)"
    suite = write(tmp_path, b"name: n\xff\n", "suite.yml")
    assert refused(load_suite, suite).startswith(f"{suite}:1: not UTF-8")


# -- flags that would silently do something else


def test_an_empty_limit_matches_no_host_rather_than_all(tmp_path: Path) -> None:
    book = load_playbook(write(tmp_path, "- hosts: all\n  tasks:\n    - command: 'true'\n"))
    inventory = parse_inventory(INVENTORY, "inv.yml")
    assert [len(h) for h in prepare(book, inventory, RunOptions(limit="cli1"))] == [1]
    assert "empty host pattern" in refused(prepare, book, inventory, RunOptions(limit=""))


def test_unknown_provision_steps_in_a_suite(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "provision:\n  tags: [deps, workload]\n"
        "experiments:\n  - name: a\n    experiment: reuseport\n",
        "suite.yml",
    )
    assert refused(load_suite, path).startswith(f"{path}:2: provision: unknown step 'workload'")


def test_owner_alone_keeps_the_group_and_group_alone_keeps_the_owner() -> None:
    assert chown_spec("alice", None) == "alice"  # not "alice:" (the login group)
    assert chown_spec(None, "lab") == ":lab"
    assert chown_spec("alice", "lab") == "alice:lab"


# -- the results store: read commands write nothing, damage is one line


def _store_with_a_run(path: Path) -> int:
    with ResultsStore(path) as db:
        run_id = db.start_run("reuseport", {"workers": [1]}, "inv.yml", 1)
        trial = TrialRecord(1, "accept", False, {"mode": "shared"}, 1.0, 2.0, True, "", {"x": 1})
        db.add_trial(run_id, trial)
        db.finish_run(run_id, "finished")
    return run_id


def test_a_read_of_a_mistyped_store_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "labctl.db"
    assert "no results store here" in refused(ResultsStore, missing, False)
    assert not missing.parent.exists()
    for args in (["results.list"], ["results.show", "1"], ["results.export", "1"]):
        proc = labctl(*args, "--store", str(missing))
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert not missing.parent.exists()


def test_a_file_that_is_not_a_store(tmp_path: Path) -> None:
    path = write(tmp_path, "garbage " * 200, "bad.db")
    with pytest.raises(StoreError, match="not a usable results store"):
        ResultsStore(path)
    proc = labctl("results.list", "--store", str(path))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("labctl: ") and proc.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("UPDATE metrics SET value = 'lots'", "metric 'x' is 'lots', not a number"),
        ("UPDATE trials SET params = '{broken'", "trial 1's params is not JSON"),
    ],
)
def test_a_damaged_row_is_named_not_a_traceback(tmp_path: Path, sql: str, message: str) -> None:
    path = tmp_path / "r.db"
    run_id = _store_with_a_run(path)
    with sqlite3.connect(path) as db:
        db.execute(sql)
    with ResultsStore(path) as store, pytest.raises(StoreError, match=message):
        export_run(store, run_id, "csv")
    listed = labctl("results.list", "--store", str(path))
    assert listed.returncode == 0, listed.stderr
    proc = labctl("results.export", str(run_id), "--store", str(path))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert message in proc.stderr


def test_an_export_to_an_unwritable_path(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    run_id = _store_with_a_run(path)
    out = tmp_path / "no" / "such" / "dir" / "x.json"
    proc = labctl("results.export", str(run_id), "--store", str(path), "--output", str(out))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == f"labctl: {out}: cannot write: No such file or directory\n"


# -- flags whose value cannot be read


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["play", "provision", "--forks", "abc"], "labctl: a flag's value expects an integer"),
        (["play", "provision", "--no-such-flag"], "labctl: play: unknown flag --no-such-flag"),
        (["no-such-task"], "labctl: unknown task 'no-such-task'"),
        (["results.show", "abc"], "labctl: run 'abc': expected a run id"),
    ],
)
def test_unreadable_flags_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    proc = labctl(*args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(message) and proc.stderr.count("\n") == 1, proc.stderr


def test_a_command_in_a_message_is_one_short_line() -> None:
    from labctl.remote import command_summary

    assert command_summary("sleep 2") == "sleep 2"
    assert command_summary("set -e\nb=/root/x\nmake -C $b") == "b=/root/x …"
    assert command_summary("x" * 100) == "x" * 60 + " …"
