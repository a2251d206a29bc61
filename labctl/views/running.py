"""The task a playbook run is in, as its live line shows it: which hosts it still runs on,
what each is doing now (a long action's sub-step) and for how long."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from labctl.views.live import clock


@dataclass
class HostStep:
    text: str  # "" until the action says what it is doing
    since: float


class RunningTask:
    """One task's hosts still running; safe to update from the hosts' threads while the
    live display reads it from its own."""

    def __init__(self, name: str, hosts: list[str], now: float) -> None:
        self.name = name
        self.started = now
        self._hosts = {h: HostStep("", now) for h in hosts}
        self._lock = threading.Lock()

    def step(self, host: str, text: str, now: float) -> None:
        with self._lock:
            if host in self._hosts:
                self._hosts[host] = HostStep(text, now)

    def done(self, host: str) -> None:
        with self._lock:
            self._hosts.pop(host, None)

    def line(self, now: float, shown: int = 3) -> str:
        """`TASK [build netmap] 1:12 · srv1: netmap make on controller (2 of 3) 35 s · cli1`:
        each host with its current step and the time in it; past `shown` hosts, a count."""
        with self._lock:
            hosts = list(self._hosts.items())
        parts = [f"TASK [{self.name}] {clock(now - self.started)}"]
        for host, step in hosts[:shown]:
            parts.append(f"{host}: {step.text} {clock(now - step.since)}" if step.text else host)
        if len(hosts) > shown:
            parts.append(f"+{len(hosts) - shown} more")
        return " · ".join(parts)
