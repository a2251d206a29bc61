"""netmap's provisioning path on the namespace lab, with labctl's fixture tree
(fixtures/netmap-fixture: netmap's build interface, none of its code): configure, make and
collect run once on the controller for the installed Debian headers' release, the result is
installed on every lab host and checked there; a second provision builds and copies nothing;
loading is reported in one line on this kernel; a failed configure says why and keeps the
whole output in the host's log file.

Each test builds from its own copy of the fixture (one extra file: its own tree hash, so its
own build key) and removes that build from the controller's cache afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from labctl.builds.builder import DEFAULT_CACHE, debian_version
from labctl.facts.host import installed_header_releases
from tests.support import ROOT

from .conftest import NamespaceLab

pytestmark = pytest.mark.lab

INSTALL = "netmap built for the target release and installed"
LOAD = "netmap loaded, its patched drivers swapped in (never the SSH interface's)"
HOSTS = ("srv1", "cli1", "cli2")


def _release() -> str:
    """The newest Debian headers release the controller has, with its matching full sources
    (scripts/setup.sh installs both): the builder's prerequisites."""
    releases = installed_header_releases("\n".join(os.listdir("/usr/src")))
    if not releases:
        pytest.fail("no kernel headers under /usr/src: run scripts/setup.sh")
    release = releases[-1]
    series = ".".join(release.split(".")[:2])
    if debian_version(f"linux-source-{series}") != debian_version(f"linux-headers-{release}"):
        pytest.fail(f"linux-source-{series} missing or not {release}'s: run scripts/setup.sh")
    return release


@dataclass
class FixtureBuild:
    """A copy of the fixture tree with a build key of its own (one extra file changes its
    hash), and the keys its provisions made, removed from the controller's cache after."""

    tree: Path
    keys: set[str] = field(default_factory=set)

    def provision(self, lab: NamespaceLab, *args: str) -> dict[str, Any]:
        proc = lab.labctl(
            "provision", "-i", str(lab.inventory_path), "--json",
            "-e", f"netmap_src={self.tree}", *args, timeout=900,
        )  # fmt: skip
        doc: dict[str, Any] = json.loads(proc.stdout)
        self.keys |= {str(r["output"]["key"]) for r in doc["results"] if "key" in r["output"]}
        return doc


@pytest.fixture
def fixture_build(tmp_path: Path) -> Iterator[FixtureBuild]:
    tree = tmp_path / "netmap-fixture"
    shutil.copytree(ROOT / "fixtures" / "netmap-fixture", tree)
    (tree / "labctl-test-run").write_text(f"{uuid.uuid4()}\n")
    made = FixtureBuild(tree)
    try:
        yield made
    finally:
        for key in made.keys:
            for path in (DEFAULT_CACHE / key, DEFAULT_CACHE / f"{key}.build"):
                shutil.rmtree(path, ignore_errors=True)
            (DEFAULT_CACHE / f"{key}.lock").unlink(missing_ok=True)


def results(doc: dict[str, Any], task: str) -> dict[str, dict[str, Any]]:
    return {r["host"]: r for r in doc["results"] if r["task"] == task}


