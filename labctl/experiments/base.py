"""What every experiment shares: a parameter matrix, interleaved repeats, a stored sweep.

Trials are interleaved and repeated in shuffled order (docs/reuseport.md: 3 repeats cannot resolve
effects under ~20% here; slow drift of the machine must not line up with one configuration),
after one warm-up trial that is stored but never counted. Each trial is committed as it
ends; SIGINT or SIGTERM stops the sweep, cleans the hosts, and keeps what was measured.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import signal
import time
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from labctl.errors import LabctlError
from labctl.metrics import ExperimentSpec, Metric
from labctl.paths import HOST_EXPERIMENT_RUN_DIR, PROJECT_DIR

if TYPE_CHECKING:
    from labctl.actions.base import ActionResult
    from labctl.actions.undo import PutBack
    from labctl.inventory import Host, Inventory
    from labctl.remote import Connections, HostConnection
    from labctl.results.store import ResultsStore, TrialRecord

# The experiments' own pidfiles and outputs, apart from the `process` action's default
# run_dir: a run that finds something here under the lab lock knows a dead run left it.
RUN_DIR = HOST_EXPERIMENT_RUN_DIR


class ExperimentError(LabctlError):
    """The experiment cannot go on (a busy port, a workload that does not start, ...)."""


def server_host(inventory: Inventory, server: str | None) -> Host:
    """The experiment's server: the one named, else the first host of group `servers`."""
    if server:
        return inventory.host(server)
    found = next(iter(inventory.select("servers")), None)
    if found is None:
        raise ExperimentError("no server: name one with --server or a `servers` group")
    return found


def client_hosts(inventory: Inventory, clients: str, server: Host) -> list[Host]:
    """The hosts of the `clients` pattern but the server; at least one."""
    found = [h for h in inventory.select(clients) if h.name != server.name]
    if not found:
        raise ExperimentError(f"no client host in {clients!r} besides {server.name}")
    return found


def server_and_client(inventory: Inventory, server: str | None, clients: str) -> tuple[Host, Host]:
    """(server, client) for a two-host experiment: the server, and the first client not it."""
    first = server_host(inventory, server)
    return first, client_hosts(inventory, clients, first)[0]


def experiment_address(host: Host) -> str:
    """The host's address on the experiment link (`experiment_address`, else its SSH
    address), without a prefix length (10.78.0.11/24 → 10.78.0.11)."""
    return str(host.vars.get("experiment_address") or host.address).split("/")[0]


def experiment_hosts(inventory: Inventory, server: str | None, clients: str) -> list[Host]:
    """The hosts an experiment runs on: its server and the hosts of the `clients` pattern.
    What a run must lock."""
    first = server_host(inventory, server)
    return list({h.name: h for h in [first, *inventory.select(clients)]}.values())


@dataclass(frozen=True)
class TrialSpec:
    seq: int
    params: Mapping[str, Any]
    warmup: bool = False


def plan_trials(
    matrix: Mapping[str, Sequence[Any]], repeat: int, seed: int, warmup: bool = True
) -> list[TrialSpec]:
    """Every combination, `repeat` times, each round in its own shuffled order."""
    if repeat < 1:
        raise ValueError("repeat must be at least 1")
    keys = list(matrix)
    combos = [
        dict(zip(keys, values, strict=True))
        for values in itertools.product(*(matrix[k] for k in keys))
    ]
    rng = random.Random(seed)
    trials: list[TrialSpec] = []
    if warmup and combos:
        trials.append(TrialSpec(0, combos[0], warmup=True))
    for _ in range(repeat):
        round_ = combos[:]
        rng.shuffle(round_)
        trials.extend(TrialSpec(len(trials), p) for p in round_)
    return trials


def trial_record(
    spec: TrialSpec,
    kind: str,
    params: Mapping[str, Any],
    started: float,
    valid: bool,
    reason: str,
    metrics: Mapping[str, float],
    state: Mapping[str, Any] | None = None,
    outputs: Sequence[tuple[str, str, str, str]] = (),
) -> TrialRecord:
    """A trial as stored: its place in the sweep, and its time from `started` until now."""
    from labctl.results.store import TrialRecord

    return TrialRecord(
        seq=spec.seq,
        kind=kind,
        warmup=spec.warmup,
        params=params,
        started=started,
        duration=time.time() - started,
        valid=valid,
        reason=reason,
        metrics=metrics,
        state=state or {},
        outputs=tuple(outputs),
    )


