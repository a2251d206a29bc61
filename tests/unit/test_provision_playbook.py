"""playbooks/provision.yml without hosts: it loads, passes the static check, and renders
the netmap tasks' arguments into what the netmap action takes (docs/provisioning.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from labctl.actions import ACTIONS
from labctl.actions.base import build_args
from labctl.actions.netmap_host import NetmapArgs
from labctl.inventory import parse_inventory
from labctl.play.load import Play, PlaybookError, Task, load_playbook
from labctl.play.run import RunOptions, prepare, task_selected
from labctl.templating import evaluate, render_value

BOOK = Path(__file__).resolve().parents[2] / "playbooks" / "provision.yml"
RELEASE = "6.1.0-56-amd64"
FACTS = {"kernel_release": "6.18.44-fc-v669", "cpus": 2}

INVENTORY = """
all:
  hosts:
    srv1:
      ansible_host: 10.0.0.11
      kernel_release: 6.1.0-56-amd64
      netmap_src: https://github.com/luigirizzo/netmap.git
      netmap_ref: 89607e14
    cli1: {ansible_host: 10.0.0.21}
"""


def play() -> Play:
    (only,) = load_playbook(BOOK).plays
    return only


def task(name: str) -> Task:
    (found,) = [t for t in play().tasks if t.name.startswith(name)]
    return found


def variables(host_vars: dict[str, Any], facts: dict[str, Any] = FACTS) -> dict[str, Any]:
    """What runner.host_variables gives a host: its vars, facts, then the play's vars."""
    scope: dict[str, Any] = {
        **host_vars,
        "inventory_hostname": "srv1",
        "facts": facts,
    }
    for key, value in play().vars.items():
        scope[key] = render_value(value, scope)
    return scope


def rendered(name: str, scope: dict[str, Any]) -> Any:
    t = task(name)
    args = render_value(t.args, scope)
    build_args(ACTIONS[t.action], args)  # the action accepts them
    return args


def runs(name: str, scope: dict[str, Any]) -> bool:
    return all(evaluate(c, scope) for c in task(name).when)


def test_every_step_is_tagged() -> None:
    tags = {"deps", "headers", "netmap", "load", "workloads", "unload", "never"}
    assert all(t.tags and t.tags <= tags for t in play().tasks)
    assert set().union(*(t.tags for t in play().tasks)) == tags


def test_unload_runs_only_when_asked() -> None:
    unload = [t for t in play().tasks if "unload" in t.tags]
    assert [t.action for t in unload] == ["netmap", "kmod"]
    everything = [t.name for t in play().tasks if task_selected(t.tags, frozenset())]
    assert not any(t.name in everything for t in unload)
    asked = [t.name for t in play().tasks if task_selected(t.tags, frozenset({"unload"}))]
    assert asked == [t.name for t in unload]


def test_static_check_accepts_hosts_without_the_optional_vars() -> None:
    # cli1 sets none of kernel_release, netmap_src, ...: each is read under default() or
    # `is defined`, so the playbook runs on it; a typo in a bare name is still refused.
    inv = parse_inventory(INVENTORY)
    prepare(load_playbook(BOOK), inv, RunOptions())


def test_a_bare_optional_var_is_still_refused(tmp_path: Any) -> None:
    text = (
        Path(BOOK)
        .read_text()
        .replace("kernel_release | default(facts.kernel_release, true)", "kernel_release", 1)
    )
    assert text != Path(BOOK).read_text()
    broken = tmp_path / "provision.yml"
    broken.write_text(text)
    with pytest.raises(PlaybookError, match="undefined variable 'kernel_release'"):
        prepare(load_playbook(broken), parse_inventory(INVENTORY), RunOptions())


def test_the_inventory_release_wins_over_the_running_one() -> None:
    assert variables({"kernel_release": RELEASE})["target_release"] == RELEASE
    assert variables({})["target_release"] == FACTS["kernel_release"]
    scope = variables({"kernel_release": RELEASE, "netmap_src": "/srv/netmap"})
    assert rendered("kernel headers", scope)["names"] == [f"linux-headers-{RELEASE}"]
    assert rendered("fixture module built", scope)["kernel_release"] == RELEASE
    assert rendered("netmap built", scope)["kernel_release"] == RELEASE


def netmap_args(name: str, scope: dict[str, Any]) -> NetmapArgs:
    args = build_args(ACTIONS["netmap"], render_value(task(name).args, scope))
    assert isinstance(args, NetmapArgs)
    return args


def test_netmap_tasks_render_the_inventory_values() -> None:
    scope = variables(
        {
            "kernel_release": RELEASE,
            "netmap_src": "https://github.com/luigirizzo/netmap.git",
            "netmap_ref": "89607e14",
            "netmap_drivers": "ixgbe,veth.c",
            "netmap_configure_extra": ["--enable-ptnetmap"],
            "netmap_jobs": 4,
            "netmap_build_on": "host",
        }
    )
    built = netmap_args("netmap built", scope)
    assert built == NetmapArgs(
        state="installed",
        src="https://github.com/luigirizzo/netmap.git",
        ref="89607e14",
        kernel_release=RELEASE,
        drivers=("ixgbe", "veth.c"),
        configure_extra=("--enable-ptnetmap",),
        build_on="host",
        jobs=4,
    )
    loaded = netmap_args("netmap loaded", scope)
    assert loaded.state == "loaded" and loaded.drivers == built.drivers
    assert loaded.modules == ["ixgbe", "veth"]
    assert all(runs(t.name, scope) for t in play().tasks if "netmap" in t.tags)


def test_netmap_defaults() -> None:
    args = netmap_args("netmap built", variables({"kernel_release": RELEASE, "netmap_src": "/x"}))
    assert (args.ref, args.drivers, args.configure_extra) == (None, ("ixgbe",), ())
    assert (args.build_on, args.jobs, args.root) == ("auto", 0, "/root/labctl/netmap")
    unload = netmap_args("netmap unloaded", variables({}))
    assert unload.state == "unloaded" and unload.src is None


@pytest.mark.parametrize("host_vars", [{}, {"netmap_src": None}, {"netmap_src": ""}])
def test_no_netmap_src_no_netmap_tasks(host_vars: dict[str, Any]) -> None:
    scope = variables(host_vars)
    netmap = [t for t in play().tasks if t.action == "netmap" and "unload" not in t.tags]
    assert len(netmap) == 2
    assert not any(runs(t.name, scope) for t in netmap)
    # and undefined outright (no optional vars given) is false too, not an error
    bare = {k: v for k, v in scope.items() if k != "netmap_src"}
    assert not any(runs(t.name, bare) for t in netmap)
    others = [t for t in play().tasks if t.action != "netmap"]
    assert all(runs(t.name, scope) for t in others)
