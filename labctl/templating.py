"""Jinja2 for playbooks and templates: StrictUndefined always, native values for `{{ x }}`.

A string that is exactly one `{{ expression }}` renders to the expression's value (a list
stays a list, an int an int), like Ansible; any other string renders to text.

jinja2 is imported when a template is first rendered or read, not with this module: a
command that only splits a command line into words (actions/command.py) does without it.
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labctl.errors import LabctlError

if TYPE_CHECKING:
    import jinja2
    import jinja2.nativetypes

_TEMPLATE_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_SINGLE_EXPR = re.compile(r"\A\{\{(?P<expr>(?:(?!\{\{|\}\}).)*)\}\}\Z", re.S)


# `{{ x | default(omit) }}`: the argument is left out, as if the task never set it (Ansible's).
OMIT = "__labctl_omit_placeholder__"


def without_omitted(value: Any) -> Any:
    """`value` with every mapping entry whose value is `omit` removed (recursively)."""
    if isinstance(value, Mapping):
        return {k: without_omitted(v) for k, v in value.items() if v != OMIT}
    if isinstance(value, list | tuple):
        return [without_omitted(v) for v in value if v != OMIT]
    return value


class TemplateError(LabctlError):
    """A template or expression that cannot be rendered (syntax, undefined variable)."""


def _env_options() -> dict[str, Any]:
    import jinja2

    return {"undefined": jinja2.StrictUndefined, "keep_trailing_newline": True, "autoescape": False}


def make_env(search_dirs: list[Path] | None = None) -> jinja2.Environment:
    import jinja2

    from labctl.filters import add_ansible_names

    loader = jinja2.FileSystemLoader([str(d) for d in search_dirs]) if search_dirs else None
    env = jinja2.Environment(loader=loader, **_env_options())
    add_ansible_names(env)
    return env


@functools.cache
def _text() -> jinja2.Environment:
    """The environment that renders text, made on first use."""
    return make_env()


@functools.cache
def _native() -> jinja2.nativetypes.NativeEnvironment:
    """The environment that renders one `{{ expression }}` to its value, made on first use."""
    import jinja2.nativetypes

    from labctl.filters import add_ansible_names

    env = jinja2.nativetypes.NativeEnvironment(**_env_options())
    add_ansible_names(env)
    return env


# Compiled templates and expressions, by their source: a task's arguments are rendered once
# per host (and its reads once more ahead, play/readahead.py), and jinja2 compiles a source
# to Python on every from_string/compile_expression. Pure functions of the source string.
@functools.lru_cache(maxsize=4096)
def _text_template(source: str) -> jinja2.Template:
    return _text().from_string(source)


@functools.lru_cache(maxsize=4096)
def _native_expression(source: str) -> Any:
    return _native().compile_expression(source, undefined_to_none=False)


@functools.lru_cache(maxsize=4096)
def _text_expression(source: str) -> Any:
    return _text().compile_expression(source, undefined_to_none=False)


@functools.lru_cache(maxsize=64)
def _file_env(directory: Path) -> jinja2.Environment:
    """One environment per template directory: it keeps its compiled templates (and
    recompiles one whose file changed)."""
    return make_env([directory])


def _describe(exc: Exception) -> str:
    import jinja2

    if isinstance(exc, jinja2.UndefinedError):
        return f"undefined variable: {exc.message}"
    if isinstance(exc, jinja2.TemplateSyntaxError | jinja2.TemplateAssertionError):
        return f"template syntax error: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


def _defined(value: Any) -> Any:
    """A bare `{{ missing }}` yields an Undefined object without raising: make it raise."""
    import jinja2

    if isinstance(value, jinja2.Undefined):
        str(value)  # StrictUndefined raises UndefinedError here
    return value


def is_templated(value: Any) -> bool:
    """Does any string inside `value` hold template syntax (so it is only known rendered)?"""
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, Mapping):
        return any(is_templated(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(is_templated(v) for v in value)
    return False


def split_words(text: str) -> list[str]:
    """Split a command line into words as a shell would (quotes, no other shell syntax),
    leaving each template tag whole, so each word is rendered on its own: a value holding
    spaces or a leading `-` stays one argument. A `{% %}` block must open and close inside
    one word. ValueError for an unclosed quote."""
    tags: list[str] = []

    def hold(match: re.Match[str]) -> str:
        tags.append(match.group(0))
        return f"\x00{len(tags) - 1}\x00"

    held = _TEMPLATE_TAG.sub(hold, text)
    if "{{" in held or "{%" in held:
        raise ValueError(f"template syntax error: a tag is not closed in {text!r}")
    words = shlex.split(held)
    return [re.sub(r"\x00(\d+)\x00", lambda m: tags[int(m.group(1))], w) for w in words]


def render_value(value: Any, variables: Mapping[str, Any]) -> Any:
    """Render every string inside `value` (recursively through lists and mappings)."""
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value:
            return value
        try:
            # Only a string that is exactly one `{{ }}` keeps its type: "{{ x }}\n" is text.
            match = _SINGLE_EXPR.match(value)
            if match:
                value = _native_expression(match["expr"].strip())(**variables)
                return _defined(value)
            return _text_template(value).render(**variables)
        except Exception as exc:  # noqa: BLE001 - any filter's error is the template's
            raise TemplateError(f"{_describe(exc)} in {value!r}") from exc
    if isinstance(value, Mapping):
        return {k: render_value(v, variables) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render_value(v, variables) for v in value]
    return value


def evaluate(expression: str, variables: Mapping[str, Any]) -> Any:
    """A bare expression, as in `when:` (no braces)."""
    try:
        return _defined(_text_expression(expression)(**variables))
    except Exception as exc:  # noqa: BLE001 - any filter's error is the template's
        raise TemplateError(f"{_describe(exc)} in {expression!r}") from exc


def render_file(path: Path, variables: Mapping[str, Any]) -> str:
    env = _file_env(path.parent)
    try:
        return env.get_template(path.name).render(**variables)
    except Exception as exc:  # noqa: BLE001 - any filter's error is the template's
        line = getattr(exc, "lineno", None)
        where = f"{path}:{line}" if line else str(path)
        raise TemplateError(f"{where}: {_describe(exc)}") from exc


def names_used(value: Any, expression: bool = False) -> set[str]:
    """Top-level variable names a value's templates read (for checks before any host runs)."""
    import jinja2
    import jinja2.meta

    if isinstance(value, str):
        if expression:
            source = "{{ " + value + " }}"
        elif "{{" in value or "{%" in value:
            source = value
        else:
            return set()
        try:
            tree = _text().parse(source)
            found = set(jinja2.meta.find_undeclared_variables(tree))
        except jinja2.TemplateError as exc:  # syntax, or an unknown filter or test
            raise TemplateError(_describe(exc) + f" in {value!r}") from exc
        return found - _guarded_names(tree)
    if isinstance(value, Mapping):
        return set().union(*(names_used(v) for v in value.values())) if value else set()
    if isinstance(value, list | tuple):
        return set().union(*(names_used(v) for v in value)) if value else set()
    return set()


