"""A task's view of its host's connection: its `environment` exported and its
`become_user` switched to, around every command the task's action runs. On the controller
(`delegate_to: localhost`) `become` is honoured too: sudo unless labctl runs as root."""

from __future__ import annotations

import os
from collections.abc import Mapping

from labctl.localhost import LocalConnection
from labctl.remote import (
    DEFAULT_COMMAND_TIMEOUT,
    Command,
    CommandResult,
    HostConnection,
    ShellScript,
    command_text,
    quote,
)


def task_shell(text: str, environment: Mapping[str, str], user: str | None, as_root: bool) -> str:
    """`text` with `environment` exported first, run as `user` when one is given (runuser when
    connected as root, sudo otherwise)."""
    exports = "".join(f"export {k}={quote(v)}; " for k, v in environment.items())
    text = exports + text
    if user is None:
        return text
    if as_root:
        return f"runuser -u {quote(user)} -- sh -c {quote(text)}"
    return f"sudo -n -u {quote(user)} -- sh -c {quote(text)}"


class TaskConnection(HostConnection):
    """Delegates to `inner`; only `run` changes. (A subclass so that actions, typed against
    HostConnection, take it unchanged; HostConnection's own setup is skipped.)"""

    def __init__(
        self,
        inner: HostConnection,
        environment: Mapping[str, str],
        user: str | None,
        become: bool = False,
    ) -> None:
        self.inner = inner
        self.host = inner.host
        self.become_default = inner.become_default
        self.environment = dict(environment)
        self.run_as = user
        self.local = isinstance(inner, LocalConnection)
        self.become = become

    @property
    def user(self) -> str:
        return self.inner.user

    def open(self) -> None:
        self.inner.open()

    def run(
        self,
        command: Command,
        *,
        timeout: float | None = DEFAULT_COMMAND_TIMEOUT,
        check: bool = False,
        become: bool | None = None,
    ) -> CommandResult:
        text = command_text(command)
        if self.local:
            # The controller: root only if labctl runs as root; become means sudo here.
            as_root = os.geteuid() == 0
            if self.become and not as_root and self.run_as is None:
                text = "sudo -n -- sh -c " + quote(text)
                as_root = True
        else:
            as_root = self.inner.user == "root" or bool(
                self.become_default if become is None else become
            )
        text = task_shell(text, self.environment, self.run_as, as_root)
        return self.inner.run(ShellScript(text), timeout=timeout, check=check, become=become)

    def put(self, local: str, remote: str) -> None:
        self.inner.put(local, remote)

    def get(self, remote: str, local: str) -> None:
        self.inner.get(remote, local)

    def close(self) -> None:
        self.inner.close()
