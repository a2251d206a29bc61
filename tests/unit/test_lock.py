"""The lab lock's pure parts: its record, and when a lock is stale."""

from __future__ import annotations

import subprocess
import sys
import time

from labctl.nightly.lock import LockHeld, LockInfo, parse_lock, stale_reason
from labctl.procs import controller_alive, controller_id


def info(**changes: object) -> LockInfo:
    base = dict(
        purpose="nightly nightly",
        user="root",
        controller=controller_id(),
        token="abc123",
        started=1000.0,
        expires=time.time() + 3600,
    )
    base.update(changes)
    return LockInfo(**base)  # type: ignore[arg-type]


def test_record_round_trips_and_garbage_is_not_a_lock() -> None:
    lock = info()
    assert parse_lock(lock.to_json()) == lock
    assert parse_lock("") is None
    assert parse_lock("{}") is None
    assert parse_lock("not json") is None


def test_a_live_unexpired_lock_is_not_stale() -> None:
    assert stale_reason(info(), time.time()) is None


def test_an_expired_lock_of_another_controller_is_stale() -> None:
    expired = info(controller="some-other-host:1:1", expires=time.time() - 1)
    reason = stale_reason(expired, time.time())
    assert reason is not None and reason.startswith("it expired at")


def test_a_labctl_seen_running_keeps_its_lock_even_expired() -> None:
    assert stale_reason(info(expires=time.time() - 1), time.time()) is None


def test_a_lock_whose_labctl_died_is_stale() -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    dead = controller_id(child.pid).replace(":?:", ":1:")  # its start is gone with it
    assert controller_alive(dead) is False
    reason = stale_reason(info(controller=dead), time.time())
    assert reason is not None and f"pid {child.pid}" in reason and "is gone" in reason


def test_a_pid_reused_by_another_process_does_not_keep_a_lock() -> None:
    host, pid, start, boot, namespace = controller_id().split(":")
    reused = f"{host}:{pid}:{int(start) + 1}:{boot}:{namespace}"  # same PID, another start
    assert controller_alive(reused) is False


def test_a_holder_in_another_pid_namespace_or_boot_is_judged_by_expiry_only() -> None:
    """Same hostname, same PID number: another process all the same."""
    host, pid, start, boot, namespace = controller_id().split(":")
    assert controller_alive(controller_id()) is True
    assert controller_alive(f"{host}:{pid}:{start}:{boot}:{int(namespace) + 1}") is None
    assert controller_alive(f"{host}:{pid}:{start}:another-boot:{namespace}") is None
    assert controller_alive(f"{host}:{pid}:{start}") is None  # an older labctl's id
    # A real labctl-like process in a PID namespace of its own, alive: PID 1 there.
    code = "from labctl.procs import controller_id; print(controller_id(), flush=True); input()"
    child = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        inside = child.stdout.readline().strip()
        assert inside.split(":")[1] == "1" and inside.split(":")[4] != namespace
        assert controller_alive(inside) is None  # not "gone": this /proc cannot tell
        assert stale_reason(info(controller=inside), time.time()) is None
    finally:
        child.kill()
        child.wait(timeout=10)


def test_a_lock_from_another_machine_is_judged_by_expiry_only() -> None:
    elsewhere = info(controller="some-other-host:1:1")
    assert controller_alive(elsewhere.controller) is None
    assert stale_reason(elsewhere, time.time()) is None


def test_an_unreadable_lock_is_never_taken_over() -> None:
    assert stale_reason(None, time.time()) is None


def test_refusal_names_the_holder() -> None:
    err = LockHeld("srv1", info(purpose="experiment reuseport", user="alice"))
    text = str(err)
    assert text.startswith("srv1: the lab is locked by experiment reuseport (alice@")
    assert f"pid {controller_id().split(':')[1]}" in text and "expires" in text
