"""Unit tests for INI inventories, the format choice, and group_vars/ and host_vars/ files
(labctl.inventory; docs/inventory.md). What Ansible itself prints for the same files is
compared in test_inventory_ansible.py."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from labctl.errors import InventoryError
from labctl.inventory import Inventory, load_inventory, parse_inventory
from labctl.inventory.ini_format import literal
from labctl.inventory.listing import as_list, graph, host_vars, to_json
from tests.support import run_labctl


def write(path: Path, text: str) -> Path:
    """Write ``text`` (dedented; its line 1 is the file's line 1), making parent dirs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def ini(tmp_path: Path, text: str, name: str = "hosts.ini") -> Inventory:
    return load_inventory(write(tmp_path / name, text))


def ini_error(tmp_path: Path, text: str, name: str = "hosts.ini") -> tuple[Path, str]:
    path = write(tmp_path / name, text)
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    return path, str(info.value)


LAB = """
# a comment
jump.example.net
; another comment
lone ansible_host=10.0.0.9

[web]
web[01:03] http_port=80 tags="[1, 2]" name='a b' flag=True n=007
both

[db]
both role=primary
db-[a:b]:2222

[lab:children]
web
db

[web:vars]
i = 42
b = yes
l = [1, 'two']
c = 5 # trailing comment
q = "quoted"

[all:vars]
ansible_user=lab
"""


def test_ini_groups_hosts_and_tree(tmp_path: Path) -> None:
    inv = ini(tmp_path, LAB)
    assert list(inv.hosts) == [
        "jump.example.net",
        "lone",
        "web01",
        "web02",
        "web03",
        "both",
        "db-a",
        "db-b",
    ]
    assert inv.groups["ungrouped"].hosts == ("jump.example.net", "lone")
    assert inv.groups["web"].hosts == ("web01", "web02", "web03", "both")
    assert inv.groups["db"].hosts == ("both", "db-a", "db-b")
    assert inv.groups["lab"].children == ("web", "db")
    assert inv.groups["web"].parents == ("lab",)
    assert inv.host("both").groups == ("all", "db", "lab", "web")
    assert inv.groups["web"].line == 6


def test_ini_values_are_python_literals_like_ansible(tmp_path: Path) -> None:
    web01 = ini(tmp_path, LAB).host("web01")
    assert web01.vars == {
        "ansible_user": "lab",
        "http_port": 80,
        "tags": [1, 2],
        "name": "a b",
        "flag": True,
        "n": "007",  # not a Python literal: kept as written
        "i": 42,  # :vars values are literals too, as Ansible 2.17 reads them
        "b": "yes",
        "l": [1, "two"],
        "c": 5,
        "q": "quoted",
    }
    assert (web01.user, web01.port, web01.address) == ("lab", 22, "web01")


def test_ini_port_and_connection_settings(tmp_path: Path) -> None:
    inv = ini(tmp_path, LAB)
    assert inv.host("db-a").port == 2222
    assert inv.host("db-a").vars["ansible_port"] == 2222
    assert inv.host("lone").address == "10.0.0.9"
    assert inv.host("both").vars["role"] == "primary"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("42", 42),
        ("1.5", 1.5),
        ("[1, 'a']", [1, "a"]),
        ("{'a': 1}", {"a": 1}),
        ("'q'", "q"),
        ("True", True),
        ("None", None),
        ("yes", "yes"),
        ("007", "007"),
        ("", ""),
        ("a b", "a b"),
        ("1 # note", 1),
        ("[[[", "[[["),
        ("9" * 5000, "9" * 5000),  # past Python's int digit limit: text
        ("b'x'", "x"),
    ],
)
def test_literal(text: str, value: object) -> None:
    assert literal(text) == value


def test_children_named_before_their_section(tmp_path: Path) -> None:
    inv = ini(
        tmp_path,
        """
        [top:children]
        mid
        [mid:children]
        leaf
        [leaf]
        h1
        [mid:vars]
        v=mid
        """,
    )
    assert inv.groups["top"].children == ("mid",)
    assert inv.groups["mid"].children == ("leaf",)
    assert inv.host("h1").groups == ("all", "leaf", "mid", "top")
    assert inv.host("h1").vars == {"v": "mid"}


