"""The lines that explain a failed step, on recorded outputs of real failures.

tests/unit/data/failures/netmap-*: netmap master (89607e14) configured against Debian's
6.1.0-57 headers and linux-source-6.1 on this kind of machine: in a build directory whose
name holds `%` (Kbuild's refusal is only in config.log), with no full kernel sources, and a
make that fails on a compile error. fixture-*: labctl's fixture tree in the `%` directory.
Each config.log file is the tail the build script appends after `CONFIG_LOG_MARK`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.actions.base import failed_result
from labctl.failures import (
    CONFIG_LOG_MARK,
    MAX_LINES,
    banners,
    error_lines,
    explain,
    full_output,
    tail_lines,
)
from labctl.remote import CommandResult

DATA = Path(__file__).parent / "data" / "failures"
KBUILD_PERCENT = (
    "config.log: /usr/src/linux-headers-6.1.0-57-common/Makefile:160: "
    "*** module directory path cannot contain '%'.  Stop."
)


def recorded(name: str) -> tuple[str, str]:
    """(stdout, stderr) as the configure step gives them: config.log's tail on stderr."""
    stdout = (DATA / f"{name}.stdout").read_text()
    log = DATA / f"{name}.config.log"
    stderr = f"{CONFIG_LOG_MARK}\n{log.read_text()}" if log.exists() else ""
    return stdout, stderr


def test_the_percent_failure_says_what_kbuild_said() -> None:
    """The failure a new user met: the message was `**********  NOTE  **********`."""
    lines = explain(*recorded("netmap-percent"), exit_status=1)
    assert lines == [
        "configure: It looks like we are not able to build kernel modules for the current "
        "configuration. Please check 'config.log' for possible clues.",
        KBUILD_PERCENT,
    ]
    assert not any("NOTE" in line for line in lines)


def test_the_fixture_fails_the_same_way() -> None:
    """CI's fixture tree gives the same two lines in the same `%` directory."""
    assert explain(*recorded("fixture-percent"), exit_status=1) == explain(
        *recorded("netmap-percent"), exit_status=1
    )


def test_missing_kernel_sources_name_the_driver_and_the_reason() -> None:
    lines = explain(*recorded("netmap-no-sources"), exit_status=1)
    assert lines == [
        "configure: Cannot find full kernel sources.",
        "configure: 'ixgbe': sources not found. Disabling driver.",
        "configure: Exiting because of --fail-on-driver-errors.",
    ]
    # configure's own tests fail on purpose in config.log: none of that is blamed
    assert not any(line.startswith("config.log:") for line in lines)


def test_a_compile_error_is_the_compilers_line_not_makes() -> None:
    stdout = (DATA / "netmap-make-error.stdout").read_text()
    stderr = (DATA / "netmap-make-error.stderr").read_text()
    assert explain(stdout, stderr, 2) == [
        "/var/tmp/nm-broken/LINUX/../sys/dev/netmap/netmap.c:4621:39: error: "
        "‘undeclared_name’ undeclared (first use in this function)"
    ]


def test_banners_skip_the_configuration_report() -> None:
    (note, error) = banners((DATA / "netmap-percent.stdout").read_text())
    assert note.kind == "NOTE" and error.kind == "ERROR"
    assert error.lines[-1] == "configuration. Please check 'config.log' for possible clues."
    assert not any("kernel directory" in line for line in error.lines)


def test_our_own_reason_wins_then_errors_then_the_tail() -> None:
    assert explain("", "make[1]: noise\nlabctl: make built no x.ko\n", 1) == ["make built no x.ko"]
    assert error_lines("a\nld: cannot find -lnetmap\nb\n") == ["ld: cannot find -lnetmap"]
    assert error_lines("make: *** [Makefile:3: all] Error 2\n") == [
        "make: *** [Makefile:3: all] Error 2"
    ]
    assert error_lines("make: *** [Makefile:3: all] Error 2\n", recipe_fallback=False) == []
    modpost = 'ERROR: modpost: "netmap_attach" [/b/ixgbe/ixgbe.ko] undefined!\n'
    assert explain("", modpost, 2) == [modpost.strip()]
    tail = "make[1]: Entering directory '/x'\n  CC [M]  a.o\nfirst\nsecond\n\n"
    assert tail_lines(tail) == ["first", "second"]
    assert explain("", "", 3) == ["exit status 3"]
    many = "".join(f"x.c:{i}:1: error: bad {i}\n" for i in range(20))
    assert len(explain("", many, 1)) <= MAX_LINES


@pytest.mark.parametrize("name", ["netmap-percent", "netmap-no-sources", "fixture-percent"])
def test_a_failed_result_carries_the_reasons_and_the_whole_output(name: str) -> None:
    stdout, stderr = recorded(name)
    res = CommandResult("srv1", "sh -c configure", 1, stdout, stderr, 0.3)
    result = failed_result(["build netmap"], {}, res, "srv1: netmap configure failed")
    first, *rest = result.msg.splitlines()
    assert first.startswith("srv1: netmap configure failed: configure: ")
    assert rest == explain(stdout, stderr, 1)[1:]
    assert result.log == full_output("sh -c configure", 1, stdout, stderr)
    assert stdout.strip() in result.log and "exit status 1" in result.log


def test_a_hosts_log_file_keeps_the_whole_output_and_the_message_names_it(
    tmp_path: Path,
) -> None:
    from labctl.play.run import HostLogs, TaskHostResult

    logs = HostLogs(tmp_path / "logs")
    quiet = TaskHostResult("p", "t", "srv1", "ok")
    assert logs.keep(quiet) == quiet and not (tmp_path / "logs").exists()
    stdout, stderr = recorded("netmap-percent")
    log = full_output("configure", 1, stdout, stderr)
    failed = TaskHostResult("provision", "netmap", "srv1", "failed", msg="srv1: why", log=log)
    kept = logs.keep(failed)
    assert kept.log_file is not None and kept.msg == f"srv1: why\nfull output: {kept.log_file}"
    text = Path(kept.log_file).read_text()
    assert "play [provision] task [netmap]" in text and log in text
    again = logs.keep(TaskHostResult("provision", "load", "srv1", "failed", msg="x", log="second"))
    assert again.log_file == kept.log_file  # one file per host and run, appended
    assert Path(kept.log_file).read_text().endswith("second\n")
    assert Path(kept.log_file).name == "srv1.log"


def test_a_failure_already_explained_is_said_once_and_still_logged() -> None:
    """insmod's own line, explained by explain_insmod_failure, is not repeated after it (it
    once read `h: insmod netmap.ko: insmod: ERROR: x: insmod: ERROR: x`)."""
    out = "insmod: ERROR: could not insert module netmap.ko: Invalid module format\n"
    res = CommandResult("srv1", "insmod netmap.ko", 1, "", out, 0.1)
    what = "srv1: insmod netmap.ko: insmod: ERROR: could not insert module netmap.ko: Invalid"
    done = failed_result(["load"], {}, res, what, explained=True)
    assert done.failed and done.msg == what and out.strip() in done.log
    again = failed_result(["load"], {}, res, "srv1: loading")
    assert again.msg == f"srv1: loading: {out.strip()}"
    bare = failed_result(["load"], {"k": 1}, what="srv1: no build in the cache")
    assert (bare.msg, bare.log, bare.output, bare.changes) == (
        "srv1: no build in the cache",
        "",
        {"k": 1},
        ("load",),
    )
