"""kmod on the namespace lab: the fixture module built for the installed Debian headers,
cached, and refused for loading on this kernel (no module support) without failing the run.

Lab hosts share this machine's /usr, so the headers `apt-get install linux-headers-amd64`
put under /usr/src are theirs too; /root is private to each host. Everything the tests put on
srv1 (the source tree, the cache dir) is removed afterwards, whatever happens.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from labctl.actions.base import TaskContext, run_action
from labctl.actions.kmod import KmodAction
from labctl.actions.source import SourceAction
from labctl.facts.host import installed_header_releases
from labctl.remote import HostConnection, ShellScript

pytestmark = pytest.mark.lab

FIXTURE = Path(__file__).parents[2] / "fixtures" / "hello_kmod"
SRC = "/root/labctl-test-kmod-src"
CACHE = "/root/labctl-test-kmod-cache"


@pytest.fixture
def release(srv: HostConnection) -> str:
    listing = srv.run(["ls", "/usr/src"]).stdout
    releases = [
        r
        for r in installed_header_releases(listing)
        if srv.run(["test", "-f", f"/usr/src/linux-headers-{r}/Makefile"]).ok
    ]
    if not releases:
        pytest.skip("no kernel headers under /usr/src: apt-get install linux-headers-amd64")
    return releases[-1]


@pytest.fixture
def module_src(ctx: TaskContext, srv: HostConnection) -> Iterator[str]:
    """The fixture module on srv1, put there as a playbook would: with the source action."""
    try:
        put = run_action(SourceAction(), ctx, {"src": str(FIXTURE), "dest": SRC})
        assert not put.failed, put.msg
        yield SRC
    finally:
        srv.run(ShellScript(f"rm -rf {shlex.quote(SRC)} {shlex.quote(SRC)}.labctl-* {CACHE}"))


def host_mtime(srv: HostConnection, path: str) -> str:
    return srv.run(["stat", "-c", "%y", path], check=True).stdout.strip()


def test_build_for_the_installed_headers_then_hit_the_cache(
    ctx: TaskContext, srv: HostConnection, release: str, module_src: str
) -> None:
    args = {
        "name": "hello_kmod",
        "src": module_src,
        "kernel_release": release,
        "cache_dir": CACHE,
    }
    check = run_action(KmodAction(), ctx, args, check=True)
    assert check.changed and not check.failed, check.msg
    assert check.changes[0].startswith(f"build hello_kmod.ko for {release} against /usr/src/")
    assert not srv.run(["test", "-e", CACHE]).ok, "check mode touched the host"

    started = time.monotonic()
    first = run_action(KmodAction(), ctx, args)
    build_s = time.monotonic() - started
    assert first.changed and not first.failed, first.msg
    ko = first.output["ko"]
    assert ko.startswith(f"{CACHE}/") and ko.endswith("/hello_kmod.ko")
    assert first.output["cached"] is False
    assert first.output["vermagic"].startswith(f"{release} ")
    vermagic = srv.run(["modinfo", "-F", "vermagic", ko], check=True).stdout
    assert vermagic.startswith(f"{release} ")
    assert srv.run(ShellScript(f"ls -A {CACHE}")).stdout.split() == [ko.split("/")[-2]], (
        "the scratch build dir was left behind"
    )
    mtime = host_mtime(srv, ko)

    started = time.monotonic()
    second = run_action(KmodAction(), ctx, args)
    hit_s = time.monotonic() - started
    assert not second.changed and not second.failed, second.msg
    assert second.output == {"ko": ko, "vermagic": first.output["vermagic"], "cached": True}
    assert host_mtime(srv, ko) == mtime, "a cache hit rebuilt the module"
    assert hit_s < 1.0, f"a cache hit took {hit_s:.2f} s"
    print(f"\nkmod fixture on srv1: build {build_s:.2f} s, cache hit {hit_s:.3f} s")

    # Other flags are another cache entry; the first stays.
    flagged = run_action(KmodAction(), ctx, {**args, "make_args": ["KCFLAGS=-DLABCTL_TEST=1"]})
    assert flagged.changed and not flagged.failed, flagged.msg
    assert flagged.output["ko"] != ko
    assert host_mtime(srv, ko) == mtime


def test_loading_is_refused_cleanly_on_a_kernel_without_modules(
    ctx: TaskContext, srv: HostConnection, release: str, module_src: str
) -> None:
    running = srv.run(["uname", "-r"], check=True).stdout.strip()
    if srv.run(["test", "-e", "/proc/modules"]).ok:
        pytest.skip(f"kernel {running} supports modules: this test is for one that does not")
    args = {"name": "hello_kmod", "src": module_src, "kernel_release": release, "cache_dir": CACHE}
    for check in (True, False):
        res = run_action(KmodAction(), ctx, {**args, "state": "loaded"}, check=check)
        assert (res.changed, res.failed) == (False, False), res.msg
        assert res.msg == (
            f"srv1: kernel {running} cannot load modules (no /proc/modules): hello_kmod not loaded"
        )
        assert res.output == {"loaded": False, "unsupported": True}
    res = run_action(KmodAction(), ctx, {**args, "state": "unloaded"})
    assert (res.changed, res.failed) == (False, False)
    assert "cannot load modules (no /proc/modules)" in res.msg
    assert not srv.run(["test", "-e", CACHE]).ok, "an unsupported load touched the host"


def test_missing_headers_are_one_line(ctx: TaskContext, module_src: str) -> None:
    args = {
        "name": "hello_kmod",
        "src": module_src,
        "kernel_release": "0.0.0-0-nope",
        "cache_dir": CACHE,
    }
    planned = run_action(KmodAction(), ctx, args, check=True)
    assert planned.changed and not planned.failed  # headers may come from an earlier task
    res = run_action(KmodAction(), ctx, args)
    assert res.failed
    assert (
        res.msg == "no kernel headers for 0.0.0-0-nope on srv1: install linux-headers-0.0.0-0-nope"
    )
