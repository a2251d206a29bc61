"""The command line on bad input: one line naming file and line, exit 2, nothing run."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support import ROOT, run_labctl


def labctl(*args: str) -> subprocess.CompletedProcess[str]:
    return run_labctl(*args, timeout=60, cwd=ROOT)


def test_yaml_error_is_one_line_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("all:\n  hosts:\n    h1: {ansible_host: 10.0.0.5\n    h2: x\n")
    proc = labctl("facts", "-i", str(bad))
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"labctl: {bad}:4: ")


def test_unknown_group_in_pattern_is_refused_before_any_connection(tmp_path: Path) -> None:
    # TEST-NET-1 addresses (RFC 5737): nothing is there even if the check ever regressed.
    inv = tmp_path / "inv.yml"
    inv.write_text(
        "all:\n  children:\n    servers:\n      hosts:\n        dut1: {ansible_host: 192.0.2.6}\n"
    )
    proc = labctl("facts", "-i", str(inv), "--limit", "servers,webservers")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"labctl: {inv}: unknown host or group 'webservers' in pattern 'servers,webservers'"
    )


def test_task_list_has_one_line_help_each() -> None:
    proc = labctl("--list")
    assert proc.returncode == 0
    for name in ("lab.up", "lab.down", "lab.status", "facts"):
        line = next(ln for ln in proc.stdout.splitlines() if ln.strip().startswith(name))
        assert len(line.split(maxsplit=1)) == 2, line
