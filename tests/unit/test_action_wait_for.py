"""wait_for without a host: the wait script run by the local sh (short timeouts), Ansible's
messages, and the arguments Ansible refuses."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from labctl.actions.base import ActionFailed, ArgsError, TaskContext, build_args, run_action
from labctl.actions.wait_for import WaitForAction, failure_message, wait_script
from labctl.remote import CommandResult, command_text


class LocalConn:
    def __init__(self) -> None:
        self.host = SimpleNamespace(name="local")
        self.timeouts: list[float | None] = []

    def run(self, command: Any, timeout: float | None = None, **_: Any) -> CommandResult:
        text = command_text(command)
        self.timeouts.append(timeout)
        proc = subprocess.run(["sh", "-c", text], capture_output=True, text=True, timeout=timeout)
        return CommandResult("local", text, proc.returncode, proc.stdout, proc.stderr, 0.0)


def wait(**raw: Any) -> Any:
    conn = LocalConn()
    ctx = TaskContext(conn=conn, vars={}, base_dir=Path("."))  # type: ignore[arg-type]
    return run_action(WaitForAction(), ctx, raw, check=False), conn


def test_a_file_that_appears_ends_the_wait(tmp_path: Path) -> None:
    f = tmp_path / "ready"
    threading.Timer(0.5, f.write_text, ["up and READY 42\n"]).start()
    result, conn = wait(path=str(f), timeout=10, sleep=0)
    assert not result.changed and not result.failed
    assert result.output["elapsed"] <= 5 and result.output["path"] == str(f)
    assert conn.timeouts[0] >= 10  # the connection waits longer than the loop
    result, _ = wait(path=str(f), search_regex=r"READY \d+", timeout=5)
    assert not result.failed


def test_a_timeout_fails_with_ansibles_message(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(ActionFailed, match=r"^Timeout when waiting for file .*/never \(after"):
        wait(path=str(tmp_path / "never"), timeout=1, sleep=0)
    assert time.monotonic() - started < 5
    (tmp_path / "f").write_text("nothing here\n")
    with pytest.raises(ActionFailed, match=r"Timeout when waiting for search string x\+ in"):
        wait(path=str(tmp_path / "f"), search_regex="x+", timeout=1)
    with pytest.raises(ActionFailed, match="^custom"):
        wait(path=str(tmp_path / "never"), timeout=0, msg="custom")


def test_absent_waits_for_the_path_to_go(tmp_path: Path) -> None:
    f = tmp_path / "lock"
    f.write_text("")
    threading.Timer(0.5, f.unlink).start()
    result, _ = wait(path=str(f), state="absent", timeout=10, sleep=0)
    assert not result.failed


def test_ports_started_and_stopped() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        result, _ = wait(port=port, timeout=5)
        assert not result.failed and result.output["port"] == port
        with pytest.raises(ActionFailed, match=f"127.0.0.1:{port} to stop"):
            wait(port=port, state="stopped", timeout=1)
    result, _ = wait(port=port, state="stopped", timeout=5)
    assert not result.failed
    with pytest.raises(ActionFailed, match=f"^Timeout when waiting for 127.0.0.1:{port} "):
        wait(port=port, timeout=1, connect_timeout=1)


def test_nothing_to_wait_for_is_a_sleep() -> None:
    started = time.monotonic()
    result, _ = wait(timeout=1)
    assert not result.failed and time.monotonic() - started >= 1


def test_values_are_quoted() -> None:
    args = build_args(WaitForAction, {"path": "/a b/$(x)", "search_regex": "it's"})
    text = wait_script(args).text
    assert "'/a b/$(x)'" in text and "'it'\"'\"'s'" in text


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"port": 1, "path": "/x"}, "can not both be passed"),
        ({"path": "/x", "state": "stopped"}, "only be used for checking a port"),
        ({"port": 1, "state": "drained"}, "state must be"),
        ({"port": 1, "search_regex": "x"}, "search_regex needs path"),
        ({"port": 1, "host": "a;b"}, "not a host name"),
        ({"port": 70000}, "out of range"),
        ({"port": 1, "exclude_hosts": ["a"]}, "unknown argument"),
    ],
)
def test_bad_arguments(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ArgsError, match=message):
        build_args(WaitForAction, raw)


def test_messages() -> None:
    def msg(**raw: Any) -> str:
        return failure_message(build_args(WaitForAction, raw))

    assert msg(port=80, host="10.0.0.1") == "Timeout when waiting for 10.0.0.1:80"
    assert msg(path="/x", state="absent") == "Timeout when waiting for /x to be absent."
