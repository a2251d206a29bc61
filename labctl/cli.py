"""The task tree: thin doors into the library. `tasks.py` and the `labctl` script share it.

Exit status: 0 all well; 1 labctl could not do its job (lab, environment); 2 bad input or a
host failed; 4 a host was unreachable (Ansible's meanings).
"""

from __future__ import annotations

import inspect
import json
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invoke import Collection, Context, Exit, Program, Task, task
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from labctl import __version__, cli_nightly
from labctl.clikit import EXIT_ERROR, EXIT_FAILED, EXIT_UNREACHABLE, PROJECT_DIR, default_log_dir
from labctl.clikit import console as _console
from labctl.clikit import errors_as_exit as _errors_as_exit
from labctl.clikit import inventory as _inventory
from labctl.errors import InputError, LabctlError
from labctl.experiments import registry
from labctl.experiments.base import Experiment, option_infos
from labctl.inventory import Inventory

if TYPE_CHECKING:
    from labctl.lab import LocalLab
    from labctl.vmlab import VmLab

# ---------------------------------------------------------------------------- lab


def _lab(
    inventory: str | None, hosts: int, progress: bool = True, vms: int = 0
) -> LocalLab | VmLab:
    """The inventory's lab: the namespace lab, or a VM lab (`labctl_lab_kind: vm`)."""
    from labctl.lab import LabSpec, LocalLab
    from labctl.vmlab import VmLab, VmLabSpec, is_vm_inventory

    inv = _inventory(inventory)
    console = _console()
    say = (lambda msg: console.print(f"  {msg}")) if progress else None
    if is_vm_inventory(inv):
        if hosts:
            raise InputError(f"{inv.path}: a VM lab: use --vms N, not --hosts")
        vm_spec = VmLabSpec.from_inventory(inv)
        return VmLab(vm_spec.resized(vms) if vms else vm_spec, progress=say)
    if vms:
        raise InputError(f"{inv.path}: --vms needs a VM lab inventory (labctl_lab_kind: vm)")
    spec = LabSpec.from_inventory(inv)
    if hosts:
        spec = LabSpec.generated(spec.name, str(spec.subnet), hosts, spec.state_dir)
    return LocalLab(spec, progress=say)


@task(
    help={
        "inventory": "lab inventory (default: hosts/local.yml)",
        "hosts": "make N hosts (srv1, cli1..) instead of the inventory's, for scale tests; "
        "writes their inventory into the lab's state directory",
        "vms": "a VM lab (inventory with labctl_lab_kind: vm, e.g. hosts/vm.yml): make N VMs "
        "(srv1, cli1) instead of the inventory's; writes their inventory into the state dir",
    }
)
@_errors_as_exit
def up(c: Context, inventory: str | None = None, hosts: int = 0, vms: int = 0) -> None:
    """Bring the lab up: namespaces, or QEMU VMs for a VM lab (idempotent)."""
    from labctl.vmlab import VmLab

    lab = _lab(inventory, hosts, vms=vms)
    report = lab.up()
    console = _console()
    if isinstance(lab, VmLab):
        image = lab.image
        if image is not None:
            how = f"built in {image.build_seconds:.0f} s" if lab.image_built else "cached"
            console.print(
                f"image {image.dir.name[:12]} ({how}, in {image.dir.parent}), "
                f"kernel {image.kernel_release}"
            )
        if lab.accel:
            console.print(f"accel: {lab.accel}")
        for host, seconds in lab.boot_seconds.items():
            console.print(f"{host}: boot to SSH {seconds:.1f} s")
        for row in lab.status():
            rss = f"{row.rss_mib:.0f} MiB" if row.rss_mib else "-"
            console.print(f"{row.name}: qemu pid {row.qemu_pid}, RSS {rss}")
    if hosts or vms:
        path = lab.spec.state_dir / "inventory.yml"
        path.write_text(lab.spec.inventory_yaml())
        console.print(f"inventory: {path} (pass it with -i)")
    n = len(lab.spec.hosts)
    if report.changed:
        kinds = Counter(ch.what.split()[0] for ch in report.changes if ch.changed)
        made = ", ".join(f"{count} {kind}" for kind, count in kinds.items())
        console.print(f"lab {lab.spec.name}: {n} hosts up ({made})")
    else:
        console.print(f"lab {lab.spec.name}: {n} hosts already up, nothing changed")


