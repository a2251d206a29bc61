"""What the results store holds, as plain records: a trial, a run's summary, a nightly."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl.errors import LabctlError


@dataclass(frozen=True)
class TrialRecord:
    seq: int
    kind: str
    warmup: bool
    params: Mapping[str, Any]
    started: float
    duration: float
    valid: bool
    reason: str
    metrics: Mapping[str, float]
    state: Mapping[str, Any] = field(default_factory=dict)
    outputs: tuple[tuple[str, str, str, str], ...] = ()  # (host, role, stream, text)


@dataclass(frozen=True)
class RunSummary:
    id: int
    experiment: str
    started: float
    finished: float | None
    status: str
    trials: int
    valid: int
    params: Mapping[str, Any]
    note: str = ""
    fingerprint: str | None = None
    label: str | None = None
    labctl_version: str = ""
    inventory: str = ""
    seed: int | None = None
    lab: str = ""


@dataclass(frozen=True)
class NightlyRecord:
    id: int
    suite: str
    started: float
    finished: float | None
    status: str
    runs: Mapping[str, int]
    summary: Mapping[str, Any]
    lab: str = ""


class StoreError(LabctlError):
    """A results store that cannot be read or written: not a database, a damaged row, a
    server that refuses."""


def lab_of(inventory: str) -> str:
    """The lab a run ran on, when nobody named it: its inventory file's name."""
    name = Path(inventory).name
    for suffix in (".yml", ".yaml", ".ini", ".cfg"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def loads(text: Any, what: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"damaged results store: {what} is not JSON ({exc})") from exc
