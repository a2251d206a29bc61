"""Property-based: whatever text a parser is given, it returns a result or raises labctl's
own error (one line), never another exception and never a hang. Hypothesis generates the
inputs: random text, and mutations of well-formed documents (the cases a user's typo makes).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labctl.cli.play import parse_extra_vars
from labctl.errors import LabctlError
from labctl.experiments.pktgen_tool import parse_pktgen
from labctl.experiments.reuseport_verdict import parse_nstat
from labctl.facts.qdisc import parse_qdisc_states
from labctl.inventory import parse_inventory
from labctl.nightly.suite import load_suite
from labctl.play.load import load_playbook
from labctl.templating import split_words
from labctl.yamlfile import load_yaml

EXAMPLES = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

PLAYBOOK = """\
- name: p
  hosts: all
  vars: {dir: /root/x, n: 3}
  tasks:
    - name: d
      file: {path: "{{ dir }}", state: directory, mode: "0755"}
    - name: c
      command: ls -l {{ dir }}
      register: out
      when: n > 1
      loop: [a, b]
"""
SUITE = """\
name: s
provision: {tags: [deps, workloads]}
compare: {history: 3, threshold: 0.1}
experiments:
  - name: a
    experiment: reuseport
    params: {workers: [1, 2], duration: 2, repeat: 3}
    metrics: {conn_per_s: higher}
"""
INVENTORY = """\
all:
  vars: {ansible_user: root}
  children:
    servers:
      hosts:
        srv1: {ansible_host: 10.0.0.11, ansible_port: 22}
    clients:
      hosts:
        cli[1:3]: {ansible_host: 10.0.0.2}
"""
YAML_BITS = list(":-[]{}&*!|>'\"#%@`,?\n\t ") + ["{{", "}}", "<<", "---", "0x", "1e9", "~"]


def mutated(base: str) -> st.SearchStrategy[str]:
    """The document with a few characters replaced, inserted or removed."""

    @st.composite
    def build(draw: Any) -> str:
        text = base
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(text)))
            piece = draw(st.one_of(st.sampled_from(YAML_BITS), st.text(max_size=3)))
            cut = draw(st.integers(0, 3))
            text = text[:i] + piece + text[i + cut :]
        return text

    return build()


def texts(base: str) -> st.SearchStrategy[str]:
    return st.one_of(mutated(base), st.text(max_size=200))


def _outcome(call: Any, *args: Any) -> None:
    try:
        call(*args)
    except LabctlError as exc:
        assert "\n" not in str(exc), str(exc)


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "doc.yml"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    return path


@EXAMPLES
@given(text=texts(PLAYBOOK))
def test_playbooks(tmp_path: Path, text: str) -> None:
    _outcome(load_playbook, _file(tmp_path, text))


@EXAMPLES
@given(text=texts(SUITE))
def test_suites(tmp_path: Path, text: str) -> None:
    _outcome(load_suite, _file(tmp_path, text))


@EXAMPLES
@given(text=texts(INVENTORY))
def test_inventories(text: str) -> None:
    def parse_and_select(t: str) -> None:
        inventory = parse_inventory(t, "inv.yml")
        inventory.select("all")

    _outcome(parse_and_select, text)


@EXAMPLES
@given(text=st.one_of(mutated("a: [1, {b: c}]\n"), st.binary(max_size=100).map(repr)))
def test_any_yaml(tmp_path: Path, text: str) -> None:
    _outcome(load_yaml, _file(tmp_path, text))


@EXAMPLES
@given(items=st.lists(st.one_of(st.text(max_size=30), mutated('{"a": 1, "b": [2]}')), max_size=4))
def test_extra_vars(items: list[str]) -> None:
    _outcome(parse_extra_vars, items)


@EXAMPLES
@given(text=st.one_of(st.text(max_size=80), mutated("rm -f {{ f }} 'a b' \"{{ g }}\"")))
def test_command_words(text: str) -> None:
    with contextlib.suppress(ValueError):  # the playbook's one-line error (test_bad_input)
        split_words(text)


PKTGEN_OUT = (
    "Sent 1500000 packets 90000000 bytes 1500000 events 60 bytes each in 5.57 seconds.\n"
    "Speed: 269.01 Kpps Bandwidth: 129.12 Mbps (raw 180.77 Mbps). Average batch: 512.00 pkts\n"
)


@EXAMPLES
@given(out=texts(PKTGEN_OUT), err=st.one_of(st.text(max_size=100), mutated("269.01 Kpps\n")))
def test_pktgen_output(out: str, err: str) -> None:
    _outcome(parse_pktgen, out, err)


@EXAMPLES
@given(text=st.one_of(st.text(max_size=200), mutated("TcpExtListenDrops 3 0.0\nTcpExtX 12 1.5\n")))
def test_nstat_output(text: str) -> None:
    _outcome(parse_nstat, text)


def test_the_unmutated_documents_parse(tmp_path: Path) -> None:
    """The seeds are well formed, so the mutations above start from a real document."""
    assert load_playbook(_file(tmp_path, PLAYBOOK)).plays[0].tasks[1].register == "out"
    assert load_suite(_file(tmp_path, SUITE)).experiments[0].name == "a"
    assert [h.name for h in parse_inventory(INVENTORY).select("all")] == [
        "srv1",
        "cli1",
        "cli2",
        "cli3",
    ]
    assert parse_pktgen(PKTGEN_OUT).direction == "Sent"
    assert parse_nstat("TcpExtListenDrops 3 0.0\n") == {"TcpExtListenDrops": 3}
    link, qdisc = (
        (DATA / "root-link-txqueuelen0.json").read_text(),
        (DATA / "root-qdisc-kinds.json").read_text(),
    )
    assert parse_qdisc_states(link, qdisc)["qtst1"].kind == "pfifo"


DATA = Path(__file__).parent / "data" / "qdisc"
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def host_json(name: str) -> st.SearchStrategy[str]:
    """A real capture of `ip -j link`/`tc -s -j qdisc` mutated, or any JSON value."""
    return st.one_of(mutated((DATA / name).read_text()), JSON.map(json.dumps))


@EXAMPLES
@given(link=host_json("root-link-txqueuelen0.json"), qdisc=host_json("root-qdisc-kinds.json"))
def test_tc_and_ip_json(link: str, qdisc: str) -> None:
    """What a host says is parsed or refused with ValueError, which the callers turn into
    that host's one-line failure (CommandFailed, the qdisc task's message)."""
    with contextlib.suppress(ValueError):
        parse_qdisc_states(link, qdisc)
