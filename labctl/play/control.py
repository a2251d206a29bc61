"""Tasks that run on the controller, with a host's variables: debug, set_fact, assert, fail,
meta. Their arguments are checked when the playbook loads; what they return is what
Ansible's do (`msg`, `ansible_facts`, `evaluated_to`, ...), so a registered result reads the
same.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from labctl.actions.base import ActionResult
from labctl.play.modules import split_kv
from labctl.templating import TemplateError, evaluate, names_used, render_value

# The control tasks that run here, on a host's variables (meta and includes are the runner's).
ON_CONTROLLER = frozenset({"debug", "set_fact", "assert", "fail"})
META = frozenset({"flush_handlers", "noop", "end_play", "end_host"})
_ARGS = {
    "debug": {"msg", "var", "verbosity"},
    "assert": {"that", "msg", "fail_msg", "success_msg", "quiet"},
    "fail": {"msg"},
}
NOT_DEFINED = "VARIABLE IS NOT DEFINED!"


def check_control_args(action: str, value: Any, extra: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments of a control task, as written (rendered when it runs). ValueError says
    what is wrong."""
    if action == "meta":
        if not isinstance(value, str) or value not in META:
            raise ValueError(f"meta: one of {', '.join(sorted(META))}, not {value!r}")
        return {"_raw": value}
    if isinstance(value, str):
        value = split_kv(value, None, lambda k: True)
    args = {**extra, **(value or {})}
    if not isinstance(args, dict):
        raise ValueError(f"{action}: arguments must be a mapping")
    if action == "set_fact":
        for key in args:
            if key != "cacheable" and not (isinstance(key, str) and key.isidentifier()):
                raise ValueError(f"set_fact: {key!r} is not a variable name")
        if not set(args) - {"cacheable"}:
            raise ValueError("set_fact: no variable to set")
        return args
    unknown = sorted(set(args) - _ARGS[action])
    if unknown:
        raise ValueError(
            f"{action}: unknown argument {', '.join(map(repr, unknown))} "
            f"(takes {', '.join(sorted(_ARGS[action]))})"
        )
    if action == "debug" and "msg" in args and "var" in args:
        raise ValueError("debug: give msg or var, not both")
    if action == "debug" and "var" in args:
        names_used(str(args["var"]), expression=True)
    if action == "assert":
        if "that" not in args:
            raise ValueError("assert: missing argument 'that'")
        for cond in _that(args["that"]):
            names_used(cond, expression=True)
    return args


def _that(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, bool):
            out.append("True" if item else "False")
        else:
            out.append(str(item))
    return out


def run_control(action: str, args: Mapping[str, Any], variables: Mapping[str, Any]) -> ActionResult:
    """A control task on one host's variables (meta is the runner's)."""
    if action == "debug":
        if "var" in args:
            name = str(args["var"])
            try:
                value = evaluate(name, variables)
            except TemplateError:  # Ansible prints this rather than failing
                value = NOT_DEFINED
            return ActionResult(output={name: value})
        msg = render_value(args.get("msg", "Hello world!"), variables)
        return ActionResult(msg=msg if isinstance(msg, str) else str(msg), output={"msg": msg})
    if action == "set_fact":
        facts = {k: render_value(v, variables) for k, v in args.items() if k != "cacheable"}
        return ActionResult(output={"ansible_facts": facts})
    if action == "fail":
        msg = render_value(args.get("msg", "Failed as requested from task"), variables)
        return ActionResult(failed=True, msg=str(msg))
    if action == "assert":
        for cond in _that(args["that"]):
            if not evaluate(cond, variables):
                fail_msg = args.get("fail_msg", args.get("msg", "Assertion failed"))
                msg = str(render_value(fail_msg, variables))
                return ActionResult(
                    failed=True,
                    msg=msg,
                    output={"assertion": cond, "evaluated_to": False},
                )
        msg = str(render_value(args.get("success_msg", "All assertions passed"), variables))
        return ActionResult(msg=msg, output={"evaluated_to": True, "assertion": None})
    raise ValueError(f"{action}: not a control task")
