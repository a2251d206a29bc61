"""What a playbook run gives back: a result per task and host, a recap per host, and the
reporter protocol views implement; a failed step's whole output kept in a log per host."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from labctl.actions.base import Undo
from labctl.play.model import Play

Status = Literal["ok", "changed", "failed", "skipped", "unreachable"]


@dataclass(frozen=True)
class TaskHostResult:
    play: str
    task: str
    host: str
    status: Status
    msg: str = ""
    changes: tuple[str, ...] = ()
    diff: str | None = None
    output: Mapping[str, Any] = field(default_factory=dict)
    duration: float = 0.0
    ignored: bool = False  # failed, but the task has ignore_errors
    rescued: bool = False  # failed inside a block whose rescue then ran
    log: str = ""  # a failed step's whole output
    log_file: str | None = None  # where that output was written
    undo: tuple[Undo, ...] = ()  # what puts back what this task changed on this host
    delegated: str | None = None  # "localhost" when the task ran on the controller


@dataclass
class HostRecap:
    ok: int = 0
    changed: int = 0
    unreachable: int = 0
    failed: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0


@dataclass
class PlaybookRun:
    results: list[TaskHostResult] = field(default_factory=list)
    recap: dict[str, HostRecap] = field(default_factory=dict)

    def undo_by_host(self) -> dict[str, list[Undo]]:
        """What puts back the run's changes, per host, in the order they were made."""
        out: dict[str, list[Undo]] = {}
        for r in self.results:
            if r.undo:
                out.setdefault(r.host, []).extend(r.undo)
        return out

    @property
    def exit_status(self) -> int:
        """0 all well, 2 a host failed, 4 a host was unreachable (Ansible's codes)."""
        if any(r.failed for r in self.recap.values()):
            return 2
        if any(r.unreachable for r in self.recap.values()):
            return 4
        return 0

    def record(self, result: TaskHostResult) -> None:
        self.results.append(result)
        recap = self.recap.setdefault(result.host, HostRecap())
        if result.ignored:
            recap.ignored += 1
        elif result.rescued:
            recap.rescued += 1
        elif result.status == "changed":
            recap.changed += 1
            recap.ok += 1
        else:
            setattr(recap, result.status, getattr(recap, result.status) + 1)


class Reporter(Protocol):
    """What a run tells whoever shows it. While a task runs, `host_progress` and
    `host_finished` come from the hosts' own threads (a long action's current step, then its
    end); `task_done` once every host is done, also when the run is interrupted; then
    `host_done` with each result, in host order."""

    def play_start(self, play: Play, hosts: list[str]) -> None: ...
    def task_start(self, play: Play, task_name: str, hosts: list[str]) -> None: ...
    def host_progress(self, host: str, text: str) -> None: ...
    def host_finished(self, host: str) -> None: ...
    def host_done(self, result: TaskHostResult) -> None: ...
    def task_done(self) -> None: ...


class QuietReporter:
    """Says nothing while a run goes (--json, a nightly's provisioning)."""

    def play_start(self, play: Play, hosts: list[str]) -> None: ...
    def task_start(self, play: Play, task_name: str, hosts: list[str]) -> None: ...
    def host_progress(self, host: str, text: str) -> None: ...
    def host_finished(self, host: str) -> None: ...
    def host_done(self, result: TaskHostResult) -> None: ...
    def task_done(self) -> None: ...


class HostLogs:
    """One log file per host for this run, written only when a step fails: its command and
    whole output, which the task's message then names."""

    def __init__(self, log_dir: Path | None) -> None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.dir = log_dir / f"{stamp}-{os.getpid()}" if log_dir is not None else None
        self._lock = threading.Lock()

    def keep(self, result: TaskHostResult) -> TaskHostResult:
        if self.dir is None or not result.log:
            return result
        path = self.dir / f"{result.host}.log"
        header = f"=== {time.strftime('%F %T')} play [{result.play}] task [{result.task}]\n"
        try:
            with self._lock:
                self.dir.mkdir(parents=True, exist_ok=True)
                with path.open("a", encoding="utf-8", errors="replace") as fh:
                    fh.write(header + result.log + "\n")
        except OSError as exc:
            note = f"\n(the whole output could not be written to {path}: {exc.strerror})"
            return replace(result, msg=result.msg + note)
        return replace(result, msg=f"{result.msg}\nfull output: {path}", log_file=str(path))
