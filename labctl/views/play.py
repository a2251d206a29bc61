"""How a playbook run looks: a line per task and host as Ansible prints them; while a task
runs, on a terminal, a live line of the hosts it still runs on, each with its current step and
time (views/running.py); a recap table per host at the end. (Every result as JSON, with no
rich: views/play_json.py.)"""

from __future__ import annotations

import threading
import time

from rich import box
from rich.console import Console, RenderableType
from rich.markup import escape
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from labctl.play.load import Play
from labctl.play.run import PlaybookRun, TaskHostResult
from labctl.views.live import LiveArea
from labctl.views.running import RunningTask

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
        self._lock = threading.Lock()  # one host's lines stay together
        # The live line reads `_running` from its own thread and never takes `_lock`: a print
        # under `_lock` waits for the live display's lock, which its reader holds.
        self._running: RunningTask | None = None
        self._spinner = Spinner("dots")
        self.live = LiveArea(self.console, self._live_line)

    def _rule(self, text: str) -> None:
        self.console.print(f"\n[bold]{escape(text)}[/] " + "*" * max(3, 70 - len(text)))

    def play_start(self, play: Play, hosts: list[str]) -> None:
        mode = " (check mode)" if self.check else ""
        self._rule(f"PLAY [{play.name}]{mode}")
        if not hosts:
            self.console.print("skipping: no hosts matched")

    def task_start(self, play: Play, task_name: str, hosts: list[str]) -> None:
        self._rule(f"TASK [{task_name}]")
        self._running = RunningTask(task_name, list(hosts), time.monotonic())
        self.live.start()

    def _live_line(self) -> RenderableType:
        running = self._running
        text = running.line(time.monotonic()) if running is not None else ""
        frame = self._spinner.render(time.monotonic())
        line = Text.assemble(frame if isinstance(frame, Text) else "", " ", text)
        line.no_wrap, line.overflow = True, "ellipsis"  # one line, however many hosts
        return line

    def host_progress(self, host: str, text: str) -> None:
        """A long step's news: a line (the record), and the live line says it until the next."""
        running = self._running
        now = time.monotonic()
        if running is not None:
            running.step(host, text, now)
        elapsed = now - running.started if running is not None else 0.0
        with self._lock:
            self.console.print(f"[dim]  {escape(f'[{host}]')} {escape(text)} ({elapsed:.0f} s)[/]")

    def host_finished(self, host: str) -> None:
        running = self._running
        if running is not None:
            running.done(host)

    def host_done(self, r: TaskHostResult) -> None:
        with self._lock:
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

    def task_done(self) -> None:
        self.live.stop()
        self._running = None

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
