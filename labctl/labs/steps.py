"""What the long parts of bringing a lab up are doing now (the base image's build, each VM's
boot), told as they change to whoever shows them live; views/lab.py draws them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class LabStep:
    subject: str  # "image", or a VM's name
    text: str  # "mmdebstrap: downloading packages", "booting", "sshd answers after 35.2 s"
    done: bool = False  # the subject is finished: its clock stops


OnStep = Callable[[LabStep], None]


def no_steps(step: LabStep) -> None:
    """Where nobody watches."""
