"""-v/-vv on real hosts: the commands labctl sends over SSH, then their output, on stderr;
stdout (here --json) unchanged."""

from __future__ import annotations

import json

from tests.lab.conftest import NamespaceLab


def test_verbose_facts_show_commands_and_outputs(lab: NamespaceLab) -> None:
    inv = str(lab.inventory_path)
    quiet = lab.labctl("facts", "-i", inv, "-l", "srv1", "--json")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""
    one = lab.labctl("facts", "-i", inv, "-l", "srv1", "--json", "-v")
    assert one.returncode == 0, one.stderr
    assert json.loads(one.stdout)["hosts"]["srv1"]["hostname"] == "srv1"
    sent = [line for line in one.stderr.splitlines() if line.startswith("srv1 $ ")]
    assert sent, one.stderr
    assert not any(" out| " in line for line in one.stderr.splitlines())
    two = lab.labctl("facts", "-i", inv, "-l", "srv1", "--json", "-vv")
    lines = two.stderr.splitlines()
    assert any(line.startswith("srv1 rc=0 in ") for line in lines)
    assert any(line.startswith("srv1 out| ") for line in lines)
    # the host's answer itself: its hostname, in the output of the facts script
    assert any(ln.startswith("srv1 out| ") and "srv1" in ln[len("srv1 out| ") :] for ln in lines)
