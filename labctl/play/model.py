"""What a loaded playbook is: plays of tasks and blocks, every keyword typed and resolved.

Loading (load.py) does all the reading and checking; what is here is plain data the runner
walks. Keywords a block or role passes down (`when`, `tags`, `become`, `vars`, ...) are
already folded into each task, so a task carries everything that decides how it runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl.errors import InputError


class PlaybookError(InputError):
    """A playbook that cannot run; its message names file, line and task."""


@dataclass(frozen=True)
class LoopControl:
    loop_var: str = "item"
    index_var: str | None = None
    label: str | None = None  # a template: what the item is called in the output
    pause: float = 0.0
    extended: bool = False


@dataclass(frozen=True)
class Task:
    name: str
    action: str  # labctl's action name, or a control task (debug, set_fact, meta, ...)
    args: Mapping[str, Any]  # unrendered, already in the action's own argument names
    path: str  # the file the task is written in (a role's or an included file)
    line: int
    when: tuple[str, ...] = ()
    register: str | None = None
    loop: Any = None  # None, a list, or a template string that renders to a list
    loop_flatten: bool = False  # with_items: the rendered list is flattened one level
    loop_control: LoopControl = field(default_factory=LoopControl)
    tags: frozenset[str] = frozenset()
    ignore_errors: bool = False
    changed_when: tuple[str, ...] | None = None
    failed_when: tuple[str, ...] | None = None
    until: tuple[str, ...] | None = None
    retries: int | None = None  # tries after the first (3 when `until` is given alone)
    delay: float = 5.0
    notify: tuple[str, ...] = ()
    listen: tuple[str, ...] = ()  # handlers: topics they answer besides their name
    delegate_to: str | None = None
    run_once: bool = False
    environment: Mapping[str, Any] = field(default_factory=dict)
    become: bool | None = None
    become_user: str | None = None
    no_log: bool = False
    check_mode: bool | None = None  # True: always plan only; False: apply even with --check
    vars: Mapping[str, Any] = field(default_factory=dict)  # role vars < block vars < task vars
    defaults: Mapping[str, Any] = field(default_factory=dict)  # role defaults (lowest of all)
    params: Mapping[str, Any] = field(default_factory=dict)  # role params (above set_fact)
    search_dirs: tuple[Path, ...] = ()  # where templates/ and files/ are looked up, in order
    role: str | None = None
    any_errors_fatal: bool = False

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    @property
    def attempts(self) -> int:
        """How many times the action may run (Ansible: 1 + retries; 3 retries by default
        when `until` is given)."""
        if self.retries is not None:
            return 1 + max(0, self.retries)
        return 4 if self.until else 1


@dataclass(frozen=True)
class Block:
    """`block` / `rescue` / `always`: a host that fails in `block` runs `rescue`; every host
    that entered runs `always`."""

    name: str
    block: tuple[Item, ...]
    rescue: tuple[Item, ...]
    always: tuple[Item, ...]
    path: str
    line: int


@dataclass(frozen=True)
class Include:
    """`include_tasks` with a loop: its tasks run once per item, the item bound (the file is
    read when the playbook loads, so a typo in it is still found before any host)."""

    name: str
    items: tuple[Item, ...]
    loop: Any
    loop_control: LoopControl
    when: tuple[str, ...]
    path: str
    line: int
    tags: frozenset[str] = frozenset()  # the include's own: its tasks do not inherit them
    # What the include's `when` and `loop` read besides the play's: its role's and blocks'.
    vars: Mapping[str, Any] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)


Item = Task | Block | Include


@dataclass(frozen=True)
class Play:
    name: str
    hosts: str
    vars: Mapping[str, Any]
    become: bool | None
    gather_facts: bool
    any_errors_fatal: bool
    # pre_tasks, roles, tasks, post_tasks in the order they run, with Ansible's implicit
    # `meta: flush_handlers` after pre_tasks, after roles and tasks, and at the end.
    tasks: tuple[Item, ...]
    handlers: tuple[Task, ...]
    line: int
    path: str
    serial: tuple[int | str, ...] = ()  # batch sizes (ints or "30%"); empty: all at once
    max_fail_percentage: float | None = None
    check_mode: bool | None = None
    no_log: bool = False
    environment: Mapping[str, Any] = field(default_factory=dict)
    vars_files: tuple[str, ...] = ()  # already read into `vars`; kept for messages


@dataclass(frozen=True)
class Playbook:
    path: str
    plays: tuple[Play, ...]

    @property
    def base_dir(self) -> Path:
        return Path(self.path).resolve().parent

    @property
    def tags(self) -> frozenset[str]:
        """Every tag a task of this playbook has (its own or inherited)."""
        return frozenset().union(
            *(t.tags for p in self.plays for t in walk_tasks((*p.tasks, *p.handlers)))
        )


def walk_tasks(items: tuple[Item, ...] | list[Item]) -> list[Task]:
    """Every task inside `items`, blocks and includes opened, in file order."""
    out: list[Task] = []
    for item in items:
        if isinstance(item, Task):
            out.append(item)
        elif isinstance(item, Block):
            out += walk_tasks((*item.block, *item.rescue, *item.always))
        else:
            out += walk_tasks(item.items)
    return out
