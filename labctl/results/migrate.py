"""The store's schema brought to what this labctl writes, in place, by Alembic.

A store already at the newest revision costs one query and never imports Alembic. One that
is not is migrated in one transaction that holds the store's write lock (sqlite) or an
advisory lock (PostgreSQL), so two labctl starting together on a new store do not both
create it. A store written before migrations were kept (tables, no `alembic_version`) starts
from the beginning: revision 0001 adds only what it lacks.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from labctl.errors import InputError, LabctlError

HEAD = "0002"  # the newest revision in migrations/versions (tests check they agree)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_LOCK_KEY = 0x1AB_C71  # pg_advisory_xact_lock: one migration of a shared store at a time


class SchemaError(LabctlError):
    """A store this labctl cannot use: written by a newer one, or not labctl's."""


def version(conn: Connection) -> str | None:
    """The store's revision; "legacy" for a store made before revisions; None when empty."""
    inspector = sa.inspect(conn)
    if inspector.has_table("alembic_version"):
        row = conn.execute(sa.text("SELECT version_num FROM alembic_version")).first()
        return str(row[0]) if row else None
    return "legacy" if inspector.has_table("runs") else None


def ensure_schema(engine: Engine, where: str, create: bool) -> None:
    with engine.connect() as conn:
        found = version(conn)
        conn.rollback()
    if found == HEAD:
        return
    if found is None and not create:
        raise InputError(
            f"{where}: no results store here (run an experiment first, or give --store)"
        )
    with engine.connect().execution_options(labctl_write=True) as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        found = version(conn)  # again, under the lock: another labctl may have done it
        if found == HEAD:
            return
        _upgrade(conn, found, where)


def _upgrade(conn: Connection, found: str | None, where: str) -> None:
    from alembic.config import Config
    from alembic.runtime.environment import EnvironmentContext
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    script = ScriptDirectory.from_config(config)
    if found not in (None, "legacy") and found not in {r.revision for r in script.walk_revisions()}:
        raise SchemaError(
            f"{where}: written by a newer labctl (schema revision {found}; this labctl knows "
            f"up to {HEAD}): upgrade labctl"
        )

    def upgrade(rev: object, _context: object) -> object:
        return script._upgrade_revs("head", rev)  # type: ignore[arg-type]

    with EnvironmentContext(config, script, fn=upgrade, destination_rev="head") as env:
        env.configure(connection=conn)
        env.run_migrations()
