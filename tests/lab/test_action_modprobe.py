"""community.general.modprobe on the namespace lab: the probe reads the real host. The lab
shares this machine's kernel, so nothing is loaded here for real: a module that is not there
stays absent without a change, check mode plans a load and changes nothing, and a load on a
kernel that cannot do it fails in one line (the VM lab is where modules load)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import NamespaceLab
from .test_play import changed, play, write_book

pytestmark = pytest.mark.lab

MODULE = "labctl_test_no_such_module"


def test_modprobe_reads_the_host_and_plans_from_it(lab: NamespaceLab, tmp_path: Path) -> None:
    absent = write_book(
        tmp_path,
        f"""\
        - hosts: srv1
          gather_facts: false
          tasks:
            - name: not loaded, stays so
              community.general.modprobe: {{name: {MODULE}, state: absent}}
        """,
    )
    rc, doc, err = play(lab, absent)
    assert rc == 0, err
    assert changed(doc) == {"srv1": 0}

    present = write_book(
        tmp_path,
        f"""\
        - hosts: srv1
          gather_facts: false
          tasks:
            - name: load it
              modprobe: {{name: {MODULE}, params: "debug=1"}}
        """,
    )
    rc, doc, err = play(lab, present, "--check")
    assert rc == 0, err
    (result,) = [r for r in doc["results"] if r["task"] == "load it"]
    assert result["status"] == "changed" and result["changes"] == [f"load module {MODULE}"]

    rc, doc, err = play(lab, present)
    assert rc == 2
    (result,) = [r for r in doc["results"] if r["task"] == "load it"]
    assert result["status"] == "failed" and MODULE in result["msg"]
    assert "\n" not in result["msg"].split("\nfull output:")[0]