def _guarded_names(tree: jinja2.nodes.Template) -> set[str]:
    """Names a template reads only where their absence is handled: `x | default(...)`,
    `x is defined`, `x is undefined`. Such a name need not be defined for every host;
    one also read bare elsewhere in the template still must be."""
    import jinja2.nodes

    guarded_nodes = {
        id(node.node)
        for node in tree.find_all((jinja2.nodes.Filter, jinja2.nodes.Test))
        if node.name in ("default", "d", "defined", "undefined")
        and isinstance(node.node, jinja2.nodes.Name)
    }
    names = list(tree.find_all(jinja2.nodes.Name))
    guarded = {n.name for n in names if id(n) in guarded_nodes}
    bare = {n.name for n in names if id(n) not in guarded_nodes}
    return guarded - bare


def names_tested_defined(expression: str) -> set[str]:
    """Names a `when:` expression tests with `is defined`: a task guarded by it may read them."""
    import jinja2
    import jinja2.nodes

    try:
        tree = _text().parse("{{ " + expression + " }}")
    except jinja2.TemplateSyntaxError:
        return set()
    return {
        node.node.name
        for node in tree.find_all(jinja2.nodes.Test)
        if node.name == "defined" and isinstance(node.node, jinja2.nodes.Name)
    }


def builtin_names() -> set[str]:
    return set(_text().globals)
