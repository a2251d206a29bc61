"""The results store's tables, one definition for both backends (SQLAlchemy Core).

labctl.results.migrations creates and migrates them (Alembic); this module is what the
store's queries are written against. Column types are the ones the first sqlite stores
used, so a store written by an older labctl is read as it is: times are Unix seconds
(REAL), flags are 0/1, params, facts and states are JSON text.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("experiment", sa.Text, nullable=False),
    sa.Column("started", sa.Double, nullable=False),
    sa.Column("finished", sa.Double),
    sa.Column("status", sa.Text, nullable=False),  # running, finished, interrupted, failed, crashed
    sa.Column("labctl_version", sa.Text, nullable=False),
    sa.Column("params", sa.Text, nullable=False),  # JSON
    sa.Column("inventory", sa.Text, nullable=False),
    sa.Column("seed", sa.BigInteger),
    sa.Column("note", sa.Text),
    sa.Column("controller", sa.Text),  # procs.controller_id of the labctl that ran it
    sa.Column("fingerprint", sa.Text),  # regress.fingerprint digest: what must match to compare
    sa.Column("label", sa.Text),  # the suite entry a nightly ran it for
    sa.Column("uid", sa.Text),  # the run's identity across stores (results.copy)
    sa.Column("lab", sa.Text),  # the lab it ran on
    sa.Column("heartbeat", sa.Double),  # last sign of life of its labctl (Unix seconds)
)

run_hosts = sa.Table(
    "run_hosts",
    metadata,
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("host", sa.Text, primary_key=True),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("facts", sa.Text, nullable=False),  # JSON, as `labctl facts --json` shows a host
)

trials = sa.Table(
    "trials",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),  # e.g. accept, pktgen
    sa.Column("warmup", sa.Integer, nullable=False),
    sa.Column("params", sa.Text, nullable=False),  # JSON
    sa.Column("started", sa.Double, nullable=False),
    sa.Column("duration", sa.Double, nullable=False),
    sa.Column("valid", sa.Integer, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),  # why not valid, or why skipped
    sa.Column("state", sa.Text, nullable=False),  # JSON: sysctls, counters before/after
)

metrics = sa.Table(
    "metrics",
    metadata,
    sa.Column("trial_id", sa.Integer, sa.ForeignKey("trials.id"), primary_key=True),
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("value", sa.Double, nullable=False),
)

nightly = sa.Table(
    "nightly",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("suite", sa.Text, nullable=False),  # the suite's name
    sa.Column("suite_file", sa.Text, nullable=False),
    sa.Column("inventory", sa.Text, nullable=False),
    sa.Column("started", sa.Double, nullable=False),
    sa.Column("finished", sa.Double),
    sa.Column("status", sa.Text, nullable=False),  # running, ok, regression, failed, crashed
    sa.Column("controller", sa.Text, nullable=False),
    sa.Column("runs", sa.Text, nullable=False, server_default="{}"),  # entry name -> run id
    sa.Column("summary", sa.Text, nullable=False, server_default="{}"),  # verdict counts
    sa.Column("uid", sa.Text),
    sa.Column("lab", sa.Text),
    sa.Column("heartbeat", sa.Double),
)

undo = sa.Table(  # what puts back what a run changed on its hosts
    "undo",
    metadata,
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("host", sa.Text, primary_key=True),
    sa.Column("target", sa.Text, primary_key=True),  # "qdisc eth0": the first change's undo
    sa.Column("seq", sa.Integer, nullable=False),  # the order the run made its changes in
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("args", sa.Text, nullable=False),  # JSON
)

accepted = sa.Table(  # `labctl results.accept`: a history starts here
    "accepted",
    metadata,
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("at", sa.Double, nullable=False),
    sa.Column("note", sa.Text, nullable=False),
)

outputs = sa.Table(
    "outputs",
    metadata,
    sa.Column("trial_id", sa.Integer, sa.ForeignKey("trials.id"), nullable=False),
    sa.Column("host", sa.Text, nullable=False),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("stream", sa.Text, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
)
