"""What identifies a run and what differs between two runs.

A run's fingerprint covers what it measures (experiment, the parameters that define the
measurement) and what it measures on (per role, its hosts' kernel, CPU, NIC drivers; not
their names, so two labs built alike share a history in a shared store). Only runs with the
same fingerprint form a history: a kernel upgrade starts a new one (issue 7). Everything else
that differs between two runs (a tuning knob, a sysctl, a driver version) does not break the
history; provenance_changes lists it as a likely cause of whatever changed.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from labctl.metrics import ExperimentSpec

HOST_IDENTITY = ("role", "kernel_release", "arch", "cpu_model", "cpus", "nics")
HOST_PROVENANCE = ("kernel_release", "somaxconn", "default_qdisc", "gcc_version")
INTERFACE_PROVENANCE = ("driver", "driver_version", "root_qdisc")

_ABSENT = object()


# ---------------------------------------------------------------------------- fingerprint


@dataclass(frozen=True)
class Fingerprint:
    digest: str  # 16 hex chars of sha256 over the canonical JSON of `parts`
    parts: Mapping[str, Any]


def _canonical(value: Any) -> Any:
    """JSON-able, order-free where order means nothing: a list of scalars is a set of values
    (modes [shared, reuseport] measure what [reuseport, shared] measure)."""
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        items = [_canonical(v) for v in value]
        if all(isinstance(v, str) for v in items) or all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in items
        ):
            return sorted(items)
        return items
    return value


def _host_identity(facts: Mapping[str, Any]) -> dict[str, Any]:
    # The set of drivers, not one entry per interface: veths come and go with containers.
    drivers = {
        str(i["driver"])
        for i in facts.get("interfaces") or ()
        if isinstance(i, Mapping) and i.get("driver")
    }
    return {
        "kernel_release": facts.get("kernel_release"),
        "arch": facts.get("arch"),
        "cpu_model": facts.get("cpu_model"),
        "cpus": facts.get("cpus"),
        "nics": sorted(drivers),
    }


def _roles(hosts: Mapping[str, tuple[str, Mapping[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """role -> its hosts' identities, in a canonical order: which host is which is no part
    of what is measured."""
    by_role: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for role, facts in hosts.values():
        by_role[role].append(_host_identity(facts))
    return {
        role: sorted(found, key=lambda i: json.dumps(i, sort_keys=True, default=str))
        for role, found in sorted(by_role.items())
    }


def fingerprint(
    experiment: str,
    params: Mapping[str, Any],
    hosts: Mapping[str, tuple[str, Mapping[str, Any]]],
    spec: ExperimentSpec | None,
) -> Fingerprint:
    """What must match for two runs to compare. `hosts`: name -> (role, facts dict), as
    `ResultsStore.hosts` returns them. Without the experiment's spec (no longer known) a run
    is identified by all its params (never compare what might differ)."""
    keys = spec.identity if spec is not None else tuple(params)
    parts: dict[str, Any] = {
        "experiment": experiment,
        "params": {k: _canonical(params[k]) for k in sorted(keys) if k in params},
        "roles": _roles(hosts),
    }
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return Fingerprint(hashlib.sha256(text.encode()).hexdigest()[:16], parts)


def _fmt(value: Any) -> str:
    if value is _ABSENT:
        return "(absent)"
    if value is None:
        return "(none)"
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def _diff_line(label: str, old: Any, new: Any) -> str:
    return f"{label}: {_fmt(old)} -> {_fmt(new)}"


def _diff_mappings(prefix: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    lines = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, _ABSENT), new.get(key, _ABSENT)
        if a != b:
            lines.append(_diff_line(f"{prefix}{key}", a, b))
    return lines


def _count(hosts: int) -> str:
    return f"{hosts} host{'s' if hosts != 1 else ''}"


def fingerprint_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What differs between two `Fingerprint.parts`, one human line each."""
    lines = []
    if old.get("experiment") != new.get("experiment"):
        lines.append(_diff_line("experiment", old.get("experiment"), new.get("experiment")))
    lines += _diff_mappings("", old.get("params") or {}, new.get("params") or {})
    old_roles, new_roles = old.get("roles") or {}, new.get("roles") or {}
    for role in sorted(set(old_roles) | set(new_roles)):
        a, b = old_roles.get(role) or [], new_roles.get(role) or []
        if a == b:
            continue
        if len(a) != len(b):
            lines.append(f"{role}: {_count(len(a))} -> {_count(len(b))}")
        elif len(a) == 1:
            lines += _diff_mappings(f"{role} ", a[0], b[0])
        else:
            for i, (x, y) in enumerate(zip(a, b, strict=True), 1):
                lines += _diff_mappings(f"{role} #{i} ", x, y)
    return lines


# ---------------------------------------------------------------------------- provenance


def _flatten(prefix: str, value: Any) -> dict[str, Any]:
    """{"netmap": {"loaded": true}} -> {"netmap.loaded": true}, so a diff names the leaf."""
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(f"{prefix}.{k}", v))
        return out
    return {prefix: value}


def _host_provenance(facts: Mapping[str, Any]) -> dict[str, Any]:
    """The host-wide values that may explain a change: sysctls, kernel, compiler, netmap."""
    values: dict[str, Any] = {k: facts.get(k) for k in HOST_PROVENANCE}
    if "netmap" in facts:
        values.update(_flatten("netmap", facts["netmap"]))
    return values


def _interfaces(facts: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Interface name -> its driver, driver version and root qdisc."""
    return {
        str(i["name"]): {k: i.get(k) for k in INTERFACE_PROVENANCE}
        for i in facts.get("interfaces") or ()
        if isinstance(i, Mapping) and i.get("name")
    }


def provenance_changes(
    old_params: Mapping[str, Any],
    new_params: Mapping[str, Any],
    old_hosts: Mapping[str, tuple[str, Mapping[str, Any]]],
    new_hosts: Mapping[str, tuple[str, Mapping[str, Any]]],
    *,
    spec: ExperimentSpec | None = None,
) -> list[str]:
    """Everything that differs between two runs and may explain a change, sorted, one line
    each: params ("backlog: 4096 -> 5"), and per host its kernel, sysctls, compiler, each
    interface's driver, driver version and root qdisc, and netmap's state where recorded.

    With the experiment's `spec`, its identity params are left out (the fingerprint covers
    them); without it every param is compared, which for two runs of one history gives the
    same lines."""
    identity = set(spec.identity) if spec is not None else set()
    lines = _diff_mappings(
        "",
        {k: _canonical(v) for k, v in old_params.items() if k not in identity},
        {k: _canonical(v) for k, v in new_params.items() if k not in identity},
    )
    for name in sorted(set(old_hosts) | set(new_hosts)):
        if name not in new_hosts:
            lines.append(f"host {name} removed")
            continue
        if name not in old_hosts:
            lines.append(f"host {name} added")
            continue
        (old_role, old_facts), (new_role, new_facts) = old_hosts[name], new_hosts[name]
        if old_role != new_role:
            lines.append(_diff_line(f"{name} role", old_role, new_role))
        lines += _diff_mappings(
            f"{name} ", _host_provenance(old_facts), _host_provenance(new_facts)
        )
        old_ifs, new_ifs = _interfaces(old_facts), _interfaces(new_facts)
        for iface in set(old_ifs) | set(new_ifs):
            if iface not in new_ifs:
                lines.append(f"{name} interface {iface} removed")
            elif iface not in old_ifs:
                lines.append(f"{name} interface {iface} added")
            else:
                lines += _diff_mappings(f"{name} {iface} ", old_ifs[iface], new_ifs[iface])
    return sorted(lines)
