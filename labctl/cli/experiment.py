"""`labctl experiment NAME ...`: one task per registered experiment, its flags its own
(from its Options dataclass), plus the flags every experiment takes."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invoke import Collection, Context, Exit, Task, task

from labctl.cli.common import (
    INVENTORY_HELP,
    STORE_HELP,
    console,
    errors_as_exit,
    inventory,
    open_store,
    output_path,
)
from labctl.cli.common import run_id as parse_run_id
from labctl.errors import InputError
from labctl.paths import (
    EXIT_ERROR,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_UNREACHABLE,
    PROJECT_DIR,
)

if TYPE_CHECKING:
    from rich.console import Console

    from labctl.experiments.base import Experiment
    from labctl.results.store import ResultsStore

COMMON_FLAGS: dict[str, tuple[Any, str]] = {
    "inventory": (None, INVENTORY_HELP),
    "server": (None, "the server host (default: the first host of group `servers`)"),
    "clients": ("clients", "host pattern of the load generators (default: clients)"),
    "seed": (-1, "shuffle seed (default: random; stored with the run)"),
    "store": (None, STORE_HELP),
    "plot": (None, "write the plot here (default: run-<id>-<experiment>.png in the output dir)"),
    "json": (False, "print the run's trials and summary as JSON"),
}


def default_plot(run_id: int, experiment: str) -> Path:
    return output_path(None, f"run-{run_id}-{experiment}.png")


def experiment_task(cls: type[Experiment]) -> Task:
    from labctl.experiments.base import option_infos

    infos = option_infos(cls.Options)
    clash = set(COMMON_FLAGS) & {i.name for i in infos}
    if clash:
        raise TypeError(f"experiment {cls.name()}: options {sorted(clash)} clash with common flags")
    params = [inspect.Parameter("c", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    helps: dict[str, str] = {}
    for name, (default, text) in COMMON_FLAGS.items():
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default))
        helps[name] = text
    for info in infos:
        default = ",".join(map(str, info.default)) if info.many else info.default
        params.append(inspect.Parameter(info.name, inspect.Parameter.KEYWORD_ONLY, default=default))
        helps[info.name] = info.help + (f" (default: {default})" if info.kind is not bool else "")

    def body(c: Context, **flags: Any) -> None:
        run_experiment(cls, flags)

    body.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    body.__name__ = cls.name().replace("-", "_")
    body.__doc__ = cls.help
    return task(help=helps)(errors_as_exit(body))


def show_stored_run(
    con: Console,
    experiment: Experiment,
    db: ResultsStore,
    run_id: int,
    plot: str | Path | None,
    as_json: bool,
) -> None:
    """A stored run's summary, and its plot written to `plot` when one is given (a command
    that only reads writes nothing unasked), or its JSON."""
    from labctl.views.run import show_run

    run = db.run(run_id)
    where = Path(plot) if plot else None
    show_run(con, experiment, run, db.trials(run.id), db.hosts(run.id), where, as_json)


def run_experiment(cls: type[Experiment], flags: dict[str, Any]) -> None:
    from rich.console import Console

    from labctl.experiments.base import RunContext, make_options
    from labctl.nightly.leftovers import clean_leftovers, mark_crashed
    from labctl.nightly.lock import lab_locked
    from labctl.views.progress import TrialProgress

    common = {k: flags.pop(k) for k in COMMON_FLAGS}
    try:
        options = make_options(cls.Options, flags)
    except ValueError as exc:
        raise InputError(f"experiment {cls.name()}: {exc}") from exc
    inv = inventory(common["inventory"])
    experiment = cls()
    con = console()
    hosts = experiment.hosts(inv, common["server"], common["clients"])
    experiment.preflight(inv, options)
    # Notes on the way (a lock taken over, leftovers stopped) keep --json's stdout JSON.
    say = Console(stderr=True, highlight=False).print if common["json"] else con.print
    locked = lab_locked(hosts, f"experiment {cls.name()}", on_message=say)
    with locked as lock, open_store(common["store"]) as db:
        # What a labctl killed mid-run (SIGKILL skips every cleanup) left: its run, marked
        # crashed with its finished trials kept, and its workloads on the hosts, stopped.
        for note in mark_crashed(db):
            say(note)
        for found in clean_leftovers(lock.conns, lock.hosts):
            say(found.describe())
        progress = TrialProgress(con, experiment, quiet=common["json"])
        ctx = RunContext(
            inv,
            db,
            server=common["server"],
            clients=common["clients"],
            seed=None if common["seed"] < 0 else common["seed"],
            on_trial=progress,
            project_dir=PROJECT_DIR,
        )
        with progress:  # its live bar goes however the sweep ends
            outcome = experiment.run(ctx, options)
        plot = common["plot"] or default_plot(outcome.run_id, cls.name())
        show_stored_run(con, experiment, db, outcome.run_id, plot, common["json"])
    if outcome.status != "finished":
        print(f"labctl: run {outcome.run_id} {outcome.status}: {outcome.note}", file=sys.stderr)
        raise Exit(code=EXIT_ERROR if outcome.status == "failed" else EXIT_INTERRUPTED)


@task(
    help={
        "file": "the experiment file (YAML; docs/experiment-files.md)",
        "extra": "a parameter's value for this run: -e qdisc=fq_codel, -e qdisc=pfifo,fq "
        "(sweeps both), -e repeat=5; repeatable",
        **{
            name: text
            for name, (_, text) in COMMON_FLAGS.items()
            if name not in ("server", "clients")
        },
    },
    iterable=["extra"],
)
@errors_as_exit
def run_file(
    c: Context,
    file: str,
    extra: list[str] | None = None,
    inventory: str | None = None,
    seed: int = -1,
    store: str | None = None,
    plot: str | None = None,
    json: bool = False,
) -> None:
    """Run an experiment declared in a YAML file: checked whole before any host is touched,
    then run as the built-in ones are (interleaved trials, provenance, the results store)."""
    from labctl.experiments.file_run import experiment_class
    from labctl.experiments.file_spec import load_experiment_file

    cls = experiment_class(load_experiment_file(file))
    flags: dict[str, Any] = {}
    for item in extra or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise InputError(f"-e {item!r}: give param=value")
        flags[name.strip()] = value
    common = {"inventory": inventory, "server": None, "clients": "clients", "seed": seed,
              "store": store, "plot": plot, "json": json}  # fmt: skip
    run_experiment(cls, {**flags, **common})


@task()
def list_experiments(c: Context) -> None:
    """The experiments: `labctl experiment NAME --help` shows one's options."""
    from labctl.experiments import registry

    found = registry()
    width = max(map(len, found), default=0)
    for name, cls in found.items():
        print(f"{name:{width}}  {cls.help}")


