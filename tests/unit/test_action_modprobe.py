"""modprobe's plan from what the probe found, and its script's syntax."""

from __future__ import annotations

import subprocess

import pytest

from labctl.actions.base import ActionFailed, build_args
from labctl.actions.modprobe import ModprobeAction, plan_modprobe, probe_script


def args(**raw: str) -> object:
    return build_args(ModprobeAction, raw)


@pytest.mark.parametrize(
    ("state", "found", "steps", "undo"),
    [
        ("present", "loaded", [], None),
        ("present", "builtin", [], None),
        ("present", "absent", [["modprobe", "br_netfilter", "a=1", "b=two words"]], "absent"),
        ("absent", "absent", [], None),
        ("absent", "loaded", [["modprobe", "-r", "br_netfilter"]], "present"),
    ],
)
def test_plan_from_what_the_host_has(
    state: str, found: str, steps: list[list[str]], undo: str | None
) -> None:
    a = args(name="br_netfilter", state=state, params="a=1 'b=two words'")
    plan = plan_modprobe(a, found)  # type: ignore[arg-type]
    assert [list(s.command) for s in plan.steps] == steps  # type: ignore[union-attr, arg-type]
    assert [u.args["state"] for u in plan.undo] == ([undo] if undo else [])


def test_a_builtin_module_cannot_be_removed() -> None:
    with pytest.raises(ActionFailed, match="built into the kernel"):
        plan_modprobe(args(name="ext4", state="absent"), "builtin")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["a;b", "", "x y"])
def test_a_bad_name_is_refused(name: str) -> None:
    with pytest.raises(Exception, match="modprobe: name"):
        args(name=name)


def test_the_probe_is_valid_sh_and_answers() -> None:
    text = probe_script("labctl_test_no_such_module").text
    assert subprocess.run(["sh", "-n", "-c", text], check=False).returncode == 0
    out = subprocess.run(["sh", "-c", text], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "absent"
