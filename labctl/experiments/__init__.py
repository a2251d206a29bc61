"""Experiments, found rather than listed: every module of this package that defines a subclass
of `base.Experiment` is one, and so is each module named in `LABCTL_EXPERIMENT_MODULES`
(comma-separated, importable: an experiment of your own, kept outside labctl), and so is each
experiment file in the project's `experiments/` (YAML, issue 20; file_spec.py). The command
line, suites, summaries, the regression check and the report all go through `find` and
`registry`; none of them names an experiment (docs/architecture.md).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import pkgutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from labctl.errors import InputError
from labctl.experiments.base import Experiment
from labctl.metrics import ExperimentSpec
from labctl.paths import EXPERIMENT_FILES

ENV_MODULES = "LABCTL_EXPERIMENT_MODULES"
_NOT_EXPERIMENTS = frozenset({"base", "summary", "file_spec", "file_run", "file_metrics"})


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


@functools.cache
def _files(directory: str) -> dict[str, type[Experiment]]:
    from labctl.experiments.file_run import experiment_class
    from labctl.experiments.file_spec import load_experiment_file

    found: dict[str, type[Experiment]] = {}
    for path in sorted(Path(directory).glob("*.yml")):
        cls = experiment_class(load_experiment_file(path, check=False))
        found[cls.name()] = cls
    return found


def registry() -> dict[str, type[Experiment]]:
    """Every experiment by name: labctl's own modules, LABCTL_EXPERIMENT_MODULES, and the
    experiment files shipped in `experiments/`."""
    extra = os.environ.get(ENV_MODULES, "")
    found = dict(_discover(tuple(m.strip() for m in extra.split(",") if m.strip())))
    for name, cls in _files(str(EXPERIMENT_FILES)).items():
        if name in found:
            raise InputError(f"two experiments are called {name!r}: {cls.file.path}")  # type: ignore[attr-defined]
        found[name] = cls
    return dict(sorted(found.items()))


def find(name: str) -> type[Experiment]:
    found = registry().get(name)
    if found is None:
        raise InputError(f"unknown experiment {name!r} (known: {', '.join(registry())})")
    return found


def spec_of(name: str) -> ExperimentSpec | None:
    """The spec of a stored run's experiment; None for one no longer known."""
    found = registry().get(name)
    return found.spec if found is not None else None


def class_of_run(experiment: str, params: Mapping[str, Any]) -> type[Experiment] | None:
    """The experiment of a stored run: a registered one, or the experiment file the run
    stored its text of (a file kept anywhere); None when neither is known."""
    found = registry().get(experiment)
    text = params.get("file_text")
    if found is None and isinstance(text, str):
        from labctl.experiments.file_run import experiment_class
        from labctl.experiments.file_spec import load_experiment_file

        try:
            spec = load_experiment_file(str(params.get("file") or experiment), text, check=False)
        except InputError:
            return None
        found = experiment_class(spec)
    return found


def spec_of_run(experiment: str, params: Mapping[str, Any]) -> ExperimentSpec | None:
    found = class_of_run(experiment, params)
    return found.spec if found is not None else None
