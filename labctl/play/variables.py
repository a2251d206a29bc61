"""A task's variables on one host, in Ansible's order of precedence (lowest first):

role defaults < inventory (file, group_vars/, host_vars/) < facts < play vars and vars_files
< role vars < block vars < task vars < set_fact and registered results < role params < -e.

Plus the names Ansible gives every task: inventory_hostname, group_names, groups, hostvars,
ansible_play_hosts, ansible_play_batch, playbook_dir, and the ansible_* facts labctl knows.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl.facts.host import HostFacts
from labctl.inventory import Host
from labctl.play.model import Include, Play, Task
from labctl.templating import TemplateError, is_templated, names_used, render_value


@dataclass
class HostState:
    """What a run knows of one host as it goes."""

    host: Host
    facts: HostFacts | None = None
    registered: dict[str, Any] = field(default_factory=dict)  # register and set_fact
    out: bool = False  # failed or unreachable: no more tasks this run
    ended: bool = False  # `meta: end_host` (or end_play): no more tasks this play
    notified: list[str] = field(default_factory=list)  # handlers to run at the next flush


def ansible_fact_vars(facts: HostFacts | None) -> dict[str, Any]:
    """Ansible's names for the facts labctl gathers (`ansible_kernel`, ...), and
    `ansible_facts` holding them without the prefix."""
    if facts is None:
        return {"ansible_facts": {}}
    distro = (facts.distro_id or "").capitalize() or None
    version = facts.distro_version
    values = {
        "hostname": facts.hostname,
        "nodename": facts.hostname,
        "kernel": facts.kernel_release,
        "architecture": facts.arch,
        "machine": facts.arch,
        "distribution": distro,
        "distribution_version": version,
        "distribution_major_version": version.split(".")[0] if version else None,
        "os_family": "Debian" if facts.distro_id in ("debian", "ubuntu") else distro,
        "processor_vcpus": facts.cpus,
        "memtotal_mb": facts.mem_total_mib,
        "interfaces": [i.name for i in facts.interfaces],
    }
    return {**{f"ansible_{k}": v for k, v in values.items()}, "ansible_facts": values}


def resolve(values: dict[str, Any], templated: set[str]) -> None:
    """Render, in place, the values of `templated` keys against all of `values`, as Ansible
    templates variables when they are used: a group_vars value may read a play var. A value
    is rendered after the templated values it reads (so `b: "{{ a.split(',') }}"` never sees
    `a` unrendered); one that cannot be rendered yet (it reads a result registered later),
    and every value that reads it, is kept as written and fails where it is used."""
    pending = {k for k in templated if is_templated(values.get(k))}
    unrendered: set[str] = set()
    visiting: set[str] = set()

    def settle(key: str) -> None:
        if key not in pending or key in visiting:
            return  # done, or a cycle (the value then renders as far as it can)
        visiting.add(key)
        try:
            reads = names_used(values[key])
            for name in sorted(reads & pending):
                settle(name)
            if not reads & unrendered:
                values[key] = render_value(values[key], values)
            else:
                unrendered.add(key)
        except TemplateError:
            unrendered.add(key)
        pending.discard(key)
        visiting.discard(key)

    for key in sorted(pending):
        settle(key)


class HostVars(Mapping[str, Any]):
    """`hostvars[NAME]`: another host's variables (inventory, facts, registered), built when
    read."""

    def __init__(self, states: Mapping[str, HostState]) -> None:
        self._states = states

    def __getitem__(self, name: str) -> dict[str, Any]:
        state = self._states[name]
        values = {
            **state.host.vars,
            "inventory_hostname": name,
            "facts": state.facts.to_dict() if state.facts else {},
            **ansible_fact_vars(state.facts),
            **state.registered,
        }
        resolve(values, set(state.host.vars) - set(state.registered))
        return values

    def __iter__(self) -> Iterator[str]:
        return iter(self._states)

    def __len__(self) -> int:
        return len(self._states)


@dataclass(frozen=True)
class PlayContext:
    """What every host's variables in one play share."""

    play: Play
    groups: Mapping[str, list[str]]
    play_hosts: list[str]
    batch: list[str]
    extra: Mapping[str, Any]
    hostvars: HostVars
    playbook_dir: Path
    inventory_path: str
    check: bool
    tags: frozenset[str]


def task_variables(
    state: HostState, task: Task | Include | None, ctx: PlayContext
) -> dict[str, Any]:
    """Every layer merged by precedence, then the templated values rendered against the
    result. Facts and registered results are never templated (a command's output holding
    `{{` stays text), as in Ansible."""
    host = state.host
    layers: list[Mapping[str, Any]] = []
    if task is not None:
        layers.append(task.defaults)
    layers += [host.vars, ctx.play.vars]
    if task is not None:
        layers.append(task.vars)
    values: dict[str, Any] = {}
    for layer in layers:
        values.update(layer)
    values.update(
        {
            "inventory_hostname": host.name,
            "inventory_hostname_short": host.name.split(".")[0],
            "inventory_file": ctx.inventory_path,
            "inventory_dir": str(Path(ctx.inventory_path).resolve().parent),
            "group_names": [g for g in host.groups if g not in ("all", "ungrouped")],
            "groups": ctx.groups,
            "hostvars": ctx.hostvars,
            "play_hosts": ctx.batch,
            "ansible_play_hosts": ctx.play_hosts,
            "ansible_play_hosts_all": ctx.play_hosts,
            "ansible_play_batch": ctx.batch,
            "playbook_dir": str(ctx.playbook_dir),
            "ansible_check_mode": ctx.check,
            "ansible_run_tags": sorted(ctx.tags) or ["all"],
            "facts": state.facts.to_dict() if state.facts else {},
            **ansible_fact_vars(state.facts),
        }
    )
    values.update(state.registered)
    if task is not None:
        values.update(task.params)
    values.update(ctx.extra)
    params = set(task.params) if task is not None else set()
    templated = {k for layer in layers for k in layer} | set(ctx.extra) | params
    # A registered result keeps its text, unless -e or a role param set that name over it.
    resolve(values, templated - (set(state.registered) - set(ctx.extra) - params))
    return values
