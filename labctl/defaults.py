"""Defaults the command line names in its help and signatures, each spelled once, here, in
a module that imports nothing: `labctl --help` reads them without importing the code they
configure (issue 18), and that code takes them from here."""

from __future__ import annotations

DEFAULT_POOL_SIZE = 32  # hosts reached at once (labctl.remote's Connections, --forks)

# How tonight is judged (labctl.results.regress.Rule; docs/nightly.md)
RULE_HISTORY = 10  # compare with the last N comparable runs
RULE_THRESHOLD = 0.10  # a change counts beyond this fraction of the history's median...
RULE_ALPHA = 0.05  # ...when Mann-Whitney on the trials gives p below this...

EXPORT_FORMATS = ("json", "csv", "jsonl")  # `labctl results.export --format` (results.export)
