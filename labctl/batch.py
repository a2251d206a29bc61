"""Several shell commands in one round trip: one script, each command's output in its own
section, each section with the command's own exit status, stdout and stderr.

Each command runs in a subshell (stdin /dev/null), in order, whatever the previous one
returned. After each,
the script prints a marker line on stdout (with the section's number and exit status) and
another on stderr; the marker holds a random nonce, so no output can forge one. A section
whose marker is missing (the script was killed) did not finish and has no result.

Pure text in, text out: labctl/remote.py sends the script and keeps what it read.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass


@dataclass(frozen=True)
class Section:
    exit_status: int
    stdout: str
    stderr: str


def new_nonce() -> str:
    return "labctl-section-" + secrets.token_hex(16)


def script(commands: list[str], nonce: str) -> str:
    """sh text running `commands` in order, each in a subshell with stdin from /dev/null
    (none may read the script's own input), with marked sections.

    A newline before each marker makes it a line of its own, whatever the command printed;
    `parse` takes that newline off again, so a section's output is exactly the command's."""
    parts = []
    for i, text in enumerate(commands):
        parts.append(
            f"(\n{text}\n) </dev/null\n"
            f"printf '\\n%s %d %d\\n' {nonce} {i} $?\n"
            f"printf '\\n%s %d\\n' {nonce} {i} >&2"
        )
    return "\n".join(parts)


def _split(stream: str, nonce: str) -> list[tuple[str, list[str]]]:
    """(text before the marker, the marker's fields after the nonce), in order."""
    out: list[tuple[str, list[str]]] = []
    mark = f"\n{nonce} "
    pos = 0
    while True:
        at = stream.find(mark, pos)
        if at < 0:
            return out
        end = stream.find("\n", at + len(mark))
        if end < 0:
            return out  # a marker cut short: that section did not finish
        out.append((stream[pos:at], stream[at + len(mark) : end].split()))
        pos = end + 1


def parse(stdout: str, stderr: str, nonce: str, count: int) -> list[Section]:
    """The finished sections, in order (fewer than `count` if the script was cut short)."""
    outs = _split(stdout, nonce)
    errs = _split(stderr, nonce)
    sections = []
    for i in range(min(count, len(outs), len(errs))):
        (out, fields), (err, err_fields) = outs[i], errs[i]
        if fields[:1] != [str(i)] or err_fields[:1] != [str(i)] or len(fields) != 2:
            break
        sections.append(Section(int(fields[1]), out, err))
    return sections