@task(
    help={
        "inventory": "lab inventory (default: hosts/local.yml)",
        "purge": "also delete the lab's state directory (keys, host homes)",
    }
)
@_errors_as_exit
def down(c: Context, inventory: str | None = None, purge: bool = False) -> None:
    """Take the local lab down: exactly the namespaces, links and sshd PIDs `up` made."""
    lab = _lab(inventory, 0)
    report = lab.down(purge=purge)
    kinds = Counter(ch.what.split()[0] for ch in report.changes)
    what = ", ".join(f"{count} {kind}" for kind, count in kinds.items()) or "nothing was up"
    _console().print(f"lab {lab.spec.name} down: removed {what}")


@task(help={"inventory": "lab inventory (default: hosts/local.yml)", "json": "print JSON"})
@_errors_as_exit
def status(c: Context, inventory: str | None = None, json: bool = False) -> None:
    """Show the lab's hosts: namespace and sshd PID, or VM's QEMU PID, memory; SSH port."""
    import dataclasses

    from labctl.vmlab import VmLab

    lab = _lab(inventory, 0, progress=False)
    if json:
        print(_json_dumps([dataclasses.asdict(r) for r in lab.status()]))
        return
    if isinstance(lab, VmLab):
        vm_rows = lab.status()
        accel = vm_rows[0].accel if vm_rows and vm_rows[0].accel else "-"
        table = Table(
            title=f"VM lab {lab.spec.name} (accel {accel}, link 127.0.0.1:{lab.spec.link_port})"
        )
        for col in ("host", "ssh", "qemu pid", "RSS", "kernel"):
            table.add_column(col)
        for v in vm_rows:
            ssh = f"127.0.0.1:{v.ssh_port} " + ("[green]open[/]" if v.ssh_open else "[red]down[/]")
            pid = str(v.qemu_pid or "-") + ("" if v.running or not v.qemu_pid else " (gone)")
            rss = f"{v.rss_mib:.0f} MiB" if v.rss_mib else "-"
            table.add_row(v.name, ssh, pid, rss, v.kernel_release or "-")
        _console().print(table)
        if not all(v.ssh_open for v in vm_rows):
            raise Exit(code=EXIT_ERROR)
        return
    rows = lab.status()
    table = Table(title=f"lab {lab.spec.name} ({lab.spec.subnet}, bridge {lab.spec.bridge})")
    for col in ("host", "address", "namespace", "sshd pid", "ssh"):
        table.add_column(col)
    for r in rows:
        ssh = "[green]open[/]" if r.ssh_port_open else "[red]down[/]"
        ns = r.netns if r.netns_exists else f"[red]{r.netns} (missing)[/]"
        table.add_row(r.name, r.address, ns, str(r.sshd_pid or "-"), ssh)
    _console().print(table)
    if not all(r.ssh_port_open for r in rows):
        raise Exit(code=EXIT_ERROR)


# ---------------------------------------------------------------------------- facts


def _json_dumps(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False)


@task(
    help={
        "inventory": "inventory file (default: hosts/local.yml, the local lab)",
        "limit": "host pattern: all, a group, a host, a,b, !group",
        "json": "print one JSON document instead of tables",
        "forks": "hosts reached at once (default 32)",
    }
)
@_errors_as_exit
def facts(
    c: Context,
    inventory: str | None = None,
    limit: str = "all",
    json: bool = False,
    forks: int = 32,
) -> None:
    """Gather facts from every host over SSH: kernel, NICs, drivers, qdiscs, module support."""
    from labctl.facts import gather_facts
    from labctl.remote import Connections

    hosts = _inventory(inventory).select(limit)
    with Connections(hosts) as conns:
        outcomes = conns.run_on_hosts(gather_facts, pool_size=forks)
    if json:
        doc = {
            "hosts": {
                o.host: o.value.to_dict()
                if o.value is not None
                else {"unreachable" if o.unreachable else "failed": True, "error": str(o.error)}
                for o in outcomes
            }
        }
        print(_json_dumps(doc))
    else:
        _print_facts(outcomes)
    failed = [o for o in outcomes if not o.ok]
    for o in failed:
        print(f"labctl: {o.error}", file=sys.stderr)
    if failed:
        code = EXIT_UNREACHABLE if any(o.unreachable for o in failed) else EXIT_FAILED
        raise Exit(code=code)


