"""Type and lint checks as tests, so the one test command covers them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_mypy_strict_defs_pass() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_passes() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---------------------------------------------------------------------------- the house

# docs/architecture.md: each room's floor; a module imports only from its floor and below.
FLOORS: dict[str, int] = {
    **dict.fromkeys(
        [
            "errors",
            "procs",
            "filelock",
            "stats",
            "yamlfile",
            "paths",
            "failures",
            "metrics",
            "digests",
            "settings",
            "batch",
            "shell_text",
            "defaults",
        ],
        0,
    ),
    **dict.fromkeys(
        [
            "inventory",
            "templating",
            "filters",
            "remote",
            "ssh_options",
            "ssh_dial",
            "ssh_session",
            "localhost",
        ],
        1,
    ),
    **dict.fromkeys(["facts", "labs", "results"], 2),
    "builds": 3,
    "actions": 4,
    "play": 5,
    "experiments": 6,
    "nightly": 7,
    "views": 8,
    "cli": 9,
    "__main__": 10,
}
PRESENTATION = ("rich", "matplotlib", "markupsafe")


def _room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "labctl" else None


def _imports(path: Path) -> list[tuple[int, str]]:
    import ast

    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return found


def _modules() -> list[tuple[Path, str]]:
    out = []
    for path in sorted((ROOT / "labctl").rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        out.append((path, ".".join(rel.parts)))
    return out


def test_imports_only_go_down() -> None:
    wrong = []
    for path, module in _modules():
        room = _room(module)
        if room is None or room == "__init__":
            continue
        assert room in FLOORS, f"{module}: room {room!r} has no floor in FLOORS"
        for line, imported in _imports(path):
            other = _room(imported)
            if other is None or other == "__init__" or other == room:
                continue
            if FLOORS[other] > FLOORS[room]:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {room} imports {imported}")
    assert not wrong, "\n".join(wrong)


def test_presentation_libraries_only_in_views_and_cli() -> None:
    wrong = [
        f"{path.relative_to(ROOT)}:{line}: {imported}"
        for path, module in _modules()
        if _room(module) not in ("views", "cli")
        for line, imported in _imports(path)
        if imported.split(".")[0] in PRESENTATION
    ]
    assert not wrong, "\n".join(wrong)


def test_a_long_module_says_why() -> None:
    import ast

    long = []
    for path, _ in _modules():
        text = path.read_text()
        if text.count("\n") > 500:
            doc = ast.get_docstring(ast.parse(text)) or ""
            if "Why one module" not in doc:
                long.append(f"{path.relative_to(ROOT)}: {text.count(chr(10))} lines")
    assert not long, "\n".join(long)


def test_the_repo_cites_only_itself() -> None:
    """Code and docs cite files inside the repo (docs/), never a document outside it."""
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    wrong = []
    for name in tracked:
        path = ROOT / name
        if name.startswith("tests/unit/data/") or not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for needle in ("DESIGN.md", "../shared", "DESIGN §", "DESIGN section"):
            if needle in text and name != "tests/unit/test_static.py":
                wrong.append(f"{name}: {needle}")
    assert not wrong, "\n".join(wrong)
    for cited in {m for m in _doc_citations(tracked)}:
        assert (ROOT / cited).is_file(), f"{cited} is cited but not in the repo"


def _doc_citations(tracked: list[str]) -> set[str]:
    import re

    found: set[str] = set()
    for name in tracked:
        path = ROOT / name
        if path.suffix in (".py", ".md", ".yml", ".c", ".sh") and path.is_file():
            found |= set(re.findall(r"\bdocs/[a-z0-9_-]+\.md\b", path.read_text()))
    return found
