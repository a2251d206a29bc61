"""invoke's entry point: the same task tree as the `labctl` command (see labctl/cli.py)."""

from labctl.cli import namespace

ns = namespace()

__all__ = ["ns"]
