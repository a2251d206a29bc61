"""Is a run's labctl still there? A running run beats while its labctl lives; another labctl
judges one that stopped: on this machine by its process, from another machine (a shared
store) by its silence."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from labctl.errors import LabctlError
from labctl.procs import controller_alive
from labctl.results.backend import db_now

HEARTBEAT_EVERY = 30.0  # seconds between a running run's signs of life
SILENT_AFTER = 300.0  # a run on another machine silent this long is judged crashed


def why_dead(controller: str, silent: bool) -> str | None:
    """Why the labctl that wrote `controller` is gone, or None while it may be alive.
    `silent`: its run gave no sign of life for SILENT_AFTER."""
    alive = controller_alive(controller)
    if alive is False:
        return "its labctl died mid-run"
    if alive is None and silent:
        host = controller.split(":", 1)[0]
        return f"its labctl on {host} gave no sign of life for {SILENT_AFTER:.0f} s"
    return None


def find_dead(db: Connection, table: sa.Table, dialect: str) -> list[tuple[int, str]]:
    """(id, why) of the rows of `table` (runs, nightly) still 'running' whose labctl is gone."""
    silent_since = db_now(dialect) - SILENT_AFTER
    rows = db.execute(
        sa.select(
            table.c.id,
            table.c.controller,
            sa.func.coalesce(table.c.heartbeat, table.c.started) < silent_since,
        ).where(table.c.status == "running", table.c.controller.is_not(None))
    ).all()
    judged = ((row_id, why_dead(controller, bool(silent))) for row_id, controller, silent in rows)
    return [(row_id, why) for row_id, why in judged if why is not None]


class Heartbeat:
    """One thread per store beating for its running runs and nightlies, until closed."""

    def __init__(self, beat: Callable[[Mapping[str, Sequence[int]]], None]) -> None:
        self._beat = beat
        self._live: dict[str, set[int]] = {"runs": set(), "nightly": set()}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, table: str, row_id: int) -> None:
        with self._lock:
            self._live[table].add(row_id)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="labctl-store-heartbeat", daemon=True
                )
                self._thread.start()

    def remove(self, table: str, row_id: int) -> None:
        with self._lock:
            self._live[table].discard(row_id)

    def _loop(self) -> None:
        while not self._stop.wait(HEARTBEAT_EVERY):
            with self._lock:
                live = {name: sorted(ids) for name, ids in self._live.items()}
            try:
                self._beat(live)
            except LabctlError:  # the next beat tries again; a dead store fails the run itself
                continue

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
