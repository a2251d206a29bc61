"""The lab lock: one labctl run at a time on a host, nightly or by hand.

Each host keeps one lock file in /run (gone at reboot, like every process it could protect).
It names its holder (user, controller, PID, what for), when it was taken and when it
expires. Every step on it (take, take over, renew, release) holds the host's `flock` guard,
so two runs never interleave there. A lock is stale when its labctl is known to be gone
(same controller: hostname, boot id and PID namespace; PID dead or reused), or, when that
cannot be checked (another machine, container or boot), once it has expired; the next run
removes a stale lock and says so. A labctl seen running keeps its lock. Hosts are locked one
by one in name order, so two runs contending for the same hosts cannot each hold half of them
and wait for the other.
"""

from __future__ import annotations

import getpass
import json
import secrets
import shlex
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass

from labctl.errors import LabctlError
from labctl.inventory import Host
from labctl.procs import controller_alive, controller_id
from labctl.remote import Connections, HostConnection, ShellScript

LOCK_DIR = "/run/labctl"
LOCK_FILE = f"{LOCK_DIR}/lab.lock"
DEFAULT_TTL = 4 * 3600.0  # renewed at each step of a run; a crashed run frees the lab by then
TAKEOVER_ATTEMPTS = 3


class LockHeld(LabctlError):
    """Another run holds the lab."""

    def __init__(self, host: str, info: LockInfo | None) -> None:
        self.host = host
        self.info = info
        who = info.describe() if info else "an unreadable lock"
        super().__init__(f"{host}: the lab is locked by {who}; {LOCK_FILE} on the host")


