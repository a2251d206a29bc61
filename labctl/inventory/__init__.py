"""Ansible inventories (YAML or INI, with group_vars/ and host_vars/), read as Ansible reads
them, with file:line on every error. docs/inventory.md says what is read and in what order.

`load_inventory(path, playbook_dir=None)` is the door; `parse_inventory(text, path)` reads
text alone (no vars directories). The modules: model (Host, Group, Inventory, patterns),
draft (the format-neutral build and the variable merge), yaml_format, ini_format, vars_dirs,
listing (what ansible-inventory prints).
"""

from __future__ import annotations

import os
from pathlib import Path

from yaml.nodes import MappingNode, Node, ScalarNode

from labctl.errors import InventoryError
from labctl.inventory.draft import Draft
from labctl.inventory.ini_format import parse_ini
from labctl.inventory.model import Group, Host, Inventory
from labctl.inventory.vars_dirs import VarsDir
from labctl.inventory.yaml_format import parse_yaml
from labctl.yamlfile import compose

__all__ = ["Group", "Host", "Inventory", "load_inventory", "parse_inventory"]

# The extensions Ansible's yaml inventory plugin accepts (none counts too); any other file
# goes to the ini plugin only.
YAML_EXTENSIONS = ("", ".yml", ".yaml", ".json")


def load_inventory(
    path: str | os.PathLike[str], playbook_dir: str | os.PathLike[str] | None = None
) -> Inventory:
    """The inventory at ``path``, each host's variables merged with the group_vars/ and
    host_vars/ beside the inventory and then, if given, beside the playbook."""
    name = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError(f"cannot read inventory: {exc}", path=name) from exc
    dirs = [VarsDir(os.path.dirname(os.path.abspath(name)))]
    if playbook_dir is not None:
        same = os.path.realpath(playbook_dir) == os.path.realpath(dirs[0].base_dir)
        # The same directory again would apply the same files again: no change.
        if not same:
            dirs.append(VarsDir(playbook_dir))
    return _read(text, name).finish(dirs)


def parse_inventory(text: str, path: str = "<inventory>") -> Inventory:
    """Parse inventory text; relative key paths resolve against ``path``'s directory."""
    return _read(text, path).finish()


def _read(text: str, path: str) -> Draft:
    """YAML or INI, chosen as Ansible chooses: its yaml plugin is tried first, and only for
    the extensions it accepts; the ini plugin takes whatever the yaml plugin could not read.
    When both fail, the error shown is the one of the format the name promises (YAML for
    .yml, .yaml, .json; INI for no extension or any other), not a list of both."""
    extension = os.path.splitext(path)[1].lower()
    if extension not in YAML_EXTENSIONS:
        return parse_ini(text, path)
    try:
        root = compose(text, path, InventoryError)
    except InventoryError as yaml_error:
        return _ini_else(text, path, yaml_error if extension else None)
    if _is_mapping(root):
        return parse_yaml(root, path)
    # A list or a bare word is not a YAML inventory; it may be an INI one ("host1" is both).
    return _ini_else(text, path, _yaml_only(root, path) if extension else None)


def _ini_else(text: str, path: str, error: InventoryError | None) -> Draft:
    try:
        return parse_ini(text, path)
    except InventoryError:
        if error is None:
            raise
        raise error from None


def _is_mapping(root: Node | None) -> bool:
    empty = root is None or (isinstance(root, ScalarNode) and root.tag.endswith(":null"))
    return empty or isinstance(root, MappingNode)


def _yaml_only(root: Node | None, path: str) -> InventoryError:
    """The error the YAML reader gives for a document that is not a mapping."""
    try:
        parse_yaml(root, path)
    except InventoryError as exc:
        return exc
    return InventoryError("not an inventory", path)