class SweepProgress(Protocol):
    """Told how many trials there are, then of each trial as it starts and as it is stored."""

    def start(self, total: int) -> None: ...

    def begin(self, spec: TrialSpec) -> None: ...

    def __call__(self, spec: TrialSpec, record: TrialRecord) -> None: ...


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived during a sweep."""


@contextmanager
def interrupts_as_exception() -> Iterator[None]:
    """SIGTERM (cron's kill, a CI timeout) ends the sweep like Ctrl-C: cleanly."""

    def handler(signum: int, frame: object) -> None:
        raise Interrupted(signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@dataclass
class SweepOutcome:
    run_id: int
    status: str  # finished, interrupted, failed
    trials: list[TrialRecord]
    note: str = ""


def run_sweep(
    store: ResultsStore,
    run_id: int,
    trials: Sequence[TrialSpec],
    run_trial: Callable[[TrialSpec], TrialRecord],
    cleanup: Callable[[], None],
    on_trial: SweepProgress | None = None,
) -> SweepOutcome:
    """Run the trials in order, storing each; always clean the hosts at the end."""
    from labctl.results.records import StoreError

    done: list[TrialRecord] = []
    status, note = "finished", ""
    if on_trial:
        on_trial.start(len(trials))
    try:
        with interrupts_as_exception():
            for spec in trials:
                if on_trial:
                    on_trial.begin(spec)
                record = run_trial(spec)
                store.add_trial(run_id, record)
                done.append(record)
                if on_trial:
                    on_trial(spec, record)
    except Interrupted as exc:
        status, note = "interrupted", f"stopped by {exc}"
    except StoreError as exc:  # nowhere to keep trials: stop, clean the hosts, say why
        status, note = "failed", str(exc)
        raise
    except LabctlError as exc:
        status, note = "failed", str(exc)
    except BaseException as exc:  # a bug: still clean the hosts and say the run failed
        status, note = "failed", f"{type(exc).__name__}: {exc}"
        raise
    finally:
        # Whatever happened, no server or client is left running on any host.
        started = time.monotonic()
        with interrupts_as_exception():
            try:
                cleanup()
            except Interrupted:
                note += f"; cleanup interrupted after {time.monotonic() - started:.1f} s"
            except LabctlError as exc:  # e.g. a host that could not be put back
                note = f"{note}; {exc}" if note else str(exc)
                status = "failed" if status == "finished" else status
        store.finish_run(run_id, status, note)
    return SweepOutcome(run_id, status, done, note)


# ---------------------------------------------------------------------------- the plug-in


def option(default: Any, help: str) -> Any:
    """An experiment option: a dataclass field whose help text the command line shows."""
    if isinstance(default, list | dict | set):
        raise TypeError("options are immutable: use a tuple")
    return dataclasses.field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class OptionInfo:
    name: str
    kind: type  # bool, int, float or str
    many: bool  # a comma-separated list on the command line, a YAML list in a suite
    default: Any
    help: str


def option_infos(options_type: type) -> list[OptionInfo]:
    """An Options dataclass's fields as the command line and suites read them."""
    hints = typing.get_type_hints(options_type)
    out = []
    for f in dataclasses.fields(options_type):
        hint = hints[f.name]
        many = typing.get_origin(hint) in (tuple, list)
        inner = typing.get_args(hint)[0] if many else hint
        if typing.get_origin(inner) in (typing.Union, types.UnionType):
            inner = next(a for a in typing.get_args(inner) if a is not type(None))
        if inner not in (bool, int, float, str):
            raise TypeError(f"{options_type.__name__}.{f.name}: unsupported option type {hint}")
        out.append(OptionInfo(f.name, inner, many, f.default, f.metadata.get("help", "")))
    return out


def parse_option(info: OptionInfo, value: Any) -> Any:
    """A command-line string or a YAML value → the option's typed value (ValueError if not)."""

    def one(v: Any) -> Any:
        if info.kind is bool:
            if isinstance(v, bool):
                return v
            raise ValueError(f"{info.name}: expected true or false, not {v!r}")
        if info.kind in (int, float) and isinstance(v, bool):
            raise ValueError(f"{info.name}: expected a number, not {v!r}")
        try:
            return info.kind(v.strip() if isinstance(v, str) else v)
        except (TypeError, ValueError):
            what = {int: "an integer", float: "a number", str: "text"}[info.kind]
            raise ValueError(f"{info.name}: expected {what}, not {v!r}") from None

    if not info.many:
        return one(value)
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ValueError(f"{info.name}: expected a list, not {value!r}")
    return tuple(one(v) for v in items if not (isinstance(v, str) and not v.strip()))


def make_options(options_type: type, values: Mapping[str, Any]) -> Any:
    """The Options object from given values (the rest default); ValueError names what is
    wrong: an unknown option, a value of the wrong type, or the dataclass's own checks."""
    infos = {i.name: i for i in option_infos(options_type)}
    unknown = sorted(set(values) - set(infos))
    if unknown:
        raise ValueError(
            f"unknown option {', '.join(map(repr, unknown))} (takes {', '.join(sorted(infos))})"
        )
    return options_type(**{k: parse_option(infos[k], v) for k, v in values.items()})


def background(
    conn: HostConnection,
    name: str,
    state: str,
    *,
    argv: Sequence[str] | None = None,
    out: str = "",
    startup_wait: float = 0.05,
    stop_signal: str = "TERM",
) -> ActionResult:
    """A workload started in the background (its stdout and stderr into `out`.out and
    `out`.err; exec keeps the PID the pidfile has) or stopped, by pidfile PID, in RUN_DIR."""
    from labctl.actions.base import TaskContext, run_action
    from labctl.actions.process import ProcessAction

    args: dict[str, Any] = {
        "name": name,
        "state": state,
        "run_dir": RUN_DIR,
        "startup_wait": startup_wait,
        "stop_signal": stop_signal,
    }
    if argv is not None:
        args["argv"] = ["sh", "-c", 'exec "$@" >"$0.out" 2>"$0.err"', out, *argv]
    return run_action(ProcessAction(), TaskContext(conn, {}, Path(".")), args)


@dataclass
class Restored:
    done: list[PutBack]  # every entry tried, with its result
    unreachable: dict[str, str]  # host -> why (its entries stay to be put back later)

    @property
    def failed(self) -> list[PutBack]:
        return [p for p in self.done if p.result.failed]


def restore_run(store: ResultsStore, conns: Connections, run_id: int) -> Restored:
    """Put back what run `run_id` changed on its hosts (what its actions recorded), every
    host at once. Idempotent: a second call changes nothing."""
    from labctl.actions.undo import put_back

    by_host: dict[str, list[dict[str, Any]]] = {}
    for host, entry in store.undo_entries(run_id):
        by_host.setdefault(host, []).append(entry)
    restored = Restored([], {})
    hosts = [h for h in by_host if h in conns.names]
    restored.unreachable.update(
        {h: "not in this inventory" for h in by_host if h not in conns.names}
    )
    for outcome in conns.run_on_hosts(lambda c: put_back(c, by_host[c.host.name]), names=hosts):
        if outcome.error is not None:
            restored.unreachable[outcome.host] = str(outcome.error)
        restored.done.extend(outcome.value or [])
    return restored


def run_params(options: Any) -> dict[str, Any]:
    """An Options object as the run's stored params (JSON: tuples as lists)."""
    return {
        f.name: list(v) if isinstance(v := getattr(options, f.name), tuple) else v
        for f in dataclasses.fields(options)
    }


@dataclass(frozen=True)
class RunContext:
    """What a run of an experiment gets from `labctl experiment` or a nightly suite."""

    inventory: Inventory
    store: ResultsStore
    server: str | None = None  # default: the first host of group `servers`
    clients: str = "clients"  # a host pattern
    seed: int | None = None  # default: random, stored with the run
    on_trial: SweepProgress | None = None
    project_dir: Path = PROJECT_DIR  # where workloads/ is (the checkout's or the installed copy)

    def start_run(
        self,
        experiment: str,
        params: Mapping[str, Any],
        hosts: Mapping[str, tuple[str, Mapping[str, Any]]],
    ) -> tuple[int, int]:
        """The run stored as started: its params, its seed (the one given, else a random
        one), its hosts with their roles and facts. (run_id, seed)."""
        seed = self.seed if self.seed is not None else random.SystemRandom().randrange(2**31)
        run_id = self.store.start_run(experiment, dict(params), self.inventory.path, seed)
        self.store.add_hosts(run_id, dict(hosts))
        return run_id, seed


class Experiment(ABC):
    """One experiment: its options, what it measures (`spec`), and how a run goes.

    Adding one is adding a module under labctl/experiments/ with a subclass of this: the
    registry (labctl/experiments/__init__.py) finds it, and the command line, suites, the
    summary, the regression check and the report read its declarations; nothing else names it
    (docs/architecture.md, "Adding an experiment")."""

    spec: ClassVar[ExperimentSpec]
    help: ClassVar[str]  # one line for `labctl experiment --help`
    Options: ClassVar[type]  # a frozen dataclass of `option(...)` fields

    @classmethod
    def name(cls) -> str:
        return cls.spec.name

    def hosts(self, inventory: Inventory, server: str | None, clients: str) -> list[Host]:
        """The hosts a run uses (and must lock)."""
        return experiment_hosts(inventory, server, clients)

    def preflight(self, inventory: Inventory, options: Any) -> None:  # noqa: B027
        """Checks of what the run will do, before any host is touched (InputError)."""

    @abstractmethod
    def run(self, ctx: RunContext, options: Any) -> SweepOutcome:
        """Select the hosts, record their facts, run the sweep, store every trial."""

    def notes(
        self, hosts: Mapping[str, tuple[str, Mapping[str, Any]]], trials: Sequence[TrialRecord]
    ) -> list[str]:
        """Lines a summary of a run must carry (virtual hardware, ...); `hosts` as the store
        gives them: name → (role, facts)."""
        return []

    def trial_text(self, record: TrialRecord) -> str:
        """A trial's headline number for progress lines: its kind's first metric."""
        kind = self.spec.kind(record.kind)
        metric: Metric | None = next(
            (m for m in (kind.metrics if kind else ()) if m.name in record.metrics), None
        )
        if metric is None:
            return ""
        return f"{_scaled(record.metrics[metric.name])} {metric.unit}".rstrip()


def _scaled(value: float) -> str:
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.1f}{suffix}"
    return f"{value:.3g}"