def test_vars_section_before_the_group_section(tmp_path: Path) -> None:
    inv = ini(tmp_path, "[a:vars]\nx=1\n[a]\nh1\n")
    assert inv.host("h1").vars == {"x": 1}


def test_host_in_all_section_is_ungrouped(tmp_path: Path) -> None:
    inv = ini(tmp_path, "[all]\nh1\n[all:vars]\nx=1\n")
    assert inv.groups["ungrouped"].hosts == ("h1",)
    assert inv.host("h1").vars == {"x": 1}


def test_ipv6_and_ports(tmp_path: Path) -> None:
    inv = ini(tmp_path, "[web]\n[2001:db8::1]:2222\n2001:db8::2\n10.0.0.1:23 a=b\n")
    assert list(inv.hosts) == ["2001:db8::1", "2001:db8::2", "10.0.0.1"]
    assert inv.host("2001:db8::1").port == 2222
    assert inv.host("2001:db8::2").port == 22
    assert inv.host("10.0.0.1").vars == {"ansible_port": 23, "a": "b"}


def test_inline_port_var_overrides_host_colon_port(tmp_path: Path) -> None:
    assert ini(tmp_path, "h1:2222 ansible_port=2200\n").host("h1").port == 2200


def test_precedence_depth_then_name(tmp_path: Path) -> None:
    inv = ini(
        tmp_path,
        """
        [zeta]
        h1
        [alpha]
        h1
        [outer:children]
        alpha
        [zeta:vars]
        v=zeta
        [alpha:vars]
        v=alpha
        [all:vars]
        v=all
        """,
    )
    assert inv.groups["alpha"].parents == ("outer",)
    assert inv.host("h1").vars["v"] == "alpha"  # depth 2 beats zeta's depth 1
    flat = ini(tmp_path, "[zeta]\nh1\n[alpha]\nh1\n[zeta:vars]\nv=zeta\n[alpha:vars]\nv=alpha\n")
    assert flat.host("h1").vars["v"] == "zeta"  # equal depth: the later name wins


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[web]\nh1 x=1 y\n", "2: host 'h1': expected key=value, not 'y'"),
        ("[web]\nh1 =1\n", "2: host 'h1': expected key=value, not '=1'"),
        ("h1 x='open\n", '1: cannot split host line "h1 x=\'open": No closing quotation'),
        ("[web:hosts]\nh1\n[web:kids]\n", "3: section [web:kids] has unknown type 'kids'"),
        ("[web]\n[bad name]\n", "2: invalid section '[bad name]': a group name has no spaces"),
        ("[web:vars]\nx=1\n", "1: section [web:vars] is for group 'web', which has no section"),
        (
            "[lab:children]\nweb\ndb\n[db]\n",
            "2: section [lab:children] names group 'web', which has no section",
        ),
        ("[lab:children]\nweb db\n", "2: expected a group name, not 'web db'"),
        ("[all:vars]\nnovalue\n", "2: expected key=value, not 'novalue'"),
        ("[all:vars]\n= 3\n", "2: no variable name before '=' in '= 3'"),
        ("[web]\nweb[1:c]\n", "2: host 'web[1:c]': bad range: bounds must be both numbers"),
        ("[web]\nweb[3:1]\n", "2: host 'web[3:1]': bad range: range is empty"),
        ("h1:\n", "1: host 'h1:': port must be an integer in 1..65535, not ''"),
        ("h1:abc\n", "1: host 'h1:abc': port must be an integer in 1..65535, not 'abc'"),
        ("[::1]:99999\n", "1: host '[::1]:99999': port must be an integer in 1..65535"),
        ("---\n", "1: host '---': a YAML file read as INI?"),
        ("[a:children]\nb\n[b:children]\na\n", "4: group 'a' is its own ancestor (via 'b')"),
        ("[a:children]\nall\n", "2: group 'all' is its own ancestor (via 'a')"),
        ("#\n;\n[web]\ndb_1 x=1\n", "4: host 'db_1' has no ansible_host and its name is not"),
        ("[web]\nh1 ansible_port=0\n", "2: host 'h1': ansible_port must be an integer"),
        (
            "[web]\nh1\n[web:vars]\nx=1\nansible_become=maybe\n",
            "5: group 'web': ansible_become must be a boolean (yes/no/true/false), not 'maybe'",
        ),
    ],
)
def test_ini_errors_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path, error = ini_error(tmp_path, text)
    assert error.startswith(f"{path}:{message}")