def test_built_once_on_the_controller_installed_everywhere_then_nothing(
    lab: NamespaceLab, fixture_build: FixtureBuild
) -> None:
    release = _release()
    given = ["-e", f"kernel_release={release}", "-e", "netmap_drivers=e1000e"]
    doc = fixture_build.provision(lab, "--tags", "netmap,load", *given)
    installed = results(doc, INSTALL)
    assert {h: r["status"] for h, r in installed.items()} == dict.fromkeys(HOSTS, "changed"), doc
    outs = [r["output"] for r in installed.values()]
    assert [o["built_now"] for o in outs].count(True) == 1  # one build, shared by all three
    assert {o["built_on"] for o in outs} == {"controller"}
    assert {o["key"] for o in outs} == {outs[0]["key"]}
    files = outs[0]["files"]
    assert set(files) == {"netmap.ko", "e1000e.ko", "pkt-gen"}
    assert all(o["files"] == files for o in outs)
    assert outs[0]["patches"] == {"e1000e": "fixture--e1000e--netmap-hook"}
    assert set(outs[0]["build_seconds"]) == {"configure", "make", "collect"}
    for host in HOSTS:
        conn = lab.host(host)
        d = outs[0]["dir"]
        sums = conn.run(
            ["sh", "-c", f"cd {d} && sha256sum netmap.ko e1000e.ko pkt-gen"], check=True
        )
        assert {line.split()[1]: line.split()[0] for line in sums.stdout.splitlines()} == files
        for ko in ("netmap.ko", "e1000e.ko"):
            vermagic = conn.run(["modinfo", "-F", "vermagic", f"{d}/{ko}"], check=True).stdout
            assert vermagic.split()[0] == release
        depends = conn.run(["modinfo", "-F", "depends", f"{d}/e1000e.ko"], check=True).stdout
        assert "netmap" in depends.strip().split(",")  # the patched driver needs netmap first
        link = conn.run(["readlink", "-f", "/root/labctl/bin/pkt-gen"], check=True).stdout
        assert link.strip() == f"{d}/pkt-gen"
        info = conn.run(["cat", "/root/labctl/netmap/current/build.txt"], check=True).stdout
        assert f"key={outs[0]['key']}\n" in info and f"release={release}\n" in info
    # this kernel loads no module: one line each, and the run goes on
    loads = results(doc, LOAD)
    for r in loads.values():
        assert r["status"] == "ok" and "cannot load modules" in r["msg"] and "\n" not in r["msg"]
    # the facts say what is installed where
    facts = json.loads(lab.labctl("facts", "-i", str(lab.inventory_path), "--json").stdout)
    assert facts["hosts"]["cli2"]["netmap"]["build"] == outs[0]["key"]

    again = fixture_build.provision(lab, "--tags", "netmap,load", *given)
    assert all(c["changed"] == 0 for c in again["recap"].values()), again["recap"]
    assert {r["status"] for r in results(again, INSTALL).values()} == {"ok"}


def test_a_failed_configure_says_why_and_keeps_the_whole_output(
    lab: NamespaceLab, fixture_build: FixtureBuild
) -> None:
    release = _release()
    doc = fixture_build.provision(
        lab, "--tags", "netmap", "--limit", "srv1",
        "-e", f"kernel_release={release}", "-e", "netmap_drivers=nosuchdrv",
    )  # fmt: skip
    (r,) = results(doc, INSTALL).values()
    assert r["status"] == "failed"
    lines = r["msg"].splitlines()
    assert lines[0] == (
        "srv1: netmap configure failed on controller: configure: "
        "CONFIG_NOSUCHDRV not set in "
        f"/usr/src/linux-headers-{release}/.config, skipping nosuchdrv"
    )
    assert "configure: Exiting because of --fail-on-driver-errors." in lines
    assert lines[-1].startswith("full output: ")
    log = Path(lines[-1].removeprefix("full output: ")).read_text()
    assert "Exiting because of --fail-on-driver-errors" in log and "exit status 1" in log
    assert "NOTE" in log  # everything configure printed, banners included
    assert r["log"] in log  # --json has it all too
    assert doc["exit_status"] == 2


def test_built_on_a_host_when_asked_then_shared_through_the_controller(
    lab: NamespaceLab, fixture_build: FixtureBuild
) -> None:
    """netmap_build_on=host: the first host to take the build's lock gets the source and
    linux-source, builds, and the result reaches the controller's cache; the other hosts
    install that copy. (The namespace lab's hosts share /usr with this machine: the sources
    unpacked into /usr/src are removed again unless they were there before.)"""
    release = _release()
    sources = Path(f"/usr/src/linux-source-{'.'.join(release.split('.')[:2])}")
    had_sources = sources.exists()
    try:
        doc = fixture_build.provision(
            lab, "--tags", "netmap", "-e", f"kernel_release={release}",
            "-e", "netmap_drivers=e1000e", "-e", "netmap_build_on=host",
        )  # fmt: skip
        installed = results(doc, INSTALL)
        assert {r["status"] for r in installed.values()} == {"changed"}, doc
        outs = [r["output"] for r in installed.values()]
        (builder,) = {o["built_on"] for o in outs}
        assert builder in HOSTS  # a host, not the controller
        assert [o["built_now"] for o in outs].count(True) == 1
        assert len({json.dumps(o["files"], sort_keys=True) for o in outs}) == 1
        assert (DEFAULT_CACHE / outs[0]["key"] / "manifest.json").is_file()
        # the builder keeps its source (a later build reuses it), not its build directories
        left = lab.host(builder).run(["ls", "/root/labctl/netmap/build"]).stdout.split()
        assert left == []
        assert lab.host(builder).run(["test", "-f", "/root/labctl/netmap/src/LINUX/configure"]).ok
    finally:
        if not had_sources:
            shutil.rmtree(sources, ignore_errors=True)
