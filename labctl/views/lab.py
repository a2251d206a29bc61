"""A lab's state in the terminal: `labctl lab.status`, what `lab.up` says it did, and while
it works, on a terminal, what the image build and each VM's boot are doing and for how long."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from labctl.labs.steps import LabStep
from labctl.views.live import LiveArea, clock


def netns_status_table(name: str, subnet: str, bridge: str, rows: Sequence[Any]) -> Table:
    table = Table(title=f"lab {name} ({subnet}, bridge {bridge})")
    for col in ("host", "address", "namespace", "sshd pid", "ssh"):
        table.add_column(col)
    for r in rows:
        ssh = "[green]open[/]" if r.ssh_port_open else "[red]down[/]"
        ns = r.netns if r.netns_exists else f"[red]{r.netns} (missing)[/]"
        table.add_row(r.name, r.address, ns, str(r.sshd_pid or "-"), ssh)
    return table


def vm_status_table(name: str, link_port: int, rows: Sequence[Any]) -> Table:
    accel = rows[0].accel if rows and rows[0].accel else "-"
    table = Table(title=f"VM lab {name} (accel {accel}, link 127.0.0.1:{link_port})")
    for col in ("host", "ssh", "qemu pid", "RSS", "kernel"):
        table.add_column(col)
    for v in rows:
        ssh = f"127.0.0.1:{v.ssh_port} " + ("[green]open[/]" if v.ssh_open else "[red]down[/]")
        pid = str(v.qemu_pid or "-") + ("" if v.running or not v.qemu_pid else " (gone)")
        rss = f"{v.rss_mib:.0f} MiB" if v.rss_mib else "-"
        table.add_row(v.name, ssh, pid, rss, v.kernel_release or "-")
    return table


def changes_line(changes: Sequence[Any]) -> str:
    """ "2 netns, 2 veth, 1 bridge": what a lab change report made or removed, by kind."""
    kinds = Counter(ch.what.split()[0] for ch in changes)
    return ", ".join(f"{count} {kind}" for kind, count in kinds.items())


@dataclass
class _Subject:
    text: str
    since: float  # its first step
    ended: float | None = None


class LabProgress:
    """Told each `LabStep` of `lab.up` (the image, each VM), it keeps one live line per
    subject: a spinner, what it is doing, its time so far (stopped once it is done). Nothing
    on a console that is not a terminal: the lab's progress lines are the record there."""

    def __init__(self, console: Console, now: Callable[[], float] = time.monotonic) -> None:
        self.console = console
        self._now = now
        self._subjects: dict[str, _Subject] = {}
        self._spinners: dict[str, Spinner] = {}
        self._lock = threading.Lock()
        self.live = LiveArea(console, self.render)

    def __call__(self, step: LabStep) -> None:
        now = self._now()
        with self._lock:
            found = self._subjects.get(step.subject)
            since = found.since if found is not None else now
            self._subjects[step.subject] = _Subject(step.text, since, now if step.done else None)
        self.live.start()

    def lines(self) -> list[tuple[str, str, bool]]:
        """(subject, `srv1: booting (waiting for sshd) 23 s`, done), in order of arrival."""
        now = self._now()
        with self._lock:
            subjects = list(self._subjects.items())
        return [
            (name, f"{name}: {s.text} {clock((s.ended or now) - s.since)}", s.ended is not None)
            for name, s in subjects
        ]

    def render(self) -> RenderableType:
        rows = []
        for name, text, done in self.lines():
            spinner = self._spinners.setdefault(name, Spinner("dots"))
            frame = spinner.render(self._now())
            mark: Text | str = (
                Text("✓", "green") if done else frame if isinstance(frame, Text) else ""
            )
            line = Text.assemble(mark, " ", text)
            line.no_wrap, line.overflow = True, "ellipsis"
            rows.append(line)
        return Group(*rows)

    def close(self) -> None:
        self.live.stop()

    def __enter__(self) -> LabProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
