"""The lab's pure parts: its spec, names, generated inventory, and the no-root refusal."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from labctl.errors import LabError
from labctl.inventory import load_inventory
from labctl.lab import LabHostSpec, LabSpec, LocalLab

ROOT = Path(__file__).resolve().parents[2]


def test_default_inventory_describes_three_hosts_on_one_bridge() -> None:
    spec = LabSpec.from_inventory(load_inventory(ROOT / "hosts" / "local.yml"))
    assert [h.name for h in spec.hosts] == ["srv1", "cli1", "cli2"]
    assert spec.subnet == ipaddress.IPv4Network("10.77.0.0/24")
    assert (spec.bridge, spec.netns("srv1"), spec.veth(1)) == (
        "labctl-br",
        "labctl-srv1",
        "labctl-v1",
    )
    assert str(spec.gateway) == "10.77.0.1"
    assert spec.key_file == Path("/var/lib/labctl/labctl/id_ed25519")


def test_generated_inventory_round_trips(tmp_path: Path) -> None:
    spec = LabSpec.generated("lab7", "10.99.3.0/24", 16, tmp_path)
    assert len(spec.hosts) == 16
    assert spec.hosts[0] == LabHostSpec("srv1", "10.99.3.11")
    assert spec.hosts[15] == LabHostSpec("cli15", "10.99.3.26")
    path = tmp_path / "inventory.yml"
    path.write_text(spec.inventory_yaml())
    inv = load_inventory(path)
    assert [h.name for h in inv.select("clients")] == [f"cli{i}" for i in range(1, 16)]
    host = inv.host("cli3")
    assert (host.address, host.user, host.key_file) == ("10.99.3.14", "root", str(spec.key_file))
    assert host.known_hosts_file == str(spec.known_hosts_file)
    assert LabSpec.from_inventory(inv) == spec


@pytest.mark.parametrize(
    ("name", "subnet", "hosts", "message"),
    [
        ("Bad_Name", "10.1.1.0/24", [("a", "10.1.1.5")], "lowercase letters"),
        ("toolongname", "10.1.1.0/24", [("a", "10.1.1.5")], "1-8"),
        ("ok", "10.1.1.0/24", [("a", "10.1.2.5")], "not usable"),
        ("ok", "10.1.1.0/24", [("a", "10.1.1.1")], "not usable"),  # the bridge's address
        ("ok", "10.1.1.0/24", [("a", "10.1.1.5"), ("a", "10.1.1.6")], "duplicate"),
    ],
)
def test_bad_specs_are_refused(
    name: str, subnet: str, hosts: list[tuple[str, str]], message: str, tmp_path: Path
) -> None:
    with pytest.raises(LabError, match=message):
        LabSpec(
            name,
            ipaddress.IPv4Network(subnet),
            tuple(LabHostSpec(n, a) for n, a in hosts),
            tmp_path,
        )


def test_inventory_without_lab_hosts_is_not_a_lab(tmp_path: Path) -> None:
    path = tmp_path / "inv.yml"
    path.write_text("all:\n  hosts:\n    h1: {ansible_host: 10.0.0.5}\n")
    with pytest.raises(LabError, match="no host has `labctl_lab`"):
        LabSpec.from_inventory(load_inventory(path))


def test_up_and_down_without_root_say_so_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    lab = LocalLab(LabSpec.generated("nr", "10.98.0.0/24", 1, tmp_path / "state"))
    with pytest.raises(LabError, match=r"^lab.up needs root .*run it as root$"):
        lab.up()
    with pytest.raises(LabError, match=r"^lab.down needs root"):
        lab.down()
    assert not (tmp_path / "state").exists()  # nothing was half-made
