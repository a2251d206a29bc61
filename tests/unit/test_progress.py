"""Progress while long work runs: a sweep's time left, the task running on which hosts with
its current step, a VM lab's image and boots. Live only on a terminal: elsewhere the lines
are the whole output, without a control character."""

from __future__ import annotations

import io
import textwrap
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

import labctl.labs.vm as vm_module
import labctl.play.run as play_run
from labctl.actions.base import Run, TaskContext
from labctl.actions.kmod import KmodAction, KmodPlan
from labctl.actions.kmod_host import KmodArgs
from labctl.experiments.base import TrialSpec
from labctl.experiments.reuseport import Reuseport
from labctl.inventory import Host, parse_inventory
from labctl.labs.image import _tell_news, log_news
from labctl.labs.steps import LabStep
from labctl.labs.vm import _last_line
from labctl.labs.vm_spec import VmLabSpec
from labctl.localhost import LocalConnection
from labctl.play.load import load_playbook
from labctl.play.run import RunOptions, run_playbook
from labctl.remote import Command, CommandResult, Connections, command_text
from labctl.results.store import TrialRecord
from labctl.views.lab import LabProgress
from labctl.views.live import clock, live_wanted
from labctl.views.play import TerminalReporter
from labctl.views.progress import SweepClock, TrialProgress
from labctl.views.running import RunningTask


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def plain() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=120, highlight=False), out


def terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=120, force_terminal=True, highlight=False), out


def record(seq: int, mode: str, warmup: bool = False) -> TrialRecord:
    return TrialRecord(
        seq, "accept", warmup, {"mode": mode, "workers": 2}, 0.0, 2.0, True, "",
        {"conn_per_s": 40_000.0, "latency_p99_us": 800.0},
    )  # fmt: skip


def spec(seq: int, mode: str, warmup: bool = False) -> TrialSpec:
    return TrialSpec(seq, {"mode": mode, "workers": 2}, warmup)


# ---------------------------------------------------------------------------- the sweep


def test_time_left_is_the_mean_trial_time_so_far_counting_down() -> None:
    c = SweepClock(total=10, started=0.0)
    assert c.eta(5.0) is None  # no trial ended yet: nothing to go on
    c.trial_done(12.0)  # the warm-up counts like any trial
    c.trial_done(20.0)
    assert c.mean == 10.0
    assert c.eta(20.0) == 80.0  # 8 trials of 10 s
    assert c.eta(26.0) == 74.0  # the next trial is 6 s in
    assert c.eta(45.0) == 70.0  # one running past the mean: never less than those not begun
    for t in range(8):
        c.trial_done(30.0 + t)
    assert c.eta(50.0) == 0.0


def test_clock_reads_as_people_read_durations() -> None:
    assert [clock(s) for s in (0, 35.7, 60, 125, 3725)] == [
        "0 s",
        "35 s",
        "1:00",
        "2:05",
        "1:02:05",
    ]


def test_a_sweep_off_a_terminal_prints_its_lines_and_nothing_else() -> None:
    console, out = plain()
    progress = TrialProgress(console, Reuseport(), quiet=False)
    with progress:
        progress.start(3)
        assert not progress.live.running
        progress.begin(spec(0, "shared", warmup=True))
        progress(spec(0, "shared", warmup=True), record(0, "shared", warmup=True))
        progress(spec(1, "reuseport"), record(1, "reuseport"))
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("trial 1 of 3: mode=shared workers=2 (warm-up) ")
    assert lines[1].startswith("trial 2 of 3: mode=reuseport workers=2 ")
    assert len(lines) == 2 and "\x1b" not in out.getvalue()


def test_force_color_asks_for_colour_not_for_a_live_display() -> None:
    """CI services set FORCE_COLOR; rich then calls a pipe a terminal. No live display there."""
    console = Console(file=io.StringIO(), _environ={"FORCE_COLOR": "1"})
    assert console.is_terminal and not live_wanted(console)
    assert live_wanted(Console(file=io.StringIO(), force_terminal=True))
    assert not live_wanted(
        Console(file=io.StringIO(), force_terminal=True, _environ={"TERM": "dumb"})
    )


def test_a_sweep_on_a_terminal_draws_a_bar_with_time_left_until_the_last_trial() -> None:
    console, out = terminal()
    now = Clock()
    progress = TrialProgress(console, Reuseport(), quiet=False, now=now)
    with progress:
        progress.start(4)
        assert progress.live.running
        now.t += 30
        progress(spec(0, "shared", warmup=True), record(0, "shared", warmup=True))
        progress.begin(spec(1, "reuseport"))
        now.t += 10
        assert (
            progress.status_text()
            == "1 of 4 · 40 s · about 1:20 left · now mode=reuseport workers=2"
        )
        progress.live.refresh()
        drawn = out.getvalue()
        assert "trials" in drawn and "1 of 4" in drawn and "━" in drawn  # the bar
        for i in (1, 2, 3):
            progress(spec(i, "shared"), record(i, "shared"))
        assert not progress.live.running  # gone with the last trial: the summary follows
    assert "trial 4 of 4: mode=shared" in out.getvalue()


