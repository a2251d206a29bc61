"""Unit tests for labctl.inventory: Ansible YAML inventories, host patterns, precise errors."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from labctl.errors import InventoryError
from labctl.inventory import Inventory, load_inventory, parse_inventory

DATA = Path(__file__).parent / "data" / "inventory"


def write(tmp_path: Path, text: str) -> Path:
    """Write an inventory whose line 1 is the first line of ``text``."""
    path = tmp_path / "hosts.yml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def parse(text: str) -> Inventory:
    return parse_inventory(textwrap.dedent(text).lstrip("\n"))


def load(tmp_path: Path, text: str) -> Inventory:
    return load_inventory(write(tmp_path, text))


def load_error(tmp_path: Path, text: str) -> tuple[Path, InventoryError]:
    path = write(tmp_path, text)
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    return path, info.value


def names(inventory: Inventory, pattern: str) -> list[str]:
    return [host.name for host in inventory.select(pattern)]


@pytest.fixture
def lab() -> Inventory:
    return load_inventory(DATA / "lab.yml")


# --- the Ansible-format fixture -------------------------------------------------------------


def test_fixture_hosts_in_file_order(lab: Inventory) -> None:
    assert list(lab.hosts) == ["jump.example.net", "srv1", "srv2", "cli1", "mon01", "mon02"]
    assert lab.path == str(DATA / "lab.yml")


def test_fixture_group_tree(lab: Inventory) -> None:
    assert list(lab.groups) == ["all", "lab", "servers", "clients", "monitoring", "ungrouped"]
    assert lab.groups["all"].parents == ()
    assert lab.groups["all"].children == ("lab", "monitoring", "ungrouped")
    assert lab.groups["lab"].parents == ("all",)
    assert lab.groups["lab"].children == ("servers", "clients")
    assert lab.groups["servers"].parents == ("lab",)
    assert lab.groups["servers"].hosts == ("srv1", "srv2")
    assert lab.groups["clients"].hosts == ("cli1", "srv2")
    assert lab.groups["lab"].hosts == ()  # direct members only
    assert lab.groups["monitoring"].hosts == ("mon01", "mon02")
    assert lab.groups["servers"].vars == {"tier": "servers", "role": "server"}


def test_fixture_group_lines(lab: Inventory) -> None:
    lines = {name: group.line for name, group in lab.groups.items()}
    assert lines == {
        "all": 2,
        "lab": 10,
        "servers": 15,
        "clients": 25,
        "monitoring": 34,
        "ungrouped": 0,
    }


def test_fixture_host_in_two_groups(lab: Inventory) -> None:
    srv2 = lab.host("srv2")
    assert srv2.groups == ("all", "clients", "lab", "servers")
    assert srv2.address == "10.0.0.2"
    assert srv2.port == 2222  # from its first definition, kept by the second
    assert srv2.vars["tier"] == "srv2"  # host var from its second definition
    # clients and servers have equal depth: alphabetical, so servers (later) wins.
    assert srv2.vars["role"] == "server"


def test_fixture_host_fields(lab: Inventory) -> None:
    srv1 = lab.host("srv1")
    assert srv1.name == "srv1"
    assert srv1.address == "10.0.0.1"
    assert srv1.port == 22
    assert srv1.user == "lab"  # from all's vars
    assert srv1.become is True  # "yes" string from lab's vars
    assert srv1.key_file is None
    assert srv1.known_hosts_file is None
    assert srv1.groups == ("all", "lab", "servers")
    assert srv1.vars["tier"] == "servers"
    assert srv1.vars["ntp_server"] == "pool.ntp.org"


def test_fixture_ungrouped_and_ranges(lab: Inventory) -> None:
    jump = lab.host("jump.example.net")
    assert jump.groups == ("all", "ungrouped")
    assert jump.address == "jump.example.net"
    assert jump.become is False
    assert lab.groups["ungrouped"].hosts == ("jump.example.net",)
    assert lab.groups["all"].hosts == ("jump.example.net",)
    mon02 = lab.host("mon02")
    assert mon02.groups == ("all", "monitoring")
    assert mon02.key_file == str(DATA / "keys" / "mon.pem")


def test_vars_are_read_only(lab: Inventory) -> None:
    with pytest.raises(TypeError):
        lab.host("srv1").vars["tier"] = "x"  # type: ignore[index]
    with pytest.raises(TypeError):
        lab.groups["lab"].vars["tier"] = "x"  # type: ignore[index]


def test_unknown_host(lab: Inventory) -> None:
    with pytest.raises(InventoryError) as info:
        lab.host("nope")
    assert str(info.value) == f"{DATA / 'lab.yml'}: unknown host 'nope'"


# --- empty inventories ----------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "# nothing yet\n", "all:\n", "all:\n  hosts:\n  vars:\n"])
def test_empty_inventory(text: str) -> None:
    inventory = parse_inventory(text)
    assert dict(inventory.hosts) == {}
    assert list(inventory.groups) == ["all", "ungrouped"]
    assert inventory.groups["ungrouped"].parents == ("all",)
    assert inventory.select("all") == []
    assert inventory.select("*") == []


def test_top_level_group_besides_all_is_child_of_all() -> None:
    inventory = parse_inventory("web:\n  hosts:\n    w1:\n")
    assert inventory.groups["web"].parents == ("all",)
    assert inventory.host("w1").groups == ("all", "web")
    assert inventory.groups["ungrouped"].hosts == ()


def test_explicit_ungrouped_keeps_only_hosts_in_no_other_group() -> None:
    text = """
    ungrouped:
      hosts: {h1: , h2: }
    web:
      hosts: {h2: }
    """
    inventory = parse(text)
    assert inventory.groups["ungrouped"].hosts == ("h1",)
    assert inventory.host("h1").groups == ("all", "ungrouped")
    assert inventory.host("h2").groups == ("all", "web")
    assert names(inventory, "ungrouped") == ["h1"]


def test_yaml_types_like_safe_load() -> None:
    inventory = parse_inventory("all:\n  hosts:\n    h1:\n      count: 3\n      flag: yes\n")
    assert inventory.host("h1").vars == {"count": 3, "flag": True}


def test_merge_keys_and_anchors() -> None:
    text = """
    all:
      hosts:
        h1: &common
          ansible_port: 2200
          site: lab
        h2:
          <<: *common
          site: other
    """
    inventory = parse(text)
    assert inventory.host("h1").port == 2200
    assert inventory.host("h2").port == 2200
    assert inventory.host("h2").vars["site"] == "other"


def test_merge_key_in_group_structure() -> None:
    text = """
    all:
      children:
        web: &web
          vars: {http_port: 80}
          hosts: {w1: }
        web2:
          <<: *web
          hosts: {w2: }
    """
    group = parse(text).groups["web2"]
    assert (group.vars, group.hosts) == ({"http_port": 80}, ("w2",))


# --- variable precedence --------------------------------------------------------------------


PRECEDENCE = """
all:
  vars: {a: all, b: all, c: all, d: all}
  children:
    parent:
      vars: {b: parent, c: parent, d: parent}
      children:
        child:
          vars: {c: child, d: child}
          hosts:
            h1: {d: host}
