"""An experiment file run as the built-in experiments run (issue 20): its roles resolved to
hosts, facts and the file itself stored with the run, the parameter matrix in shuffled,
interleaved rounds (plan_trials), and per trial: the setup tasks (any action, rendered with
the trial's parameters; what they change is recorded and put back at the end), the
background processes started and waited for, the measure commands run on every host of
their role at once, each metric read from their output, the validity rules applied, every
process stopped by its PID. The file's declarations are in labctl.experiments.file_spec.

Commands are split into words before rendering, so a value reaches the host as one
argument, whatever it holds (no shell unless the file writes `sh -c`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from labctl.errors import HostUnreachable, InputError, LabctlError
from labctl.experiments.base import (
    Experiment,
    ExperimentError,
    RunContext,
    SweepOutcome,
    TrialSpec,
    background,
    option,
    plan_trials,
    restore_run,
    run_params,
    run_sweep,
    trial_record,
)
from labctl.experiments.file_metrics import combine, read_counter, read_metric
from labctl.experiments.file_spec import ExperimentFile, Process
from labctl.paths import PROJECT_DIR
from labctl.shell_text import ShellScript, quote
from labctl.templating import TemplateError, evaluate, render_value
from labctl.yamlfile import LineList, LineMap

if TYPE_CHECKING:
    from labctl.inventory import Host, Inventory
    from labctl.remote import CommandResult, Connections, HostConnection, HostOutcome
    from labctl.results.store import TrialRecord

MEASURE_GRACE = 30.0  # seconds a measure command may run past the trial's duration
STARTUP_WAIT = 0.05


def _option_type(value: Any) -> type:
    values = value if isinstance(value, list) else [value]
    for kind in (bool, int, float):
        if all(isinstance(v, kind) and (kind is bool or not isinstance(v, bool)) for v in values):
            return kind
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return float
    return str


def options_type(spec: ExperimentFile) -> type:
    """The file's params as an Options dataclass: each one a `-e`/suite option (a swept one
    a list), with the file's value as the default; repeat, warmup and duration too."""
    fields: list[tuple[str, Any, Any]] = []
    for name, value in spec.params.items():
        kind = _option_type(value)
        if isinstance(value, list):
            default = tuple(kind(v) for v in value)
            fields.append((name, tuple[kind, ...], option(default, f"swept: {value}")))  # type: ignore[valid-type]
        else:
            fields.append((name, kind, option(kind(value), f"fixed: {value}")))
    fields += [
        ("repeat", int, option(spec.repeat, "repeats of the whole matrix, interleaved")),
        ("warmup", bool, option(spec.warmup, "a warm-up trial first (stored, never counted)")),
        ("duration", float, option(spec.duration, "seconds per trial")),
    ]
    return dataclasses.make_dataclass(f"{spec.name}-options".replace("-", "_"), fields, frozen=True)


def experiment_class(spec: ExperimentFile) -> type[Experiment]:
    """An Experiment subclass for the file: the command line, suites, summaries and reports
    treat it as they treat the built-in ones."""
    return type(
        f"FileExperiment_{re.sub(r'[^A-Za-z0-9_]', '_', spec.name)}",
        (FileExperiment,),
        {"file": spec, "spec": spec.spec(), "help": spec.help, "Options": options_type(spec)},
    )


def ready_script(process: Process, port: str | None, pidfile: str, out: str) -> ShellScript:
    """Poll (bounded) until the started process listens on `port` or its log shows
    `ready_log`; fail at once if it has exited."""
    rounds = max(1, int(process.ready_timeout / 0.05))
    if port is not None:
        test = f"ss -Htln {quote(f'sport = :{port}')} | grep -q ."
    else:
        logs = f"{quote(out + '.out')} {quote(out + '.err')}"
        test = f"grep -Eq -- {quote(process.ready_log or '')} {logs} 2>/dev/null"
    # the process action's pidfile is JSON: {"pid": N, "start": ...}
    pid = f"pid=$(sed -n 's/.*\"pid\": *\\([0-9][0-9]*\\).*/\\1/p' {quote(pidfile)})"
    return ShellScript(
        f'{pid}; [ -n "$pid" ] || exit 3; '
        f"i=0; while [ $i -lt {rounds} ]; do {test} && exit 0; "
        f'kill -0 "$pid" 2>/dev/null || exit 3; '
        "sleep 0.05; i=$((i+1)); done; exit 2"
    )


