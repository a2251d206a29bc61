"""playbooks/provision.yml without hosts: it loads, passes the static check, and renders the
netmap command lines provision.py builds (DESIGN.md section 2)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from labctl.actions import ACTIONS
from labctl.actions.base import build_args
from labctl.experiments.reuseport import PKTGEN_PATH
from labctl.inventory import parse_inventory
from labctl.playbook import Play, PlaybookError, Task, load_playbook
from labctl.provision import (
    netmap_configure_argv,
    netmap_make_argv,
    netmap_outputs,
)
from labctl.runner import RunOptions, prepare
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
    tags = {"deps", "headers", "netmap", "load", "workloads"}
    assert all(t.tags and t.tags <= tags for t in play().tasks)
    assert set().union(*(t.tags for t in play().tasks)) == tags


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
    scope = variables({"kernel_release": RELEASE})
    assert rendered("kernel headers", scope)["names"] == [f"linux-headers-{RELEASE}"]
    assert rendered("fixture module built", scope)["kernel_release"] == RELEASE
    assert rendered("full kernel sources", scope)["names"] == ["linux-source-6.1"]


def test_netmap_command_lines_match_provision() -> None:
    scope = variables(
        {
            "kernel_release": RELEASE,
            "netmap_src": "https://github.com/luigirizzo/netmap.git",
            "netmap_ref": "89607e14",
            "netmap_drivers": "ixgbe,veth.c",
            "netmap_configure_extra": ["--enable-ptnetmap"],
            "netmap_jobs": 4,
        }
    )
    build = scope["netmap_build"]
    assert build.startswith("/root/labctl/build/netmap-6.1.0-56-amd64")
    assert "/" not in build[len("/root/labctl/build/") :]
    configure = rendered("netmap configured", scope)
    assert configure["argv"] == netmap_configure_argv(
        "/root/labctl/netmap",
        build,
        f"/usr/src/linux-headers-{RELEASE}",
        "/usr/src/linux-source-6.1",
        ["ixgbe", "veth.c"],
        ["--enable-ptnetmap"],
    )
    assert configure["creates"] == f"{build}/Makefile"
    make = rendered("netmap built", scope)
    assert make["argv"] == netmap_make_argv(build, 4)
    outputs = netmap_outputs(build, ["ixgbe", "veth.c"])
    assert scope["netmap_outputs"] == outputs
    assert make["creates"] == outputs[-1]
    check = rendered("netmap outputs", scope)
    assert subprocess.run(["sh", "-n", "-c", check["cmd"]]).returncode == 0
    assert all(o in check["cmd"] for o in outputs)
    source = rendered("netmap source", scope)
    assert source == {
        "src": "https://github.com/luigirizzo/netmap.git",
        "dest": "/root/labctl/netmap",
        "ref": "89607e14",
    }
    assert all(runs(t.name, scope) for t in play().tasks if "netmap" in t.tags)


def test_netmap_defaults_and_build_dir_per_flags() -> None:
    scope = variables({"kernel_release": RELEASE, "netmap_src": "/srv/netmap"})
    assert rendered("netmap configured", scope)["argv"] == netmap_configure_argv(
        "/root/labctl/netmap",
        scope["netmap_build"],
        f"/usr/src/linux-headers-{RELEASE}",
        "/usr/src/linux-source-6.1",
        ["ixgbe"],
    )
    assert rendered("netmap built", scope)["argv"] == netmap_make_argv(scope["netmap_build"], 2)
    assert rendered("netmap source", scope)["ref"] is None
    link = rendered("pkt-gen where experiments look", scope)
    built = f"{scope['netmap_build']}/build-apps/pkt-gen/pkt-gen"
    assert f"{built} {PKTGEN_PATH}" in link["cmd"]  # where the reuseport experiment looks
    assert link["creates"] == f"{scope['netmap_build']}/.labctl-linked"  # relinked per build
    other = variables({"kernel_release": RELEASE, "netmap_src": "/srv/netmap", "netmap_ref": "x"})
    assert other["netmap_build"] != scope["netmap_build"]


@pytest.mark.parametrize("host_vars", [{}, {"netmap_src": None}, {"netmap_src": ""}])
def test_no_netmap_src_no_netmap_tasks(host_vars: dict[str, Any]) -> None:
    scope = variables(host_vars)
    netmap = [t for t in play().tasks if "netmap" in t.tags]
    assert len(netmap) == 8
    assert not any(runs(t.name, scope) for t in netmap)
    # and undefined outright (no optional vars given) is false too, not an error
    bare = {k: v for k, v in scope.items() if k != "netmap_src"}
    assert not any(runs(t.name, bare) for t in netmap)
    assert all(runs(t.name, scope) for t in play().tasks if "netmap" not in t.tags)
