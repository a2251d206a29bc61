"""What the namespace-lab and VM-lab fixtures share: names owned by a pytest PID, the
command line as a user runs it, and SIGTERM turned into a clean teardown."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TEST_LABS = Path("/tmp/labctl-test-labs")  # outside pytest's rotated temp dirs, on purpose


def base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def run_labctl(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """The `labctl` command line, as a user runs it."""
    argv = [sys.executable, "-c", "from labctl.cli import main; main()", *args]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def sigterm_runs_teardown(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds through every fixture's finally
