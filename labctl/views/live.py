"""A live display kept below the printed lines while long work goes on: a sweep's bar, the
task running on which hosts, a VM booting. Only on a real terminal: elsewhere (a pipe, a
file, cron, the tests) it draws nothing at all, and the printed lines are the whole record
(docs/progress.md).
"""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console, RenderableType
from rich.live import Live


def live_wanted(console: Console) -> bool:
    """True when a live display may draw on `console`.

    rich's `is_terminal` is also true when FORCE_COLOR is set (CI services set it to get
    colour in their logs): a live display there would write its cursor movements into the
    log. So the file must really be a terminal, unless the console was made with
    `force_terminal=True` on purpose (what the tests do to see the display)."""
    if not console.is_terminal or console.is_dumb_terminal:
        return False
    if getattr(console, "_force_terminal", None):  # rich keeps the argument under this name
        return True
    isatty = getattr(console.file, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed file
        return False


def clock(seconds: float) -> str:
    """A duration as people read it on a progress line: `35 s`, `2:05`, `1:02:05`."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s"
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class LiveArea:
    """What `render` gives, redrawn below the printed lines four times a second (so its
    clocks tick) from `start` to `stop`; nothing on a console that is not a terminal.
    Lines printed meanwhile on the same console appear above it."""

    def __init__(self, console: Console, render: Callable[[], RenderableType]) -> None:
        self.console = console
        self.enabled = live_wanted(console)
        self._render = render
        self._live: Live | None = None

    @property
    def running(self) -> bool:
        return self._live is not None

    def start(self) -> None:
        if not self.enabled or self._live is not None:
            return
        self._live = Live(
            get_renderable=self._render,
            console=self.console,
            refresh_per_second=4,
            transient=True,  # gone when the work is: the printed lines are the record
        )
        self._live.start(refresh=True)

    def refresh(self) -> None:
        if self._live is not None:
            self._live.refresh()

    def stop(self) -> None:
        live, self._live = self._live, None
        if live is not None:
            live.stop()

    def __enter__(self) -> LiveArea:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
