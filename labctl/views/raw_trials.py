"""The raw trials beside a report: `run-<id>-trials.csv` and `run-<id>-trials.jsonl` in the
page's directory, linked from it by relative links, so a reader who doubts a plot opens the
numbers it was drawn from (and the page and its files move together)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from labctl.experiments import spec_of
from labctl.results.export import export_runs
from labctl.results.store import ResultsStore

FORMATS = ("csv", "jsonl")

# (run id, "csv" | "jsonl") -> the file's text
Export = Callable[[int, str], str]


@dataclass(frozen=True)
class RawLink:
    fmt: str  # csv | jsonl
    href: str  # the file's name: relative to the page, which sits beside it


def trials_text(store: ResultsStore, run_id: int, fmt: str) -> str:
    """One run's trials as the tidy table `labctl results.export` writes: CSV, or JSON
    Lines. The report's one call of the export."""
    return export_runs(store, [run_id], fmt, spec_of=spec_of)


def store_export(store: ResultsStore) -> Export:
    return lambda run_id, fmt: trials_text(store, run_id, fmt)


def raw_name(run_id: int, fmt: str) -> str:
    return f"run-{run_id}-trials.{fmt}"


def write_raw_trials(
    directory: Path, run_ids: Iterable[int], export: Export
) -> dict[int, tuple[RawLink, ...]]:
    """Each run's files in `directory`, each written whole (temp file, then rename)."""
    directory.mkdir(parents=True, exist_ok=True)
    links: dict[int, tuple[RawLink, ...]] = {}
    for run_id in dict.fromkeys(run_ids):
        for fmt in FORMATS:
            write_atomically(directory / raw_name(run_id, fmt), export(run_id, fmt))
        links[run_id] = tuple(RawLink(fmt, raw_name(run_id, fmt)) for fmt in FORMATS)
    return links


def write_atomically(path: Path, text: str) -> Path:
    """A reader (or a web server) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the file from a web server
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