"""


def test_precedence_all_parent_child_host() -> None:
    host = parse(PRECEDENCE).host("h1")
    assert host.vars == {"a": "all", "b": "parent", "c": "child", "d": "host"}
    assert host.groups == ("all", "child", "parent")


def test_equal_depth_merges_alphabetically() -> None:
    text = """
    zeta:
      vars: {v: zeta}
      hosts: {h1: }
    alpha:
      vars: {v: alpha, w: alpha}
      hosts: {h1: }
    """
    host = parse(text).host("h1")
    assert host.vars["v"] == "zeta"  # file order does not matter, the name does
    assert host.vars["w"] == "alpha"


def test_group_priority_overrides_alphabetical() -> None:
    text = """
    alpha:
      vars: {v: alpha, ansible_group_priority: 10}
      hosts: {h1: }
    zeta:
      vars: {v: zeta}
      hosts: {h1: }
    """
    assert parse(text).host("h1").vars["v"] == "alpha"


def test_deeper_group_wins_over_priority() -> None:
    text = """
    top:
      vars: {v: top, ansible_group_priority: 99}
      hosts: {h1: }
    outer:
      children:
        inner:
          vars: {v: inner}
          hosts: {h1: }
    """
    assert parse(text).host("h1").vars["v"] == "inner"


def test_top_level_group_later_nested_takes_nested_depth() -> None:
    # "shared" is written at the top level first, but as a child of "b" it sits at depth 3.
    text = """
    shared:
      vars: {v: shared}
    a:
      vars: {v: a}
      hosts: {h1: }
      children:
        b:
          vars: {v: b}
          children:
            shared:
              hosts: {h1: }
    zz:
      vars: {v: zz}
      hosts: {h1: }
    """
    inventory = parse(text)
    assert inventory.groups["shared"].parents == ("b",)
    # shared (depth 3) > b (depth 2) > a, zz (depth 1)
    assert inventory.host("h1").vars["v"] == "shared"


def test_depth_counts_the_longest_of_several_paths() -> None:
    # "shared" is at depth 2 under "a" and depth 3 under "b"; Ansible takes 3, so it beats
    # "zz" (depth 2), which would win alphabetically at equal depth.
    text = """
    a:
      children:
        shared:
          vars: {v: shared}
          hosts: {h1: }
        zz:
          vars: {v: zz}
          hosts: {h1: }
        b:
          children:
            shared:
    """
    inventory = parse(text)
    assert inventory.groups["shared"].parents == ("a", "b")
    assert inventory.host("h1").vars["v"] == "shared"


def test_host_defined_twice_merges_later_wins() -> None:
    text = """
    g1:
      hosts:
        h1: {x: 1, y: 1}
    g2:
      hosts:
        h1: {y: 2, z: 2}
    """
    host = parse(text).host("h1")
    assert host.vars == {"x": 1, "y": 2, "z": 2}
    assert host.groups == ("all", "g1", "g2")


def test_group_defined_twice_merges() -> None:
    text = """
    a:
      children:
        shared:
          vars: {x: 1}
          hosts: {h1: }
    b:
      children:
        shared:
          vars: {y: 2}
          hosts: {h2: }
    """
    group = parse(text).groups["shared"]
    assert group.parents == ("a", "b")
    assert group.hosts == ("h1", "h2")
    assert group.vars == {"x": 1, "y": 2}
    assert group.line == 3  # where it first appears


def test_shallow_merge_of_dict_values() -> None:
    text = """
    all:
      vars: {opts: {a: 1, b: 2}}
      hosts:
        h1: {opts: {b: 3}}
    """
    assert parse(text).host("h1").vars["opts"] == {"b": 3}


# --- connection settings --------------------------------------------------------------------


def test_defaults() -> None:
    host = parse_inventory("all:\n  hosts:\n    10.1.2.3:\n").host("10.1.2.3")
    assert (host.address, host.port, host.user) == ("10.1.2.3", 22, "root")
    assert (host.key_file, host.known_hosts_file, host.become) == (None, None, False)


def test_aliases() -> None:
    text = "all:\n  hosts:\n    h1: {ansible_ssh_port: 2022, ansible_ssh_user: admin}\n"
    host = parse_inventory(text).host("h1")
    assert (host.port, host.user) == (2022, "admin")


def test_host_alias_beats_group_canonical_name() -> None:
    text = """
    all:
      vars: {ansible_port: 1111, ansible_user: groupuser}
      hosts:
        h1: {ansible_ssh_port: 2222, ansible_ssh_user: hostuser}
    """
    host = parse(text).host("h1")
    assert (host.port, host.user) == (2222, "hostuser")


def test_canonical_name_beats_alias_in_one_block() -> None:
    text = "all:\n  hosts:\n    h1: {ansible_ssh_port: 2222, ansible_port: 3333}\n"
    assert parse_inventory(text).host("h1").port == 3333


def test_port_as_digit_string() -> None:
    inventory = parse_inventory("all:\n  hosts:\n    h1: {ansible_port: '2022'}\n")
    assert inventory.host("h1").port == 2022


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("yes", True),
        ("true", True),
        ("'yes'", True),
        ("'True'", True),
        ("no", False),
        ("'no'", False),
        ("'false'", False),
        ("false", False),
    ],
)
def test_become_values(value: str, expected: bool) -> None:
    host = parse_inventory(f"all:\n  hosts:\n    h1: {{ansible_become: {value}}}\n").host("h1")
    assert host.become is expected


def test_key_paths_resolved_against_inventory_dir(tmp_path: Path) -> None:
    inventory = load(
        tmp_path,
        """
        all:
          hosts:
            h1:
              ansible_ssh_private_key_file: keys/id_ed25519
              labctl_known_hosts_file: ../known_hosts
            h2:
              ansible_ssh_private_key_file: /etc/labctl/key
        """,
    )
    h1 = inventory.host("h1")
    assert h1.key_file == str(tmp_path / "keys" / "id_ed25519")
    assert h1.known_hosts_file == os.path.join(str(tmp_path), "../known_hosts")
    assert inventory.host("h2").key_file == "/etc/labctl/key"


def test_key_path_tilde_expanded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/tester")
    text = "all:\n  hosts:\n    h1: {ansible_ssh_private_key_file: ~/.ssh/lab}\n"
    host = parse_inventory(text, "/srv/inv/hosts.yml").host("h1")
    assert host.key_file == "/home/tester/.ssh/lab"


def test_key_path_from_group_vars_resolved(tmp_path: Path) -> None:
    inventory = load(
        tmp_path,
        """
        all:
          vars:
            ansible_ssh_private_key_file: lab_key
          hosts:
            h1:
        """,
    )
    assert inventory.host("h1").key_file == str(tmp_path / "lab_key")


def test_parse_inventory_resolves_against_given_path() -> None:
    text = "all:\n  hosts:\n    h1: {ansible_ssh_private_key_file: k}\n"
    assert parse_inventory(text, "/srv/inv/hosts.yml").host("h1").key_file == "/srv/inv/k"


# --- host ranges ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("web[01:03]", ["web01", "web02", "web03"]),
        ("web[1:3]", ["web1", "web2", "web3"]),
        ("n[1:10:4].lab", ["n1.lab", "n5.lab", "n9.lab"]),
        ("n[:2]", ["n0", "n1", "n2"]),
        ("rack-[a:c]", ["rack-a", "rack-b", "rack-c"]),
        ("r[a:b]n[1:2]", ["ran1", "ran2", "rbn1", "rbn2"]),
        ("n[08:11]", ["n08", "n09", "n10", "n11"]),
    ],
)
def test_ranges(entry: str, expected: list[str]) -> None:
    inventory = parse_inventory(f"all:\n  hosts:\n    {entry}:\n      ansible_port: 2200\n")
    assert list(inventory.hosts) == expected
    assert {host.port for host in inventory.hosts.values()} == {2200}


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("web[1]", "expected [begin:end] or [begin:end:step]"),
        ("web[1:]", "expected [begin:end] or [begin:end:step]"),
        ("web[01:100]", "zero-padded begin and end must have the same width"),
        ("web[3:1]", "range is empty"),
        ("web[1:3:0]", "step must be a positive integer, not '0'"),
        ("web[1:c]", "bounds must be both numbers or both single letters"),
    ],
)
def test_bad_ranges(tmp_path: Path, entry: str, problem: str) -> None:
    path, err = load_error(tmp_path, f"all:\n  hosts:\n    ok1:\n    {entry}:\n")
    assert str(err) == f"{path}:4: host '{entry}': bad range: {problem}"
    assert (err.path, err.line) == (str(path), 4)


# --- host patterns --------------------------------------------------------------------------


ALL = ["jump.example.net", "srv1", "srv2", "cli1", "mon01", "mon02"]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("all", ALL),
        ("*", ALL),
        ("servers", ["srv1", "srv2"]),
        ("lab", ["srv1", "srv2", "cli1"]),  # children's hosts included
        ("ungrouped", ["jump.example.net"]),
        ("cli1", ["cli1"]),
        ("cli1,srv1", ["srv1", "cli1"]),  # file order, not pattern order
        ("cli1:srv1", ["srv1", "cli1"]),
        ("clients:monitoring", ["srv2", "cli1", "mon01", "mon02"]),
        (" clients , mon01 ", ["srv2", "cli1", "mon01"]),
        ("lab:!clients", ["srv1"]),
        ("!lab", ["jump.example.net", "mon01", "mon02"]),  # only "!": all implied
        ("!lab:!monitoring", ["jump.example.net"]),
        ("&servers", ["srv1", "srv2"]),  # only "&": all implied
        ("servers:&clients", ["srv2"]),
        ("servers,&clients", ["srv2"]),
        ("&clients:servers", ["srv2"]),  # "&" applies after the union, wherever written
        ("!servers:lab", ["cli1"]),
        ("lab:&servers:!srv2", ["srv1"]),
        ("lab:! srv1", ["srv2", "cli1"]),
        ("srv*", ["srv1", "srv2"]),
        ("mon0?", ["mon01", "mon02"]),
        ("*ers", ["srv1", "srv2"]),  # glob over group names: servers
        ("*.example.net,cli?", ["jump.example.net", "cli1"]),
        ("cli*", ["srv2", "cli1"]),  # the glob matches group "clients" too
        ("all:!*", []),
    ],
)
def test_select(lab: Inventory, pattern: str, expected: list[str]) -> None:
    assert names(lab, pattern) == expected


def test_select_returns_host_objects(lab: Inventory) -> None:
    assert lab.select("srv1") == [lab.hosts["srv1"]]


@pytest.mark.parametrize(
    ("pattern", "term"),
    [
        ("srv1,foo", "foo"),
        ("foo", "foo"),
        ("lab:!nope", "nope"),
        ("lab:&nope", "nope"),
        ("db*", "db*"),
    ],
)
def test_select_unknown_term(lab: Inventory, pattern: str, term: str) -> None:
    with pytest.raises(InventoryError) as info:
        lab.select(pattern)
    err = info.value
    assert str(err) == f"{lab.path}: unknown host or group '{term}' in pattern '{pattern}'"
    assert (err.path, err.line) == (lab.path, None)


def test_select_empty_pattern(lab: Inventory) -> None:
    with pytest.raises(InventoryError, match="empty host pattern"):
        lab.select(" , ")


def test_select_ipv6_host_name() -> None:
    inventory = parse_inventory("all:\n  hosts:\n    '2001:db8::1':\n    h2:\n")
    assert names(inventory, "2001:db8::1") == ["2001:db8::1"]
    assert names(inventory, "!2001:db8::1") == ["h2"]
    assert inventory.host("2001:db8::1").address == "2001:db8::1"


def test_group_shadows_host_of_same_name() -> None:
    inventory = parse_inventory("web:\n  hosts:\n    web1:\n    w2:\nother:\n  hosts:\n    web:\n")
    assert names(inventory, "web") == ["web1", "w2"]


# --- bad input: file path and line in every message -----------------------------------------


def test_yaml_syntax_error(tmp_path: Path) -> None:
    path, err = load_error(
        tmp_path,
        """
        all:
          hosts:
            h1:
              ansible_port: [2222
            h2:
        """,
    )
    assert str(err).startswith(f"{path}:5: invalid YAML: ")
    assert (err.path, err.line) == (str(path), 5)


def test_yaml_unknown_tag(tmp_path: Path) -> None:
    path, err = load_error(
        tmp_path,
        """
        all:
          vars:
            secret: !vault abc
        """,
    )
    assert str(err).startswith(f"{path}:3: invalid YAML: could not determine a constructor")


def test_two_documents(tmp_path: Path) -> None:
    path, err = load_error(tmp_path, "all:\n---\nall:\n")
    assert str(err).startswith(f"{path}:2: invalid YAML: ")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- all\n- web\n", "1: the inventory must be a mapping, not a list"),
        ("just text\n", "1: the inventory must be a mapping, not 'just text'"),
        ("all:\n  - h1\n", "2: group 'all' must be a mapping, not a list"),
        ("all:\n  hosts:\n    - h1\n", "3: hosts of group 'all' must be a mapping, not a list"),
        ("all:\n  hosts: h1\n", "2: hosts of group 'all' must be a mapping, not 'h1'"),
        ("all:\n  vars:\n    - a\n", "3: vars of group 'all' must be a mapping, not a list"),
        (
            "all:\n  children:\n    - web\n",
            "3: children of group 'all' must be a mapping, not a list",
        ),
        (
            "all:\n  children:\n    web:\n      hosts:\n        w1: [1, 2]\n",
            "5: host 'w1' must be a mapping, not a list",
        ),
        (
            "all:\n  children:\n    web:\n      host:\n        w1:\n",
            "4: group 'web' has unknown key 'host' (expected hosts, vars or children)",
        ),
        ("all:\n  hosts:\n    ? [a, b]\n    : 1\n", "3: expected a host or group name"),
    ],
)
def test_wrong_types(tmp_path: Path, text: str, message: str) -> None:
    path, err = load_error(tmp_path, text)
    assert str(err) == f"{path}:{message}"


def test_host_name_not_an_address(tmp_path: Path) -> None:
    path, err = load_error(
        tmp_path,
        """
        all:
          children:
            db:
              hosts:
                db1.lab:
                db_1:
                  role: primary
        """,
    )
    assert str(err) == f"{path}:6: host 'db_1' has no ansible_host and its name is not an address"
    assert (err.path, err.line) == (str(path), 6)


def test_host_name_not_an_address_but_ansible_host_given() -> None:
    inventory = parse_inventory("all:\n  hosts:\n    db_1: {ansible_host: 10.0.0.9}\n")
    assert inventory.host("db_1").address == "10.0.0.9"


@pytest.mark.parametrize(
    "name", ["-bad", "bad-", "a..b", "a b", "x" * 64 + ".lab", ".".join(["a" * 60] * 5)]
)
def test_invalid_host_names(name: str) -> None:
    with pytest.raises(InventoryError, match="its name is not an address"):
        parse_inventory(f"all:\n  hosts:\n    '{name}':\n")


@pytest.mark.parametrize(("value", "shown"), [("''", "''"), ("null", "None"), ("7", "7")])
def test_bad_ansible_host(tmp_path: Path, value: str, shown: str) -> None:
    text = f"all:\n  hosts:\n    ok:\n    h1:\n      ansible_host: {value}\n"
    path, err = load_error(tmp_path, text)
    assert str(err) == (
        f"{path}:4: host 'h1': ansible_host must be a non-empty string, not {shown}"
    )


def test_ansible_host_key_without_value(tmp_path: Path) -> None:
    path, err = load_error(tmp_path, "all:\n  hosts:\n    h1:\n      ansible_host:\n")
    assert str(err) == f"{path}:3: host 'h1': ansible_host must be a non-empty string, not None"


@pytest.mark.parametrize("value", ["0", "65536", "abc", "-1", "22.5", "true"])
def test_bad_port_on_host(tmp_path: Path, value: str) -> None:
    path, err = load_error(
        tmp_path,
        f"""
        all:
          children:
            web:
              hosts:
                w1:
                w2:
                  ansible_port: {value}
        """,
    )
    assert str(err).startswith(f"{path}:6: host 'w2': ansible_port must be an integer in 1..65535")
    assert (err.path, err.line) == (str(path), 6)


def test_bad_port_on_group(tmp_path: Path) -> None:
    path, err = load_error(
        tmp_path,
        """
        all:
          children:
            web:
              vars:
                ansible_ssh_port: 70000
        """,
    )
    assert str(err) == (
        f"{path}:3: group 'web': ansible_ssh_port must be an integer in 1..65535, not 70000"
    )


@pytest.mark.parametrize(
    ("var", "value", "problem"),
    [
        ("ansible_become", "maybe", "must be a boolean (yes/no/true/false), not 'maybe'"),
        ("ansible_user", "''", "must be a non-empty string, not ''"),
        ("ansible_ssh_private_key_file", "[a]", "must be a non-empty string, not ['a']"),
        ("ansible_group_priority", "high", "must be an integer, not 'high'"),
    ],
)
def test_bad_connection_vars(tmp_path: Path, var: str, value: str, problem: str) -> None:
    path, err = load_error(tmp_path, f"all:\n  hosts:\n    h0:\n    h1:\n      {var}: {value}\n")
    assert str(err) == f"{path}:4: host 'h1': {var} {problem}"


@pytest.mark.parametrize(
    ("text", "line", "group"),
    [
        ("a:\n  children:\n    a:\n", 3, "a"),
        ("a:\n  children:\n    b:\n      children:\n        c:\n          children:\n"
         "            a:\n", 7, "a"),
        ("a:\n  children:\n    b:\nb:\n  children:\n    a:\n", 6, "a"),
        ("web:\n  children:\n    all:\n", 3, "all"),
    ],
)  # fmt: skip
def test_cycle(tmp_path: Path, text: str, line: int, group: str) -> None:
    path, err = load_error(tmp_path, text)
    assert str(err).startswith(f"{path}:{line}: group '{group}' is its own ancestor")
    assert (err.path, err.line) == (str(path), line)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.yml"
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    assert str(info.value).startswith(f"{path}: cannot read inventory: ")
    assert info.value.line is None


def test_parse_inventory_default_path() -> None:
    with pytest.raises(InventoryError) as info:
        parse_inventory("all:\n  hosts:\n    bad_name:\n")
    assert str(info.value).startswith("<inventory>:3: host 'bad_name'")