@dataclass(frozen=True)
class LockInfo:
    purpose: str  # e.g. "nightly suite nightly", "experiment reuseport"
    user: str
    controller: str  # host:pid:start:boot:pidns of the labctl holding it (procs.controller_id)
    token: str  # this acquisition's own secret: only its holder renews or releases
    started: float
    expires: float

    @property
    def pid(self) -> str:
        return self.controller.split(":")[1] if self.controller.count(":") >= 2 else "?"

    @property
    def machine(self) -> str:
        return self.controller.split(":")[0]

    def describe(self) -> str:
        def clock(t: float) -> str:
            return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))

        return (
            f"{self.purpose} ({self.user}@{self.machine}, pid {self.pid}) since "
            f"{clock(self.started)}, expires {clock(self.expires)}"
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def parse_lock(text: str) -> LockInfo | None:
    """A lock file's JSON, or None if it is not one labctl wrote."""
    try:
        doc = json.loads(text)
        return LockInfo(
            str(doc["purpose"]),
            str(doc["user"]),
            str(doc["controller"]),
            str(doc["token"]),
            float(doc["started"]),
            float(doc["expires"]),
        )
    except (ValueError, KeyError, TypeError):
        return None


def stale_reason(
    info: LockInfo | None, now: float, alive: Callable[[str], bool | None] = controller_alive
) -> str | None:
    """Why a lock no longer protects anything, or None while it does."""
    if info is None:
        return None  # unreadable: maybe being written by hand; never taken over silently
    running = alive(info.controller)
    if running is False:
        return f"its labctl (pid {info.pid} on {info.machine}) is gone"
    if running is None and now >= info.expires:  # another controller's: its expiry decides
        return f"it expired at {time.strftime('%H:%M:%S', time.localtime(info.expires))}"
    return None  # a labctl seen running keeps its lock, expired or not


# ---------------------------------------------------------------------------- on a host


def _guarded(script: str) -> str:
    """Run `script` holding the host's lock guard (flock): taking, taking over, renewing and
    releasing never interleave between two runs."""
    guard = shlex.quote(f"{LOCK_DIR}/.guard")
    return (
        f"mkdir -p {shlex.quote(LOCK_DIR)} && exec 9>{guard} && flock -w 20 9 || "
        f"{{ echo 'labctl: the lock guard is busy' >&2; exit 1; }}; {script}"
    )


def _acquire_script(record: str, token: str) -> str:
    own = f"{LOCK_FILE}.{token}"
    return _guarded(
        f"printf '%s\\n' {shlex.quote(record)} > {shlex.quote(own)} && "
        f"if ln {shlex.quote(own)} {shlex.quote(LOCK_FILE)} 2>/dev/null; "
        f"then rm -f {shlex.quote(own)}; echo acquired; "
        f"else rm -f {shlex.quote(own)}; echo held; cat {shlex.quote(LOCK_FILE)} 2>/dev/null; fi"
    )


def _takeover_script(stale_token: str) -> str:
    """Remove the lock if it is still the stale one we saw (under the guard, so no other run
    takes it over or renews it in between)."""
    lock = shlex.quote(LOCK_FILE)
    return _guarded(
        f"if grep -qF {shlex.quote(stale_token)} {lock} 2>/dev/null; "
        f"then rm -f {lock}; echo moved; else echo raced; fi"
    )


def _release_script(token: str) -> str:
    lock = shlex.quote(LOCK_FILE)
    return _guarded(f"if grep -qF {shlex.quote(token)} {lock} 2>/dev/null; then rm -f {lock}; fi")


def _renew_script(record: str, token: str) -> str:
    lock, own = shlex.quote(LOCK_FILE), shlex.quote(f"{LOCK_FILE}.{token}")
    return _guarded(
        f"grep -qF {shlex.quote(token)} {lock} 2>/dev/null || {{ echo lost; exit 0; }}; "
        f"printf '%s\\n' {shlex.quote(record)} > {own} && mv -f {own} {lock} && echo renewed"
    )


def read_lock(conn: HostConnection) -> LockInfo | None:
    res = conn.run(["cat", LOCK_FILE], timeout=30)
    return parse_lock(res.stdout) if res.ok else None


class LabLock:
    """Hold the lab's lock on `hosts` for one run; `with LabLock(...)` releases it always."""

    def __init__(
        self,
        conns: Connections,
        hosts: Sequence[str],
        purpose: str,
        ttl: float = DEFAULT_TTL,
        on_message: Callable[[str], None] | None = None,
    ) -> None:
        self.conns = conns
        self.hosts = sorted(hosts)
        self.purpose = purpose
        self.ttl = ttl
        self.on_message = on_message or (lambda msg: None)
        self.token = secrets.token_hex(8)
        self.info = self._info(time.time())
        self.held: list[str] = []
        self.messages: list[str] = []

    def _info(self, started: float) -> LockInfo:
        return LockInfo(
            self.purpose,
            _user(),
            controller_id(),
            self.token,
            started,
            time.time() + self.ttl,
        )

    def _say(self, msg: str) -> None:
        self.messages.append(msg)
        self.on_message(msg)

    def acquire(self) -> LabLock:
        try:
            for host in self.hosts:
                self._acquire_one(self.conns[host])
                self.held.append(host)
        except BaseException:
            self.release()
            raise
        return self

    def _acquire_one(self, conn: HostConnection) -> None:
        for _ in range(TAKEOVER_ATTEMPTS):
            out = conn.run(
                ShellScript(_acquire_script(self.info.to_json(), self.token)), timeout=30
            )
            lines = out.stdout.splitlines()
            if not out.ok or not lines:
                raise LabctlError(
                    f"{conn.host.name}: cannot take the lab lock: {out.first_error_line()}"
                )
            if lines[0] == "acquired":
                return
            holder = parse_lock("\n".join(lines[1:]))
            why = stale_reason(holder, time.time())
            if holder is None or why is None:
                raise LockHeld(conn.host.name, holder)
            moved = conn.run(ShellScript(_takeover_script(holder.token)), timeout=30).stdout.strip()
            if moved == "moved":
                self._say(f"{conn.host.name}: took over the lab lock of {holder.describe()}: {why}")
            # else another run took it over first, or it went: look again
        raise LockHeld(conn.host.name, read_lock(conn))

    def renew_if_due(self) -> None:
        """Renew once a quarter of the lock's lifetime has gone by (cheap to call often)."""
        if self.info.expires - time.time() < 0.75 * self.ttl:
            self.renew()

    def renew(self) -> None:
        """Push the expiry `ttl` ahead (between the steps of a long run)."""
        self.info = LockInfo(**{**asdict(self.info), "expires": time.time() + self.ttl})
        for host in self.held:
            out = self.conns[host].run(
                ShellScript(_renew_script(self.info.to_json(), self.token)), timeout=30
            )
            if out.stdout.strip() == "lost":
                raise LabctlError(f"{host}: the lab lock was taken over by another run")

    def release(self) -> None:
        """Release what this run holds; a host that cannot be reached keeps its lock until it
        expires (said, not raised: releasing happens on the way out of a failure already)."""
        for host in reversed(self.held):
            try:
                self.conns[host].run(ShellScript(_release_script(self.token)), timeout=30)
            except LabctlError as exc:
                self._say(f"{host}: lock not released ({exc}); it expires by itself")
        self.held = []

    def __enter__(self) -> LabLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "?"


@contextmanager
def lab_locked(
    hosts: Sequence[Host],
    purpose: str,
    ttl: float = DEFAULT_TTL,
    on_message: Callable[[str], None] | None = None,
) -> Iterator[LabLock]:
    """Hold the lock on `hosts` for the body (its own connections: one more SSH login each)."""
    with (
        Connections(hosts) as conns,
        LabLock(conns, [h.name for h in hosts], purpose, ttl, on_message) as lock,
    ):
        yield lock