def _netmap_cell(status: str | None) -> str:
    if status is None:
        return "-"
    if status.startswith("unavailable"):
        return "[yellow]unavailable[/]"  # the reason is on the modules column's "no"
    return "[green]loaded[/]" if status == "loaded" else status


def _print_facts(outcomes: list[Any]) -> None:
    from labctl.facts import HostFacts

    console = _console()
    hosts = Table(
        title="hosts", box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, collapse_padding=True
    )
    columns = ("host", "kernel", "os", "cpu/mem", "ssh", "modules", "netmap", "somaxconn", "qdisc")
    for col in columns:
        hosts.add_column(col, no_wrap=True)
    nics = Table(
        title="interfaces",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        pad_edge=False,
        collapse_padding=True,
    )
    for col in ("host", "interface", "driver", "state", "addresses", "root qdisc"):
        nics.add_column(col)
    for o in outcomes:
        f: HostFacts | None = o.value
        if f is None:
            status = "unreachable" if o.unreachable else "failed"
            hosts.add_row(o.host, f"[red]{status}[/]", str(o.error).split(": ", 2)[-1])
            continue
        modules = "yes" if f.modules_supported else "[yellow]no[/]"
        os_name = " ".join(x for x in (f.distro_id, f.distro_version) if x) or "-"
        mem = f"{f.mem_total_mib / 1024:.1f}G" if f.mem_total_mib else "-"
        name = f.host if f.hostname == f.host else f"{f.host} ({f.hostname})"
        hosts.add_row(
            name,
            f.kernel_release or "-",
            os_name,
            f"{f.cpus or '-'}/{mem}",
            f.ssh_interface or "-",
            modules,
            _netmap_cell(f.netmap.status if f.netmap else None),
            str(f.somaxconn or "-"),
            f.default_qdisc or "-",
        )
        for i in f.interfaces:
            if i.name == "lo":
                continue
            nics.add_row(
                f.host,
                i.name,
                i.driver or "-",
                i.state or "-",
                " ".join(i.addresses) or "-",
                i.root_qdisc or "-",
            )
    console.print(hosts)
    console.print(nics)


@task(
    help={
        "inventory": "inventory file (default: hosts/local.yml, the local lab)",
        "limit": "host pattern: all, a group, a host, a,b, !group",
        "json": "print JSON instead of a table",
    }
)
@_errors_as_exit
def qdisc_show(
    c: Context, inventory: str | None = None, limit: str = "all", json: bool = False
) -> None:
    """Every interface's root qdisc with its counters: bytes, packets, drops, backlog."""
    from labctl.qdisc_show import HostStats, qdisc_stats, render_table, to_json
    from labctl.remote import Connections

    hosts = _inventory(inventory).select(limit)
    with Connections(hosts) as conns:
        outcomes = conns.run_on_hosts(qdisc_stats)
    by_host: dict[str, HostStats] = {
        o.host: o.value if o.value is not None else (o.error or LabctlError("failed"))
        for o in outcomes
    }
    if json:
        print(to_json(by_host))
    else:
        _console().print(render_table(by_host))
    failed = [o for o in outcomes if not o.ok]
    for o in failed:
        print(f"labctl: {o.error}", file=sys.stderr)
    if failed:
        raise Exit(code=EXIT_UNREACHABLE if any(o.unreachable for o in failed) else EXIT_FAILED)


# ---------------------------------------------------------------------------- play


def find_playbook(name: str) -> str:
    """A path, or a name under playbooks/ (`provision` → playbooks/provision.yml)."""
    for candidate in (
        Path(name),
        PROJECT_DIR / "playbooks" / name,
        PROJECT_DIR / "playbooks" / f"{name}.yml",
    ):
        if candidate.is_file():
            return str(candidate)
    raise InputError(f"playbook {name!r} not found (a path, or a name under playbooks/)")


def parse_extra_vars(items: list[str]) -> dict[str, Any]:
    """`-e key=value` (a string) or `-e '{"key": 1}'` (JSON, typed values)."""
    extra: dict[str, Any] = {}
    for item in items:
        if item.lstrip().startswith("{"):
            try:
                value = json.loads(item)
            except ValueError as exc:
                raise InputError(f"-e {item!r}: invalid JSON: {exc}") from exc
            if not isinstance(value, dict):
                raise InputError(f"-e {item!r}: JSON must be an object")
            extra.update(value)
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise InputError(f"-e {item!r}: expected key=value")
        extra[key.strip()] = value
    return extra


