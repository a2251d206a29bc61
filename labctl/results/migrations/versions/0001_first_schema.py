"""The store as labctl wrote it before migrations were kept.

An empty database gets these tables. A store of that time (sqlite, its tables made one by
one as labctl grew, no `alembic_version`) gets the tables and columns it lacks and keeps
what it has. Frozen: later changes are later revisions.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

LEGACY_COLUMNS = ("controller", "fingerprint", "label")  # runs got these one by one


def _tables() -> list[tuple[str, list[Any]]]:
    return [
        (
            "runs",
            [
                sa.Column("id", sa.Integer, primary_key=True),
                sa.Column("experiment", sa.Text, nullable=False),
                sa.Column("started", sa.Double, nullable=False),
                sa.Column("finished", sa.Double),
                sa.Column("status", sa.Text, nullable=False),
                sa.Column("labctl_version", sa.Text, nullable=False),
                sa.Column("params", sa.Text, nullable=False),
                sa.Column("inventory", sa.Text, nullable=False),
                sa.Column("seed", sa.BigInteger),
                sa.Column("note", sa.Text),
                sa.Column("controller", sa.Text),
                sa.Column("fingerprint", sa.Text),
                sa.Column("label", sa.Text),
            ],
        ),
        (
            "run_hosts",
            [
                sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), primary_key=True),
                sa.Column("host", sa.Text, primary_key=True),
                sa.Column("role", sa.Text, nullable=False),
                sa.Column("facts", sa.Text, nullable=False),
            ],
        ),
        (
            "trials",
            [
                sa.Column("id", sa.Integer, primary_key=True),
                sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False),
                sa.Column("seq", sa.Integer, nullable=False),
                sa.Column("kind", sa.Text, nullable=False),
                sa.Column("warmup", sa.Integer, nullable=False),
                sa.Column("params", sa.Text, nullable=False),
                sa.Column("started", sa.Double, nullable=False),
                sa.Column("duration", sa.Double, nullable=False),
                sa.Column("valid", sa.Integer, nullable=False),
                sa.Column("reason", sa.Text, nullable=False),
                sa.Column("state", sa.Text, nullable=False),
            ],
        ),
        (
            "metrics",
            [
                sa.Column("trial_id", sa.Integer, sa.ForeignKey("trials.id"), primary_key=True),
                sa.Column("name", sa.Text, primary_key=True),
                sa.Column("value", sa.Double, nullable=False),
            ],
        ),
        (
            "nightly",
            [
                sa.Column("id", sa.Integer, primary_key=True),
                sa.Column("suite", sa.Text, nullable=False),
                sa.Column("suite_file", sa.Text, nullable=False),
                sa.Column("inventory", sa.Text, nullable=False),
                sa.Column("started", sa.Double, nullable=False),
                sa.Column("finished", sa.Double),
                sa.Column("status", sa.Text, nullable=False),
                sa.Column("controller", sa.Text, nullable=False),
                sa.Column("runs", sa.Text, nullable=False, server_default="{}"),
                sa.Column("summary", sa.Text, nullable=False, server_default="{}"),
            ],
        ),
        (
            "undo",
            [
                sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), primary_key=True),
                sa.Column("host", sa.Text, primary_key=True),
                sa.Column("target", sa.Text, primary_key=True),
                sa.Column("seq", sa.Integer, nullable=False),
                sa.Column("action", sa.Text, nullable=False),
                sa.Column("args", sa.Text, nullable=False),
            ],
        ),
        (
            "accepted",
            [
                sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), primary_key=True),
                sa.Column("at", sa.Double, nullable=False),
                sa.Column("note", sa.Text, nullable=False),
            ],
        ),
        (
            "outputs",
            [
                sa.Column("trial_id", sa.Integer, sa.ForeignKey("trials.id"), nullable=False),
                sa.Column("host", sa.Text, nullable=False),
                sa.Column("role", sa.Text, nullable=False),
                sa.Column("stream", sa.Text, nullable=False),
                sa.Column("text", sa.Text, nullable=False),
            ],
        ),
    ]


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    have = set(inspector.get_table_names())
    if "runs" in have:
        present = {c["name"] for c in inspector.get_columns("runs")}
        for name in LEGACY_COLUMNS:
            if name not in present:
                op.add_column("runs", sa.Column(name, sa.Text))
    for name, columns in _tables():
        if name not in have:
            op.create_table(name, *columns)


def downgrade() -> None:
    for name, _ in reversed(_tables()):
        op.drop_table(name)
