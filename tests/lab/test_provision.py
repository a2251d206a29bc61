"""`labctl provision` on a lab host, building for the installed Debian headers' release:
the fixture module is built with the right vermagic, loading is reported as unsupported on
this kernel, a second run builds nothing, and --check changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from labctl.facts.host import installed_header_releases

from .conftest import NamespaceLab

pytestmark = pytest.mark.lab

WORK = "/root/labctl"
DEPS = ["build-essential", "bc", "flex", "bison", "libelf-dev", "kmod"]
BUILD = "fixture module built for the target release"
LOAD = "fixture module loaded (where the kernel can load modules)"


def _set_host_var(doc: Any, host: str, key: str, value: str) -> bool:
    """Set a variable on `host` wherever the inventory lists it under `hosts:`."""
    if not isinstance(doc, dict):
        return False
    hosts = doc.get("hosts")
    if isinstance(hosts, dict) and host in hosts:
        hosts[host] = {**(hosts[host] or {}), key: value}
        return True
    return any(_set_host_var(child, host, key, value) for child in doc.values())


def _result(doc: dict[str, Any], task: str, host: str = "srv1") -> dict[str, Any]:
    (found,) = [r for r in doc["results"] if r["task"] == task and r["host"] == host]
    return found


def test_provision_builds_for_the_headers_release_then_nothing(
    lab: NamespaceLab, tmp_path: Path
) -> None:
    releases = installed_header_releases("\n".join(os.listdir("/usr/src")))
    if not releases:
        pytest.skip("no kernel headers under /usr/src: apt-get install linux-headers-amd64")
    missing = subprocess.run(
        ["dpkg-query", "-W", "-f", "${db:Status-Abbrev}\n", *DEPS],
        capture_output=True,
        text=True,
    )
    if missing.returncode != 0 or any(s[:2] != "ii" for s in missing.stdout.splitlines()):
        pytest.skip(f"build tools missing (lab hosts have no internet): apt-get install {DEPS}")
    release = releases[-1]
    doc = yaml.safe_load(lab.inventory_path.read_text())
    assert _set_host_var(doc, "srv1", "kernel_release", release)
    inv = tmp_path / "inventory.yml"
    inv.write_text(yaml.safe_dump(doc))
    srv1 = lab.host("srv1")

    def provision(*more: str) -> tuple[dict[str, Any], float]:
        started = time.monotonic()
        proc = lab.labctl(
            "provision", "-i", str(inv), "--limit", "srv1", "--json", *more, timeout=900
        )
        took = time.monotonic() - started
        assert proc.returncode == 0, proc.stderr + proc.stdout[-3000:]
        return json.loads(proc.stdout), took

    srv1.run(["rm", "-rf", WORK])
    try:
        first, t1 = provision()
        assert set(first["recap"]) == {"srv1"}
        built = _result(first, BUILD)
        assert built["status"] == "changed", built
        assert built["output"]["vermagic"].split()[0] == release
        ko = built["output"]["ko"]
        assert srv1.run(["test", "-f", ko]).ok
        loaded = _result(first, LOAD)
        assert loaded["status"] == "ok", loaded
        # the action's one line is in the output (the runner keeps `msg` for failed/skipped)
        said = loaded["msg"] or loaded["output"]["msg"]
        assert "cannot load modules" in said and "\n" not in said, loaded
        assert loaded["output"]["unsupported"] is True
        assert all(r["status"] == "skipped" for r in first["results"] if "netmap" in r["task"])
        assert srv1.run(["test", "-x", f"{WORK}/build/workloads/conn_client"]).ok

        second, t2 = provision()
        assert second["recap"]["srv1"]["changed"] == 0, [
            r["task"] for r in second["results"] if r["status"] == "changed"
        ]
        assert _result(second, BUILD)["output"]["cached"] is True
        assert t2 < t1, (t1, t2)
        print(f"provision on srv1: first {t1:.1f}s, second {t2:.1f}s")

        # --check on a fresh host: plans the build and the uploads, changes nothing
        srv1.run(["rm", "-rf", WORK])
        planned, _ = provision("--check")
        assert _result(planned, BUILD)["status"] == "changed"
        assert planned["recap"]["srv1"]["changed"] >= 3
        assert srv1.run(["test", "-e", WORK]).exit_status == 1
    finally:
        srv1.run(["rm", "-rf", WORK])
