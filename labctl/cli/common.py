"""What every command module shares: errors as one line and an exit status, the console,
the inventory, the exit status of a step run on many hosts, JSON out.

Every command module imports at its top only what its tasks' signatures and help need, and
the rest inside the task, so `labctl --version` or `labctl play` imports nothing another
command uses (issue 18; tests/unit/test_startup.py)."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from invoke import Exit

from labctl.errors import InputError, LabctlError
from labctl.paths import (
    EXIT_ERROR,
    EXIT_FAILED,
    EXIT_UNREACHABLE,
    PROJECT_DIR,
)
from labctl.settings import load_settings

if TYPE_CHECKING:
    from rich.console import Console

    from labctl.inventory import Inventory
    from labctl.remote import HostOutcome
    from labctl.results.store import ResultsStore

F = TypeVar("F", bound=Callable[..., Any])


# How each default is named in the help: its value lives in one place, labctl/settings.py.
INVENTORY_DEFAULT = "(default: the local lab's; `labctl config` shows it)"
INVENTORY_HELP = f"inventory file {INVENTORY_DEFAULT}"
STORE_HELP = (
    "results store: a sqlite file or postgresql://user@host/db "
    "(default: under ~/.local/share/labctl; `labctl config` shows it)"
)


def default_inventory() -> str:
    """The inventory a command uses without -i (labctl.toml, LABCTL_INVENTORY or the local
    lab's)."""
    return load_settings().inventory.value


def store_path(given: str | None) -> str:
    """The results store: the flag's, else the settings' (never the working directory's)."""
    return given or load_settings().store.value


def open_store(given: str | None, create: bool = True) -> ResultsStore:
    """The results store (`--store`, else the settings'), writing runs as the settings' lab."""
    from labctl.results.store import ResultsStore

    settings = load_settings()
    return ResultsStore(given or settings.store.value, create=create, lab=settings.lab.value)


def output_path(given: str | None, name: str) -> Path:
    """Where a plot, page or export goes: the flag's path, else NAME in the output dir."""
    return Path(given) if given else Path(load_settings().output_dir.value) / name


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
        except Exception as exc:
            if _is_store_error(exc):  # a store damaged under a query
                raise Exit(f"labctl: results store: {exc}", code=EXIT_ERROR) from exc
            raise

    return wrapper  # type: ignore[return-value]


def _is_store_error(exc: Exception) -> bool:
    """A database error the store did not turn into one line: only a command that imported
    the store can raise one."""
    sqlite3, sqlalchemy_exc = sys.modules.get("sqlite3"), sys.modules.get("sqlalchemy.exc")
    return (sqlite3 is not None and isinstance(exc, sqlite3.DatabaseError)) or (
        sqlalchemy_exc is not None and isinstance(exc, sqlalchemy_exc.SQLAlchemyError)
    )


def console() -> Console:
    from rich.console import Console

    return Console(highlight=False)


def inventory(path: str | None, playbook: str | None = None) -> Inventory:
    """The inventory (default: the local lab's), with the group_vars/ and host_vars/ beside
    `playbook` when one is given (Ansible reads those too)."""
    from labctl.inventory import load_inventory

    playbook_dir = Path(playbook).resolve().parent if playbook else None
    return load_inventory(path or default_inventory(), playbook_dir=playbook_dir)


def run_id(text: str) -> int:
    """A run id given on the command line (invoke hands positional arguments over as text)."""
    if not str(text).strip().isdigit():
        raise InputError(f"run {text!r}: expected a run id (see results.list)")
    return int(text)


def project_file(path: str) -> Path:
    """A relative path as given if it is there, else the checkout's (playbooks/nightly.yml)."""
    given = Path(path)
    if given.is_file() or given.is_absolute():
        return given
    in_project = PROJECT_DIR / given
    return in_project if in_project.is_file() else given


def json_dumps(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False)


def exit_for_hosts(outcomes: Sequence[HostOutcome[Any]]) -> None:
    """Each failed host's reason on stderr; exit 4 if one was unreachable, else 2 if one
    failed; nothing if all went well."""
    failed = [o for o in outcomes if not o.ok]
    for o in failed:
        print(f"labctl: {o.error}", file=sys.stderr)
    if failed:
        raise Exit(code=EXIT_UNREACHABLE if any(o.unreachable for o in failed) else EXIT_FAILED)
