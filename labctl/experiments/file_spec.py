"""An experiment declared in a YAML file (issue 20; docs/experiment-files.md): what it is,
read and checked whole before any host is touched. Every error is one line with file and
line: an unknown key, a role or parameter a template names but the file does not define, a
metric that reads nothing (no role measures what it reads from), a bad regex or JSON path.

labctl.experiments.file_run runs what this describes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl.errors import InputError
from labctl.metrics import DIRECTIONS, Direction, ExperimentSpec, Metric, PlotSpec, TrialKind
from labctl.templating import TemplateError, builtin_names, names_used, split_words
from labctl.yamlfile import (
    LineList,
    LineMap,
    line_of,
    load_yaml_text,
    read_text,
    refuse_unknown_keys,
)

TOP_KEYS = {
    "name", "help", "hosts", "params", "repeat", "warmup", "duration", "setup", "teardown",
    "processes", "metrics", "validity", "plot",
}  # fmt: skip
PROCESS_KEYS = {"start", "ready", "measure", "ready_timeout"}
METRIC_KEYS = {"from", "json", "regex", "counter", "combine", "scale", "unit", "better", "label"}
COMBINE = ("sum", "mean", "max", "min", "first")  # a role's hosts' values, into one
# counter: source -> the keys it takes (each a template)
COUNTER_SOURCES = {"nstat": ("name",), "ethtool": ("dev", "stat"), "tc": ("dev", "field")}
PLOT_KEYS = {"x", "y", "series", "x_label"}
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ROLE_PATTERN = re.compile(r"^(?P<pattern>[^\[\]]+?)(?:\[(?P<index>\d+)\])?$")
_JSON_PATH = re.compile(r"^[A-Za-z0-9_-]+(?:\[\d+\])*(?:\.[A-Za-z0-9_-]+(?:\[\d+\])*)*$")
# What every command and condition may read besides the params (file_run renders with them).
RUN_NAMES = frozenset({"hosts", "duration", "trial", "seq", "labctl_workloads"})
DEFAULT_READY_TIMEOUT = 10.0


class ExperimentFileError(InputError):
    """A mistake in an experiment file: one line with file and line."""


@dataclass(frozen=True)
class Role:
    name: str
    pattern: str  # an inventory host pattern
    index: int | None  # `servers[0]`: only that host of the pattern


@dataclass(frozen=True)
class Process:
    role: str
    start: tuple[str, ...] = ()  # words, each a template: started in the background
    ready_port: str | None = None  # a template: the port the started process listens on
    ready_log: str | None = None  # a regex its output shows once it is ready
    ready_timeout: float = DEFAULT_READY_TIMEOUT
    measure: tuple[str, ...] = ()  # words: the command whose output the metrics read
    line: int = 0
    lines: Mapping[str, int] = field(default_factory=dict)  # start/ready/measure -> line


@dataclass(frozen=True)
class Counter:
    source: str  # nstat, ethtool or tc
    args: Mapping[str, str]  # nstat: name; ethtool: dev, stat; tc: dev, field (templates)


@dataclass(frozen=True)
class MetricRead:
    name: str
    role: str  # whose measure output (or counters) it is read from
    json: str | None  # a dotted path with [i] indexes
    regex: str | None  # its first group is the number
    scale: float
    metric: Metric
    line: int = 0
    counter: Counter | None = None  # read before and after the trial: the difference
    combine: str = "sum"  # how the role's hosts' values make one (measure: "first" too)


@dataclass(frozen=True)
class Validity:
    condition: str  # a jinja expression over metrics and params; false: the trial is invalid
    reason: str
    line: int = 0


@dataclass(frozen=True)
class ExperimentFile:
    path: str
    text: str  # the file as read: stored with each run (provenance)
    name: str
    help: str
    roles: tuple[Role, ...]
    params: Mapping[str, Any]  # a list is swept, a scalar fixed
    repeat: int
    warmup: bool
    duration: float
    setup: Mapping[str, LineList]  # role -> playbook tasks, before each trial
    teardown: Mapping[str, LineList]  # role -> playbook tasks, once at the end
    processes: tuple[Process, ...]
    metrics: tuple[MetricRead, ...]
    validity: tuple[Validity, ...]
    plot: PlotSpec | None
    lines: Mapping[str, int] = field(default_factory=dict)  # top-level key -> line

    @property
    def swept(self) -> tuple[str, ...]:
        return tuple(k for k, v in self.params.items() if isinstance(v, list))

    def spec(self) -> ExperimentSpec:
        kind = TrialKind(
            self.name, config=self.swept, metrics=tuple(m.metric for m in self.metrics)
        )
        return ExperimentSpec(self.name, identity=tuple(self.params), kinds=(kind,), plot=self.plot)


def _err(message: str, path: str, line: int | None) -> ExperimentFileError:
    return ExperimentFileError(message, path, line)


def _known(doc: LineMap, allowed: set[str], path: str, what: str) -> None:
    refuse_unknown_keys(doc, allowed, path, what, ExperimentFileError)


def _mapping(value: Any, path: str, line: int | None, what: str) -> LineMap:
    if not isinstance(value, LineMap):
        raise _err(f"{what} must be a mapping", path, line)
    return value


def _number(doc: LineMap, key: str, default: float, path: str, minimum: float = 0) -> float:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise _err(f"{key} must be a number, at least {minimum:g}", path, line_of(doc, key))
    return float(value)


def _roles(doc: LineMap, path: str) -> tuple[Role, ...]:
    hosts = _mapping(doc.get("hosts"), path, line_of(doc, "hosts") or 1, "hosts (role: pattern)")
    if not hosts:
        raise _err("hosts: name at least one role (server: servers[0])", path, hosts.line)
    out = []
    for role, pattern in hosts.items():
        line = line_of(hosts, role)
        if not _VAR.match(str(role)):
            raise _err(f"hosts: role {role!r} must be a plain name (letters, _)", path, line)
        found = _ROLE_PATTERN.match(pattern) if isinstance(pattern, str) else None
        if found is None:
            raise _err(f"hosts: {role}: a host pattern, e.g. servers[0]", path, line)
        index = found["index"]
        out.append(Role(str(role), found["pattern"].strip(), int(index) if index else None))
    return tuple(out)


def _words(value: Any, path: str, line: int | None, what: str) -> tuple[str, ...]:
    if isinstance(value, list) and all(isinstance(w, str | int | float) for w in value):
        return tuple(str(w) for w in value)
    if not isinstance(value, str) or not value.strip():
        raise _err(f"{what}: a command line (or a list of words)", path, line)
    try:
        return tuple(split_words(value))
    except ValueError as exc:
        raise _err(f"{what}: {exc}", path, line) from exc


def _processes(doc: LineMap, roles: set[str], path: str) -> tuple[Process, ...]:
    raw = doc.get("processes")
    if raw is None:
        return ()
    raw = _mapping(raw, path, line_of(doc, "processes"), "processes (role: start/measure)")
    out = []
    for role, entry in raw.items():
        line = line_of(raw, role)
        if role not in roles:
            raise _err(
                f"processes: no role {role!r} in hosts ({', '.join(sorted(roles))})", path, line
            )
        entry = _mapping(entry, path, line, f"processes.{role}")
        _known(entry, PROCESS_KEYS, path, f"processes.{role}")
        if "start" not in entry and "measure" not in entry:
            raise _err(f"processes.{role}: give start, measure or both", path, line)
        start = (
            _words(entry["start"], path, line_of(entry, "start"), f"processes.{role}.start")
            if "start" in entry
            else ()
        )
        measure = (
            _words(entry["measure"], path, line_of(entry, "measure"), f"processes.{role}.measure")
            if "measure" in entry
            else ()
        )
        port = log = None
        if "ready" in entry:
            ready = _mapping(
                entry["ready"], path, line_of(entry, "ready"), f"processes.{role}.ready"
            )
            _known(ready, {"port", "log"}, path, f"processes.{role}.ready")
            if not start:
                raise _err(
                    f"processes.{role}.ready: only a started process gets ready", path, ready.line
                )
            if len(ready) != 1:
                raise _err(f"processes.{role}.ready: port or log, one of them", path, ready.line)
            if "port" in ready:
                port = str(ready["port"])
            else:
                log = str(ready["log"])
                _regex(log, path, line_of(ready, "log"), f"processes.{role}.ready.log")
        timeout = _number(entry, "ready_timeout", DEFAULT_READY_TIMEOUT, path, minimum=0.1)
        lines = {k: line_of(entry, k) or 0 for k in entry}
        if "ready" in entry:
            lines["ready"] = line_of(entry["ready"], "port") or lines["ready"]
        out.append(Process(str(role), start, port, log, timeout, measure, line or 0, lines))
    return tuple(out)


def _regex(text: str, path: str, line: int | None, what: str) -> re.Pattern[str]:
    try:
        return re.compile(text)
    except re.error as exc:
        raise _err(f"{what}: not a regular expression: {exc}", path, line) from exc


def _counter(entry: LineMap, path: str, what: str, roles: set[str]) -> Counter:
    line = line_of(entry, "counter")
    if entry.get("from") not in roles:
        raise _err(f"{what}: `from:` names the role whose hosts' counters are read", path, line)
    raw = _mapping(entry["counter"], path, line, f"{what}.counter")
    if len(raw) != 1 or next(iter(raw)) not in COUNTER_SOURCES:
        raise _err(
            f"{what}.counter: one of {{nstat: TcpExtListenDrops}}, "
            "{ethtool: {dev: eth0, stat: rx_missed_errors}}, {tc: {dev: eth0, field: drops}}",
            path,
            line,
        )
    source, value = next(iter(raw.items()))
    keys = COUNTER_SOURCES[source]
    if source == "nstat" and isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or set(value) != set(keys):
        raise _err(f"{what}.counter.{source}: give {', '.join(keys)}", path, line)
    return Counter(source, {k: str(v) for k, v in value.items()})


def _metrics(
    doc: LineMap, processes: tuple[Process, ...], roles: set[str], path: str
) -> tuple[MetricRead, ...]:
    raw = _mapping(
        doc.get("metrics"), path, line_of(doc, "metrics") or 1, "metrics (name: how to read it)"
    )
    if not raw:
        raise _err("metrics: name at least one", path, raw.line)
    measuring = {p.role for p in processes if p.measure}
    out = []
    for name, entry in raw.items():
        line = line_of(raw, name)
        what = f"metrics.{name}"
        if not _VAR.match(str(name)):
            raise _err(f"{what}: a metric's name is a plain name (letters, digits, _)", path, line)
        entry = _mapping(entry, path, line, what)
        _known(entry, METRIC_KEYS, path, what)
        role = entry.get("from")
        sources = [k for k in ("json", "regex", "counter") if k in entry]
        if len(sources) != 1:
            raise _err(
                f"{what}: give one of json (a path in the output), regex or counter", path, line
            )
        counter = _counter(entry, path, what, roles) if "counter" in entry else None
        if counter is None and role not in measuring:
            have = ", ".join(sorted(measuring)) or "none: no process has `measure`"
            raise _err(
                f"{what} reads nothing: `from: {role}` is not a role with a measure command "
                f"({have})",
                path,
                line_of(entry, "from") or line,
            )
        json_path = regex = None
        if "json" in entry:
            json_path = str(entry["json"])
            if not _JSON_PATH.match(json_path):
                raise _err(
                    f"{what}.json: a path like end.sum_received.bits_per_second or streams[0].rtt",
                    path,
                    line_of(entry, "json"),
                )
        elif "regex" in entry:
            regex = str(entry["regex"])
            if _regex(regex, path, line_of(entry, "regex"), f"{what}.regex").groups < 1:
                raise _err(
                    f"{what}.regex: needs a group around the number: rate ([0-9.]+)",
                    path,
                    line_of(entry, "regex"),
                )
        combine = entry.get("combine", "sum" if counter is not None else "first")
        if combine not in COMBINE:
            raise _err(
                f"{what}.combine: one of {', '.join(COMBINE)}", path, line_of(entry, "combine")
            )
        better = entry.get("better", "higher")
        if better not in DIRECTIONS:
            raise _err(
                f"{what}.better: higher or lower, not {better!r}", path, line_of(entry, "better")
            )
        scale = _number(entry, "scale", 1.0, path, minimum=float("-inf"))
        unit = str(entry.get("unit", ""))
        metric = Metric(
            str(name), str(entry.get("label", name)), unit, _direction(better), watched=True
        )
        out.append(
            MetricRead(
                str(name), str(role), json_path, regex, scale, metric, line or 0, counter, combine
            )
        )
    return tuple(out)


def _direction(value: str) -> Direction:
    return "lower" if value == "lower" else "higher"


def _validity(doc: LineMap, path: str) -> tuple[Validity, ...]:
    raw = doc.get("validity") or []
    if not isinstance(raw, list):
        raise _err(
            "validity: a list of {if: condition, reason: why}", path, line_of(doc, "validity")
        )
    out = []
    for entry in raw:
        entry = _mapping(entry, path, line_of(doc, "validity"), "validity entry")
        _known(entry, {"if", "reason"}, path, "validity")
        if not isinstance(entry.get("if"), str) or not isinstance(entry.get("reason"), str):
            raise _err(
                "validity: each entry has `if:` (a condition) and `reason:` (text)",
                path,
                entry.line,
            )
        out.append(Validity(entry["if"], entry["reason"], entry.line))
    return tuple(out)


def _plays(doc: LineMap, key: str, roles: set[str], path: str) -> dict[str, LineList]:
    raw = doc.get(key)
    if raw is None:
        return {}
    raw = _mapping(raw, path, line_of(doc, key), f"{key} (role: tasks)")
    out = {}
    for role, tasks in raw.items():
        if role not in roles:
            raise _err(
                f"{key}: no role {role!r} in hosts ({', '.join(sorted(roles))})",
                path,
                line_of(raw, role),
            )
        if not isinstance(tasks, LineList):
            raise _err(f"{key}.{role}: a list of playbook tasks", path, line_of(raw, role))
        out[str(role)] = tasks
    return out


def _plot(
    doc: LineMap, name: str, params: Mapping[str, Any], metrics: set[str], path: str
) -> PlotSpec | None:
    raw = doc.get("plot")
    if raw is None:
        return None
    raw = _mapping(raw, path, line_of(doc, "plot"), "plot ({x: param, y: metric})")
    _known(raw, PLOT_KEYS, path, "plot")
    x, series = raw.get("x"), raw.get("series")
    ys = raw.get("y")
    ys = [ys] if isinstance(ys, str) else ys
    if x not in params:
        raise _err(
            f"plot.x: {x!r} is not a parameter ({', '.join(params)})", path, line_of(raw, "x")
        )
    if series is not None and series not in params:
        raise _err(f"plot.series: {series!r} is not a parameter", path, line_of(raw, "series"))
    if not isinstance(ys, list) or not ys or any(y not in metrics for y in ys):
        raise _err(
            f"plot.y: metrics of this file ({', '.join(sorted(metrics))})", path, line_of(raw, "y")
        )
    return PlotSpec(name, str(x), tuple(ys), series, str(raw.get("x_label", "")))


def _check_names(spec: ExperimentFile) -> None:
    """Every variable a command or condition reads is a param, a run name or (in validity)
    a metric: a typo fails here, with its line, not on a host halfway through a sweep."""
    known = set(spec.params) | RUN_NAMES | builtin_names()
    for process in spec.processes:
        for key, words in (
            ("start", process.start),
            ("measure", process.measure),
            ("ready", (process.ready_port or "",)),
        ):
            line = process.lines.get(key, process.line)
            for word in words:
                _names_known(word, known, spec.path, line, f"processes.{process.role}.{key}")
    for read in spec.metrics:
        for value in read.counter.args.values() if read.counter else ():
            _names_known(value, known, spec.path, read.line, f"metrics.{read.name}.counter")
    metric_names = {m.name for m in spec.metrics}
    for rule in spec.validity:
        _names_known(
            rule.condition, known | metric_names, spec.path, rule.line, "validity", expression=True
        )


def _names_known(
    value: str, known: set[str], path: str, line: int, what: str, expression: bool = False
) -> None:
    try:
        used = names_used(value, expression=expression)
    except TemplateError as exc:
        raise _err(f"{what}: {exc}", path, line) from exc
    unknown = sorted(used - known)
    if unknown:
        params = ", ".join(sorted(known - RUN_NAMES - builtin_names())) or "none"
        raise _err(
            f"{what}: undefined variable {unknown[0]!r} (defined: {params}; "
            f"and {', '.join(sorted(RUN_NAMES))})",
            path,
            line,
        )


def load_experiment_file(
    path: str | Path, text: str | None = None, check: bool = True
) -> ExperimentFile:
    """The file at `path`, or `text` as it was at `path` (a stored run's copy). `check=False`
    skips the templates' variables (jinja2): for listing, not for running."""
    path = str(path)
    text = read_text(path) if text is None else text
    doc = load_yaml_text(text, path)
    if not isinstance(doc, LineMap):
        raise _err(
            "an experiment file is a mapping (name, hosts, params, processes, metrics)",
            path,
            line_of(doc, default=1),
        )
    _known(doc, TOP_KEYS, path, "experiment")
    name = doc.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise _err(
            "name: lower-case letters, digits, - _ . (it names the results history)",
            path,
            line_of(doc, "name") or 1,
        )
    roles = _roles(doc, path)
    role_names = {r.name for r in roles}
    params = _mapping(doc.get("params", LineMap()), path, line_of(doc, "params"), "params")
    for key, value in params.items():
        if not _VAR.match(str(key)) or key in RUN_NAMES or key in role_names:
            raise _err(
                f"params: {key!r} must be a plain name, neither a role nor one of "
                f"{', '.join(sorted(RUN_NAMES))}",
                path,
                line_of(params, key),
            )
        if isinstance(value, list) and not value:
            raise _err(f"params.{key}: an empty list sweeps nothing", path, line_of(params, key))
    repeat = _number(doc, "repeat", 3, path, minimum=1)
    if repeat != int(repeat):
        raise _err("repeat must be a whole number", path, line_of(doc, "repeat"))
    warmup = doc.get("warmup", True)
    if not isinstance(warmup, bool):
        raise _err("warmup: true or false", path, line_of(doc, "warmup"))
    processes = _processes(doc, role_names, path)
    metrics = _metrics(doc, processes, role_names, path)
    spec = ExperimentFile(
        path=path,
        text=text,
        name=name,
        help=str(doc.get("help", f"experiment file {Path(path).name}")),
        roles=roles,
        params=dict(params),
        repeat=int(repeat),
        warmup=warmup,
        duration=_number(doc, "duration", 3.0, path, minimum=0.1),
        setup=_plays(doc, "setup", role_names, path),
        teardown=_plays(doc, "teardown", role_names, path),
        processes=processes,
        metrics=metrics,
        validity=_validity(doc, path),
        plot=_plot(doc, name, params, {m.name for m in metrics}, path),
        lines={k: line_of(doc, k) or 0 for k in doc},
    )
    if check:
        _check_names(spec)
    return spec
