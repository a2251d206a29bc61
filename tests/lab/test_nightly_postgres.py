"""`labctl nightly --store postgresql://...` on the namespace lab (issue 19): two controllers,
named as two labs, keep one history in a real PostgreSQL server; the second one's run is
judged against the history the first one wrote, and says which lab each compared run came
from."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa
from junitparser import Failure, JUnitXml

from labctl.results.backend import locate, make_engine
from tests.support import labctl_argv

from .conftest import NamespaceLab
from .test_nightly import suite, workload_pids

pytestmark = pytest.mark.lab


def nightly_as(
    lab_name: str, lab: NamespaceLab, suite_file: Path, store: str, *more: str
) -> subprocess.CompletedProcess[str]:
    """One controller's nightly: its own process, its own lab name."""
    return subprocess.run(
        [*labctl_argv("nightly"), "-i", str(lab.inventory_path), "--suite", str(suite_file),
         "--store", store, "--quiet", *more],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
        env={**os.environ, "LABCTL_LAB": lab_name},
    )  # fmt: skip


def test_two_controllers_keep_one_history_in_postgres(
    lab: NamespaceLab, tmp_path: Path, pg_url: str
) -> None:
    base = suite(tmp_path, "base")
    for _ in (1, 2):
        done = nightly_as("lab-a", lab, base, pg_url)
        assert done.returncode == 0, done.stderr + done.stdout
    assert "compared with run 1" in done.stdout  # the same lab: no lab names needed

    html, junit = tmp_path / "b.html", tmp_path / "b.xml"
    srv1 = lab.host("srv1")
    tbf = ["tc", "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", "1mbit"]
    srv1.run([*tbf, "burst", "32kb", "latency", "400ms"])
    try:
        third = nightly_as("lab-b", lab, base, pg_url, "--html", str(html), "--junit", str(junit))
    finally:
        srv1.run(["tc", "qdisc", "del", "dev", "eth0", "root"])
    assert third.returncode == 1, third.stderr + third.stdout
    text = " ".join(third.stdout.split())
    assert "compared with runs 2 (lab-a), 1 (lab-a)" in text, text
    assert "REGRESSION reuseport conn_per_s" in text
    xml = JUnitXml.fromfile(str(junit))
    failed = [c.name for s in xml for c in s if any(isinstance(r, Failure) for r in c.result)]
    assert any(name.startswith("conn_per_s") for name in failed), failed
    page = html.read_text()
    assert "lab-a" in page and "REGRESSION" in page.upper()

    listing = subprocess.run(
        [*labctl_argv("results.list"), "--store", pg_url, "--json"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert listing.returncode == 0, listing.stderr
    engine = make_engine(locate(pg_url))
    try:
        with engine.connect() as conn:
            runs = conn.execute(sa.text("SELECT lab, status FROM runs ORDER BY id")).all()
            nights = conn.execute(sa.text("SELECT lab, status FROM nightly ORDER BY id")).all()
            points = conn.execute(
                sa.text(
                    "SELECT COUNT(*) FROM labctl_metrics"
                    " WHERE metric = 'conn_per_s' AND lab = 'lab-b'"
                )
            ).scalar_one()
    finally:
        engine.dispose()
    assert [tuple(r) for r in runs] == [
        ("lab-a", "finished"), ("lab-a", "finished"), ("lab-b", "finished"),
    ]  # fmt: skip
    assert [tuple(r) for r in nights] == [("lab-a", "ok"), ("lab-a", "ok"), ("lab-b", "regression")]
    assert points >= 4  # tonight's trials, readable by a dashboard
    assert workload_pids(lab) == []