@task(
    iterable=["extra"],
    help={
        "playbook": "playbook file, or its name under playbooks/",
        "inventory": "inventory file (default: hosts/local.yml, the local lab)",
        "check": "plan every task from the hosts' real state and change nothing",
        "diff": "show content changes of files and templates",
        "limit": "further limit the hosts: a pattern (all, group, host, a,b, !group)",
        "tags": "run only tasks with one of these tags (comma-separated)",
        "extra": "extra variable key=value or a JSON object; repeatable; wins over all",
        "json": "print every task result as JSON instead of lines",
        "forks": "hosts worked on at once (default 32)",
    },
)
@_errors_as_exit
def play(
    c: Context,
    playbook: str,
    inventory: str | None = None,
    check: bool = False,
    diff: bool = False,
    limit: str | None = None,
    tags: str = "",
    extra: list[str] | None = None,
    json: bool = False,
    forks: int = 32,
) -> None:
    """Run a playbook on the inventory's hosts (Ansible-style; --check changes nothing)."""
    _run_play(playbook, _inventory(inventory), check, diff, limit, tags, extra, json, forks)


def _run_play(
    playbook: str,
    inv: Inventory,
    check: bool,
    diff: bool,
    limit: str | None,
    tags: str,
    extra: list[str] | None,
    json: bool,
    forks: int,
) -> None:
    """`play`'s body, shared with `provision`."""
    from labctl.playbook import load_playbook
    from labctl.report import QuietReporter, TerminalReporter, run_as_json
    from labctl.runner import RunOptions, run_playbook

    book = load_playbook(find_playbook(playbook))
    options = RunOptions(
        check=check,
        diff=diff,
        limit=limit,
        tags=frozenset(t.strip() for t in tags.split(",") if t.strip()),
        extra_vars=parse_extra_vars(extra or []),
        forks=forks,
        log_dir=default_log_dir(),
    )
    if json:
        run = run_playbook(book, inv, options, QuietReporter())
        print(run_as_json(run))
    else:
        reporter = TerminalReporter(show_diff=diff, check=check)
        run = run_playbook(book, inv, options, reporter)
        reporter.recap(run)
    if run.exit_status:
        raise Exit(code=run.exit_status)


@task(
    iterable=["extra"],
    help={
        "inventory": "inventory file (default: hosts/local.yml, the local lab)",
        "check": "show what would be installed, built and loaded; change nothing",
        "diff": "show content changes of files",
        "limit": "further limit the hosts: a pattern (all, group, host, a,b, !group)",
        "tags": "run only these steps (comma-separated): deps, headers, netmap, load, workloads",
        "extra": "extra variable key=value or a JSON object; repeatable; wins over all",
        "json": "print every task result as JSON instead of lines",
        "forks": "hosts worked on at once (default 32)",
    },
)
@_errors_as_exit
def provision(
    c: Context,
    inventory: str | None = None,
    check: bool = False,
    diff: bool = False,
    limit: str | None = None,
    tags: str = "",
    extra: list[str] | None = None,
    json: bool = False,
    forks: int = 32,
) -> None:
    """Provision hosts for their kernel release: build tools, headers, netmap, workloads."""
    book = str(PROJECT_DIR / "playbooks" / "provision.yml")
    _run_play(book, _inventory(inventory), check, diff, limit, tags, extra, json, forks)


# ---------------------------------------------------------------------------- experiments


COMMON_EXPERIMENT_FLAGS: dict[str, tuple[Any, str]] = {
    "inventory": (None, "inventory file (default: hosts/local.yml, the local lab)"),
    "server": (None, "the server host (default: the first host of group `servers`)"),
    "clients": ("clients", "host pattern of the load generators (default: clients)"),
    "seed": (-1, "shuffle seed (default: random; stored with the run)"),
    "store": ("results/labctl.db", "results database (default: results/labctl.db)"),
    "plot": (None, "write the plot here (default: results/run-<id>-<experiment>.png)"),
    "json": (False, "print the run's trials and summary as JSON"),
}


