"""What a killed run leaves on its hosts, found and removed by the next run.

A controller killed by SIGKILL runs no cleanup: its servers and clients go on (each under a
host-side `timeout`, but a long one) with their pidfiles in the experiments' run directory.
The experiments have that directory to themselves (the `process` action's default run_dir is
another), and under the lab lock no other run can own a process there, so the next run stops
every one of them (by pidfile PID, its start time checked: a reused PID is never signalled)
and removes the files the dead run left.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from labctl.actions.base import TaskContext, run_action
from labctl.actions.process import ProcessAction
from labctl.errors import LabctlError
from labctl.experiments.base import RUN_DIR
from labctl.remote import Connections, HostConnection, ShellScript
from labctl.results.store import ResultsStore


@dataclass(frozen=True)
class Leftovers:
    host: str
    stopped: tuple[str, ...]  # process names stopped (their pidfile named a live process)

    def describe(self) -> str:
        return f"{self.host}: stopped {', '.join(self.stopped)}, left running by an earlier run"


def clean_host(conn: HostConnection, run_dir: str = RUN_DIR) -> Leftovers:
    d = shlex.quote(run_dir)
    found = conn.run(ShellScript(f"[ -d {d} ] || exit 0; cd {d} && ls -1A"), timeout=30)
    if not found.ok:
        raise LabctlError(f"{conn.host.name}: cannot list {run_dir}: {found.first_error_line()}")
    listing = found.stdout.split()
    names = sorted(f.removesuffix(".pid") for f in listing if f.endswith(".pid"))
    stopped = []
    ctx = TaskContext(conn, {}, Path("."))
    for name in names:
        result = run_action(
            ProcessAction(), ctx, {"name": name, "state": "stopped", "run_dir": run_dir}
        )
        if result.failed:
            raise LabctlError(f"{conn.host.name}: stopping leftover {name}: {result.msg}")
        if any(c.startswith("stop ") for c in result.changes):
            stopped.append(name)
    others = [f for f in listing if not f.endswith(".pid")]
    if others:
        conn.run(
            ShellScript(f"cd {shlex.quote(run_dir)} && rm -f -- {shlex.join(others)}"), timeout=60
        )
    return Leftovers(conn.host.name, tuple(stopped))


def clean_leftovers(conns: Connections, hosts: list[str]) -> list[Leftovers]:
    """Clean every host; errors are raised (a host we cannot clean is not fit to measure)."""
    found = []
    for outcome in conns.run_on_hosts(clean_host, names=hosts):
        if outcome.error is not None:
            raise outcome.error
        if outcome.value and outcome.value.stopped:  # old output files go without a word
            found.append(outcome.value)
    return found


def mark_crashed(store: ResultsStore) -> list[str]:
    """Runs a labctl killed outright left `running`, marked crashed (their finished trials
    stay): one line each."""
    return [
        f"run {run_id} was left running by a labctl that died: crashed"
        for run_id in store.mark_crashed_runs()
    ]
