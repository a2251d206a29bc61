"""`labctl play PLAYBOOK` and `labctl provision` (playbooks/provision.yml)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invoke import Context, Exit, task

from labctl.cli.common import INVENTORY_HELP, errors_as_exit, inventory, open_store
from labctl.defaults import DEFAULT_POOL_SIZE
from labctl.errors import InputError
from labctl.paths import PLAYBOOKS, PROVISION_PLAYBOOK, default_log_dir

if TYPE_CHECKING:
    from labctl.inventory import Inventory
    from labctl.play.run import PlaybookRun, RunOptions


def find_playbook(name: str) -> str:
    """A path, or a name under playbooks/ (`provision` → playbooks/provision.yml)."""
    for candidate in (Path(name), PLAYBOOKS / name, PLAYBOOKS / f"{name}.yml"):
        if candidate.is_file():
            return str(candidate)
    raise InputError(f"playbook {name!r} not found (a path, or a name under playbooks/)")


def parse_extra_vars(items: list[str]) -> dict[str, Any]:
    """`-e key=value` (a string), `-e '{"key": 1}'` (JSON, typed values) or `-e @vars.yml`
    (a YAML or JSON file of variables), as ansible-playbook takes them."""
    from labctl.yamlfile import load_yaml

    extra: dict[str, Any] = {}
    for item in items:
        if item.startswith("@"):
            doc = load_yaml(item[1:])
            if not isinstance(doc, dict):
                raise InputError(f"-e {item}: the file must hold a mapping of variables")
            extra.update(doc)
            continue
        if item.lstrip().startswith("{"):
            try:
                value = json.loads(item)
            except ValueError as exc:
                raise InputError(f"-e {item!r}: invalid JSON: {exc}") from exc
            if not isinstance(value, dict):
                raise InputError(f"-e {item!r}: JSON must be an object")
            extra.update(value)
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise InputError(f"-e {item!r}: expected key=value")
        extra[key.strip()] = value
    return extra


PLAY_HELP = {
    "inventory": INVENTORY_HELP,
    "check": "plan every task from the hosts' real state and change nothing",
    "diff": "show content changes of files and templates",
    "limit": "further limit the hosts: a pattern (all, group, host, a,b, !group)",
    "tags": "run only tasks with one of these tags (comma-separated)",
    "extra": "extra variables: key=value, a JSON object or @FILE (YAML); repeatable; win over all",
    "json": "print every task result as JSON instead of lines",
    "forks": f"hosts worked on at once (default {DEFAULT_POOL_SIZE})",
}


@task(
    iterable=["extra"],
    help={
        **PLAY_HELP,
        "playbook": "playbook file, or its name under playbooks/",
        "read-ahead": "send the reads of coming tasks in one round trip per host "
        "(--no-read-ahead: task by task, for hosts that change each other's state; "
        "docs/speed.md)",
    },
)
@errors_as_exit
def play(
    c: Context,
    playbook: str,
    inventory: str | None = None,
    check: bool = False,
    diff: bool = False,
    limit: str | None = None,
    tags: str = "",
    extra: list[str] | None = None,
    json: bool = False,
    forks: int = DEFAULT_POOL_SIZE,
    read_ahead: bool = True,
) -> None:
    """Run a playbook on the inventory's hosts (Ansible-style; --check changes nothing)."""
    book = find_playbook(playbook)
    inv = _inventory(inventory, book)
    run_play(book, inv, check, diff, limit, tags, extra, json, forks, read_ahead)


@task(
    iterable=["extra"],
    help={
        **PLAY_HELP,
        "check": "show what would be installed, built and loaded; change nothing",
        "tags": "run only these steps (comma-separated): deps, headers, netmap, load, "
        "workloads; `unload` (only when asked) puts back what load changed",
    },
)
@errors_as_exit
def provision(
    c: Context,
    inventory: str | None = None,
    check: bool = False,
    diff: bool = False,
    limit: str | None = None,
    tags: str = "",
    extra: list[str] | None = None,
    json: bool = False,
    forks: int = DEFAULT_POOL_SIZE,
) -> None:
    """Provision hosts for their kernel release: build tools, headers, netmap, workloads."""
    book = str(PROVISION_PLAYBOOK)
    run_play(book, _inventory(inventory, book), check, diff, limit, tags, extra, json, forks)


def run_play(
    playbook: str,
    inv: Inventory,
    check: bool,
    diff: bool,
    limit: str | None,
    tags: str,
    extra: list[str] | None,
    as_json: bool,
    forks: int,
    read_ahead: bool = True,
) -> None:
    from labctl.play.load import load_playbook
    from labctl.play.run import QuietReporter, RunOptions, run_playbook

    book = load_playbook(playbook)
    options = RunOptions(
        check=check,
        diff=diff,
        limit=limit,
        tags=frozenset(t.strip() for t in tags.split(",") if t.strip()),
        extra_vars=parse_extra_vars(extra or []),
        forks=forks,
        log_dir=default_log_dir(),
        read_ahead=read_ahead,
    )
    if as_json:
        from labctl.views.play_json import run_as_json

        run = run_playbook(book, inv, options, QuietReporter())
        print(run_as_json(run))
    else:
        from labctl.views.play import TerminalReporter

        reporter = TerminalReporter(show_diff=diff, check=check)
        run = run_playbook(book, inv, options, reporter)
        reporter.recap(run)
    if not check:
        _record_undo(playbook, inv, run, options)
    if run.exit_status:
        raise Exit(code=run.exit_status)


def _record_undo(playbook: str, inv: Inventory, run: PlaybookRun, options: RunOptions) -> None:
    """What the run changed that can be put back (sysctls, qdiscs, modules) goes into the
    results store as a run of its own, for `labctl restore RUN`."""
    undo = run.undo_by_host()
    if not undo:
        return

    with open_store(None) as db:
        params = {"playbook": playbook, "tags": sorted(options.tags), "limit": options.limit}
        run_id = db.start_run(f"play:{Path(playbook).name}", params, inv.path, None)
        for host, entries in undo.items():
            db.add_undo(run_id, host, [u.to_dict() for u in entries])
        db.finish_run(run_id, "finished" if not run.exit_status else "failed")
    print(
        f"labctl: what this run changed is recorded as run {run_id}: "
        f"`labctl restore {run_id}` puts it back",
        file=sys.stderr,
    )


_inventory = inventory  # the tasks' own `inventory` flag shadows the helper's name
