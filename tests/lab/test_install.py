"""labctl installed like a Python tool (docs/install.md): `pip install` of the checkout, not
editable, into a fresh virtualenv; from a directory outside the checkout the installed
`labctl` provisions the workloads and runs a reuseport trial on the namespace lab."""

from __future__ import annotations

import os
import pwd
import shutil
import sqlite3
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from labctl import __version__
from tests.unit.test_install import build_env, source_copy

from .conftest import NamespaceLab

pytestmark = pytest.mark.lab


# Wheels of labctl's dependencies and build requirements, kept between sessions: the install
# then needs no index (pip's lookups there took ~30 of its ~75 s) and compiles no bytecode.
WHEELHOUSE = Path(pwd.getpwuid(os.getuid()).pw_dir) / ".cache" / "labctl-tests" / "wheels"


def pip_install(venv: Path, src: Path) -> None:
    """`pip install SRC` (not editable) with the venv's own pip, from the wheelhouse; filled
    from the index on first use, or when a dependency is not there yet."""
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    offline = [*pip, "install", "-q", "--no-compile", "--no-index", "--find-links"]

    def install() -> subprocess.CompletedProcess[str]:
        argv = [*offline, str(WHEELHOUSE), str(src)]
        return subprocess.run(argv, capture_output=True, text=True, timeout=600)

    proc = install()
    if proc.returncode != 0:
        build = tomllib.loads((src / "pyproject.toml").read_text())["build-system"]["requires"]
        fill = subprocess.run(
            [*pip, "download", "-q", "-d", str(WHEELHOUSE), str(src), *build],
            capture_output=True,
            text=True,
            timeout=900,
            env=build_env(),
        )
        assert fill.returncode == 0, fill.stderr
        proc = install()
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The bin/ of a fresh virtualenv with labctl pip-installed from a copy of the checkout
    (pip builds in the source tree: its build/ stays out of ours). Removed whatever happens."""
    top = tmp_path_factory.mktemp("install")
    venv = top / "venv"
    try:
        src = source_copy(top / "src")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
        started = time.monotonic()
        pip_install(venv, src)
        print(f"pip install of labctl and its dependencies: {time.monotonic() - started:.1f} s")
        shutil.rmtree(src)  # nothing of the checkout's copy is left to lean on
        yield venv / "bin"
    finally:
        shutil.rmtree(venv, ignore_errors=True)


def run_installed(
    bin_dir: Path, cwd: Path, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """A program of the virtualenv, with nothing of the checkout on its path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env.pop("LABCTL_EXPERIMENT_MODULES", None)
    return subprocess.run(
        [str(bin_dir / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=cwd,
    )


def test_an_installed_labctl_provisions_and_runs_an_experiment(
    lab: NamespaceLab, installed: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    venv = installed.parent

    proc = run_installed(installed, elsewhere, "labctl", "--version")
    assert proc.returncode == 0, proc.stderr
    assert __version__ in proc.stdout
    probe = "import labctl.paths as p; print(p.PROJECT_DIR)"
    proc = run_installed(installed, elsewhere, "python", "-c", probe)
    data = Path(proc.stdout.strip())
    assert data.is_relative_to(venv) and data.name == "data", proc.stdout + proc.stderr

    inv = str(lab.inventory_path)
    proc = run_installed(
        installed, elsewhere, "labctl", "provision", "--tags", "workloads", "-i", inv
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    on_host = lab.host("srv1").run(["cat", "/root/labctl/workloads/Makefile"]).stdout
    assert on_host == (data / "workloads" / "Makefile").read_text()

    store = tmp_path / "x.db"
    proc = run_installed(
        installed,
        elsewhere,
        "labctl",
        "experiment",
        "reuseport",
        "--duration",
        "1",
        "--repeat",
        "1",
        "--workers",
        "1",
        "--modes",
        "shared",
        "--port",
        "5141",
        "-i",
        inv,
        "--store",
        str(store),
        "--plot",
        str(tmp_path / "x.png"),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with sqlite3.connect(store) as con:
        (accepted,) = con.execute(
            "SELECT count(*) FROM trials WHERE kind = 'accept' AND NOT warmup AND valid"
        ).fetchone()
    assert accepted == 1