def test_a_quiet_sweep_draws_nothing_even_on_a_terminal() -> None:
    console, out = terminal()
    progress = TrialProgress(console, Reuseport(), quiet=True)
    with progress:
        progress.start(2)
        progress(spec(0, "shared"), record(0, "shared"))
    assert not progress.live.running and out.getvalue() == ""


# ---------------------------------------------------------------------------- a playbook's task


def test_the_running_task_names_each_host_its_step_and_time() -> None:
    task = RunningTask("build netmap", ["srv1", "cli1", "cli2", "cli3", "cli4"], now=0.0)
    task.step("srv1", "netmap make on controller (2 of 3)", now=37.0)
    task.done("cli1")
    assert task.line(now=72.0) == (
        "TASK [build netmap] 1:12 · srv1: netmap make on controller (2 of 3) 35 s · cli2 · cli3"
        " · +1 more"
    )


def test_the_reporter_keeps_its_lines_and_adds_a_live_line_only_on_a_terminal() -> None:
    console, out = plain()
    reporter = TerminalReporter(console)
    reporter.task_start(None, "build netmap", ["srv1"])  # type: ignore[arg-type]
    assert not reporter.live.running
    reporter.host_progress("srv1", "netmap configure on controller (1 of 3)")
    reporter.task_done()
    assert "[srv1] netmap configure on controller (1 of 3) (0 s)" in out.getvalue()
    assert "\x1b" not in out.getvalue()

    console, out = terminal()
    reporter = TerminalReporter(console)
    reporter.task_start(None, "build netmap", ["srv1", "cli1"])  # type: ignore[arg-type]
    assert reporter.live.running
    reporter.host_progress("srv1", "netmap make on controller (2 of 3)")
    reporter.host_finished("cli1")
    reporter.live.refresh()
    reporter.task_done()
    assert not reporter.live.running
    assert (
        "TASK [build netmap] 0 s · srv1: netmap make on controller (2 of 3) 0 s" in out.getvalue()
    )


class _FakeHost(LocalConnection):
    """A host that answers like a Debian box without the packages asked for: dpkg-query
    knows none of them, apt-get installs them."""

    def __init__(self, host: Host, ran: list[str]) -> None:
        super().__init__(host)
        self.ran = ran

    def run(self, command: Command, **_: Any) -> CommandResult:
        text = command_text(command)
        self.ran.append(text)
        missing = text.startswith("dpkg-query")
        return CommandResult(self.host.name, text, 1 if missing else 0, "", "", 0.0)


class _Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []

    def play_start(self, play: Any, hosts: list[str]) -> None: ...
    def task_start(self, play: Any, task_name: str, hosts: list[str]) -> None:
        self.events.append(("start", task_name))

    def host_progress(self, host: str, text: str) -> None:
        self.events.append(("progress", host, text))

    def host_finished(self, host: str) -> None:
        self.events.append(("finished", host))

    def host_done(self, result: Any) -> None:
        self.events.append(("done", result.host, result.status))

    def task_done(self) -> None:
        self.events.append(("task done",))


def test_an_actions_sub_step_reaches_the_reporter_while_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[str] = []

    class FakeConnections(Connections):
        def __init__(self, hosts: Iterable[Host], connect_timeout: float = 0.0) -> None:
            super().__init__([])
            self._by_name = {h.name: _FakeHost(h, ran) for h in hosts}

    monkeypatch.setattr(play_run, "Connections", FakeConnections)
    book = tmp_path / "site.yml"
    book.write_text(
        textwrap.dedent(
            """\
            - hosts: all
              gather_facts: false
              tasks:
                - name: build tools
                  ansible.builtin.apt: {name: [gcc, make, bc, flex, bison], state: present}
            """
        )
    )
    inventory = parse_inventory("all:\n  hosts:\n    srv1: {ansible_host: 10.0.0.1}\n")
    reporter = _Recorder()
    run = run_playbook(load_playbook(str(book)), inventory, RunOptions(), reporter)
    assert run.exit_status == 0 and any("apt-get" in r for r in ran)
    assert reporter.events == [
        ("start", "build tools"),
        ("progress", "srv1", "apt-get install gcc make bc (+2 more)"),
        ("finished", "srv1"),
        ("task done",),
        ("done", "srv1", "changed"),
    ]


