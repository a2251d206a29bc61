"""lineinfile without a host: the pure line logic on Ansible's documented cases, and plans
made from a canned read of the file."""

from __future__ import annotations

import base64
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from labctl.actions.base import ArgsError, Run, TaskContext, Upload, build_args, run_action
from labctl.actions.lineinfile import (
    LineinfileAction,
    edit_absent,
    edit_present,
    parse_read,
    read_script,
)
from labctl.remote import CommandResult, command_text


def text_of(edit: Any) -> str:
    return b"".join(edit.lines).decode()


# ---------------------------------------------------------------------------- present


def test_regexp_replaces_the_matching_line() -> None:
    # Ansible's example: SELinux enforcing
    edit = edit_present(b"# c\nSELINUX=disabled\nX=1\n", "SELINUX=enforcing", regexp="^SELINUX=")
    assert edit.changed and edit.msg == "line replaced"
    assert text_of(edit) == "# c\nSELINUX=enforcing\nX=1\n"
    again = edit_present(text_of(edit).encode(), "SELINUX=enforcing", regexp="^SELINUX=")
    assert not again.changed


def test_regexp_replaces_the_last_match_or_with_firstmatch_the_first() -> None:
    content = b"a=1\nb=2\na=3\n"
    assert text_of(edit_present(content, "a=9", regexp="^a=")) == "a=1\nb=2\na=9\n"
    first = edit_present(content, "a=9", regexp="^a=", firstmatch=True)
    assert text_of(first) == "a=9\nb=2\na=3\n"


def test_no_match_appends_at_eof_and_ends_the_last_line() -> None:
    edit = edit_present(b"one\ntwo", "three", regexp="^three")
    assert edit.msg == "line added" and text_of(edit) == "one\ntwo\nthree\n"
    assert text_of(edit_present(b"", "x")) == "x\n"


def test_exact_line_already_there_is_unchanged() -> None:
    assert not edit_present(b"a\n127.0.0.1 localhost\nb\n", "127.0.0.1 localhost").changed
    # regexp not matching but the line itself present: still nothing to do
    assert not edit_present(b"a\nListen 80\n", "Listen 80", regexp="^NoSuch").changed


def test_insertafter_uses_the_last_anchor_match_when_regexp_does_not_match() -> None:
    # Ansible's example: Listen 8080 after '#Listen ' when no '^Listen ' line exists
    content = b"#Listen 12.34.56.78:80\n#Listen 80\nServerName x\n"
    edit = edit_present(content, "Listen 8080", regexp="^Listen ", insertafter="^#Listen ")
    assert text_of(edit) == "#Listen 12.34.56.78:80\n#Listen 80\nListen 8080\nServerName x\n"
    # with a regexp match, insertafter is ignored and that line is replaced
    edit2 = edit_present(
        text_of(edit).encode(), "Listen 9090", regexp="^Listen ", insertafter="^#Listen "
    )
    assert edit2.msg == "line replaced" and "Listen 9090\nServerName" in text_of(edit2)
    first = edit_present(content, "Listen 8080", insertafter="^#Listen ", firstmatch=True)
    assert text_of(first).startswith("#Listen 12.34.56.78:80\nListen 8080\n#Listen 80\n")


def test_insertbefore_and_bof() -> None:
    content = b"a\n#Listen 80\nb\n#Listen 81\n"
    edit = edit_present(content, "Listen 80", regexp="^Listen ", insertbefore="^#Listen ")
    assert text_of(edit) == "a\n#Listen 80\nb\nListen 80\n#Listen 81\n"
    assert not edit_present(text_of(edit).encode(), "Listen 80", insertbefore="^#Listen").changed
    bof = edit_present(b"x\ny\n", "# managed", insertbefore="BOF")
    assert text_of(bof) == "# managed\nx\ny\n"
    assert text_of(edit_present(b"x\n", "# m", insertafter="BOF")) == "# m\nx\n"
    assert not edit_present(text_of(bof).encode(), "# managed", insertbefore="BOF").changed


def test_anchor_not_found_appends() -> None:
    assert text_of(edit_present(b"a\n", "z", insertbefore="^nomatch")) == "a\nz\n"
    assert text_of(edit_present(b"a\n", "z", insertafter="^nomatch")) == "a\nz\n"


def test_insertafter_the_last_line_without_newline_ends_it() -> None:
    assert text_of(edit_present(b"a\nanchor", "z", insertafter="^anchor")) == "a\nanchor\nz\n"


