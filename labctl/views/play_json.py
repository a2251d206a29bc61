"""A playbook run as one JSON document (`labctl play --json`): every result and the recap
per host. Apart from views/play.py, so that `--json` imports no terminal library."""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from labctl.play.run import PlaybookRun


def run_as_json(run: PlaybookRun) -> str:
    doc: dict[str, Any] = {
        "results": [_fields(r) for r in run.results],
        "recap": {h: _fields(r) for h, r in run.recap.items()},
        "exit_status": run.exit_status,
    }
    return json.dumps(doc, indent=2, default=_other)


def _fields(value: Any) -> dict[str, Any]:
    """A dataclass's fields, not copied (dataclasses.asdict deep-copies every registered
    output); the encoder reaches nested ones through `_other`."""
    return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}


def _other(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _fields(value)
    return str(value)
