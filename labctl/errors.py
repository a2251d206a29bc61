"""One exception root for labctl; every error names what it is about."""

from __future__ import annotations

from typing import Any


class LabctlError(Exception):
    """Root of labctl's errors. ``result`` holds the value the error is about, if any."""

    def __init__(self, message: str, result: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.result = result

    def __str__(self) -> str:
        return self.message


class InputError(LabctlError):
    """Bad user input (inventory, playbook, flags). Reported in one line; exit status 2."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None) -> None:
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)
        self.path = path
        self.line = line


class InventoryError(InputError):
    """An inventory file or host pattern that cannot be used."""


class LabError(LabctlError):
    """The local lab could not be brought up or down."""


class HostUnreachable(LabctlError):
    """A host could not be reached over SSH (connect, auth or host key failure)."""


class CommandTimeout(LabctlError):
    """A command on a host ran past its timeout."""