def collection() -> Collection:
    from labctl.experiments import registry

    experiments = Collection("experiment")
    experiments.add_task(list_experiments, name="list", default=True)
    experiments.add_task(run_file, name="run")
    for cls in registry().values():
        experiments.add_task(experiment_task(cls), name=cls.name())
    return experiments


@task(
    help={
        "run": "run id (see results.list)",
        "inventory": COMMON_FLAGS["inventory"][1],
        "store": STORE_HELP,
    }
)
@errors_as_exit
def restore(c: Context, run: str, inventory: str | None = None, store: str | None = None) -> None:
    """Put back what a run changed on its hosts (qdiscs, txqueuelen, sysctls, modules), as it
    found them; a second restore changes nothing. Experiments end with this by themselves."""
    from labctl.experiments.base import restore_run
    from labctl.nightly.lock import lab_locked

    run_id = parse_run_id(run)
    con = console()
    with open_store(store, create=False) as db:
        db.run(run_id)  # an unknown run is an error
        hosts_named = sorted({host for host, _ in db.undo_entries(run_id)})
        if not hosts_named:
            con.print(f"run {run_id}: it recorded no change to put back")
            return
        inv = _inventory(inventory)
        hosts = [inv.host(h) for h in hosts_named]
        with lab_locked(hosts, f"restore run {run_id}", on_message=con.print) as lock:
            restored = restore_run(db, lock.conns, run_id)
    changed = [p for p in restored.done if p.result.changed]
    for p in restored.done:
        for line in p.result.changes:
            con.print(f"{p.host}: {line}")
    for p in restored.failed:
        print(f"labctl: {p.host}: {p.target}: {p.result.msg}", file=sys.stderr)
    for host, why in restored.unreachable.items():
        print(f"labctl: {host}: {why}", file=sys.stderr)
    if restored.failed or restored.unreachable:
        raise Exit(code=EXIT_UNREACHABLE if restored.unreachable else EXIT_FAILED)
    if not changed:
        con.print(f"run {run_id}: nothing to put back: its hosts are as it found them")
    else:
        con.print(f"run {run_id}: put back {len(changed)} of {len(restored.done)} things")


_inventory = inventory  # the task's own `inventory` flag shadows the helper's name
