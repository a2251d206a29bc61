"""`labctl config`: the settings in effect and where each came from (labctl/settings.py)."""

from __future__ import annotations

import os
from pathlib import Path

from invoke import Context, task

from labctl.cli.common import console, errors_as_exit, json_dumps
from labctl.paths import without_password
from labctl.settings import KEYS, load_settings, project_config, user_config


@task(name="config", help={"json": "print JSON"})
@errors_as_exit
def show_config(c: Context, json: bool = False) -> None:
    """Show the effective settings (inventory, store, output_dir, lab) and where each came from:
    the default, ~/.config/labctl/labctl.toml, a labctl.toml in this directory or a parent,
    or a LABCTL_* variable. A command's own flag wins over all of them."""
    settings = load_settings()
    if json:
        doc = {
            k: {"value": without_password(s.value), "source": s.source} for k, s in settings.items()
        }
        print(json_dumps(doc))
        return
    for key, setting in settings.items():
        print(f"{key:10}  {without_password(setting.value)}")
        print(f"{'':10}  from {setting.source}: {KEYS[key]}")
    user = user_config(os.environ, Path(os.environ.get("HOME") or Path.home()))
    project = project_config(Path.cwd())
    con = console()
    con.print(f"user file:    {user}" + ("" if user.is_file() else " (absent)"))
    con.print(f"project file: {project or 'none (labctl.toml here or in a parent directory)'}")
