"""Variables as Ansible resolves them, control tasks' results, and the filters and tests
playbooks use: pure pieces of the play room, no host needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.inventory import parse_inventory
from labctl.play.control import NOT_DEFINED, run_control
from labctl.play.model import Play, Task
from labctl.play.variables import HostState, HostVars, PlayContext, resolve, task_variables
from labctl.templating import TemplateError, evaluate, render_value

INVENTORY = """\
all:
  vars: {level: inventory, from_inventory: "{{ level }}-seen", port: 1}
  hosts:
    h1: {ansible_host: 10.0.0.1}
"""


def context(play_vars: dict, extra: dict | None = None) -> tuple[HostState, PlayContext]:
    inv = parse_inventory(INVENTORY)
    play = Play(
        name="p",
        hosts="all",
        vars=play_vars,
        become=None,
        gather_facts=False,
        any_errors_fatal=False,
        tasks=(),
        handlers=(),
        line=1,
        path="p.yml",
    )
    states = {"h1": HostState(inv.host("h1"))}
    ctx = PlayContext(
        play,
        {"all": ["h1"]},
        ["h1"],
        ["h1"],
        extra or {},
        HostVars(states),
        Path("/pb"),
        "/inv/hosts.yml",
        False,
        frozenset(),
    )
    return states["h1"], ctx


def test_precedence_is_ansibles() -> None:
    state, ctx = context({"level": "play", "port": 2}, extra={"port": 9})
    task = Task(
        name="t",
        action="debug",
        args={},
        path="p.yml",
        line=1,
        defaults={"level": "default", "only_default": 1},
        vars={"level": "task"},
        params={"level": "param"},
    )
    assert task_variables(state, task, ctx)["level"] == "param"
    state.registered["level"] = "registered"
    values = task_variables(state, task, ctx)
    assert values["level"] == "param"  # role params sit above set_fact and register
    assert values["only_default"] == 1
    assert values["port"] == 9  # -e wins over all
    no_params = Task(name="t", action="debug", args={}, path="p.yml", line=1, vars={"level": "x"})
    assert task_variables(state, no_params, ctx)["level"] == "registered"


def test_inventory_values_are_templated_against_the_final_variables() -> None:
    state, ctx = context({"level": "play"})
    values = task_variables(state, None, ctx)
    assert values["from_inventory"] == "play-seen"  # a group var reading a play var
    assert values["inventory_hostname"] == "h1" and values["playbook_dir"] == "/pb"
    assert values["hostvars"]["h1"]["level"] == "inventory"


def test_registered_text_is_never_templated() -> None:
    state, ctx = context({})
    state.registered["out"] = {"stdout": "{{ level }}"}
    assert task_variables(state, None, ctx)["out"]["stdout"] == "{{ level }}"


def test_a_value_that_cannot_render_yet_is_kept_until_it_is_used() -> None:
    values = {"a": "{{ later.stdout }}", "b": "{{ c }}-b", "c": "{{ d }}", "d": 1}
    resolve(values, {"a", "b", "c", "d"})
    assert values["a"] == "{{ later.stdout }}"
    assert values["b"] == "1-b" and values["c"] == 1
    # read in dependency order, not name order: `a` is rendered before `b` splits it
    values = {"b": "{{ a.split(',') }}", "a": "{{ x | default('p,q') }}"}
    resolve(values, {"a", "b"})
    assert values["b"] == ["p", "q"]
    values = {"a": "{{ later.stdout }}", "b": "{{ a }}-x"}
    resolve(values, {"a", "b"})
    assert values == {"a": "{{ later.stdout }}", "b": "{{ a }}-x"}


def test_control_tasks_return_what_ansibles_do() -> None:
    assert run_control("debug", {"var": "nope"}, {}).output == {"nope": NOT_DEFINED}
    assert run_control("debug", {"msg": "hi {{ x }}"}, {"x": 1}).output == {"msg": "hi 1"}
    # a message that is a value is registered as that value (Ansible's), shown as text
    shaped = run_control("debug", {"msg": {"k": "{{ x }}"}}, {"x": 1})
    assert (shaped.registered()["msg"], shaped.msg) == ({"k": 1}, "{'k': 1}")
    facts = run_control("set_fact", {"a": "{{ x + 1 }}", "cacheable": True}, {"x": 1})
    assert facts.output == {"ansible_facts": {"a": 2}}
    failed = run_control("assert", {"that": ["x == 1", "x > 5"], "fail_msg": "no"}, {"x": 1})
    assert (failed.failed, failed.msg, failed.output["assertion"]) == (True, "no", "x > 5")
    ok = run_control("assert", {"that": "x == 1"}, {"x": 1})
    assert (ok.failed, ok.msg) == (False, "All assertions passed")
    assert run_control("fail", {}, {}).msg == "Failed as requested from task"


def test_ansible_filters_and_tests() -> None:
    result = {"changed": True, "failed": False}
    assert evaluate("r is changed and r is succeeded and r is not failed", {"r": result})
    assert render_value("{{ 'yes' | bool }}", {}) is True
    assert render_value("{{ 'a-b' | regex_replace('-', '_') }}", {}) == "a_b"
    assert render_value("{{ {'a': 1} | combine({'b': 2}) }}", {}) == {"a": 1, "b": 2}
    assert render_value("{{ '/x/y.conf' | basename }}", {}) == "y.conf"
    assert evaluate("'6.1.0' is version('5.10', '>=')", {})
    assert render_value("{{ x | to_json }}", {"x": [1]}) == "[1]"
    assert render_value("{{ x }}\n", {"x": 1}) == "1\n"  # text, not the native int
    with pytest.raises(TemplateError, match="No filter named"):
        render_value("{{ x | no_such_filter }}", {"x": 1})
