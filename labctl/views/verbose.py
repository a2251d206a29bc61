"""-v, -vv, -vvv: what labctl sends to each host, shown on stderr as it happens.

labctl/remote.py and labctl/localhost.py log every command on the `labctl.remote` logger
(INFO) and its exit status and output (DEBUG); -vvv adds paramiko's own log. Nothing is
shown without -v: the handler exists only while a verbose command runs.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

COMMANDS = "labctl.remote"
LEVELS = {1: logging.INFO, 2: logging.DEBUG}


class _Stderr(logging.StreamHandler):
    """Writes to sys.stderr as it is at each line: under a live progress line rich has
    redirected it, so the commands print above that line instead of across it."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


@contextlib.contextmanager
def show_commands(verbosity: int) -> Iterator[None]:
    if verbosity <= 0:
        yield
        return
    handler = _Stderr(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    loggers = [logging.getLogger(COMMANDS)]
    if verbosity >= 3:
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        loggers.append(logging.getLogger("paramiko"))
    saved = [(lg, lg.level, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(LEVELS.get(verbosity, logging.DEBUG))
        lg.propagate = False
    try:
        yield
    finally:
        for lg, level, propagate in saved:
            lg.removeHandler(handler)
            lg.setLevel(level)
            lg.propagate = propagate