def experiment_task(cls: type[Experiment]) -> Task:
    """`labctl experiment NAME`: the experiment's own options as flags, its own help, and
    the flags every experiment takes (COMMON_EXPERIMENT_FLAGS)."""
    infos = option_infos(cls.Options)
    clash = set(COMMON_EXPERIMENT_FLAGS) & {i.name for i in infos}
    if clash:
        raise TypeError(f"experiment {cls.name()}: options {sorted(clash)} clash with common flags")
    params = [inspect.Parameter("c", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    helps: dict[str, str] = {}
    for name, (default, text) in COMMON_EXPERIMENT_FLAGS.items():
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default))
        helps[name] = text
    for info in infos:
        default = ",".join(map(str, info.default)) if info.many else info.default
        params.append(inspect.Parameter(info.name, inspect.Parameter.KEYWORD_ONLY, default=default))
        helps[info.name] = info.help + (f" (default: {default})" if info.kind is not bool else "")

    def body(c: Context, **flags: Any) -> None:
        run_experiment_command(cls, flags)

    body.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    body.__name__ = cls.name().replace("-", "_")
    body.__doc__ = cls.help
    return task(help=helps)(_errors_as_exit(body))


def run_experiment_command(cls: type[Experiment], flags: dict[str, Any]) -> None:
    from labctl.experiments.base import RunContext, make_options
    from labctl.lock import lab_locked
    from labctl.results import ResultsStore

    common = {k: flags.pop(k) for k in COMMON_EXPERIMENT_FLAGS}
    try:
        options = make_options(cls.Options, flags)
    except ValueError as exc:
        raise InputError(f"experiment {cls.name()}: {exc}") from exc
    inv = _inventory(common["inventory"])
    experiment = cls()
    console = _console()
    hosts = experiment.hosts(inv, common["server"], common["clients"])
    locked = lab_locked(hosts, f"experiment {cls.name()}", on_message=console.print)
    with locked, ResultsStore(common["store"]) as db:
        ctx = RunContext(
            inv,
            db,
            server=common["server"],
            clients=common["clients"],
            seed=None if common["seed"] < 0 else common["seed"],
            on_trial=_TrialProgress(console, experiment, quiet=common["json"]),
            project_dir=PROJECT_DIR,
        )
        outcome = experiment.run(ctx, options)
        _report_run(db, outcome.run_id, console, common["plot"], common["json"])
    if outcome.status != "finished":
        print(f"labctl: run {outcome.run_id} {outcome.status}: {outcome.note}", file=sys.stderr)
        raise Exit(code=EXIT_ERROR if outcome.status == "failed" else 130)


@task(default=True)
def list_experiments(c: Context) -> None:
    """The experiments: `labctl experiment NAME --help` shows one's options."""
    from labctl.experiments import registry

    for name, cls in registry().items():
        print(f"{name:12} {cls.help}")


class _TrialProgress:
    """One line per trial: i of n, the configuration, its headline number, the verdict."""

    def __init__(self, console: Console, experiment: Experiment, quiet: bool) -> None:
        self.console = console
        self.experiment = experiment
        self.quiet = quiet
        self.count = 0
        self.total = 0

    def start(self, total: int) -> None:
        self.total = total

    def __call__(self, spec: Any, record: Any) -> None:
        self.count += 1
        if self.quiet:
            return
        what = " ".join(f"{k}={v}" for k, v in spec.params.items())
        shown = self.experiment.trial_text(record)
        verdict = "[green]valid[/]" if record.valid else f"[yellow]{escape(record.reason)}[/]"
        tag = " (warm-up)" if record.warmup else ""
        self.console.print(f"trial {self.count} of {self.total}: {what}{tag} {shown} {verdict}")


def _report_run(db: Any, run_id: int, console: Console, plot: str | None, as_json: bool) -> None:
    """A stored run: its summary table(s), the notes its experiment adds, its plot."""
    import dataclasses

    from labctl.experiments import registry
    from labctl.experiments.summary import summarize_run
    from labctl.views.plots import plot_run
    from labctl.views.summary import summary_tables

    run = db.run(run_id)
    trials = db.trials(run_id)
    cls = registry().get(run.experiment)
    if cls is None:
        raise LabctlError(f"run {run_id}: experiment {run.experiment!r} is not known here")
    rows = summarize_run(cls.spec, trials)
    png = plot_run(
        cls.spec,
        rows,
        Path(plot or f"results/run-{run_id}-{run.experiment}.png"),
        f"run {run_id}: {run.experiment}",
    )
    notes = cls().notes(db.hosts(run_id), trials)
    if as_json:
        summary = [
            {**dataclasses.asdict(r), "metric": r.metric.name, "unit": r.metric.unit} for r in rows
        ]
        print(_run_json(run, summary, trials, png, notes))
        return
    for part in summary_tables(cls.spec, rows, f"run {run_id} ({run.experiment}, {run.status})"):
        console.print(part)
    for note in notes:
        console.print(f"note: {escape(note)}")
    if png:
        console.print(f"plot: {png}")


