"""What the namespace-lab and VM-lab fixtures share: names owned by a pytest PID, the
command line as a user runs it, and SIGTERM turned into a clean teardown."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TEST_LABS = Path("/tmp/labctl-test-labs")  # outside pytest's rotated temp dirs, on purpose


def base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


ROOT = Path(__file__).resolve().parents[1]


def labctl_argv(*args: str) -> list[str]:
    """The `labctl` command line with this interpreter (`python -m labctl`)."""
    return [sys.executable, "-m", "labctl", *args]


def run_labctl(
    *args: str, timeout: float, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The `labctl` command line, as a user runs it (`env`: variables added to ours)."""
    argv = labctl_argv(*args)
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **env} if env else None,
        cwd=cwd,
    )


def plugin_env() -> dict[str, str]:
    """The test-only experiment `echo` (tests/plugins/echo_experiment.py) made known."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {"LABCTL_EXPERIMENT_MODULES": "tests.plugins.echo_experiment", "PYTHONPATH": path}


def sigterm_runs_teardown(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds through every fixture's finally


def is_session_shell(pid: int | str) -> bool:
    """The shell of a live SSH session: labctl keeps one `sh` per connection open (one of its
    own, or the test harness's) and it ends with the connection; not a program left behind.
    Its parent is the host's per-connection sshd."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        ppid = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[1]
        return cmdline == b"sh\0" and os.readlink(f"/proc/{ppid}/exe") == "/usr/sbin/sshd"
    except (OSError, IndexError):
        return False


@contextlib.contextmanager
def store_sql(url: str) -> Iterator[Any]:
    """Plain SQL on a results store, whichever backend it is (a path or a postgresql:// URL):
    the tests read and poke rows with it."""
    from labctl.results.backend import locate, make_engine

    engine = make_engine(locate(url))
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()