# --- which format -------------------------------------------------------------------------


def test_extensionless_file_read_as_yaml_or_ini(tmp_path: Path) -> None:
    assert list(ini(tmp_path, "all:\n  hosts:\n    h1:\n", "a").hosts) == ["h1"]
    assert list(ini(tmp_path, "[web]\nh1\n", "b").hosts) == ["h1"]
    assert list(ini(tmp_path, "h1 x=1\n", "c").hosts) == ["h1"]


def test_yml_file_with_ini_text_read_as_ini_like_ansible(tmp_path: Path) -> None:
    assert list(ini(tmp_path, "[web]\nh1\n", "hosts.yml").groups["web"].hosts) == ["h1"]


def test_yml_file_error_is_the_yaml_one(tmp_path: Path) -> None:
    path, error = ini_error(tmp_path, "- all\n- web\n", "hosts.yml")
    assert error == f"{path}:1: the inventory must be a mapping, not a list"
    path, error = ini_error(tmp_path, "all:\n  hosts: [a\n", "hosts.yaml")
    assert error.startswith(f"{path}:3: invalid YAML")


def test_ini_extension_is_never_yaml(tmp_path: Path) -> None:
    path, error = ini_error(tmp_path, "all:\n  hosts:\n", "hosts.ini")
    assert error == f"{path}:1: host 'all:': port must be an integer in 1..65535, not ''"


def test_parse_inventory_reads_ini_text() -> None:
    assert list(parse_inventory("[web]\nh1\n").groups["web"].hosts) == ["h1"]


# --- group_vars/ and host_vars/ -----------------------------------------------------------


def test_vars_dirs_precedence(tmp_path: Path) -> None:
    inv_dir, book = tmp_path / "inv", tmp_path / "book"
    path = write(
        inv_dir / "hosts",
        """
        [web]
        h1 hv=inline
        h2
        [web:vars]
        g=web_ini
        a=web_ini
        [all:vars]
        a=all_ini
        """,
    )
    write(inv_dir / "group_vars" / "all.yml", "a: all_file\nab: inv\ng: all_file\n")
    write(book / "group_vars" / "all.yml", "ab: book\n")
    write(inv_dir / "group_vars" / "web" / "1.yml", "g: web_file1\nw: 1\n")
    write(inv_dir / "group_vars" / "web" / "2", "g: web_file2\n")
    write(inv_dir / "group_vars" / "web" / ".hidden.yml", "g: hidden\n")
    write(inv_dir / "group_vars" / "web" / "x.txt", "g: txt\n")
    write(inv_dir / "host_vars" / "h1.yaml", "hv: inv_file\nansible_port: 2201\n")
    write(book / "host_vars" / "h1.json", '{"hv": "book_file"}')
    inv = load_inventory(path, playbook_dir=book)
    # group_vars/all beats every group's inventory vars; the group's files beat that.
    assert inv.host("h2").vars == {"a": "all_file", "ab": "book", "g": "web_file2", "w": 1}
    assert inv.host("h1").vars["hv"] == "book_file"
    assert inv.host("h1").port == 2201
    assert load_inventory(path).host("h1").vars["ab"] == "inv"
    assert load_inventory(path).host("h1").vars["hv"] == "inv_file"


def test_vars_file_without_extension_hides_yml(tmp_path: Path) -> None:
    path = write(tmp_path / "hosts.ini", "[db]\nh1\n")
    write(tmp_path / "group_vars" / "db", "x: plain\n")
    write(tmp_path / "group_vars" / "db.yml", "x: yml\n")
    assert load_inventory(path).host("h1").vars == {"x": "plain"}


