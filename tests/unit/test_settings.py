"""One place for settings (issue 17): defaults, the user's and the project's labctl.toml,
LABCTL_* variables, each value with its source; the store never follows the working
directory; read commands never write."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from labctl.errors import InputError
from labctl.paths import LOCAL_INVENTORY
from labctl.results.store import ResultsStore
from labctl.settings import load_settings
from tests.support import run_labctl
from tests.unit.test_cli_results import add_run


def test_defaults_do_not_depend_on_the_working_directory(tmp_path: Path) -> None:
    home = tmp_path / "home"
    one = load_settings(cwd=tmp_path / "a", env={}, home=home)
    two = load_settings(cwd=Path("/"), env={}, home=home)
    assert one == two
    assert one.store.value == str(home / ".local/share/labctl/labctl.db")
    assert one.output_dir.value == str(home / ".local/share/labctl")
    assert one.inventory.value == str(LOCAL_INVENTORY)
    assert {s.source for _, s in one.items()} == {"default"}


def test_xdg_data_home_moves_the_defaults(tmp_path: Path) -> None:
    got = load_settings(cwd=tmp_path, env={"XDG_DATA_HOME": "/srv/data"}, home=tmp_path)
    assert got.store.value == "/srv/data/labctl/labctl.db"


def test_files_and_variables_in_precedence_order(tmp_path: Path) -> None:
    home = tmp_path / "home"
    user = home / ".config/labctl/labctl.toml"
    user.parent.mkdir(parents=True)
    user.write_text('store = "/var/lib/labctl/team.db"\noutput_dir = "~/reports"\n')
    project = tmp_path / "proj"
    (project / "sub" / "deeper").mkdir(parents=True)
    (project / "labctl.toml").write_text('# the lab\ninventory = "hosts/lab.yml"\n')
    got = load_settings(cwd=project / "sub" / "deeper", env={"HOME": str(home)}, home=home)
    assert got.store.value == "/var/lib/labctl/team.db"
    assert got.store.source == f"{user}:1"
    assert got.output_dir.value == str(Path("~/reports").expanduser())
    # relative to the file that says it, from any subdirectory
    assert got.inventory.value == str(project / "hosts/lab.yml")
    assert got.inventory.source == f"{project / 'labctl.toml'}:2"
    env = {"LABCTL_STORE": "here.db", "LABCTL_INVENTORY": "/etc/lab.yml"}
    got = load_settings(cwd=project, env=env, home=home)
    assert got.store.value == str(project / "here.db") and got.store.source == "LABCTL_STORE"
    assert got.inventory.value == "/etc/lab.yml" and got.inventory.source == "LABCTL_INVENTORY"


def test_project_file_wins_over_the_users(tmp_path: Path) -> None:
    home = tmp_path / "home"
    user = home / ".config/labctl/labctl.toml"
    user.parent.mkdir(parents=True)
    user.write_text('store = "/a.db"\n')
    (tmp_path / "labctl.toml").write_text('store = "b.db"\n')
    assert load_settings(cwd=tmp_path, env={}, home=home).store.value == str(tmp_path / "b.db")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('inventory = "x.yml"\nstroe = "y.db"\n', ":2: unknown setting 'stroe' (known: "),
        ("store = 3\n", ":1: store must be a non-empty string (a path)"),
        ('store = "a.db\n', ": Illegal character"),
    ],
)
def test_a_bad_file_is_one_line_naming_it(tmp_path: Path, text: str, error: str) -> None:
    (tmp_path / "labctl.toml").write_text(text)
    with pytest.raises(InputError) as caught:
        load_settings(cwd=tmp_path, env={}, home=tmp_path / "home")
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'labctl.toml'}") and error in message
    assert "\n" not in message


def labctl(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = run_labctl(*args, timeout=60, cwd=cwd, env=env)
    return proc.returncode, proc.stdout, proc.stderr


def test_config_command_shows_values_and_sources(tmp_path: Path) -> None:
    (tmp_path / "labctl.toml").write_text('store = "lab.db"\n')
    code, out, err = labctl("config", "--json", cwd=tmp_path, env={"LABCTL_OUTPUT_DIR": "out"})
    assert code == 0, err
    doc = json.loads(out)
    assert doc["store"] == {
        "value": str(tmp_path / "lab.db"),
        "source": f"{tmp_path}/labctl.toml:1",
    }
    assert doc["output_dir"] == {"value": str(tmp_path / "out"), "source": "LABCTL_OUTPUT_DIR"}
    assert doc["inventory"]["source"] == "default"
    code, out, _ = labctl("config", cwd=tmp_path)
    assert code == 0 and "from LABCTL" not in out and f"{tmp_path}/labctl.toml:1" in out


def test_read_commands_find_the_store_from_any_directory_and_never_make_one(
    tmp_path: Path,
) -> None:
    home = Path(os.environ["HOME"])  # tests/conftest.py: a fresh HOME per test
    store = home / ".local/share/labctl/labctl.db"
    for cwd in (tmp_path, Path("/")):
        code, out, err = labctl("results.list", cwd=cwd)
        assert (
            code == 2
            and err
            == f"labctl: {store}: no results store here "
            "(run an experiment first, or give --store)\n"
        )
    assert not store.parent.exists()


def test_show_writes_no_plot_unless_asked(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with ResultsStore(db) as store:
        add_run(store, {"shared": 40_000.0, "reuseport": 80_000.0})
    before = sorted(p.name for p in tmp_path.rglob("*"))
    mtime = db.stat().st_mtime_ns
    code, out, err = labctl("results.show", "1", "--store", str(db), cwd=tmp_path)
    assert code == 0, err
    assert "plot:" not in out
    assert sorted(p.name for p in tmp_path.rglob("*") if not p.name.endswith(("-wal", "-shm"))) == [
        n for n in before if not n.endswith(("-wal", "-shm"))
    ]
    assert db.stat().st_mtime_ns == mtime
    code, out, err = labctl(
        "results.show", "1", "--store", str(db), "--plot", str(tmp_path / "p.png"), cwd=tmp_path
    )
    assert code == 0 and (tmp_path / "p.png").is_file()


def test_a_store_url_and_the_lab_name_are_taken_as_written(tmp_path: Path) -> None:
    """issue 19: `postgresql://...` is never made a path (it once left a folder named
    `postgresql:` in the working directory)."""
    project = tmp_path / "proj"
    project.mkdir()
    (project / "labctl.toml").write_text(
        'store = "postgresql://me@db.example:5432/labctl"\nlab = "lab-b"\n'
    )
    got = load_settings(cwd=project / "sub", env={}, home=tmp_path)
    assert got.store.value == "postgresql://me@db.example:5432/labctl"
    assert (got.lab.value, got.lab.source) == ("lab-b", f"{project / 'labctl.toml'}:2")
    env = {"LABCTL_STORE": "postgresql://me:pw@db/x", "LABCTL_LAB": "lab c"}
    got = load_settings(cwd=tmp_path, env=env, home=tmp_path)
    assert (got.store.value, got.lab.value) == ("postgresql://me:pw@db/x", "lab c")
    assert load_settings(cwd=tmp_path, env={}, home=tmp_path).lab.value == ""


def test_config_never_shows_a_password(tmp_path: Path) -> None:
    env = {"LABCTL_STORE": "postgresql://me:s3cret@db/x"}
    for flag in ([], ["--json"]):
        code, out, err = labctl("config", *flag, cwd=tmp_path, env=env)
        assert code == 0, err
        assert "s3cret" not in out and "postgresql://me:***@db/x" in out
