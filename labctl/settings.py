"""labctl's settings in one place: the default inventory, the results store and the output
directory, each with where its value came from (`labctl config` shows them).

Sources, the later winning (docs/cli.md):
1. the built-in default: the local lab's inventory, and a store and output directory under
   the XDG data directory (`~/.local/share/labctl/`), whatever the current directory is;
2. the user's file, `$XDG_CONFIG_HOME/labctl/labctl.toml` (`~/.config/labctl/labctl.toml`);
3. the project's file, `labctl.toml` in the current directory or the nearest parent holding
   one (as git finds its repository): a lab's checkout of its own experiments keeps its store;
4. `LABCTL_INVENTORY`, `LABCTL_STORE`, `LABCTL_OUTPUT_DIR`, `LABCTL_LAB`;
5. the command's flag (`-i`, `--store`, ...), which the command line applies itself.

A relative path in a file is relative to that file's directory, so a project's store is the
same from any of its subdirectories; a relative path in a variable is made absolute at once,
against the directory labctl was started in. A store given as a URL (postgresql://...) and
the lab's name are taken as they are. A bad file is one line naming it (and the line).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from labctl.errors import InputError
from labctl.paths import LOCAL_INVENTORY, is_url

CONFIG_NAME = "labctl.toml"
ENV_PREFIX = "LABCTL_"

# Every setting, with what it is (the text `labctl config` shows).
KEYS: Mapping[str, str] = {
    "inventory": "the inventory used when a command gets no -i",
    "store": "the results store: a sqlite file, or postgresql://user@host/db (docs/results.md)",
    "output_dir": "where plots, reports and exports go when no path is given",
    "lab": "the lab's name, stored with each run (empty: the inventory file's name)",
}
NOT_PATHS = frozenset({"lab"})  # taken as written, never resolved against a directory


@dataclass(frozen=True)
class Setting:
    value: str
    source: str  # "default", "LABCTL_STORE", or "/path/labctl.toml:3"


@dataclass(frozen=True)
class Settings:
    inventory: Setting
    store: Setting
    output_dir: Setting
    lab: Setting

    def items(self) -> list[tuple[str, Setting]]:
        return [(key, getattr(self, key)) for key in KEYS]


def data_dir(env: Mapping[str, str], home: Path) -> Path:
    """$XDG_DATA_HOME/labctl, else ~/.local/share/labctl."""
    base = env.get("XDG_DATA_HOME") or str(home / ".local" / "share")
    return Path(base) / "labctl"


def user_config(env: Mapping[str, str], home: Path) -> Path:
    """$XDG_CONFIG_HOME/labctl/labctl.toml, else ~/.config/labctl/labctl.toml."""
    base = env.get("XDG_CONFIG_HOME") or str(home / ".config")
    return Path(base) / "labctl" / CONFIG_NAME


def project_config(cwd: Path) -> Path | None:
    """labctl.toml in `cwd` or its nearest parent that has one."""
    for directory in (cwd, *cwd.parents):
        candidate = directory / CONFIG_NAME
        if candidate.is_file():
            return candidate
    return None


def defaults(env: Mapping[str, str], home: Path) -> dict[str, Setting]:
    data = data_dir(env, home)
    return {
        "inventory": Setting(str(LOCAL_INVENTORY), "default"),
        "store": Setting(str(data / "labctl.db"), "default"),
        "output_dir": Setting(str(data), "default"),
        "lab": Setting("", "default"),
    }


def _resolved(key: str, value: str, base: Path) -> str:
    if key in NOT_PATHS or (key == "store" and is_url(value)):
        return value.strip()
    return str((base / Path(value).expanduser()).resolve())


def _line_of(text: str, key: str) -> int:
    for number, line in enumerate(text.splitlines(), 1):
        if re.match(rf"\s*{re.escape(key)}\s*=", line):
            return number
    return 1


def read_config_file(path: Path) -> dict[str, Setting]:
    """The settings a labctl.toml gives, paths made absolute against its directory."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: {exc}") from exc
    found: dict[str, Setting] = {}
    for key, value in doc.items():
        where = f"{path}:{_line_of(text, key)}"
        if key not in KEYS:
            raise InputError(f"{where}: unknown setting {key!r} (known: {', '.join(KEYS)})")
        if not isinstance(value, str) or not value.strip():
            what = "a name" if key in NOT_PATHS else "a path"
            raise InputError(f"{where}: {key} must be a non-empty string ({what})")
        found[key] = Setting(_resolved(key, value, path.parent), where)
    return found


def read_env(env: Mapping[str, str], cwd: Path) -> dict[str, Setting]:
    found: dict[str, Setting] = {}
    for key in KEYS:
        name = ENV_PREFIX + key.upper()
        value = env.get(name, "")
        if value.strip():
            found[key] = Setting(_resolved(key, value, cwd), name)
    return found


def load_settings(
    cwd: Path | None = None, env: Mapping[str, str] | None = None, home: Path | None = None
) -> Settings:
    """The effective settings for a command started in `cwd` with environment `env`."""
    cwd = cwd or Path.cwd()
    env = os.environ if env is None else env
    home = home or Path(env.get("HOME") or Path.home())
    merged = defaults(env, home)
    for path in (user_config(env, home), project_config(cwd)):
        if path is not None and path.is_file():
            merged.update(read_config_file(path))
    merged.update(read_env(env, cwd))
    return Settings(**merged)
