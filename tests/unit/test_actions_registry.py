"""The action registry (labctl/actions/__init__.py): lazy, yet a plain mapping of names to
Action classes."""

from __future__ import annotations

import inspect

import pytest

from labctl.actions import ACTIONS, WHERE
from labctl.actions.base import Action


def test_every_registered_name_resolves_to_an_action_of_that_name() -> None:
    assert len(ACTIONS) == len(WHERE) and list(ACTIONS) == list(WHERE)
    for name in WHERE:
        cls = ACTIONS[name]
        assert inspect.isclass(cls) and issubclass(cls, Action), name
        assert cls.name == name
        assert not inspect.isabstract(cls), name
        assert ACTIONS[name] is cls  # found once, kept
    assert dict(ACTIONS.items()) == {name: ACTIONS[name] for name in WHERE}


def test_membership_and_get_as_a_mapping() -> None:
    assert "command" in ACTIONS and "nosuch" not in ACTIONS and 3 not in ACTIONS
    assert ACTIONS.get("nosuch") is None
    with pytest.raises(KeyError):
        ACTIONS["nosuch"]
