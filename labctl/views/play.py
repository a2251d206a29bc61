"""How a playbook run looks: a line per task and host as Ansible prints them, a spinner while
a task runs long, a recap table per host at the end; or every result as JSON."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.status import Status
from rich.table import Table

from labctl.play.load import Play
from labctl.play.run import PlaybookRun, TaskHostResult

_STYLE = {
    "ok": "green",
    "changed": "yellow",
    "failed": "red",
    "skipped": "cyan",
    "unreachable": "red",
}


class TerminalReporter:
    def __init__(
        self, console: Console | None = None, show_diff: bool = False, check: bool = False
    ) -> None:
        self.console = console or Console(highlight=False)
        self.show_diff = show_diff
        self.check = check
        self._lock = threading.Lock()
        self._status: Status | None = None
        self._waiting: list[str] = []
        self._task = ""
        self._started = 0.0

    def _rule(self, text: str) -> None:
        self.console.print(f"\n[bold]{escape(text)}[/] " + "*" * max(3, 70 - len(text)))

    def play_start(self, play: Play, hosts: list[str]) -> None:
        mode = " (check mode)" if self.check else ""
        self._rule(f"PLAY [{play.name}]{mode}")
        if not hosts:
            self.console.print("skipping: no hosts matched")

    def task_start(self, play: Play, task_name: str, hosts: list[str]) -> None:
        self._rule(f"TASK [{task_name}]")
        self._waiting, self._task, self._started = list(hosts), task_name, time.monotonic()
        if self.console.is_terminal:
            self._status = self.console.status(self._status_text())
            self._status.start()

    def _status_text(self) -> str:
        return f"{escape(self._task)}: waiting for {', '.join(self._waiting)}"

    def host_progress(self, host: str, text: str) -> None:
        """A long step's news: a line on the terminal, and the spinner says it too."""
        with self._lock:
            elapsed = time.monotonic() - self._started
            self.console.print(f"[dim]  {escape(f'[{host}]')} {escape(text)} ({elapsed:.0f} s)[/]")
            if self._status is not None:
                self._status.update(f"{self._status_text()}: {escape(text)} ({elapsed:.0f} s)")

    def host_done(self, r: TaskHostResult) -> None:
        with self._lock:
            if r.host in self._waiting:
                self._waiting.remove(r.host)
            status = (
                "failed (ignored)" if r.ignored else "failed (rescued)" if r.rescued else r.status
            )
            host = f"[{r.host} -> {r.delegated}]" if r.delegated else f"[{r.host}]"
            line = f"[{_STYLE[r.status]}]{status}: {escape(host)}[/]"
            detail = (
                r.msg
                if r.status in ("failed", "unreachable", "skipped")
                else "; ".join(r.changes) or r.msg  # an ok task may say why it did nothing
            )
            first, *more = detail.splitlines() or [""]
            if first:
                line += f" {escape(first)}"
            if r.duration >= 5:
                line += f" [dim]({r.duration:.1f} s)[/]"
            self.console.print(line)
            for extra in more:  # a failure's reasons, then where its whole output is
                self.console.print(f"    {escape(extra)}")
            if self.show_diff and r.diff:
                self.console.print(escape(r.diff.rstrip("\n")), style="dim")
            if self._status is not None:
                elapsed = time.monotonic() - self._started
                self._status.update(f"{self._status_text()} ({elapsed:.0f} s)")

    def task_done(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def recap(self, run: PlaybookRun) -> None:
        self._rule("PLAY RECAP")
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        cols = ("host", "ok", "changed", "unreachable", "failed", "skipped", "rescued", "ignored")
        for col in cols:
            table.add_column(col, justify="left" if col == "host" else "right")
        for host, r in run.recap.items():
            style = "red" if r.failed or r.unreachable else "yellow" if r.changed else "green"
            table.add_row(
                f"[{style}]{escape(host)}[/]",
                str(r.ok),
                str(r.changed),
                str(r.unreachable),
                str(r.failed),
                str(r.skipped),
                str(r.rescued),
                str(r.ignored),
            )
        self.console.print(table)


def run_as_json(run: PlaybookRun) -> str:
    doc: dict[str, Any] = {
        "results": [dataclasses.asdict(r) for r in run.results],
        "recap": {h: dataclasses.asdict(r) for h, r in run.recap.items()},
        "exit_status": run.exit_status,
    }
    return json.dumps(doc, indent=2, default=str)
