"""The command line: thin doors into the library, one module per command group (lab,
hosts, play, experiment, results, nightly). `tasks.py` and the `labctl` script share the
tree `namespace()` builds; the experiments' tasks come from the registry.

Exit statuses: labctl/paths.py. Flags and help: cli/program.py, cli/flags.py. What a command
imports as it starts (issue 18): cli/common.py, cli/invoke_light.py.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from labctl.cli import invoke_light  # noqa: F401  first: it imports invoke (see there)

# isort: split
from invoke import Collection

from labctl import __version__
from labctl.cli import config, experiment, hosts, inventory, lab, nightly, play, report, results
from labctl.cli.program import LabctlProgram, adopt, needs_experiments
from labctl.errors import LabctlError
from labctl.paths import EXIT_FAILED


def namespace(argv: Sequence[str] | None = None) -> Collection:
    """labctl's task tree. Given the command line, without the experiments' tasks when it
    cannot need them (cli/program.py: needs_experiments): finding them imports every
    experiment module."""
    ns = Collection()
    ns.add_collection(lab.collection())
    ns.add_task(hosts.facts)
    ns.add_task(inventory.show)
    ns.add_task(config.show_config)
    ns.add_task(play.play)
    ns.add_task(play.provision)
    if argv is None or needs_experiments(argv):
        ns.add_collection(experiment.collection())
    ns.add_task(experiment.restore)
    ns.add_task(nightly.nightly)
    ns.add_task(report.report)
    ns.add_collection(results.collection())
    ns.add_collection(hosts.collection())
    return adopt(ns)


def main() -> None:
    try:
        tree = namespace(sys.argv)
    except LabctlError as exc:  # e.g. an experiment module that does not import
        print(f"labctl: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_FAILED) from None
    program = LabctlProgram(namespace=tree, version=__version__, name="labctl", binary="labctl")
    try:
        program.run(sys.argv)
    except BrokenPipeError:  # `labctl ... | head`: the reader is gone, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(EXIT_FAILED) from None
