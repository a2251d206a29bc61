"""What every kind of lab shares (the namespace lab, labs/netns.py; the VM lab, labs/vm.py):
its state directory's files, the record of what `up` made (lab.json, written before each
thing is made, so `down` finds it even after a crash), change reports, and the few local
commands a lab runs: a bounded subprocess, an atomic write, stopping processes by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl.errors import LabError
from labctl.procs import process_start_time

DEFAULT_STATE_ROOT = Path("/var/lib/labctl")
MADE_FILE = ".labctl-made.json"  # what `up` made in the state directory: all `--purge` removes
# The files `up` writes in every lab's state directory, besides each host's directory.
STATE_FILES = ("id_ed25519", "id_ed25519.pub", "known_hosts", "lab.json")
INVENTORY_FILE = "inventory.yml"  # written only by `lab.up --hosts/--vms N`
_HOST_DIR_RE = re.compile(r"^(hosts|vms)/[a-z][a-z0-9-]{0,30}$")
LAB_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,7}$")  # prefixes of 15-char interface names
HOST_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")  # goes into netns names, paths, hostname
LAB_VAR = "labctl_lab"  # inventory var naming the lab a host belongs to


class LabStateFiles:
    """The files every kind of lab keeps in its state directory."""

    state_dir: Path

    @property
    def key_file(self) -> Path:
        return self.state_dir / "id_ed25519"

    @property
    def known_hosts_file(self) -> Path:
        return self.state_dir / "known_hosts"

    @property
    def record_file(self) -> Path:
        return self.state_dir / "lab.json"


@dataclass
class LabChange:
    """One thing `up` or `down` did (or found already in place)."""

    what: str
    changed: bool


@dataclass
class LabReport:
    lab: str
    changes: list[LabChange] = field(default_factory=list)

    @property
    def changed(self) -> int:
        return sum(c.changed for c in self.changes)


def run(
    argv: Sequence[str], check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=60,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"`{' '.join(argv)}` did not finish within 60 s") from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise LabError(f"`{' '.join(argv)}` failed: {detail[0] if detail else proc.returncode}")
    return proc


def _key_comment(pub: Path) -> str | None:
    try:
        fields = pub.read_text().split()
    except OSError:
        return None
    return fields[2] if len(fields) >= 3 else None


def terminate(pids: Sequence[int], grace: float = 3.0) -> None:
    """SIGTERM, wait (bounded), then SIGKILL what is left, and wait (bounded) until it is
    gone: a caller that checks right after finds nothing running. PIDs only, never names."""
    starts = {pid: process_start_time(pid) for pid in pids}
    alive = [p for p, s in starts.items() if s is not None]
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while alive and time.monotonic() < deadline:
            time.sleep(0.02)
            alive = [p for p in alive if process_start_time(p) == starts[p]]


def atomic_write(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    tmp.replace(path)


class RecordedLab:
    """What every kind of lab shares: the record of what `up` made (lab.json, written
    before each thing is made, so `down` finds it even after a crash), progress lines, keys."""

    def __init__(self, record_file: Path, progress: Callable[[str], None] | None) -> None:
        self._record_file = record_file
        self._say = progress or (lambda _msg: None)
        self._record: dict[str, Any] = {}

    def _load_record(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self._record_file.read_text())
            return data
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise LabError(f"{self._record_file}: unreadable lab record: {exc}") from exc

    def _save_record(self) -> None:
        atomic_write(self._record_file, json.dumps(self._record, indent=2) + "\n", 0o600)

    def _note(self, kind: str, name: str, **extra: Any) -> None:
        self._record.setdefault(kind, {})[name] = extra
        self._save_record()

    # -- what `up` makes in the state directory, and nothing else
    def _made_file(self) -> Path:
        return self._record_file.parent / MADE_FILE

    def _load_made(self) -> list[str]:
        try:
            made = json.loads(self._made_file().read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise LabError(f"{self._made_file()}: unreadable: {exc}") from exc
        return [str(m) for m in made] if isinstance(made, list) else []

    def _claim_state_dir(self, lab_name: str, host_dirs: Sequence[Path]) -> None:
        """Before `up` writes anything: every file and host directory it writes in the state
        directory must be absent or made by labctl (listed in MADE_FILE), so a state directory
        pointed at ~/.ssh never costs a user's key. Then all are listed, before they are made."""
        state = self._record_file.parent
        self._claim(lab_name, [*STATE_FILES, *(str(d.relative_to(state)) for d in host_dirs)])

    def _claim(self, lab_name: str, wanted: Sequence[str]) -> None:
        state = self._record_file.parent
        made = self._load_made()
        if not made and _key_comment(state / "id_ed25519.pub") == f"labctl@{lab_name}":
            # A state directory of a labctl older than MADE_FILE, known by its key's comment.
            made = [rel for rel in (*STATE_FILES, INVENTORY_FILE) if (state / rel).exists()]
            made += [str(d.relative_to(state)) for d in state.glob("*/*") if d.is_dir()]
        foreign = [rel for rel in wanted if (state / rel).exists() and rel not in made]
        if foreign:
            raise LabError(
                f"{state / foreign[0]} exists and labctl did not make it: set "
                "labctl_lab_state_dir to a directory of the lab's own"
            )
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
        listed = json.dumps(sorted(set(made) | set(wanted))) + "\n"
        atomic_write(self._made_file(), listed, 0o600)

    def write_inventory(self, lab_name: str, text: str) -> Path:
        """The lab's inventory in its state directory (`lab.up --hosts/--vms N`), written
        only over one labctl wrote."""
        self._claim(lab_name, [INVENTORY_FILE])
        path = self._record_file.parent / INVENTORY_FILE
        atomic_write(path, text)
        return path

    def _purge_made(self) -> None:
        """Delete what MADE_FILE lists (files, and host directories whole), then the list,
        then the directories that left empty. Nothing it does not list."""
        state = self._record_file.parent
        for rel in self._load_made():
            if rel not in (*STATE_FILES, INVENTORY_FILE) and not _HOST_DIR_RE.match(rel):
                continue  # only names `up` uses, whatever the list says
            path = state / rel
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
            path.with_name(path.name + ".tmp").unlink(missing_ok=True)
        self._made_file().unlink(missing_ok=True)
        for empty in (state / "hosts", state / "vms", state):
            with contextlib.suppress(OSError):  # not empty: something else lives there
                empty.rmdir()

    @staticmethod
    def _ensure_key(path: Path, comment: str) -> LabChange:
        if path.exists():
            return LabChange(f"key {path.name}", False)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
        return LabChange(f"key {path.name}", True)