def _run_json(run: Any, summary: Any, trials: list[Any], png: Path | None, notes: list[str]) -> str:
    """A stored run as one JSON document: the run, its summary, every trial, the plot."""
    import dataclasses

    return _json_dumps(
        {
            "run": dataclasses.asdict(run),
            "summary": summary,
            "notes": notes,
            "trials": [dataclasses.asdict(t) for t in trials],
            "plot": str(png) if png else None,
        }
    )


@task(help={"store": "results database (default: results/labctl.db)", "json": "print JSON"})
@_errors_as_exit
def results_list(c: Context, store: str = "results/labctl.db", json: bool = False) -> None:
    """List the stored runs, newest first."""
    import dataclasses
    import time as _time

    from labctl.results import ResultsStore

    with ResultsStore(store) as db:
        runs = db.runs()
    if json:
        print(_json_dumps([dataclasses.asdict(r) for r in runs]))
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("run", "experiment", "started", "status", "trials", "valid"):
        table.add_column(col)
    for r in runs:
        when = _time.strftime("%Y-%m-%d %H:%M", _time.localtime(r.started))
        table.add_row(str(r.id), r.experiment, when, r.status, str(r.trials), str(r.valid))
    _console().print(table)


@task(
    help={
        "run": "run id (see results.list)",
        "store": "results database",
        "plot": "write the plot here",
        "json": "print JSON",
    }
)
@_errors_as_exit
def results_show(
    c: Context,
    run: str,
    store: str = "results/labctl.db",
    plot: str | None = None,
    json: bool = False,
) -> None:
    """Show one stored run: summary per configuration, validity, plot."""
    from labctl.results import ResultsStore

    if not run.isdigit():  # invoke hands a positional argument over as text
        raise InputError(f"run {run!r}: expected a run id (see results.list)")
    with ResultsStore(store) as db:
        _report_run(db, int(run), _console(), plot, json)


# ---------------------------------------------------------------------------- tree


def namespace() -> Collection:
    """The task tree; the experiments' tasks come from the registry (one per experiment)."""
    lab = Collection("lab")
    lab.add_task(up)
    lab.add_task(down)
    lab.add_task(status)

    ns = Collection()
    ns.add_collection(lab)
    ns.add_task(facts)
    ns.add_task(play)
    ns.add_task(provision)
    experiments = Collection("experiment")
    experiments.add_task(list_experiments, name="list", default=True)
    for cls in registry().values():
        experiments.add_task(experiment_task(cls), name=cls.name())
    ns.add_collection(experiments)
    ns.add_task(cli_nightly.nightly)
    ns.add_task(cli_nightly.report)

    results = Collection("results")
    results.add_task(results_list, name="list")
    results.add_task(results_show, name="show")
    results.add_task(cli_nightly.results_compare, name="compare")
    results.add_task(cli_nightly.results_export, name="export")
    ns.add_collection(results)

    qdisc = Collection("qdisc")
    qdisc.add_task(qdisc_show, name="show")
    ns.add_collection(qdisc)
    return ns


def route(argv: list[str]) -> list[str]:
    """`labctl experiment NAME ...` is the task `experiment.NAME` (invoke's own spelling,
    which works too): each experiment has its own flags and help."""
    for i, word in enumerate(argv[1:], 1):
        if word.startswith("-"):
            continue
        if word == "experiment" and i + 1 < len(argv) and argv[i + 1] in registry():
            return [*argv[:i], f"experiment.{argv[i + 1]}", *argv[i + 2 :]]
        break
    return argv


def main() -> None:
    try:
        tree = namespace()
        argv = route(sys.argv)
    except LabctlError as exc:  # e.g. an experiment module that does not import
        print(f"labctl: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_FAILED) from None
    program = Program(namespace=tree, version=__version__, name="labctl", binary="labctl")
    program.run(argv)
