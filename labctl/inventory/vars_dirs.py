"""group_vars/ and host_vars/ beside an inventory or a playbook, found as Ansible's
host_group_vars plugin finds them (checked against ansible-inventory 2.17):

- for a name, the first of `NAME`, `NAME.yml`, `NAME.yaml`, `NAME.json` that exists is used,
  and only that one (a `web` file hides `web.yml`);
- if it is a directory, every file in it and its subdirectories, in sorted order, whose
  name has one of those extensions or none; hidden files and `~` backups are skipped;
- an empty file adds nothing; later files override earlier ones key by key.

Files are read when a host or group asks for them, once each per load.
"""

from __future__ import annotations

import os
from pathlib import Path

from labctl.errors import InputError, InventoryError
from labctl.inventory.draft import Layer
from labctl.inventory.yaml_format import mapping_of
from labctl.yamlfile import compose, read_text

_EXTENSIONS = ("", ".yml", ".yaml", ".json")


class VarsDir:
    """The group_vars/ and host_vars/ of one directory (an inventory's or a playbook's)."""

    def __init__(self, base_dir: str | os.PathLike[str]) -> None:
        self.base_dir = os.path.abspath(base_dir)
        self._found: dict[tuple[str, str], list[Layer]] = {}  # (subdir, name) -> layers
        self._read: dict[str, Layer | None] = {}  # file -> its variables; None: empty

    def group(self, name: str) -> list[Layer]:
        return self._layers("group_vars", name)

    def host(self, name: str) -> list[Layer]:
        return self._layers("host_vars", name)

    def _layers(self, subdir: str, name: str) -> list[Layer]:
        if (subdir, name) not in self._found:
            layers = (self._file(path) for path in _files(Path(self.base_dir, subdir), name))
            self._found[subdir, name] = [layer for layer in layers if layer is not None]
        return self._found[subdir, name]

    def _file(self, path: str) -> Layer | None:
        if path not in self._read:
            self._read[path] = _load(path, self.base_dir)
        return self._read[path]


def _files(directory: Path, name: str) -> list[str]:
    # A name that is a path (Ansible skips those starting with "/") must not reach outside.
    if not directory.is_dir() or not name or "/" in name or name in (".", ".."):
        return []
    for ext in _EXTENSIONS:
        candidate = directory / (name + ext)
        if candidate.is_dir():
            return _tree(candidate)
        if candidate.exists():
            return [str(candidate)]
    return []


def _tree(directory: Path) -> list[str]:
    found: list[str] = []
    for entry in sorted(os.listdir(directory)):
        if entry.startswith(".") or entry.endswith("~"):
            continue
        path = directory / entry
        ext = os.path.splitext(entry)[1]
        if path.is_dir() and not ext:
            found += _tree(path)
        elif path.is_file() and ext in _EXTENSIONS:
            found.append(str(path))
    return found


def _load(path: str, base_dir: str) -> Layer | None:
    try:
        text = read_text(path)
    except InputError as exc:  # unreadable, or not UTF-8: the same words, as InventoryError
        where = f"{path}:{exc.line}: " if exc.line is not None else f"{path}: "
        raise InventoryError(exc.message.removeprefix(where), path, exc.line) from exc
    root = compose(text, path, InventoryError)
    if root is None:
        return None
    variables, key_lines = mapping_of(root, path, "a vars file")
    if not variables:
        return None
    layer = Layer(path, 0, base_dir)
    layer.add(variables, os.path.relpath(path, base_dir), 0, key_lines)
    return layer
