"""A nightly suite: which experiments to run with which parameters, and how to judge them.

The file says *what* (YAML, checked whole before any host is touched; every error names
file and line); labctl.nightly.run does it. Example: playbooks/nightly.yml.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from labctl.errors import InputError
from labctl.experiments import registry
from labctl.experiments.base import make_options, option_infos
from labctl.metrics import DIRECTIONS, Direction
from labctl.paths import PROVISION_PLAYBOOK
from labctl.playbook import load_playbook
from labctl.yamlfile import LineMap, line_of, load_yaml

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_.")


@dataclass(frozen=True)
class SuiteExperiment:
    name: str  # the entry's own name: its results history is this name's
    experiment: str  # a registered experiment's name
    params: Mapping[str, Any]  # the experiment's options
    server: str | None = None
    clients: str = "clients"
    seed: int | None = None
    metrics: Mapping[str, Direction] = field(default_factory=dict)  # metric -> higher|lower
    line: int | None = None

    def options(self) -> Any:
        """The experiment's options object (raises ValueError on a bad value)."""
        return make_options(registry()[self.experiment].Options, self.params)


@dataclass(frozen=True)
class Suite:
    name: str
    path: str
    experiments: tuple[SuiteExperiment, ...]
    hosts: str = "all"  # the hosts the run locks (a pattern)
    provision: bool = False
    provision_tags: tuple[str, ...] = ()
    history: int = 5  # compare with the last N comparable runs
    threshold: float = 0.10  # a change counts beyond this fraction of the baseline median...
    alpha: float = 0.05  # ...and when Mann-Whitney's p is below this


def _known(doc: LineMap, allowed: set[str], path: str, what: str) -> None:
    for key in doc:
        if key not in allowed:
            raise InputError(
                f"{what}: unknown key {key!r} (known: {', '.join(sorted(allowed))})",
                path,
                line_of(doc, key),
            )


def _typed(doc: LineMap, key: str, kind: type | tuple[type, ...], path: str, what: str) -> Any:
    value = doc[key]
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise InputError(f"{what}: {key} must be a number", path, line_of(doc, key))
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise InputError(f"{what}: {key} must be a {names}", path, line_of(doc, key))
    return value


def _experiment(entry: Any, path: str, index: int, seen: set[str]) -> SuiteExperiment:
    what = f"experiments[{index}]"
    if not isinstance(entry, LineMap):
        raise InputError(f"{what} must be a mapping", path, line_of(entry))
    _known(
        entry, {"name", "experiment", "params", "server", "clients", "seed", "metrics"}, path, what
    )
    for key in ("name", "experiment"):
        if key not in entry:
            raise InputError(f"{what}: `{key}` is missing", path, entry.line)
    name = _typed(entry, "name", str, path, what)
    if not name or set(name) - _NAME_CHARS:
        raise InputError(
            f"{what}: name {name!r}: use a-z, 0-9, - _ .", path, line_of(entry, "name")
        )
    if name in seen:
        raise InputError(f"{what}: name {name!r} used twice", path, line_of(entry, "name"))
    seen.add(name)
    what = f"experiment {name}"
    experiment = _typed(entry, "experiment", str, path, what)
    known = registry()
    if experiment not in known:
        raise InputError(
            f"{what}: unknown experiment {experiment!r} (known: {', '.join(known)})",
            path,
            line_of(entry, "experiment"),
        )
    params = entry.get("params") or LineMap()
    if not isinstance(params, dict):
        raise InputError(f"{what}: params must be a mapping", path, line_of(entry, "params"))
    fields = {i.name for i in option_infos(known[experiment].Options)}
    if isinstance(params, LineMap):
        _known(params, fields, path, f"{what}: params")
    metrics = entry.get("metrics") or {}
    if not isinstance(metrics, dict) or any(v not in DIRECTIONS for v in metrics.values()):
        raise InputError(
            f"{what}: metrics maps a metric name to higher or lower",
            path,
            line_of(entry, "metrics"),
        )
    seed = entry.get("seed")
    if seed is not None:
        seed = _typed(entry, "seed", int, path, what)
    result = SuiteExperiment(
        name,
        experiment,
        dict(params),
        server=str(entry["server"]) if entry.get("server") else None,
        clients=str(entry.get("clients") or "clients"),
        seed=seed,
        metrics={str(k): cast(Direction, v) for k, v in metrics.items()},
        line=entry.line,
    )
    try:
        result.options()
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what}: {exc}", path, line_of(entry, "params")) from exc
    return result


def load_suite(path: str | Path) -> Suite:
    path = str(path)
    doc = load_yaml(path)
    if not isinstance(doc, LineMap):
        raise InputError("a suite is a mapping with `experiments:`", path, line_of(doc, default=1))
    _known(doc, {"name", "hosts", "provision", "compare", "experiments"}, path, "suite")
    name = str(doc.get("name") or Path(path).stem)
    entries = doc.get("experiments")
    if not isinstance(entries, list) or not entries:
        raise InputError(
            "suite: `experiments` must list at least one",
            path,
            line_of(doc, "experiments", doc.line),
        )
    seen: set[str] = set()
    experiments = tuple(_experiment(e, path, i, seen) for i, e in enumerate(entries))

    provision = False
    tags: tuple[str, ...] = ()
    given = doc.get("provision", False)
    if isinstance(given, LineMap):
        _known(given, {"tags"}, path, "provision")
        raw = given.get("tags") or []
        items = raw.split(",") if isinstance(raw, str) else raw
        if not isinstance(items, list) or not all(isinstance(t, str) for t in items):
            raise InputError(
                "provision: tags is a list of step names (deps, headers, netmap, load, workloads)",
                path,
                line_of(given, "tags"),
            )
        tags = tuple(t.strip() for t in items)
        steps = load_playbook(PROVISION_PLAYBOOK).tags
        unknown = [t for t in tags if t not in steps]
        if unknown:
            raise InputError(
                f"provision: unknown step {unknown[0]!r} (steps: {', '.join(sorted(steps))})",
                path,
                line_of(given, "tags"),
            )
        provision = True
    elif isinstance(given, bool):
        provision = given
    else:
        raise InputError(
            "suite: provision is true, false or {tags: [...]}", path, line_of(doc, "provision")
        )

    compare = doc.get("compare") or LineMap()
    if not isinstance(compare, LineMap):
        raise InputError("suite: compare must be a mapping", path, line_of(doc, "compare"))
    _known(compare, {"history", "threshold", "alpha"}, path, "compare")
    history = int(_typed(compare, "history", int, path, "compare")) if "history" in compare else 5
    threshold = (
        float(_typed(compare, "threshold", (int, float), path, "compare"))
        if "threshold" in compare
        else 0.10
    )
    alpha = (
        float(_typed(compare, "alpha", (int, float), path, "compare"))
        if "alpha" in compare
        else 0.05
    )
    if history < 1 or not 0 < threshold < 10 or not 0 < alpha < 1:
        raise InputError(
            "compare: history >= 1, threshold a fraction > 0 (0.1 = 10%), 0 < alpha < 1",
            path,
            compare.line or doc.line,
        )
    hosts = str(doc.get("hosts") or "all")
    return Suite(name, path, experiments, hosts, provision, tags, history, threshold, alpha)
