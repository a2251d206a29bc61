"""What the benchmarks share: a namespace lab of their own, and timing a whole process."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from labctl.labs.netns import LocalLab
from labctl.labs.netns_spec import LabSpec


def timed(argv: list[str], timeout: float = 300) -> tuple[float, str]:
    """Wall seconds and stdout of one run; any failure ends the benchmark with its reason."""
    started = time.perf_counter()
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(
            f"benchmark: {argv[2:5]} exited {proc.returncode}: "
            f"{proc.stderr.strip() or proc.stdout[-500:]}"
        )
    return elapsed, proc.stdout


@contextmanager
def bench_lab(prefix: str, octet: int, hosts: int) -> Iterator[tuple[LabSpec, Path]]:
    """A lab with its own names and 10.x subnet, and its inventory; always removed."""
    if os.geteuid() != 0:
        raise SystemExit("benchmark: needs root (it builds a namespace lab)")
    with tempfile.TemporaryDirectory(prefix="labctl-bench-") as tmp:
        pid = os.getpid()
        spec = LabSpec.generated(
            f"{prefix}{pid % 10000}", f"10.{octet}.{pid % 250}.0/24", hosts, Path(tmp) / "lab"
        )
        lab = LocalLab(spec)
        try:
            lab.up()
            inventory = spec.state_dir / "inventory.yml"
            inventory.write_text(spec.inventory_yaml())
            yield spec, inventory
        finally:
            lab.down(purge=True)


LABCTL = ["-m", "labctl"]  # after sys.executable: the `labctl` command
