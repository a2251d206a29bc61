"""One spelling of every short flag, with Ansible's meanings, for every task that has the
option (docs/cli.md). invoke would make short flags up from each task's parameter names, so
`-l` was `--plot` in one task and `--limit` in another; here only these exist, and a task
that has no such option has no such letter."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from invoke import Argument

SHORT_FLAGS: Mapping[str, str] = {
    "inventory": "i",
    "limit": "l",
    "extra": "e",
    "tags": "t",
    "check": "C",
    "diff": "D",
    "forks": "f",
    "verbose": "v",
    "output": "o",  # labctl's own: where a command writes its file
}

VERBOSE_HELP = "-v the commands sent to each host, -vv also their output, -vvv also SSH's own log"


def shaped(args: Sequence[Argument]) -> list[Argument]:
    """The task's arguments with their long name and, where SHORT_FLAGS has one, its letter."""
    out = []
    for arg in args:
        long_name = arg.names[0]
        short = SHORT_FLAGS.get(arg.attr_name or long_name)
        arg.names = (long_name, short) if short and not arg.positional else (long_name,)
        out.append(arg)
    return out


# Tasks that take an inventory but only read it.
READS_INVENTORY_ONLY = frozenset({"inventory"})


def touches_hosts(task: str, args: Sequence[Argument]) -> bool:
    """A task that reaches hosts takes an inventory; those get -v."""
    return task not in READS_INVENTORY_ONLY and any(a.names[0] == "inventory" for a in args)


def verbose_argument() -> Argument:
    return Argument(
        names=("verbose", "v"), kind=int, default=0, incrementable=True, help=VERBOSE_HELP
    )