def test_backrefs_expand_and_do_nothing_without_a_match() -> None:
    # Ansible's example: the Xms value of a JVM option line
    content = b"JAVA_OPTS=-Xms512m -Dx=1\n"
    edit = edit_present(content, r"\1Xms1024m\3", regexp=r"^(.*)Xms(\d+)m(.*)$", backrefs=True)
    assert text_of(edit) == "JAVA_OPTS=-Xms1024m -Dx=1\n"
    none = edit_present(b"other\n", r"\1", regexp="^(nomatch)$", backrefs=True)
    assert not none.changed and text_of(none) == "other\n"


def test_search_string_matches_literally() -> None:
    content = b"a.b=1\naxb=2\n"
    edit = edit_present(content, "a.b=3", search_string="a.b=")
    assert text_of(edit) == "a.b=3\naxb=2\n"


def test_a_crlf_copy_of_the_line_gets_the_hosts_line_ending() -> None:
    # Ansible compares the whole line, ending included, once it has found it
    edit = edit_present(b"a\r\nb\r\n", "a")
    assert edit.msg == "line replaced" and text_of(edit) == "a\nb\r\n"


# ---------------------------------------------------------------------------- absent


def test_absent_removes_every_match() -> None:
    content = b"%wheel ALL=(ALL) ALL\nroot x\n%wheel2 y\n"
    edit = edit_absent(content, regexp="^%wheel")
    assert edit.found == 2 and edit.msg == "2 line(s) removed" and text_of(edit) == "root x\n"
    assert edit_absent(content, line="root x").found == 1
    assert edit_absent(content, search_string="ALL").found == 1
    assert not edit_absent(content, line="nope").changed


# ---------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"path": "/f"}, "line is required with state=present"),
        ({"path": "/f", "state": "absent"}, "one of line, search_string, or regexp"),
        ({"path": "/f", "line": "x", "backrefs": True}, "regexp is required with backrefs"),
        ({"path": "/f", "line": "x", "insertafter": "a", "insertbefore": "b"}, "exclusive"),
        (
            {"path": "/f", "line": "x", "regexp": "(", "state": "present"},
            "is not a regular expression",
        ),
        ({"path": "f", "line": "x"}, "absolute"),
        ({"path": "/f", "line": "x", "unsafe_writes": True}, "unknown argument 'unsafe_writes'"),
        ({"path": "/f", "line": "x", "mode": 420}, "quoted octal"),
    ],
)
def test_bad_arguments_are_refused(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ArgsError, match=message):
        build_args(LineinfileAction, raw)


# ---------------------------------------------------------------------------- plans


def read_answer(content: bytes | None, real: str = "/etc/f", mode: str = "644") -> str:
    if content is None:
        return "absent\n"
    real_b64 = base64.b64encode(real.encode() + b"\0").decode()
    return f"file|{mode}|root|root\n{real_b64}\n{base64.b64encode(content).decode()}"


class OneReadConn:
    def __init__(self, stdout: str) -> None:
        self.host = SimpleNamespace(name="srv1")
        self.stdout = stdout
        self.ran: list[str] = []

    def run(self, command: Any, **_: Any) -> CommandResult:
        text = command_text(command)
        self.ran.append(text)
        return CommandResult("srv1", text, 0, self.stdout, "", 0.0)


def plan_for(stdout: str, want_diff: bool = False, **raw: Any) -> Any:
    conn = OneReadConn(stdout)
    ctx = TaskContext(conn=conn, vars={}, base_dir=Path("."), want_diff=want_diff)  # type: ignore[arg-type]
    action = LineinfileAction()
    plan = action.plan(ctx, build_args(LineinfileAction, raw))
    assert len(conn.ran) == 1
    return plan


def test_plan_uploads_the_whole_new_file_with_a_diff() -> None:
    plan = plan_for(read_answer(b"A=1\n"), want_diff=True, path="/etc/f", line="A=2", regexp="^A=")
    assert plan.steps == [Upload(b"A=2\n", "/etc/f")]
    assert plan.changes == ["/etc/f: line replaced"]
    assert "-A=1" in plan.diff and "+A=2" in plan.diff


def test_plan_writes_through_a_symlink_to_its_target() -> None:
    plan = plan_for(read_answer(b"", real="/etc/real"), path="/etc/f", line="x")
    assert plan.steps == [Upload(b"x\n", "/etc/real")]


