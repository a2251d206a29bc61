"""Where a results store lives and how to talk to it: a sqlite file (the embedded default)
or a PostgreSQL database a team shares (docs/results.md).

`--store` (or `store` in labctl.toml, `LABCTL_STORE`) takes a path or a URL:
`results/labctl.db`, `sqlite:////abs/path.db`, `postgresql://user@host:5432/labctl`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url

from labctl.errors import InputError
from labctl.paths import is_url

SQLITE_BUSY_TIMEOUT = 30.0  # seconds a writer waits for another one's transaction
_POSTGRES_DRIVER = "psycopg"  # psycopg 3


@dataclass(frozen=True)
class StoreLocation:
    url: URL
    path: Path | None  # the sqlite file; None for a server

    @property
    def backend(self) -> str:
        return "sqlite" if self.path is not None else "postgresql"

    def __str__(self) -> str:
        """What messages show: the file, or the URL without its password."""
        if self.path is not None:
            return str(self.path)
        return self.url.render_as_string(hide_password=True).replace(f"+{_POSTGRES_DRIVER}", "", 1)


def locate(given: str | Path) -> StoreLocation:
    """A path or a URL, checked: one line naming what is wrong with it."""
    text = str(given).strip()
    if not text:
        raise InputError("--store: empty (a sqlite file, or postgresql://user@host/db)")
    if not is_url(text):
        path = Path(text).expanduser()
        return StoreLocation(make_url("sqlite://").set(database=str(path)), path)
    try:
        url = make_url(text)
    except sa.exc.ArgumentError as exc:
        raise InputError(f"--store {text}: not a store URL ({exc})") from exc
    backend, _, driver = url.drivername.partition("+")
    if backend == "sqlite":
        if not url.database or url.database == ":memory:":
            raise InputError(f"--store {text}: a sqlite URL needs a file (sqlite:////path/x.db)")
        return StoreLocation(url, Path(url.database).expanduser())
    if backend in ("postgresql", "postgres"):
        if driver and driver != _POSTGRES_DRIVER:
            raise InputError(
                f"--store {text}: labctl talks to PostgreSQL with psycopg 3 "
                f"(postgresql://... or postgresql+psycopg://...), not {driver}"
            )
        if not url.database:
            raise InputError(f"--store {text}: name the database (postgresql://user@host/labctl)")
        return StoreLocation(url.set(drivername=f"postgresql+{_POSTGRES_DRIVER}"), None)
    raise InputError(
        f"--store {text}: unknown kind of store {backend!r} "
        "(a sqlite file or URL, or postgresql://user@host/db)"
    )


def _sqlite_engine(path: Path) -> Engine:
    engine = sa.create_engine(
        make_url("sqlite://").set(database=str(path)),
        connect_args={
            "timeout": SQLITE_BUSY_TIMEOUT,
            "isolation_level": None,  # labctl says when a transaction begins (below)
            "check_same_thread": False,  # the heartbeat thread writes through the pool too
        },
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi: Any, _record: Any) -> None:
        dbapi.execute("PRAGMA journal_mode=WAL")
        dbapi.execute("PRAGMA foreign_keys=ON")

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A writer takes the write lock when it begins, so two writers queue instead of
        # one failing at its first write; a reader reads a snapshot and blocks nobody.
        write = conn.get_execution_options().get("labctl_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def make_engine(where: StoreLocation) -> Engine:
    if where.path is not None:
        return _sqlite_engine(where.path)
    return sa.create_engine(where.url, pool_size=2, max_overflow=2, pool_pre_ping=True)


def db_now(dialect: str) -> sa.ColumnElement[float]:
    """The database's clock in Unix seconds: one clock for every controller writing a
    shared store, whatever their own clocks say."""
    if dialect == "postgresql":
        return sa.cast(sa.func.extract("epoch", sa.func.now()), sa.Double)
    return sa.cast((sa.func.julianday("now") - 2440587.5) * 86400.0, sa.Double)


def insert_ignoring(table: sa.Table, dialect: str) -> Any:
    """INSERT that leaves an existing row (same primary key) alone."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing()
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table).on_conflict_do_nothing()


def insert_replacing(table: sa.Table, dialect: str, keys: tuple[str, ...]) -> Any:
    """INSERT that overwrites the row with the same `keys` (its other columns)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt: Any = pg_insert(table)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(table)
    rest = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys}
    return stmt.on_conflict_do_update(index_elements=list(keys), set_=rest)
