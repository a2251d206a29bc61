"""service and systemd on the namespace lab: its hosts do not run systemd (this machine's
PID 1 is not systemd and each host has its own /run), so every variant fails in one clear
line, in check mode too, and nothing is run."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import NamespaceLab
from .test_play import play, write_book

pytestmark = pytest.mark.lab


@pytest.mark.parametrize(
    ("action", "args"),
    [
        ("service", "{name: ssh, state: started}"),
        ("systemd", "{name: ssh, state: restarted, enabled: true, daemon_reload: true}"),
        ("systemd_service", "{name: ssh, enabled: false}"),
    ],
)
@pytest.mark.parametrize("check", [False, True])
def test_no_systemd_is_one_clear_line(
    lab: NamespaceLab, tmp_path: Path, action: str, args: str, check: bool
) -> None:
    book = write_book(
        tmp_path,
        f"""\
        - hosts: all
          gather_facts: false
          tasks:
            - name: unit
              {action}: {args}
        """,
    )
    rc, doc, _ = play(lab, book, *(["--check"] if check else []))
    assert rc != 0
    by_host = {r["host"]: r for r in doc["results"]}
    assert set(by_host) == {"srv1", "cli1", "cli2"}
    for host, result in by_host.items():
        assert result["status"] == "failed"
        # systemd_service is Ansible's name for systemd (labctl/play/modules.py maps it)
        name = "systemd" if action == "systemd_service" else action
        assert result["msg"] == (
            f"{host}: systemd is not running on this host (no /run/systemd/system): "
            f"{name} needs systemd"
        )
