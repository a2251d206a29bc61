"""The lab lock on real hosts over SSH: taken, refused, taken over when stale, released."""

from __future__ import annotations

import shlex
import time

import pytest

from labctl.nightly.lock import LOCK_FILE, LabLock, LockHeld, LockInfo, read_lock
from labctl.remote import Connections, ShellScript

from .conftest import NamespaceLab

pytestmark = pytest.mark.lab

HOSTS = ["srv1", "cli1"]


def no_lock_left(lab: NamespaceLab) -> bool:
    return all(not lab.host(h).run(["test", "-e", LOCK_FILE]).ok for h in HOSTS)


def test_second_holder_is_refused_with_the_holders_name_then_gets_it(lab: NamespaceLab) -> None:
    conns: Connections = lab.connections
    first = LabLock(conns, HOSTS, "nightly test").acquire()
    try:
        held = read_lock(lab.host("srv1"))
        assert held is not None and held.token == first.token
        second = LabLock(conns, HOSTS, "experiment by hand")
        with pytest.raises(LockHeld) as err:
            second.acquire()
        assert "locked by nightly test (" in str(err.value)
        assert second.held == []  # nothing half-taken
        assert read_lock(lab.host("cli1")).token == first.token  # type: ignore[union-attr]
    finally:
        first.release()
    assert no_lock_left(lab)
    with LabLock(conns, HOSTS, "experiment by hand") as second:
        assert read_lock(lab.host("cli1")).purpose == "experiment by hand"  # type: ignore[union-attr]
        assert second.held == sorted(HOSTS)
    assert no_lock_left(lab)


def test_an_expired_lock_of_another_controller_is_taken_over_with_a_message(
    lab: NamespaceLab,
) -> None:
    stale = LockInfo(
        "nightly", "bob", "other-controller:4242:1", "0ldt0ken", time.time() - 7200, time.time() - 1
    )
    for host in HOSTS:
        lab.host(host).run(
            ShellScript(f"mkdir -p /run/labctl && printf '%s\\n' {shlex.quote(stale.to_json())}"
                        f" > {LOCK_FILE}"),
            check=True,
        )  # fmt: skip
    messages: list[str] = []
    with LabLock(lab.connections, HOSTS, "nightly", on_message=messages.append) as taker:
        assert len(messages) == 2, messages
        assert all("took over the lab lock of nightly (bob@other-controller" in m for m in messages)
        assert all("it expired at" in m for m in messages)
        assert read_lock(lab.host("srv1")).token == taker.token  # type: ignore[union-attr]
    assert no_lock_left(lab)


def test_a_running_labctls_expired_lock_is_not_taken_over(lab: NamespaceLab) -> None:
    holder = LabLock(lab.connections, HOSTS, "a long sweep", ttl=0.5).acquire()
    try:
        time.sleep(0.6)
        with pytest.raises(LockHeld, match="locked by a long sweep"):
            LabLock(lab.connections, HOSTS, "nightly").acquire()
        holder.renew()  # and its holder still has it
    finally:
        holder.release()
    assert no_lock_left(lab)


def test_renew_pushes_the_expiry_and_notices_a_takeover(lab: NamespaceLab) -> None:
    lock = LabLock(lab.connections, HOSTS, "long run", ttl=60).acquire()
    try:
        before = read_lock(lab.host("srv1")).expires  # type: ignore[union-attr]
        time.sleep(0.05)
        lock.renew()
        assert read_lock(lab.host("srv1")).expires > before  # type: ignore[union-attr]
        lab.host("cli1").run(["rm", "-f", LOCK_FILE], check=True)  # someone broke it by hand
        with pytest.raises(Exception, match="taken over by another run"):
            lock.renew()
    finally:
        lock.release()
    assert no_lock_left(lab)
