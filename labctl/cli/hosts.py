"""`labctl facts` and `labctl qdisc.show`: what the hosts are, read-only."""

from __future__ import annotations

from invoke import Collection, Context, task

from labctl.cli.common import (
    INVENTORY_HELP,
    console,
    errors_as_exit,
    exit_for_hosts,
    inventory,
    json_dumps,
)
from labctl.defaults import DEFAULT_POOL_SIZE


@task(
    help={
        "inventory": INVENTORY_HELP,
        "limit": "host pattern: all, a group, a host, a,b, !group",
        "json": "print one JSON document instead of tables",
        "forks": f"hosts reached at once (default {DEFAULT_POOL_SIZE})",
    }
)
@errors_as_exit
def facts(
    c: Context,
    inventory: str | None = None,
    limit: str = "all",
    json: bool = False,
    forks: int = DEFAULT_POOL_SIZE,
) -> None:
    """Gather facts from every host over SSH: kernel, NICs, drivers, qdiscs, module support."""
    from labctl.facts.host import gather_facts
    from labctl.remote import Connections

    hosts = _inventory(inventory).select(limit)
    with Connections(hosts) as conns:
        outcomes = conns.run_on_hosts(gather_facts, pool_size=forks)
    if json:
        doc = {
            "hosts": {
                o.host: o.value.to_dict()
                if o.value is not None
                else {"unreachable" if o.unreachable else "failed": True, "error": str(o.error)}
                for o in outcomes
            }
        }
        print(json_dumps(doc))
    else:
        from labctl.views.facts import facts_tables

        for table in facts_tables(outcomes):
            console().print(table)
    exit_for_hosts(outcomes)


@task(
    help={
        "inventory": INVENTORY_HELP,
        "limit": "host pattern: all, a group, a host, a,b, !group",
        "json": "print JSON instead of a table",
    }
)
@errors_as_exit
def qdisc_show(
    c: Context, inventory: str | None = None, limit: str = "all", json: bool = False
) -> None:
    """Every interface's root qdisc with its counters: bytes, packets, drops, backlog."""
    from labctl.errors import LabctlError
    from labctl.facts.qdisc import qdisc_stats
    from labctl.remote import Connections
    from labctl.views.qdisc import HostStats, render_table, to_json

    hosts = _inventory(inventory).select(limit)
    with Connections(hosts) as conns:
        outcomes = conns.run_on_hosts(qdisc_stats)
    by_host: dict[str, HostStats] = {
        o.host: o.value if o.value is not None else (o.error or LabctlError("failed"))
        for o in outcomes
    }
    if json:
        print(to_json(by_host))
    else:
        console().print(render_table(by_host))
    exit_for_hosts(outcomes)


_inventory = inventory  # the tasks' own `inventory` flag shadows the helper's name


def collection() -> Collection:
    qdisc = Collection("qdisc")
    qdisc.add_task(qdisc_show, name="show")
    return qdisc
