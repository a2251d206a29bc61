"""Which tasks' reads are taken together, and what they are (labctl/play/readahead.py)."""

from __future__ import annotations

from labctl.play import readahead
from labctl.play.model import Block, LoopControl, Task


def task(action: str, args: dict[str, object], **more: object) -> Task:
    return Task(name=action, action=action, args=args, path="book.yml", line=1, **more)  # type: ignore[arg-type]


FILE = task("file", {"path": "/x/{{ name }}", "state": "directory"})
COPY = task("copy", {"dest": "/x/f", "content": "c"})
DEBUG = task("debug", {"msg": "hi"})
GUARDED = task("command", {"argv": ["touch", "/x/m"], "creates": "/x/m"})
PLAIN = task("command", {"argv": ["uname", "-r"]})


def everything(t: Task) -> bool:
    return True


def test_a_window_runs_until_something_may_pass_time_or_act_elsewhere() -> None:
    items = (FILE, DEBUG, COPY, PLAIN, GUARDED)
    # control tasks read nothing on the host; a plain command reads nothing first either,
    # but the read after it is still known (it is sent when asked for: after the command)
    assert readahead.window(items, 0, everything) == [0, 2, 3, 4]
    for stop in (
        task("command", {"argv": ["true"]}, until=("x",)),
        task("command", {"argv": ["true"]}, retries=2),
        task("command", {"argv": ["true"]}, delegate_to="localhost"),
        task("meta", {"_raw": "flush_handlers"}),
        task("debug", {"msg": "x"}, loop=[1, 2], loop_control=LoopControl(pause=1.0)),
    ):
        assert readahead.window((FILE, stop, COPY), 0, everything) == [0], stop
    block = Block(block=(COPY,), rescue=(), always=(), name="b", path="book.yml", line=1)
    assert readahead.window((FILE, block, COPY), 0, everything) == [0]
    assert readahead.window((FILE, COPY), 0, lambda t: t is not FILE) == [1]


def test_a_tasks_reads_are_its_plans_first_commands() -> None:
    (read,) = readahead.task_reads(FILE, {"name": "d"})
    assert "/x/d" in read and "stat -c" not in read  # no mode asked: the type is enough
    moded = task("file", {"path": "/x/d", "state": "directory", "mode": "0755"})
    assert "stat -c" in readahead.task_reads(moded, {})[0]
    assert readahead.task_reads(GUARDED, {}) == ["if [ -e /x/m ]; then echo creates; fi"]
    assert readahead.task_reads(PLAIN, {}) == []


def test_what_cannot_be_known_now_is_not_guessed() -> None:
    assert readahead.task_reads(FILE, {}) == []  # `name` is registered later, say
    assert readahead.task_reads(task("file", {"path": "relative"}), {}) == []
    looped = task("file", {"path": "/x/{{ item }}"}, loop=["a", "b"])
    assert readahead.task_reads(looped, {}) == []
    wrapped = task("file", {"path": "/x/y"}, environment={"A": "b"})
    assert readahead.task_reads(wrapped, {}) == []


def test_reads_after_a_task_stop_at_the_next_task_whose_commands_are_unknown() -> None:
    items = (FILE, COPY, PLAIN, GUARDED, COPY)
    found = readahead.HostWindow(items, None, 0, 4, {0: ["a"], 1: ["b", "c"], 2: [], 3: ["d"]})
    assert found.after(0) == ["b", "c"]  # not "d": the command at 2 may change it
    assert found.after(1) == []
    assert found.after(2) == ["d"]  # the command's own round trip carries it
    assert found.covers(found.items, None, 4)
    assert not found.covers(list(items), None, 1)  # another list, equal or not
    assert not found.covers(found.items, {}, 1)  # another include round