def test_connection_settings_from_vars_files(tmp_path: Path) -> None:
    path = write(tmp_path / "hosts.yml", "all:\n  hosts:\n    db_1:\n")
    write(
        tmp_path / "host_vars" / "db_1.yml",
        """
        ansible_host: 10.0.0.5
        ansible_user: admin
        ansible_ssh_private_key_file: keys/lab
        labctl_known_hosts_file: known
        ansible_become: true
        """,
    )
    host = load_inventory(path).host("db_1")
    assert (host.address, host.user, host.become) == ("10.0.0.5", "admin", True)
    assert host.key_file == str(tmp_path / "keys" / "lab")
    assert host.known_hosts_file == str(tmp_path / "known")


def test_empty_vars_file_adds_nothing(tmp_path: Path) -> None:
    path = write(tmp_path / "hosts.ini", "h1\n")
    write(tmp_path / "host_vars" / "h1.yml", "# nothing\n")
    assert load_inventory(path).host("h1").vars == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: 1\nb: [2\n", "3: invalid YAML"),
        ("- 1\n", "1: a vars file must be a mapping, not a list"),
        ("a: 1\na: 2\n", "2: a vars file: duplicate key 'a' (first on line 1)"),
        (
            "x: 1\nansible_port: http\n",
            "2: group_vars/all.yml: ansible_port must be an integer in 1..65535, not 'http'",
        ),
    ],
)
def test_vars_file_errors_name_that_file(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "hosts.ini", "h1\n")
    vars_file = write(tmp_path / "group_vars" / "all.yml", text)
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    assert str(info.value).startswith(f"{vars_file}:{message}")


def test_vars_file_not_utf8(tmp_path: Path) -> None:
    path = write(tmp_path / "hosts.ini", "h1\n")
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "host_vars" / "h1").write_bytes(b"a: 1\nb: \xff\n")
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    assert (
        str(info.value)
        == f"{tmp_path / 'host_vars' / 'h1'}:2: not UTF-8 text (byte 0xff at offset 8)"
    )


# --- listing ------------------------------------------------------------------------------


def test_list_graph_and_host(tmp_path: Path) -> None:
    inv = ini(tmp_path, "lone\n[web]\nw1 x=1\n[lab:children]\nweb\n[empty]\n")
    assert as_list(inv) == {
        "_meta": {"hostvars": {"w1": {"x": 1}}},
        "all": {"children": ["ungrouped", "lab", "empty"]},
        "lab": {"children": ["web"]},
        "web": {"hosts": ["w1"]},
        "ungrouped": {"hosts": ["lone"]},
    }
    assert graph(inv) == textwrap.dedent(
        """\
        @all:
          |--@ungrouped:
          |  |--lone
          |--@lab:
          |  |--@web:
          |  |  |--w1
          |--@empty:"""
    )
    assert graph(inv, "lab") == "@lab:\n  |--@web:\n  |  |--w1"
    assert host_vars(inv, "w1") == {"x": 1}
    assert to_json({"b": 1, "a": [1]}) == '{\n    "a": [\n        1\n    ],\n    "b": 1\n}'
    with pytest.raises(InventoryError, match="--graph: no group 'nope'"):
        graph(inv, "nope")


def test_cli_flags_and_errors(tmp_path: Path) -> None:
    shown = run_labctl("inventory", "-h", timeout=60)
    assert shown.returncode == 0
    assert "--list" in shown.stdout and "--host=STRING" in shown.stdout
    assert "-l, --list" not in shown.stdout  # -l is --limit wherever a task has one
    path = write(tmp_path / "hosts.ini", "[web]\nh1 x=1 y\n")
    proc = run_labctl("inventory", "-i", str(path), "--list", timeout=60)
    assert (proc.returncode, proc.stderr) == (
        2,
        f"labctl: {path}:2: host 'h1': expected key=value, not 'y'\n",
    )
    proc = run_labctl("inventory", "-i", str(path), timeout=60)
    assert proc.stderr == "labctl: give exactly one of --list, --graph, --host (given: none)\n"
