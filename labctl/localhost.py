"""The controller as a host: what `delegate_to: localhost` runs on.

It answers like a `HostConnection` (run, put, get) so every action works unchanged; the
commands run in a local `sh`, in their own session, and a timeout stops the whole session.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence

from labctl.errors import CommandTimeout
from labctl.inventory import Host
from labctl.remote import (
    DEFAULT_COMMAND_TIMEOUT,
    KILL_GRACE,
    Command,
    CommandFailed,
    CommandResult,
    HostConnection,
    command_summary,
    command_text,
    log_command,
    log_result,
)


class LocalConnection(HostConnection):
    """Runs on this machine, on behalf of inventory host `host` (whose name results carry)."""

    def __init__(self, host: Host) -> None:  # no SSH: HostConnection's own setup is skipped
        self.host = host
        self.become_default = False

    @property
    def user(self) -> str:
        """Whoever runs labctl."""
        return pwd.getpwuid(os.geteuid()).pw_name

    def open(self) -> None:
        return None

    def expect(self, now: Sequence[str], after: Sequence[str] = ()) -> None:
        """Nothing to save: a command here costs no round trip (reads are not taken ahead)."""

    def forget(self) -> None:
        return None

    def run(
        self,
        command: Command,
        *,
        timeout: float | None = DEFAULT_COMMAND_TIMEOUT,
        check: bool = False,
        become: bool | None = None,
    ) -> CommandResult:
        text = command_text(command)
        log_command(self.host.name, text)
        started = time.monotonic()
        proc = subprocess.Popen(
            ["sh", "-c", text],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # a timeout stops everything the command started
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop_session(proc)
            out, err = proc.communicate()
            raise CommandTimeout(
                f"localhost: `{command_summary(text)}` timed out after {timeout:g} s",
                CommandResult("localhost", text, -1, out, err, time.monotonic() - started),
            ) from None
        result = CommandResult(
            self.host.name, text, proc.returncode, out, err, time.monotonic() - started
        )
        log_result(result)
        if check and not result.ok:
            raise CommandFailed(result)
        return result

    def put(self, local: str, remote: str) -> None:
        shutil.copyfile(local, remote)

    def get(self, remote: str, local: str) -> None:
        shutil.copyfile(remote, local)

    def close(self) -> None:
        return None


def _stop_session(proc: subprocess.Popen[str]) -> None:
    """TERM the command's session, then KILL it after a grace period (by its own PID)."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, KILL_GRACE)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
