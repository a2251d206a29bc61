"""Shared test set-up: keep the developer's SSH config and shell rc files out of every test."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_user_ssh_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # labctl passes an explicit SSHConfig and known_hosts file; HOME points elsewhere so that a
    # slip (a default ~/.ssh lookup) fails in tests instead of passing on a developer's machine.
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
