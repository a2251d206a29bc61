"""What every task module shares: exit statuses, error reporting, the console, the inventory."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from invoke import Exit
from rich.console import Console

from labctl.errors import InputError, LabctlError
from labctl.inventory import Inventory, load_inventory

EXIT_ERROR, EXIT_FAILED, EXIT_UNREACHABLE = 1, 2, 4
PROJECT_DIR = Path(__file__).resolve().parent.parent

F = TypeVar("F", bound=Callable[..., Any])


def default_log_dir() -> Path:
    """Where a failed step's whole output goes: $LABCTL_LOG_DIR, else the XDG state dir."""
    given = os.environ.get("LABCTL_LOG_DIR")
    if given:
        return Path(given)
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "labctl" / "logs"


def default_inventory() -> str:
    """hosts/local.yml of this checkout (the local lab), else of the current directory."""
    candidate = PROJECT_DIR / "hosts" / "local.yml"
    return str(candidate if candidate.exists() else Path("hosts") / "local.yml")


def errors_as_exit(fn: F) -> F:
    """labctl's errors end the task with one line on stderr and the right exit status."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except InputError as exc:
            raise Exit(f"labctl: {exc}", code=EXIT_FAILED) from exc
        except LabctlError as exc:
            raise Exit(f"labctl: {exc}", code=EXIT_ERROR) from exc

    return wrapper  # type: ignore[return-value]


def console() -> Console:
    return Console(highlight=False)


def inventory(path: str | None) -> Inventory:
    return load_inventory(path or default_inventory())
