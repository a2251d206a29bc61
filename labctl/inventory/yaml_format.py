"""Ansible YAML inventories (`all:`, `children:`, `hosts:`, `vars:`), read node by node so
every error names its line."""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode

from labctl.errors import InventoryError
from labctl.inventory.draft import Draft, GroupDraft, expand_range
from labctl.yamlfile import refuse_duplicate_keys, yaml_error


def parse_yaml(root: Node | None, path: str) -> Draft:
    """The groups and hosts of a composed YAML inventory document."""
    reader = _Reader(path)
    try:
        for key, value in reader.pairs(root, "the inventory"):
            reader.group(reader.name(key), key, value, parent=None)
    except yaml.YAMLError as exc:  # e.g. a value of a tag no safe loader constructs
        raise yaml_error(exc, path, InventoryError) from exc
    return reader.draft


def mapping_of(node: Node | None, path: str, what: str) -> tuple[dict[str, Any], dict[str, int]]:
    """A YAML mapping's values (as safe_load builds them) and each key's line; for the
    group_vars/ and host_vars/ files."""
    reader = _Reader(path)
    try:
        pairs = reader.pairs(node, what)
        lines = {str(k.value): k.start_mark.line + 1 for k, _ in pairs if isinstance(k, ScalarNode)}
        values = reader.construct(node)
    except yaml.YAMLError as exc:
        raise yaml_error(exc, path, InventoryError) from exc
    return {str(k): v for k, v in values.items()}, lines


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


class _Reader:
    def __init__(self, path: str) -> None:
        self.draft = Draft(path)
        self.loader = yaml.SafeLoader("")

    def error(self, message: str, node_or_line: Node | int) -> InventoryError:
        line = node_or_line if isinstance(node_or_line, int) else _line(node_or_line)
        return self.draft.error(message, line)

    def pairs(self, node: Node | None, what: str) -> list[tuple[Node, Node]]:
        if node is None or (isinstance(node, ScalarNode) and node.tag.endswith(":null")):
            return []
        if not isinstance(node, MappingNode):
            kind = "a list" if isinstance(node, yaml.SequenceNode) else f"{node.value!r}"
            raise self.error(f"{what} must be a mapping, not {kind}", node)
        try:
            refuse_duplicate_keys(node)  # a host or key written twice is a mistake
        except yaml.MarkedYAMLError as exc:
            at = exc.problem_mark.line + 1 if exc.problem_mark else node
            raise self.error(f"{what}: {exc.problem}", at) from None
        self.loader.flatten_mapping(node)  # resolve "<<" merge keys as safe_load would
        # Keys a "<<" merge brings in come first; the mapping's own keys win over them.
        unique = {k.value if isinstance(k, ScalarNode) else k: (k, v) for k, v in node.value}
        return list(unique.values())

    def name(self, node: Node) -> str:
        if not isinstance(node, ScalarNode) or not node.value:
            raise self.error("expected a host or group name", node)
        return str(node.value)

    def construct(self, node: Node | None) -> dict[Any, Any]:
        return dict(self.loader.construct_object(node, deep=True) or {}) if node else {}

    def group(self, name: str, key: Node, node: Node, parent: str | None) -> None:
        group = self.draft.group(name, _line(key))
        if parent is not None:
            self.draft.link(parent, name, _line(key))
        for section_key, section in self.pairs(node, f"group {name!r}"):
            section_name = self.name(section_key)
            if section_name == "hosts":
                for host_key, host_vars in self.pairs(section, f"hosts of group {name!r}"):
                    self.host(host_key, host_vars, group)
            elif section_name == "vars":
                variables = self.vars(section, f"vars of group {name!r}")
                group.add(variables, f"group {name!r}", _line(key))
            elif section_name == "children":
                for child_key, child in self.pairs(section, f"children of group {name!r}"):
                    self.group(self.name(child_key), child_key, child, parent=name)
            else:
                raise self.error(
                    f"group {name!r} has unknown key {section_name!r}"
                    " (expected hosts, vars or children)",
                    section_key,
                )

    def host(self, key: Node, node: Node, group: GroupDraft) -> None:
        pattern = self.name(key)
        variables = self.vars(node, f"host {pattern!r}")
        try:
            names = expand_range(pattern)
        except ValueError as exc:
            raise self.error(f"host {pattern!r}: bad range: {exc}", key) from None
        for name in names:
            # Ansible merges a host listed in several places; later definitions win.
            host = self.draft.host(name, _line(key), group)
            host.add(variables, f"host {pattern!r}", _line(key))

    def vars(self, node: Node, what: str) -> dict[str, Any]:
        self.pairs(node, what)  # type check only
        return self.construct(node)
