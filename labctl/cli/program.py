"""invoke's Program and Collection, shaped for labctl (the design card keeps invoke):

- every task's short flags come from one table with Ansible's meanings (cli/flags.py);
- `labctl TASK --help` and `labctl TASK -h` print the task's help wherever the flag stands,
  also for a task whose first argument is a positional one (`labctl play --help`);
- the core options are only those that do something here (no `--echo`, `--dry`, `--pty`...);
- `labctl GROUP TASK` is the task GROUP.TASK (`labctl experiment reuseport`);
- a task that reaches hosts takes `-v`/`-vv`/`-vvv`;
- an unknown task, an unknown flag or a bad value is one line and exit 2.
"""

from __future__ import annotations

import contextlib
import inspect
import re
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from invoke import Argument, Collection, Exit, ParseError, Program, Task
from invoke.completion.complete import print_completion_script
from invoke.parser import Parser

from labctl.cli.flags import shaped, touches_hosts, verbose_argument
from labctl.paths import EXIT_FAILED
from labctl.views.verbose import show_commands

# invoke's core options that mean something for labctl (the rest configure invoke's own
# `c.run`, which no labctl task uses).
CORE_OPTIONS = (
    "help",
    "version",
    "list",
    "list-depth",
    "list-format",
    "complete",
    "print-completion-script",
)
HELP_FLAGS = ("-h", "--help")


class LabctlTask(Task):
    """A task whose arguments carry labctl's flags (cli/flags.py), for `labctl` and for
    `invoke` alike (tasks.py)."""

    def get_arguments(self, ignore_unknown_help: bool | None = None) -> list[Argument]:
        helps = dict(self.help)  # invoke pops the help texts it uses: keep them
        try:
            return shaped(super().get_arguments(ignore_unknown_help=ignore_unknown_help))
        finally:
            self.help = helps


def adopt(tree: Collection) -> Collection:
    """Every task of the tree (defined with invoke's plain @task) made a LabctlTask."""
    for name in tree.task_names:
        found = tree[name]
        if not isinstance(found, LabctlTask):
            found.__class__ = LabctlTask
    return tree


def route(argv: list[str], tree: Collection) -> list[str]:
    """`labctl experiment reuseport ...` is the task `experiment.reuseport` (invoke's own
    spelling, which works too), and so for every group: `labctl results show 3`."""
    for i, word in enumerate(argv[1:], 1):
        if word.startswith("-"):
            continue
        group = tree.collections.get(word)
        if group is not None and i + 1 < len(argv) and argv[i + 1] in group.tasks:
            return [*argv[:i], f"{word}.{argv[i + 1]}", *argv[i + 2 :]]
        break
    return argv


def needs_experiments(argv: Sequence[str]) -> bool:
    """Whether this command line may need the experiments' tasks. Not when it asks for the
    version only, or when its first word is a task and no word names an experiment: invoke
    parses only the tasks named. Any core option but the version may list every task
    (`--list`, `--help`, `--complete`), and so does a command line with no task at all."""
    words = argv[1:]
    if not words or any(word.startswith("experiment") for word in words):
        return True
    return words[0] not in ("-V", "--version") and words[0].startswith("-")


def _help_asked(argv: Sequence[str], contexts: Any) -> str | None:
    """The task whose help `argv` asks for (`play --help`, `report 3 -h`), if it does."""
    if not any(word in HELP_FLAGS for word in argv):
        return None
    for word in argv:
        if word in HELP_FLAGS:
            return None  # before any task: invoke's own core help
        if not word.startswith("-") and word in contexts:
            return str(word)
    return None