def variables(
    spec: ExperimentFile,
    options: Any,
    roles: Mapping[str, list[Host]],
    trial: TrialSpec,
    project_dir: Path,
) -> dict[str, Any]:
    """What a trial's commands, conditions and tasks read."""
    fixed = {k: getattr(options, k) for k in spec.params if k not in spec.swept}
    return {
        **fixed,
        **trial.params,
        "duration": options.duration,
        "trial": trial.seq,
        "seq": trial.seq,
        "labctl_workloads": str(project_dir / "workloads"),  # labctl's C workloads' sources
        "hosts": {
            role: {"name": hs[0].name, "address": hs[0].address, "all": [h.name for h in hs]}
            for role, hs in roles.items()
        },
    }


def role_playbook(path: str, plays: Mapping[str, LineList], roles: Mapping[str, list[Host]]) -> Any:
    """A role's tasks as a play on its hosts, checked as a playbook's are (file and line)."""
    from labctl.play.load import playbook_of

    raws = []
    for role, tasks in plays.items():
        raw = LineMap(
            {"hosts": ",".join(h.name for h in roles[role]), "gather_facts": False, "tasks": tasks}
        )
        raw.line = tasks.line
        raw.key_lines = {"tasks": tasks.line}
        raws.append(raw)
    return playbook_of(path, raws)


def check_plays(
    spec: ExperimentFile, inventory: Inventory, roles: Mapping[str, list[Host]], variables: Any
) -> None:
    """The setup and teardown tasks checked whole (modules, arguments, every variable they
    read) before any host is touched."""
    from labctl.play.run import RunOptions, prepare

    for plays in (spec.setup, spec.teardown):
        if plays:
            prepare(
                role_playbook(spec.path, plays, roles), inventory, RunOptions(extra_vars=variables)
            )


class FileExperiment(Experiment):
    file: ClassVar[ExperimentFile]

    def role_hosts(self, inventory: Inventory) -> dict[str, list[Host]]:
        out: dict[str, list[Host]] = {}
        for role in self.file.roles:
            found = inventory.select(role.pattern)
            if role.index is not None:
                if role.index >= len(found):
                    raise InputError(
                        f"{self.file.path}: role {role.name}: {role.pattern}[{role.index}]: "
                        f"the pattern has {len(found)} host(s)"
                    )
                found = [found[role.index]]
            if not found:
                raise InputError(f"{self.file.path}: role {role.name}: no host in {role.pattern!r}")
            out[role.name] = found
        return out

    def hosts(self, inventory: Inventory, server: str | None, clients: str) -> list[Host]:
        seen: dict[str, Host] = {}
        for hosts in self.role_hosts(inventory).values():
            seen.update((h.name, h) for h in hosts)
        return list(seen.values())

    def preflight(self, inventory: Inventory, options: Any) -> None:
        """The setup and teardown tasks and every variable they read, before any host."""
        roles = self.role_hosts(inventory)
        first = TrialSpec(0, {k: getattr(options, k)[0] for k in self.file.swept})
        values = variables(self.file, options, roles, first, PROJECT_DIR)
        check_plays(self.file, inventory, roles, values)

    def run(self, ctx: RunContext, options: Any) -> SweepOutcome:
        from labctl.facts.host import gather_all
        from labctl.remote import Connections

        self.preflight(ctx.inventory, options)
        roles = self.role_hosts(ctx.inventory)
        hosts = self.hosts(ctx.inventory, None, "")
        role_of = {h.name: r for r, hs in reversed(list(roles.items())) for h in hs}
        with Connections(hosts) as conns:
            facts = {name: f.to_dict() for name, f in gather_all(conns).items()}
            params = {
                **run_params(options),
                "file": Path(self.file.path).name,
                "file_sha256": hashlib.sha256(self.file.text.encode()).hexdigest(),
                "file_text": self.file.text,
            }
            run_id, seed = ctx.start_run(
                self.spec.name, params, {h.name: (role_of[h.name], facts[h.name]) for h in hosts}
            )
            sweep = FileSweep(self.file, ctx, conns, roles, options, run_id)
            matrix = {k: getattr(options, k) for k in self.file.swept}
            trials = plan_trials(matrix, options.repeat, seed, warmup=options.warmup)
            return run_sweep(
                ctx.store, run_id, trials, sweep.run_trial, sweep.cleanup, on_trial=ctx.on_trial
            )


