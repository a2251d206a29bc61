"""A store a team shares (issue 19): each run and nightly gets a uid (its identity across
stores, for `labctl results.copy`), the lab it ran on and a heartbeat (a controller on
another machine judges a silent run crashed by it); indexes for the reads; the views
dashboards plot (docs/results.md). Fingerprints are worked out afresh: they no longer name
hosts, only roles, so two labs built alike compare."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

PARAMS = ("mode", "qdisc", "proto")  # text parameters of the built-in experiments
NUMBERS = ("workers", "size")  # numeric ones


def _views(dialect: str) -> list[str]:
    if dialect == "postgresql":

        def text(column: str, key: str) -> str:
            return f"({column}::jsonb ->> '{key}')"

        def number(column: str, key: str) -> str:
            return (
                f"(CASE WHEN jsonb_typeof({column}::jsonb -> '{key}') = 'number'"
                f" THEN ({column}::jsonb ->> '{key}')::double precision END)"
            )

        def when(column: str) -> str:
            return f"to_timestamp({column})"

    else:

        def text(column: str, key: str) -> str:
            return f"json_extract({column}, '$.{key}')"

        def number(column: str, key: str) -> str:
            return (
                f"(CASE WHEN json_type({column}, '$.{key}') IN ('integer', 'real')"
                f" THEN json_extract({column}, '$.{key}') END)"
            )

        def when(column: str) -> str:
            return f"datetime({column}, 'unixepoch')"

    kernel = (
        f"(SELECT MIN({text('h.facts', 'kernel_release')}) FROM run_hosts h WHERE h.run_id = r.id)"
    )
    params = ", ".join(
        [f"{text('t.params', k)} AS {k}" for k in PARAMS]
        + [f"{number('t.params', k)} AS {k}" for k in NUMBERS]
    )
    return [
        f"""CREATE VIEW labctl_metrics AS
SELECT r.id AS run, {when("t.started")} AS time, t.started AS started,
       COALESCE(r.lab, '') AS lab, r.experiment AS experiment, r.label AS label,
       t.kind AS kind, t.seq AS trial, {params},
       m.name AS metric, m.value AS value,
       (t.valid = 1) AS valid, (t.warmup = 1) AS warmup,
       {kernel} AS kernel, r.labctl_version AS labctl_version, t.params AS params
FROM metrics m JOIN trials t ON t.id = m.trial_id JOIN runs r ON r.id = t.run_id""",
        f"""CREATE VIEW labctl_runs AS
SELECT r.id AS run, {when("r.started")} AS time, r.started AS started,
       r.finished AS finished, COALESCE(r.lab, '') AS lab, r.experiment AS experiment,
       r.label AS label, r.status AS status, {kernel} AS kernel,
       r.labctl_version AS labctl_version,
       (SELECT COUNT(*) FROM trials t WHERE t.run_id = r.id AND t.warmup = 0) AS trials,
       (SELECT COUNT(*) FROM trials t WHERE t.run_id = r.id AND t.warmup = 0
        AND t.valid = 1) AS valid_trials
FROM runs r""",
    ]


def _lab(inventory: str) -> str:
    """A run's lab before labs were named: its inventory file's name (hosts/lab-a.yml: lab-a)."""
    name = inventory.replace("\\", "/").rsplit("/", 1)[-1]
    for suffix in (".yml", ".yaml", ".ini", ".cfg"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _name_labs(table: str) -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.text(f"SELECT id, inventory FROM {table} WHERE lab IS NULL")).all()
    if rows:
        bind.execute(
            sa.text(f"UPDATE {table} SET lab = :lab WHERE id = :id"),
            [{"id": row_id, "lab": _lab(inventory or "")} for row_id, inventory in rows],
        )


def upgrade() -> None:
    dialect = op.get_context().dialect.name
    for table in ("runs", "nightly"):
        op.add_column(table, sa.Column("uid", sa.Text))
        op.add_column(table, sa.Column("lab", sa.Text))
        op.add_column(table, sa.Column("heartbeat", sa.Double))
        random_uid = (
            "md5(random()::text || clock_timestamp()::text || id::text)"
            if dialect == "postgresql"
            else "lower(hex(randomblob(16)))"
        )
        op.execute(f"UPDATE {table} SET uid = {random_uid} WHERE uid IS NULL")
        _name_labs(table)
        op.create_index(f"ix_{table}_uid", table, ["uid"], unique=True)
    op.create_index("ix_runs_experiment", "runs", ["experiment", "id"])
    op.create_index("ix_trials_run", "trials", ["run_id", "seq"])
    op.create_index("ix_outputs_trial", "outputs", ["trial_id"])
    op.execute("UPDATE runs SET fingerprint = NULL")
    for view in _views(dialect):
        op.execute(view)


def downgrade() -> None:
    op.execute("DROP VIEW labctl_runs")
    op.execute("DROP VIEW labctl_metrics")
    op.drop_index("ix_outputs_trial", "outputs")
    op.drop_index("ix_trials_run", "trials")
    op.drop_index("ix_runs_experiment", "runs")
    for table in ("runs", "nightly"):
        op.drop_index(f"ix_{table}_uid", table)
        for column in ("heartbeat", "lab", "uid"):
            op.drop_column(table, column)