class LabctlProgram(Program):
    verbosity = 0

    def core_args(self) -> list[Any]:
        kept = [a for a in super().core_args() if a.names[0] in CORE_OPTIONS]
        for arg in kept:  # a letter is a task's flag (-l limit, -D diff), not --list's
            if arg.names[0] not in ("help", "version"):
                arg.names = arg.names[:1]
        return kept

    def parse_core(self, argv: list[str] | None) -> None:
        with _one_line_parse_errors():
            tree = self.namespace or Collection()
            self.normalize_argv(route(argv or sys.argv, tree))
            self.parse_core_args()
        if self.args.version.value:
            self.print_version()
            raise Exit
        if self.args["print-completion-script"].value:
            shell = self.args["print-completion-script"].value
            print_completion_script(shell=shell, names=self.binary_names)
            raise Exit

    def update_config(self, merge: bool = True) -> None:
        if merge:  # no runtime overrides: the options that made them are gone
            self.config.merge()

    def _make_parser(self) -> Parser:
        contexts = self.collection.to_contexts(
            ignore_unknown_help=self.config.tasks.ignore_unknown_help
        )
        for ctx in contexts:
            if touches_hosts(ctx.name or "", list(ctx.args.values())):
                ctx.add_arg(verbose_argument())
        return Parser(initial=self.initial_context, contexts=contexts)

    def parse_tasks(self) -> None:
        with _one_line_parse_errors():
            self.parser = self._make_parser()
            asked = _help_asked(self.core.unparsed, self.parser.contexts)
            if asked:
                self.print_task_help(asked)
                raise Exit
            # invoke's own parse_tasks, on the parser just made (it would make a second one)
            result = self.parser.parse_argv(self.core.unparsed)
            self.core_via_tasks = result.pop(0)
            self._update_core_context(context=self.core[0], new_args=self.core_via_tasks.args)
            self.tasks = result
        levels = [ctx.args.pop("verbose").value for ctx in self.tasks if "verbose" in ctx.args]
        self.verbosity = max(levels, default=0)

    def execute(self) -> None:
        with show_commands(self.verbosity):
            super().execute()

    def print_task_help(self, name: str) -> None:
        ctx = self.parser.contexts[name]
        shown = ctx.name.replace("experiment.", "experiment ", 1)
        words = " ".join(a.name.upper() for a in ctx.positional_args)
        print(f"Usage: {self.binary} {shown} [options] {words}".rstrip())
        print()
        doc = inspect.getdoc(self.collection[name])
        for line in (doc or "").splitlines():
            print(f"{self.leading_indent}{line}".rstrip())
        print()
        if ctx.positional_args:
            print("Arguments:")
            self.print_columns([(a.name.upper(), a.help) for a in ctx.positional_args])
        print("Options:")
        hidden = ("-v", "--verbose", *(f"--{a.name}=" for a in ctx.positional_args))
        tuples = [t for t in ctx.help_tuples() if not t[0].startswith(hidden)]
        if "verbose" in ctx.args:
            tuples.append(("-v, --verbose", ctx.args["verbose"].help))
        self.print_columns([*tuples, ("-h, --help", "show this help and exit")])


@contextlib.contextmanager
def _one_line_parse_errors() -> Iterator[None]:
    try:
        yield
    except ParseError as exc:
        raise Exit(f"labctl: {_parse_error_text(exc)}", code=EXIT_FAILED) from exc
    except ValueError as exc:  # invoke casting a flag's text to its type
        found = re.match(r"invalid literal for int\(\) with base 10: (.*)", str(exc))
        reason = f"expects an integer, not {found[1]}" if found else str(exc)
        raise Exit(f"labctl: a flag's value {reason}", code=EXIT_FAILED) from exc


def _parse_error_text(exc: ParseError) -> str:
    text = str(exc)
    unknown = re.fullmatch(r"No idea what '(.*)' is!", text)
    task = getattr(exc.context, "name", None)
    if unknown and unknown[1].startswith("-"):
        where = f"{task}: " if task else ""
        hint = f"labctl {task} --help" if task else "labctl --help"
        return f"{where}unknown flag {unknown[1]} (`{hint}` lists the flags)"
    if unknown:
        return f"unknown task {unknown[1]!r} (`labctl --list` lists the tasks)"
    return f"{task}: {text}" if task else text
