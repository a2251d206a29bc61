"""Why a step failed, in the few lines that say so.

The first line of a failed build's output is almost never the reason: netmap's configure opens
with a `NOTE` banner, make with "Entering directory". This module picks the lines that explain
a failure from a step's stdout and stderr (and, for netmap's configure, its config.log), so
the task's message can show them; the whole output goes to the host's log file and `--json`
(docs/provisioning.md, "When a build fails").

In order of preference:
0. the line a labctl script wrote itself (`labctl: ...`), its own reason;
1. netmap configure's banners: the message of its last `ERROR` block and the first line of
   each `WARNING` before it ("'e1000e': sources not found.  Disabling driver."), then the
   error lines of the config.log tail the build script appends (Kbuild's
   "module directory path cannot contain '%'" is only there);
2. a compiler's, linker's or modpost's error lines, or make's own fatal line;
3. the last meaningful lines of stderr, then of stdout.
Everything here is a pure function of captured text, tested on recorded real failures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The build scripts frame a file's tail they append to a failed step's output with this.
CONFIG_LOG_MARK = "@@labctl config.log tail"
# labctl's own scripts prefix the line that says why they gave up with this: it wins.
OWN_MARK = "labctl: "
MAX_LINES = 6  # lines of explanation in a task's message

_BANNER_START = re.compile(r"^\*{10,}\s+(NOTE|WARNING|ERROR)\s+\*{10,}\s*$")
_BANNER_END = re.compile(r"^\*{20,}\s*$")
_BANNER_BODY = re.compile(r"^\*\*\*(?: (.*))?$")
_REPORT_START = "Current configuration values:"
# gcc/clang, ld, modpost and Kbuild errors; make's "*** ... Stop." and "No rule to make".
_ERROR_LINE = re.compile(
    r"(: (fatal )?error: )|(^ERROR: modpost: )|(undefined reference to )"
    r"|(: \*\*\* .*\bStop\.\s*$)|(No rule to make target)|(^ld: )|(cannot find -l)"
)
_MAKE_RECIPE_FAILED = re.compile(r"^make(\[\d+\])?: \*\*\* \[.*\] Error \d+")
_NOISE = re.compile(
    r"^(make(\[\d+\])?: (Entering|Leaving) directory|\s*(CC|LD|AR|MODPOST|CC \[M\])\s)"
    r"|^\s*$|^#+\s*$"
)


@dataclass(frozen=True)
class Banner:
    kind: str  # NOTE, WARNING or ERROR
    lines: tuple[str, ...]  # the message, without the configuration report


def banners(text: str) -> list[Banner]:
    """netmap configure's `****  KIND  ****` blocks, in order."""
    found: list[Banner] = []
    kind: str | None = None
    body: list[str] = []
    in_report = False
    for raw in text.splitlines():
        line = raw.rstrip()
        start = _BANNER_START.match(line)
        if start:
            kind, body, in_report = start.group(1), [], False
            continue
        if kind is None:
            continue
        if _BANNER_END.match(line):
            while body and not body[-1]:
                body.pop()
            found.append(Banner(kind, tuple(body)))
            kind = None
            continue
        m = _BANNER_BODY.match(line)
        if m is None:  # not a banner line after all
            kind = None
            continue
        content = (m.group(1) or "").strip()
        if content == _REPORT_START:
            in_report = True
        if not in_report:
            body.append(content)
    return found


def _paragraph(lines: tuple[str, ...]) -> str:
    """A banner's first paragraph as one line."""
    words: list[str] = []
    for line in lines:
        if not line:
            if words:
                break
            continue
        words.append(line)
    return " ".join(" ".join(words).split())


def configure_lines(output: str) -> list[str]:
    """netmap configure's own explanation: each WARNING's first paragraph, then the ERROR."""
    blocks = banners(output)
    errors = [i for i, b in enumerate(blocks) if b.kind == "ERROR"]
    if not errors:
        return []
    last = errors[-1]
    out = [f"configure: {_paragraph(b.lines)}" for b in blocks[:last] if b.kind == "WARNING"]
    out.append(f"configure: {_paragraph(blocks[last].lines)}")
    return list(dict.fromkeys(out))


def split_config_log(text: str) -> tuple[str, str]:
    """(the output, the config.log tail a build script appended after `CONFIG_LOG_MARK`)."""
    head, sep, tail = text.partition(CONFIG_LOG_MARK)
    return (head, tail) if sep else (text, "")


def error_lines(text: str, limit: int = 4, recipe_fallback: bool = True) -> list[str]:
    """Compiler, linker, modpost and Kbuild error lines, first ones first; else make's own
    `*** [...] Error N` line (a recipe failed without a recognisable error). config.log is
    read without that fallback: configure's own tests fail on purpose there."""
    lines = [line.strip() for line in text.splitlines()]
    hits = [line for line in lines if _ERROR_LINE.search(line) and not _BANNER_BODY.match(line)]
    if not hits and recipe_fallback:
        hits = [line for line in lines if _MAKE_RECIPE_FAILED.match(line)][:1]
    return list(dict.fromkeys(hits))[:limit]


def tail_lines(text: str, limit: int = 3) -> list[str]:
    """The last meaningful lines: make's directory chatter and build progress left out."""
    lines = [line.rstrip() for line in text.splitlines() if not _NOISE.match(line)]
    return [line.strip() for line in lines[-limit:]]


def explain(stdout: str, stderr: str, exit_status: int | None = None) -> list[str]:
    """The lines that say why a step failed, at most `MAX_LINES`, never empty."""
    out_text, out_log = split_config_log(stdout)
    err_text, err_log = split_config_log(stderr)
    config_log = out_log + err_log
    own = [
        line.strip()[len(OWN_MARK) :]
        for line in (err_text + "\n" + out_text).splitlines()
        if line.strip().startswith(OWN_MARK)
    ]
    if own:
        return own[-1:]
    lines = configure_lines(out_text + "\n" + err_text)
    if lines:
        lines += [f"config.log: {x}" for x in error_lines(config_log, 2, recipe_fallback=False)]
    else:
        lines = error_lines(err_text) or error_lines(out_text)
        if not lines and config_log:
            lines = [f"config.log: {x}" for x in error_lines(config_log, recipe_fallback=False)]
    if not lines:
        lines = tail_lines(err_text) or tail_lines(out_text)
    if not lines:
        lines = [f"exit status {exit_status}" if exit_status is not None else "failed"]
    return lines[:MAX_LINES]


def full_output(command: str, exit_status: int, stdout: str, stderr: str) -> str:
    """What a host's log file keeps of a failed step: all of it."""
    return (
        f"$ {command}\nexit status {exit_status}\n"
        f"--- stdout\n{stdout.rstrip()}\n--- stderr\n{stderr.rstrip()}\n"
    )