def test_plan_unchanged_content_only_fixes_attributes() -> None:
    plan = plan_for(read_answer(b"x\n", mode="600"), path="/etc/f", line="x", mode="0644")
    assert plan.steps == [Run(["chmod", "644", "/etc/f"])]
    assert not plan_for(read_answer(b"x\n"), path="/etc/f", line="x").steps


def test_plan_missing_file_fails_or_is_created() -> None:
    with pytest.raises(ValueError, match="Destination /d/f does not exist !"):
        plan_for("absent\n", path="/d/f", line="x")
    plan = plan_for("absent\n", path="/d/f", line="x", create=True, mode="0600")
    assert plan.steps == [Run(["mkdir", "-p", "--", "/d"]), Upload(b"x\n", "/d/f", mode="600")]
    absent = plan_for("absent\n", path="/d/f", line="x", state="absent")
    assert not absent.steps and absent.output["msg"] == "file not present"


def test_plan_refuses_a_directory() -> None:
    with pytest.raises(ValueError, match="is a directory"):
        plan_for("directory\n", path="/etc", line="x")


def test_check_mode_reports_without_writing() -> None:
    conn = OneReadConn(read_answer(b"a\n"))
    ctx = TaskContext(conn=conn, vars={}, base_dir=Path("."))  # type: ignore[arg-type]
    result = run_action(LineinfileAction(), ctx, {"path": "/etc/f", "line": "b"}, check=True)
    assert result.changed and result.changes == ("/etc/f: line added",)
    assert len(conn.ran) == 1  # only the read


def test_read_script_quotes_and_parse_read_keeps_bytes() -> None:
    assert "'/a b;c'" in read_script("/a b;c").text
    got = parse_read(read_answer(b"\xff\r\nx", real="/a\nb"))
    assert got.content == b"\xff\r\nx" and got.real_path == "/a\nb"
    assert got.state.mode == "644"


def test_plan_with_backup_and_validate() -> None:
    plan = plan_for(
        read_answer(b"a\n", mode="440"),
        path="/etc/f",
        line="b",
        backup=True,
        validate="visudo -cf %s",
    )
    cp, upload, check, mv = plan.steps
    backup = plan.output["backup"]
    assert backup.startswith("/etc/f.") and backup.endswith("~")
    assert cp == Run(["cp", "-p", "--", "/etc/f", backup])
    assert isinstance(upload, Upload) and upload.dest.startswith("/etc/f.labctl-validate-")
    assert (upload.content, upload.mode, upload.owner) == (b"a\nb\n", "440", "root")
    assert command_text(check.command).startswith(f"visudo -cf {upload.dest} || ")
    assert mv == Run(["mv", "-f", "--", upload.dest, "/etc/f"])
    with pytest.raises(ArgsError, match="validate must contain %s"):
        build_args(LineinfileAction, {"path": "/f", "line": "x", "validate": "true"})


def test_validate_runs_the_check_and_keeps_a_rejected_file_out(tmp_path: Path) -> None:
    """The validated write's steps run by the local sh (the upload copies)."""
    import shutil
    import subprocess

    class LocalConn:
        host = SimpleNamespace(name="local")

        def run(self, command: Any, **_: Any) -> CommandResult:
            text = command_text(command)
            proc = subprocess.run(["sh", "-c", text], capture_output=True, text=True)
            return CommandResult("local", text, proc.returncode, proc.stdout, proc.stderr, 0)

        def put(self, local: str, remote: str) -> None:
            shutil.copyfile(local, remote)

    f = tmp_path / "conf"
    f.write_text("a\n")
    f.chmod(0o600)
    conn = LocalConn()
    ctx = TaskContext(conn=conn, vars={}, base_dir=tmp_path)  # type: ignore[arg-type]
    good = run_action(
        LineinfileAction(), ctx, {"path": str(f), "line": "b", "validate": "grep -q b %s"}
    )
    assert good.changed and not good.failed and f.read_text() == "a\nb\n"
    assert f.stat().st_mode & 0o777 == 0o600
    bad = run_action(
        LineinfileAction(), ctx, {"path": str(f), "line": "c", "validate": "grep -q zzz %s"}
    )
    assert bad.failed and f.read_text() == "a\nb\n"
    assert [p.name for p in tmp_path.iterdir()] == ["conf"]