class FileSweep:
    def __init__(
        self,
        spec: ExperimentFile,
        ctx: RunContext,
        conns: Connections,
        roles: Mapping[str, list[Host]],
        options: Any,
        run_id: int,
    ) -> None:
        self.spec, self.ctx, self.conns, self.roles = spec, ctx, conns, roles
        self.options, self.run_id = options, run_id
        self.started: list[tuple[str, str]] = []  # (host, process name) to stop
        self._books: dict[str, Any] = {}  # setup/teardown -> its playbook

    def variables(self, trial: TrialSpec) -> dict[str, Any]:
        return variables(self.spec, self.options, self.roles, trial, self.ctx.project_dir)

    def _play(self, key: str, plays: Mapping[str, LineList], variables: Mapping[str, Any]) -> None:
        """Tasks per role, as a playbook run; what they change goes into the store's undo. A
        task that fails: ExperimentError (the trial is skipped); a host lost: HostUnreachable."""
        if not plays:
            return
        from labctl.play.outcome import QuietReporter
        from labctl.play.run import RunOptions, run_playbook

        if key not in self._books:  # read once per run, not once per trial
            self._books[key] = role_playbook(self.spec.path, plays, self.roles)
        run = run_playbook(
            self._books[key],
            self.ctx.inventory,
            RunOptions(extra_vars=dict(variables)),
            QuietReporter(),
        )
        for host, undo in run.undo_by_host().items():
            self.ctx.store.add_undo(self.run_id, host, [u.to_dict() for u in undo])
        lost = [r for r in run.results if r.status == "unreachable"]
        if lost:
            raise HostUnreachable(f"{key}: {lost[0].host}: {lost[0].msg}")
        failed = [r for r in run.results if r.status == "failed" and not r.ignored]
        if failed:
            first = failed[0]
            raise ExperimentError(f"{key}: {first.host}: task {first.task!r}: {first.msg}")

    def _render(self, words: Sequence[str], variables: Mapping[str, Any], what: str) -> list[str]:
        try:
            return [str(render_value(w, variables)) for w in words]
        except TemplateError as exc:
            raise ExperimentError(f"{self.spec.path}: {what}: {exc}") from exc

    def _start(self, process: Process, variables: Mapping[str, Any]) -> None:
        argv = self._render(process.start, variables, f"processes.{process.role}.start")
        port = str(render_value(process.ready_port, variables)) if process.ready_port else None
        from labctl.experiments.base import RUN_DIR

        for host in self.roles[process.role]:
            name = f"{self.spec.name}-{process.role}-{host.name}-{self.run_id}"
            out = f"{RUN_DIR}/{name}"
            conn = self.conns[host.name]
            result = background(
                conn, name, "restarted", argv=argv, out=out, startup_wait=STARTUP_WAIT
            )
            if result.failed:
                raise ExperimentError(f"{host.name}: {process.role} did not start: {result.msg}")
            self.started.append((host.name, name))
            if port is None and process.ready_log is None:
                continue
            pidfile = f"{RUN_DIR}/{name}.pid"
            res = conn.run(
                ready_script(process, port, pidfile, out), timeout=process.ready_timeout + 10
            )
            if not res.ok:
                what = f"port {port}" if port else f"a log line matching {process.ready_log!r}"
                why = (
                    "it exited"
                    if res.exit_status == 3
                    else f"not within {process.ready_timeout:g} s"
                )
                raise ExperimentError(f"{host.name}: {process.role} not ready ({what}): {why}")

    def _stop_all(self) -> list[str]:
        problems = []
        for host, name in reversed(self.started):
            try:
                result = background(self.conns[host], name, "stopped")
                if result.failed:
                    problems.append(f"{host}: stopping {name}: {result.msg}")
            except LabctlError as exc:
                problems.append(f"{host}: stopping {name}: {exc}")
        self.started.clear()
        return problems

    def _measure(
        self, process: Process, variables: Mapping[str, Any]
    ) -> list[HostOutcome[CommandResult]]:
        """The role's measure command on each of its hosts at once."""
        argv = self._render(process.measure, variables, f"processes.{process.role}.measure")
        timeout = self.options.duration + MEASURE_GRACE
        names = [h.name for h in self.roles[process.role]]
        return list(self.conns.run_on_hosts(lambda c: c.run(argv, timeout=timeout), names=names))

    def run_trial(self, trial: TrialSpec) -> TrialRecord:
        variables = self.variables(trial)
        started = time.time()
        params = {k: v for k, v in variables.items() if k in self.spec.params}
        try:
            self._play("setup", self.spec.setup, variables)
        except ExperimentError as exc:  # e.g. a qdisc kind this kernel lacks: this trial only
            return trial_record(
                trial, self.spec.name, params, started, False, f"skipped: {exc}", {}, {}, ()
            )
        outputs: list[tuple[str, str, str, str]] = []
        texts: dict[str, list[str]] = {}  # role -> each host's measure output
        errors: list[str] = []
        before = self._counters(variables, errors)
        try:
            for process in self.spec.processes:
                if process.start:
                    self._start(process, variables)
            for process in self.spec.processes:
                if not process.measure:
                    continue
                for outcome in self._measure(process, variables):
                    res = outcome.value
                    if outcome.error is not None or res is None:
                        errors.append(f"{outcome.host}: {outcome.error}")
                        continue
                    outputs.append((outcome.host, process.role, "stdout", res.stdout))
                    if res.stderr:
                        outputs.append((outcome.host, process.role, "stderr", res.stderr))
                    if not res.ok:
                        why = f"exited {res.exit_status}: {res.first_error_line()}"
                        errors.append(f"{outcome.host}: {process.role} {why}")
                    texts.setdefault(process.role, []).append(res.stdout)
            after = self._counters(variables, errors)
        finally:
            problems = self._stop_all()
        metrics: dict[str, float] = {}
        for read in self.spec.metrics:
            try:
                if read.counter is not None:
                    values = [
                        (after[read.name][h] - before[read.name][h]) * read.scale
                        for h in before.get(read.name, {})
                        if h in after.get(read.name, {})
                    ]
                else:
                    values = [read_metric(read, text) for text in texts.get(read.role, [""])]
                metrics[read.name] = combine(read.combine, values, read.name)
            except ValueError as exc:
                errors.append(str(exc))
        valid, reason = not errors, "; ".join(errors)
        if valid:
            for rule in self.spec.validity:
                try:
                    ok = evaluate(rule.condition, {**variables, **metrics})
                except TemplateError as exc:
                    ok, rule_reason = False, f"{rule.condition}: {exc}"
                else:
                    rule_reason = rule.reason
                if not ok:
                    valid, reason = False, rule_reason
                    break
        if problems:
            raise ExperimentError("; ".join(problems))
        return trial_record(
            trial, self.spec.name, params, started, valid, reason, metrics, {}, tuple(outputs)
        )

    def _counters(
        self, variables: Mapping[str, Any], errors: list[str]
    ) -> dict[str, dict[str, float]]:
        """metric -> host -> its counter now, for every counter metric (read on all hosts at
        once); a counter that cannot be read is an error of the trial."""
        reads = [r for r in self.spec.metrics if r.counter is not None]
        if not reads:
            return {}
        names = sorted({h.name for r in reads for h in self.roles[r.role]})

        def read_all(conn: HostConnection) -> dict[str, float]:
            mine = [r for r in reads if conn.host.name in {h.name for h in self.roles[r.role]}]
            return {r.name: read_counter(conn, r, variables) for r in mine}

        out: dict[str, dict[str, float]] = {}
        for outcome in self.conns.run_on_hosts(read_all, names=names):
            if outcome.error is not None or outcome.value is None:
                errors.append(f"{outcome.host}: reading counters: {outcome.error}")
                continue
            for name, value in outcome.value.items():
                out.setdefault(name, {})[outcome.host] = value
        return out

    def cleanup(self) -> None:
        """No process left running; the teardown tasks; what setup changed put back."""
        problems = self._stop_all()
        try:
            if self.spec.teardown:
                self._play("teardown", self.spec.teardown, self.variables(TrialSpec(0, {})))
        except LabctlError as exc:
            problems.append(str(exc))
        restored = restore_run(self.ctx.store, self.conns, self.run_id)
        problems += [f"{p.target}: {p.result.msg}" for p in restored.failed]
        problems += [f"{h}: {why}" for h, why in restored.unreachable.items()]
        if problems:
            raise ExperimentError(
                f"putting back what run {self.run_id} changed: {'; '.join(problems)} "
                f"(labctl restore {self.run_id} tries again)"
            )
