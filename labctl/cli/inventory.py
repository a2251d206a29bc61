"""`labctl inventory`: what labctl reads from an inventory, printed as `ansible-inventory`
prints it (--list, --graph, --host), so the two can be compared."""

from __future__ import annotations

from invoke import Context, task

from labctl.cli.common import INVENTORY_DEFAULT, default_inventory, errors_as_exit
from labctl.errors import InputError


@task(
    name="inventory",
    optional=["graph"],
    help={
        "inventory": "inventory file, YAML or INI " + INVENTORY_DEFAULT,
        "list_": "print every group and host, and each host's variables, as JSON",
        "graph": "print the tree of groups and hosts (from GROUP, default all)",
        "host": "print one host's variables as JSON",
        "playbook-dir": "also read group_vars/ and host_vars/ beside this playbook directory",
    },
)
@errors_as_exit
def show(
    c: Context,
    inventory: str | None = None,
    list_: bool = False,  # invoke strips the "_": --list
    graph: str | None = None,
    host: str | None = None,
    playbook_dir: str | None = None,
) -> None:
    """Show an inventory as labctl reads it: groups, hosts, merged variables."""
    from labctl.inventory import load_inventory
    from labctl.inventory.listing import as_list, host_vars, to_json
    from labctl.inventory.listing import graph as graph_of

    given = {"--list": list_, "--graph": graph, "--host": host}
    chosen = [flag for flag, value in given.items() if value]
    if len(chosen) != 1:
        named = ", ".join(chosen) or "none"
        raise InputError(f"give exactly one of --list, --graph, --host (given: {named})")
    inv = load_inventory(inventory or default_inventory(), playbook_dir=playbook_dir)
    if host:
        print(to_json(host_vars(inv, host)))
    elif graph:
        print(graph_of(inv, "all" if graph is True else graph))
    else:
        print(to_json(as_list(inv)))
