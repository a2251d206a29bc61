"""A nightly suite: which experiments to run with which parameters, and how to judge them.

The file says *what* (YAML, checked whole before any host is touched; every error names
file and line); labctl.nightly.run does it. Example: playbooks/nightly.yml.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, cast

from labctl.errors import InputError
from labctl.experiments import registry
from labctl.experiments.base import Experiment, make_options, option_infos
from labctl.metrics import DIRECTIONS, Direction
from labctl.paths import PROVISION_PLAYBOOK
from labctl.play.load import load_playbook
from labctl.results.regress import Rule
from labctl.yamlfile import LineMap, line_of, load_yaml, refuse_unknown_keys

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
    baseline: int | None = None  # a pinned run: tonight is judged against it and those before
    # the experiment itself: a registered one, or an experiment file the suite names
    kind: type[Experiment] | None = field(default=None, compare=False)

    def experiment_type(self) -> type[Experiment]:
        return self.kind if self.kind is not None else registry()[self.experiment]

    def options(self) -> Any:
        """The experiment's options object (raises ValueError on a bad value)."""
        return make_options(self.experiment_type().Options, self.params)


@dataclass(frozen=True)
class Suite:
    name: str
    path: str
    experiments: tuple[SuiteExperiment, ...]
    hosts: str = "all"  # the hosts the run locks (a pattern)
    provision: bool = False
    provision_tags: tuple[str, ...] = ()
    rule: Rule = Rule()  # how tonight is judged against the history


def _known(doc: LineMap, allowed: set[str], path: str, what: str) -> None:
    refuse_unknown_keys(doc, allowed, path, what)


def _typed(doc: LineMap, key: str, kind: type | tuple[type, ...], path: str, what: str) -> Any:
    value = doc[key]
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise InputError(f"{what}: {key} must be a number", path, line_of(doc, key))
    if not isinstance(value, kind):
        words = {int: "an integer", float: "a number", str: "a string"}
        kinds = (kind,) if isinstance(kind, type) else kind
        names = " or ".join(dict.fromkeys(words.get(k, k.__name__) for k in kinds))
        raise InputError(f"{what}: {key} must be {names}", path, line_of(doc, key))
    return value


def _experiment(entry: Any, path: str, index: int, seen: set[str]) -> SuiteExperiment:
    what = f"experiments[{index}]"
    if not isinstance(entry, LineMap):
        raise InputError(f"{what} must be a mapping", path, line_of(entry))
    _known(
        entry,
        {"name", "experiment", "params", "server", "clients", "seed", "metrics", "baseline"},
        path,
        what,
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
    known = dict(registry())
    kind = None
    if experiment.endswith((".yml", ".yaml")):  # an experiment file, beside the suite
        from labctl.experiments.file_run import experiment_class
        from labctl.experiments.file_spec import load_experiment_file

        found = Path(path).resolve().parent / experiment
        if not found.is_file():
            raise InputError(
                f"{what}: no experiment file {experiment!r}", path, line_of(entry, "experiment")
            )
        kind = experiment_class(load_experiment_file(found))
        experiment = kind.name()
        known[experiment] = kind
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
    spec = known[experiment].spec
    unknown = [str(m) for m in metrics if spec.metric(str(m)) is None]
    if unknown:
        names = [m.name for k in spec.kinds for m in (*k.metrics, *k.ratio_metrics)]
        raise InputError(
            f"{what}: metrics: {experiment} has no metric {unknown[0]!r} "
            f"(known: {', '.join(names)})",
            path,
            line_of(entry, "metrics"),
        )
    seed = entry.get("seed")
    if seed is not None:
        seed = _typed(entry, "seed", int, path, what)
    baseline = entry.get("baseline")
    if baseline is not None and (_typed(entry, "baseline", int, path, what) < 1):
        raise InputError(f"{what}: baseline is a run id", path, line_of(entry, "baseline"))
    result = SuiteExperiment(
        name,
        experiment,
        dict(params),
        server=str(entry["server"]) if entry.get("server") else None,
        clients=str(entry.get("clients") or "clients"),
        seed=seed,
        metrics={str(k): cast(Direction, v) for k, v in metrics.items()},
        line=entry.line,
        baseline=baseline,
        kind=kind,
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
    kinds: dict[str, type | tuple[type, ...]] = {
        f.name: int if f.type in (int, "int") else (int, float) for f in fields(Rule)
    }
    _known(compare, set(kinds), path, "compare")
    given_rule = {
        key: _typed(compare, key, kinds[key], path, "compare") for key in kinds if key in compare
    }
    rule = Rule(**given_rule)
    problem = rule.check()
    if problem:
        raise InputError(f"compare: {problem}", path, compare.line or doc.line)
    hosts = str(doc.get("hosts") or "all")
    return Suite(name, path, experiments, hosts, provision, tags, rule)
