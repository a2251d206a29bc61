"""The lab's pure parts: its spec, names, generated inventory, and the no-root refusal."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from labctl.errors import LabError
from labctl.inventory import load_inventory
from labctl.labs.netns import LocalLab
from labctl.labs.netns_spec import LabHostSpec, LabSpec

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


def test_container_subnets_follow_the_documented_rule(tmp_path: Path) -> None:
    spec = LabSpec.generated(
        "lab7", "10.77.0.0/24", 3, tmp_path, containers_on={"srv1": 2, "cli2": 16}
    )
    assert [h.containers for h in spec.hosts] == [2, 0, 16]
    assert spec.containers == {"srv1": 2, "cli2": 16}
    # 10.((77 + 100) mod 256).<host index>.0/24; docker0 .1, container k .k+1
    assert spec.container_subnet("srv1") == ipaddress.IPv4Network("10.177.1.0/24")
    assert spec.container_subnet("cli2") == ipaddress.IPv4Network("10.177.3.0/24")
    assert str(spec.container_address("srv1", 2)) == "10.177.1.3"
    wrapped = LabSpec.generated("w", "10.200.5.0/24", 1, tmp_path, containers_on={"srv1": 1})
    assert wrapped.container_subnet("srv1") == ipaddress.IPv4Network("10.44.1.0/24")
    outside = LabSpec.generated("o", "192.168.5.0/24", 1, tmp_path, containers_on={"srv1": 1})
    assert outside.container_subnet("srv1").subnet_of(ipaddress.IPv4Network("10.0.0.0/8"))


def test_containers_round_trip_through_the_inventory(tmp_path: Path) -> None:
    spec = LabSpec.generated("lab7", "10.99.3.0/24", 3, tmp_path, containers_on={"cli1": 4})
    path = tmp_path / "inventory.yml"
    path.write_text(spec.inventory_yaml())
    inv = load_inventory(path)
    assert inv.host("cli1").vars["labctl_lab_containers"] == 4
    assert "labctl_lab_containers" not in inv.host("srv1").vars
    assert LabSpec.from_inventory(inv) == spec


@pytest.mark.parametrize(
    ("subnet", "containers", "message"),
    [
        ("10.1.1.0/24", 17, "choose 0 to 16"),
        ("10.1.1.0/24", -1, "choose 0 to 16"),
        ("10.1.1.0/24", True, "choose 0 to 16"),
        ("10.0.0.0/8", 1, r"container subnet 10.100.1.0/24 overlaps the lab subnet 10.0.0.0/8"),
    ],
)
def test_bad_container_counts_and_overlaps_are_refused(
    subnet: str, containers: object, message: str, tmp_path: Path
) -> None:
    net = ipaddress.IPv4Network(subnet)
    host = LabHostSpec("a", str(net.network_address + 5), containers)  # type: ignore[arg-type]
    with pytest.raises(LabError, match=message):
        LabSpec("ok", net, (host,), tmp_path)


def test_containers_on_an_unknown_host_are_refused(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="containers on unknown hosts: web1"):
        LabSpec.generated("lab7", "10.99.3.0/24", 2, tmp_path, containers_on={"web1": 1})
