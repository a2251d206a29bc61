"""The command line: thin doors into the library, one module per command group (lab,
hosts, play, experiment, results, nightly). `tasks.py` and the `labctl` script share the
tree `namespace()` builds; the experiments' tasks come from the registry.

Exit statuses: labctl/paths.py.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterator

from invoke import Collection, Exit, ParseError, Program

from labctl import __version__
from labctl.cli import experiment, hosts, inventory, lab, nightly, play, report, results
from labctl.errors import LabctlError
from labctl.experiments import registry
from labctl.paths import EXIT_FAILED


class LabctlProgram(Program):
    """invoke's Program, with a flag's bad value (`--forks abc`) or an unknown flag as one
    line and exit 2 rather than a traceback or invoke's exit 1."""

    def parse_core(self, argv: list[str] | None) -> None:
        with _one_line_parse_errors():
            super().parse_core(argv)

    def parse_tasks(self) -> None:
        with _one_line_parse_errors():
            super().parse_tasks()


@contextlib.contextmanager
def _one_line_parse_errors() -> Iterator[None]:
    try:
        yield
    except ParseError as exc:
        raise Exit(f"labctl: {exc}", code=EXIT_FAILED) from exc
    except ValueError as exc:  # invoke casting a flag's text to its type
        found = re.match(r"invalid literal for int\(\) with base 10: (.*)", str(exc))
        reason = f"expects an integer, not {found[1]}" if found else str(exc)
        raise Exit(f"labctl: a flag's value {reason}", code=EXIT_FAILED) from exc


def namespace() -> Collection:
    ns = Collection()
    ns.add_collection(lab.collection())
    ns.add_task(hosts.facts)
    ns.add_task(inventory.show)
    ns.add_task(play.play)
    ns.add_task(play.provision)
    ns.add_collection(experiment.collection())
    ns.add_task(experiment.restore)
    ns.add_task(nightly.nightly)
    ns.add_task(report.report)
    ns.add_collection(results.collection())
    ns.add_collection(hosts.collection())
    return ns


def route(argv: list[str]) -> list[str]:
    """`labctl experiment NAME ...` is the task `experiment.NAME` (invoke's own spelling,
    which works too): each experiment has its own flags and help."""
    for i, word in enumerate(argv[1:], 1):
        if word.startswith("-"):
            continue
        if word == "experiment" and i + 1 < len(argv) and argv[i + 1] in registry():
            return [*argv[:i], f"experiment.{argv[i + 1]}", *argv[i + 2 :]]
        break
    return argv


def main() -> None:
    try:
        tree = namespace()
        argv = route(sys.argv)
    except LabctlError as exc:  # e.g. an experiment module that does not import
        print(f"labctl: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_FAILED) from None
    program = LabctlProgram(namespace=tree, version=__version__, name="labctl", binary="labctl")
    program.run(argv)
