"""`python -m labctl`: the `labctl` command."""

from labctl.cli import main

main()