def test_a_labelled_step_is_told_before_it_runs_and_a_label_never_changes_a_plan() -> None:
    assert Run(["make"], label="make") == Run(["make"])
    told: list[str] = []

    class Conn(_FakeHost):
        def run(self, command: Command, **_: Any) -> CommandResult:
            told.append(f"ran {command_text(command)}")
            return CommandResult("srv1", command_text(command), 0, "", "", 0.0)

    srv1 = parse_inventory("all:\n  hosts:\n    srv1: {ansible_host: 10.0.0.1}\n").host("srv1")
    ctx = TaskContext(Conn(srv1, []), {}, Path("."), progress=told.append)
    plan = KmodPlan(output={"ko": "/var/cache/labctl/kmod/k/fixture.ko"})
    plan.add("build", Run(["true"], label="make fixture.ko for 6.1.0-9-amd64"))
    plan.add("store", Run(["true"]))
    args = KmodArgs(name="fixture", src="/src", kernel_release="6.1.0-9-amd64", state="built")
    KmodAction().apply(ctx, args, plan)
    assert told[:2] == ["make fixture.ko for 6.1.0-9-amd64", "ran true"]  # then vermagic fails


# ---------------------------------------------------------------------------- the VM lab


def test_the_image_builds_phase_comes_from_mmdebstraps_log() -> None:
    log = "I: automatically chosen format: directory\nGet:1 http://deb.debian.org x\n"
    log += "I: downloading packages with apt...\nGet:2 y\n"
    assert log_news("mmdebstrap", log) == "mmdebstrap: downloading packages with apt"
    assert log_news("mmdebstrap", "labctl: kernel release 6.1.0-28-amd64\n") == (
        "mmdebstrap: kernel release 6.1.0-28-amd64"
    )
    assert log_news("mke2fs", "Get:3 z\n") is None
    hook = "I: running --customize-hook in shell: sh -c 'mkdir -p \"$1\"/etc && printf %s '[Unit]\n"
    assert log_news("mmdebstrap", hook) == "mmdebstrap: running the customize hooks"


def test_lab_progress_keeps_a_line_per_vm_whose_clock_stops_when_ssh_answers() -> None:
    now = Clock()
    console, out = plain()
    with LabProgress(console, now=now) as progress:
        progress(LabStep("image", "mmdebstrap"))
        now.t += 95
        progress(LabStep("image", "mmdebstrap: downloading packages with apt"))
        progress(LabStep("srv1", "booting (waiting for sshd)"))
        now.t += 35
        progress(LabStep("srv1", "sshd answers", done=True))
        now.t += 10
        assert [line for _, line, _ in progress.lines()] == [
            "image: mmdebstrap: downloading packages with apt 2:20",
            "srv1: sshd answers 35 s",  # its clock stopped there
        ]
        assert not progress.live.running
    assert out.getvalue() == ""

    console, out = terminal()
    with LabProgress(console, now=now) as progress:
        progress(LabStep("srv1", "booting (waiting for sshd)"))
        assert progress.live.running
        progress.live.refresh()
    assert "srv1: booting (waiting for sshd) 0 s" in out.getvalue()


def test_only_whole_new_log_lines_are_read_and_a_vm_console_line_loses_its_colours(
    tmp_path: Path,
) -> None:
    log = tmp_path / "build.log"
    log.write_bytes(b"+ mmdebstrap ...\nI: extracting archives...\nI: installing ess")
    told: list[LabStep] = []
    read_to = _tell_news("mmdebstrap", log, 0, told.append)
    assert told == [LabStep("image", "mmdebstrap: extracting archives")]
    with log.open("ab") as fh:
        fh.write(b"ential packages...\n")
    assert _tell_news("mmdebstrap", log, read_to, told.append) == log.stat().st_size
    assert told[-1] == LabStep("image", "mmdebstrap: installing essential packages")

    console = tmp_path / "console.log"
    console.write_text(
        "Booting\r\n\x1b[0;32m  OK  \x1b[0m] Started \x1b[0;1;39mssh.service\x1b[0m\r\n"
    )
    assert _last_line(console) == "OK  ] Started ssh.service"


def test_a_booting_vm_shows_its_console_until_sshd_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The boot wait with stand-ins for QEMU and sshd: the console's last line, then done."""
    spec = VmLabSpec.generated("t1", 1, 40100, tmp_path)
    console = spec.console_log("srv1")
    console.parent.mkdir(parents=True)
    console.write_text("")
    calls: list[int] = []

    def banner(port: int, timeout: float) -> bool:  # the console speaks after the first look
        calls.append(port)
        if len(calls) == 2:
            console.write_text("[\x1b[0;32m  OK  \x1b[0m] Started ssh.service\n")
        return len(calls) == 4

    monkeypatch.setattr(vm_module, "_ssh_banner", banner)
    monkeypatch.setattr(vm_module.VmLab, "_running", lambda self, host, record=None: 4242)
    monkeypatch.setattr(vm_module.time, "sleep", lambda s: None)
    steps: list[LabStep] = []
    vm_module.VmLab(spec, on_step=steps.append)._wait_for_ssh({"srv1": time.monotonic()})
    assert steps == [
        LabStep("srv1", "booting (waiting for sshd)"),
        LabStep("srv1", "[  OK  ] Started ssh.service (waiting for sshd)"),
        LabStep("srv1", "sshd answers", done=True),
    ]
