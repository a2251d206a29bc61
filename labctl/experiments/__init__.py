"""Experiments, found rather than listed: every module of this package that defines a subclass
of `base.Experiment` is one, and so is each module named in `LABCTL_EXPERIMENT_MODULES`
(comma-separated, importable: an experiment of your own, kept outside labctl). The command
line, suites, summaries, the regression check and the report all go through `find` and
`registry`; none of them names an experiment (docs/architecture.md).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import pkgutil

from labctl.errors import InputError
from labctl.experiments.base import Experiment
from labctl.metrics import ExperimentSpec

ENV_MODULES = "LABCTL_EXPERIMENT_MODULES"
_NOT_EXPERIMENTS = frozenset({"base", "summary"})


@functools.cache
def _discover(extra_modules: tuple[str, ...]) -> dict[str, type[Experiment]]:
    names = [
        f"{__name__}.{m.name}"
        for m in pkgutil.iter_modules(__path__)
        if m.name not in _NOT_EXPERIMENTS
    ]
    found: dict[str, type[Experiment]] = {}
    for module_name in [*names, *extra_modules]:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise InputError(f"{ENV_MODULES}: cannot import {module_name}: {exc}") from exc
        for obj in vars(module).values():
            if (
                isinstance(obj, type)
                and issubclass(obj, Experiment)
                and obj.__module__ == module.__name__
                and not inspect.isabstract(obj)
            ):
                name = obj.spec.name
                if name in found and found[name] is not obj:
                    raise InputError(f"two experiments are called {name!r}: {module_name}")
                found[name] = obj
    return dict(sorted(found.items()))


def registry() -> dict[str, type[Experiment]]:
    """Every experiment by name."""
    extra = os.environ.get(ENV_MODULES, "")
    return _discover(tuple(m.strip() for m in extra.split(",") if m.strip()))


def find(name: str) -> type[Experiment]:
    found = registry().get(name)
    if found is None:
        raise InputError(f"unknown experiment {name!r} (known: {', '.join(registry())})")
    return found


def spec_of(name: str) -> ExperimentSpec | None:
    """The spec of a stored run's experiment; None for one no longer known."""
    found = registry().get(name)
    return found.spec if found is not None else None
