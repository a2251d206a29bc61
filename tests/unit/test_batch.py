"""Several commands in one script, each with its own output and exit status: run by a
real sh here, compared with each command run alone."""

from __future__ import annotations

import subprocess

import pytest

from labctl import batch

COMMANDS = [
    "echo one",
    "printf 'no newline'",
    "echo to-err >&2; echo to-out; exit 3",
    "printf ''",
    "printf 'two\\n\\n'",
    "if [ -e /nonexistent-labctl ]; then echo yes; else echo absent; fi",
    "echo 'labctl-section-0000 0 0'",  # a forged marker without the nonce is just output
    "exit 0 # a comment at the end does not swallow the subshell's closing parenthesis",
    "x=1; exit 7",
]


def _sh(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", text], capture_output=True, text=True, timeout=30)


def test_each_section_is_exactly_what_the_command_gives_alone() -> None:
    nonce = batch.new_nonce()
    whole = _sh(batch.script(COMMANDS, nonce))
    sections = batch.parse(whole.stdout, whole.stderr, nonce, len(COMMANDS))
    assert len(sections) == len(COMMANDS)
    for text, section in zip(COMMANDS, sections, strict=True):
        alone = _sh(text)
        assert (section.exit_status, section.stdout, section.stderr) == (
            alone.returncode,
            alone.stdout,
            alone.stderr,
        ), text


def test_a_command_cannot_change_the_next_ones_shell() -> None:
    nonce = batch.new_nonce()
    texts = ["cd /; X=set; set -e; false", "pwd; echo ${X:-unset}"]
    whole = _sh("cd /tmp && " + batch.script(texts, nonce))
    first, second = batch.parse(whole.stdout, whole.stderr, nonce, 2)
    assert first.exit_status == 1
    assert second.stdout == "/tmp\nunset\n"


def test_a_script_cut_short_gives_only_the_finished_sections() -> None:
    nonce = batch.new_nonce()
    whole = _sh(batch.script(["echo a", "kill -9 $$", "echo c"], nonce))
    sections = batch.parse(whole.stdout, whole.stderr, nonce, 3)
    assert [s.stdout for s in sections] == ["a\n"]


@pytest.mark.parametrize(
    ("stdout", "stderr"),
    [("", ""), ("garbage", ""), ("x\nNONCE 0 0", "\nNONCE 0\n"), ("\nNONCE 1 0\n", "\nNONCE 1\n")],
)
def test_broken_or_foreign_output_gives_no_section(stdout: str, stderr: str) -> None:
    assert batch.parse(stdout, stderr, "NONCE", 1) == []


def test_a_well_formed_section() -> None:
    assert batch.parse("out\nNONCE 0 4\n", "err\nNONCE 0\n", "NONCE", 1) == [
        batch.Section(4, "out", "err")
    ]
