"""labctl installs like a Python tool (docs/install.md): the wheel and the sdist carry the
playbooks, workloads, templates, fixtures and the local lab's inventory inside the package,
and labctl.paths finds them there when there is no checkout around the package.

The builds run on a copy of the checkout's files (what `git` would ship, plus files not yet
added): pip builds in the source tree, and its build/ and egg-info must not land in a
checkout other people are working in."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from labctl import paths

ROOT = Path(__file__).resolve().parents[2]

# What `provision`, `experiment`, `nightly`, the HTML report and `lab.up` read at run time.
DATA = [
    "playbooks/provision.yml",
    "playbooks/nightly.yml",
    "playbooks/qdisc.yml",
    "workloads/Makefile",
    "workloads/conn_client.c",
    "workloads/reuseport_server.c",
    "templates/report.html.j2",
    "templates/report.css",
    "templates/report.js",
    "fixtures/hello_kmod/Kbuild",
    "fixtures/hello_kmod/hello_kmod.c",
    "fixtures/netmap-fixture/LINUX/configure",
    "fixtures/netmap-fixture/apps/pkt-gen/pkt-gen.c",
    "fixtures/netmap-fixture/sys/netmap.c",
    "hosts/local.yml",
]


def source_copy(dest: Path) -> Path:
    """The checkout's files, tracked or new but not ignored, copied to `dest` (modes kept)."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        src = ROOT / name
        if src.is_file():  # a tracked file deleted in the working tree is not shipped
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def build_env() -> dict[str, str]:
    # The autouse fixture points HOME at a temp dir; pip's cache stays the user's own.
    home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    return {**os.environ, "PIP_CACHE_DIR": str(home / ".cache" / "pip")}


@pytest.fixture(scope="module")
def src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return source_copy(tmp_path_factory.mktemp("src"))


@pytest.fixture(scope="module")
def wheel(src: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip wheel --no-deps .` of the checkout, built as pip builds it for `pip install .`."""
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
        env=build_env(),
    )
    assert proc.returncode == 0, proc.stderr
    (built,) = out.glob("labctl-*.whl")
    return built


def test_the_wheel_carries_labctls_data_inside_the_package(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
        configure = whl.getinfo("labctl/data/fixtures/netmap-fixture/LINUX/configure")
    missing = [d for d in DATA if f"labctl/data/{d}" not in names]
    assert not missing, f"not in {wheel.name}: {missing}"
    assert configure.external_attr >> 16 & 0o111, "configure lost its executable bit"
    # a workload's build output never ships
    assert not [n for n in names if n.startswith("labctl/data/workloads/build")]


def test_the_wheel_carries_every_data_file_of_the_checkout(src: Path, wheel: Path) -> None:
    """A file added to playbooks/ (group_vars/, roles/), templates/, hosts/, fixtures/ or
    workloads/, or a new top-level roles/, ships too, or pyproject.toml is told."""
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
    shipped = [
        f.relative_to(src).as_posix()
        for d in ("playbooks", "templates", "hosts", "fixtures", "workloads", "roles")
        for f in (src / d).rglob("*")
        if f.is_file() and f.name != ".gitignore"
    ]
    assert not [f for f in shipped if f"labctl/data/{f}" not in names], "see docs/install.md"


def test_the_wheel_carries_every_module_of_the_checkout(src: Path, wheel: Path) -> None:
    """pyproject.toml lists the packages by hand: a new one left out works in the editable
    install and breaks every non-editable one."""
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
    modules = [p.relative_to(src).as_posix() for p in (src / "labctl").rglob("*.py")]
    assert modules
    assert not [m for m in modules if m not in names], "add the package to pyproject.toml"


def test_the_installed_package_finds_its_data_beside_itself(wheel: Path, tmp_path: Path) -> None:
    """No checkout around it: labctl.paths points into labctl/data/, and provision.yml's
    ../workloads and ../fixtures resolve there."""
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as whl:
        whl.extractall(site)
    probe = (
        "import labctl.paths as p; print(p.__file__); print(p.PROJECT_DIR); "
        "print(p.PROVISION_PLAYBOOK); print(p.LOCAL_INVENTORY); print(p.TEMPLATES)"
    )
    proc = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r}); {probe}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    )
    module, project, book, inventory, templates = map(Path, proc.stdout.split("\n")[:5])
    assert module == site / "labctl" / "paths.py"
    assert project == site / "labctl" / "data"
    assert book.is_file() and inventory.is_file() and (templates / "report.html.j2").is_file()
    assert (book.parent / ".." / "workloads" / "Makefile").is_file()
    assert (book.parent / ".." / "fixtures" / "hello_kmod" / "Kbuild").is_file()


def test_the_sdist_carries_the_top_level_data(src: Path, tmp_path: Path) -> None:
    """A wheel built from the sdist (pip's route for an sdist from an index) has the same
    sources to map into labctl/data/."""
    out = tmp_path / "sdist"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from setuptools import build_meta; print(build_meta.build_sdist({str(out)!r}))",
        ],
        capture_output=True,
        text=True,
        cwd=src,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    (sdist,) = out.glob("labctl-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    missing = [d for d in DATA if d not in names]
    assert not missing, f"not in {sdist.name}: {missing}"


def test_a_checkout_uses_its_own_top_level_directories() -> None:
    """Editable install and tests: what a developer edits is what runs."""
    assert paths.PROJECT_DIR == ROOT
    assert paths.PROVISION_PLAYBOOK == ROOT / "playbooks" / "provision.yml"
    assert paths.LOCAL_INVENTORY == ROOT / "hosts" / "local.yml"
    assert paths.TEMPLATES == ROOT / "templates"
    assert not (ROOT / "labctl" / "data").exists()
