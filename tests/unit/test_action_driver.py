"""The driver action without a host: its arguments, probe parsing, and the swap and verify
scripts run for real with sh against stand-in rmmod/insmod/modprobe commands."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from labctl.actions import ACTIONS
from labctl.actions.base import ArgsError, build_args
from labctl.actions.driver import (
    VERIFY_SECONDS,
    DriverAction,
    DriverArgs,
    launch_script,
    parse_probe,
    probe_script,
    status_path,
    swap_script,
    verify_script,
)
from labctl.facts.modules import file_module_id, loaded_module_id, same_module


def test_driver_is_registered_and_checks_its_arguments() -> None:
    assert ACTIONS["driver"] is DriverAction
    args = build_args(DriverAction, {"driver": "e1000e", "revert_after": "30"})
    assert (args.driver, args.revert_after, args.cancel_revert) == ("e1000e", 30, True)
    for bad, message in [
        ({"driver": "e1000e; reboot"}, "bad module name"),
        ({"driver": "e1000e", "replacement": "e1000e.ko"}, "absolute path"),
        ({"driver": "e1000e", "replacement": "/tmp/e1000e.o"}, ".ko file"),
        ({"driver": "e1000e", "revert_after": 1}, "at least 5"),
        ({"driver": "e1000e", "depends": ["ok", "b a d"]}, "depends"),
    ]:
        with pytest.raises(ArgsError, match=message):
            build_args(DriverAction, bad)


def test_probe_output_parses() -> None:
    probe = parse_probe(
        "release=6.1.0-56-amd64\nmodules_supported=yes\nmodules=e1000e virtio_net ptp \n"
        "loaded=yes\nloaded_id=build-id:abc\nko_exists=yes\nko_name=e1000e\n"
        "ko_vermagic=6.1.0-56-amd64 SMP preempt mod_unload modversions\nko_id=build-id:def\n"
        "stock_id=build-id:abc\n"
    )
    assert probe.modules == ("e1000e", "virtio_net", "ptp")
    assert (probe.loaded, probe.loaded_id, probe.ko_id) == (True, "build-id:abc", "build-id:def")
    assert probe.stock_id == "build-id:abc"
    assert not parse_probe("release=6.18.0\n").modules_supported


def test_probe_script_runs_read_only(tmp_path: Path) -> None:
    args = DriverArgs("e1000e", replacement=str(tmp_path / "missing.ko"))
    out = subprocess.run(["sh", "-c", probe_script(args)], capture_output=True, text=True)
    probe = parse_probe(out.stdout)
    assert probe.release == os.uname().release and not probe.ko_exists


def _fake_tools(tmp_path: Path, failing: str = "") -> dict[str, str]:
    """rmmod, insmod, modprobe that append their argv to calls.log (`failing` exits 1)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("rmmod", "insmod", "modprobe"):
        rc = 1 if tool == failing else 0
        script = f'#!/bin/sh\necho "{tool} $*" >> {tmp_path}/calls.log\n'
        if rc:
            script += f'echo "{tool}: ERROR: could not do it" >&2\n'
        (bin_dir / tool).write_text(script + f"exit {rc}\n")
        (bin_dir / tool).chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def test_swap_unloads_loads_dependencies_then_the_replacement(tmp_path: Path) -> None:
    args = DriverArgs(
        "e1000e", replacement="/x/e1000e.ko", depends=("netmap_dep",), record_dir=str(tmp_path)
    )
    env = _fake_tools(tmp_path)
    subprocess.run(["sh", "-c", swap_script(args, loaded=True)], env=env, check=True)
    assert (tmp_path / "calls.log").read_text().splitlines() == [
        "rmmod e1000e",
        "modprobe netmap_dep",
        "insmod /x/e1000e.ko",
    ]
    assert Path(status_path(args)).read_text().strip() == "0"


def test_swap_without_replacement_reloads_the_stock_driver(tmp_path: Path) -> None:
    args = DriverArgs("e1000e", record_dir=str(tmp_path))
    env = _fake_tools(tmp_path)
    subprocess.run(["sh", "-c", swap_script(args, loaded=False)], env=env, check=True)
    assert (tmp_path / "calls.log").read_text().splitlines() == ["modprobe e1000e"]


def test_a_failed_rmmod_stops_the_swap_and_says_why(tmp_path: Path) -> None:
    args = DriverArgs("e1000e", record_dir=str(tmp_path))
    env = _fake_tools(tmp_path, failing="rmmod")
    subprocess.run(["sh", "-c", swap_script(args, loaded=True)], env=env, check=True)
    assert (tmp_path / "calls.log").read_text().splitlines() == ["rmmod e1000e"]
    assert Path(status_path(args)).read_text().strip() == "1"
    assert "could not do it" in Path(status_path(args) + ".err").read_text()


def test_the_swap_is_launched_in_a_session_of_its_own(tmp_path: Path) -> None:
    text = launch_script(DriverArgs("e1000e", record_dir=str(tmp_path)), loaded=True)
    assert "setsid sh -c " in text and text.endswith("&")


def test_verify_waits_for_module_interfaces_and_addresses() -> None:
    text = verify_script("e1000e", "build-id:abc", ("enp0s4",), (("enp0s4", "10.78.0.11/24"),))
    assert "[ -d /sys/module/e1000e ]" in text
    assert "/sys/module/e1000e/notes/.note.gnu.build-id" in text and "= build-id:abc" in text
    assert "/sys/class/net/enp0s4/device/driver" in text
    assert "ip -o -4 addr show dev enp0s4" in text and "' 10.78.0.11/24 '" in text
    # bounded: gives up after VERIFY_SECONDS with a one-line reason
    assert f"+ {VERIFY_SECONDS}))" in text
    started = time.monotonic()
    failed = subprocess.run(
        ["sh", "-c", text.replace(f"+ {VERIFY_SECONDS}))", "+ 1))")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert failed.returncode == 1 and "not back after" in failed.stderr
    assert time.monotonic() - started < 10  # by the clock: 1-2 s, however slow a try


def test_a_module_is_known_by_its_build_id(tmp_path: Path) -> None:
    """Debian's modules carry no srcversion: two e1000e.ko with none are not the same module
    (the driver action once took a patched e1000e for the stock one and swapped nothing)."""
    assert same_module("build-id:ab", "build-id:ab")
    assert not same_module("build-id:ab", "build-id:cd")
    assert not same_module(None, None) and not same_module("", "")
    # any ELF file with a GNU build-id note is read the same way (here: the shell itself)
    shell = os.path.realpath("/bin/sh")
    out = subprocess.run(
        ["sh", "-c", f'echo "{file_module_id(shell)}"'], capture_output=True, text=True, check=True
    ).stdout.strip()
    readelf = subprocess.run(["readelf", "-n", shell], capture_output=True, text=True).stdout
    assert out.startswith("build-id:") and out.removeprefix("build-id:") in readelf
    # a file with neither a build-id nor a srcversion has no identity
    none = tmp_path / "x.ko"
    none.write_bytes(b"not an ELF file")
    out = subprocess.run(
        ["sh", "-c", f'echo "{file_module_id(str(none))}"'], capture_output=True, text=True
    ).stdout.strip()
    assert out == ""
    # sysfs notes: 16 bytes of note header, then the id; a module not loaded gives nothing
    gone = subprocess.run(
        ["sh", "-c", f'echo "{loaded_module_id("labctl_no_such_module")}"'],
        capture_output=True,
        text=True,
    )
    assert gone.stdout.strip() == ""
