"""How an experiment file's metrics are read (labctl.experiments.file_spec declares them): a
number from a measure command's output (a JSON path, a regex), a counter on a host (nstat,
ethtool -S, tc -s), and a role's hosts' values combined into one."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from labctl.experiments.file_spec import MetricRead
from labctl.templating import render_value

if TYPE_CHECKING:
    from labctl.remote import HostConnection


def read_metric(read: MetricRead, output: str) -> float:
    """One metric from a measure command's output; ValueError says why it read nothing."""
    if read.json is not None:
        try:
            value: Any = json.loads(output)
        except ValueError as exc:
            raise ValueError(
                f"{read.name}: the output of {read.role} is not JSON ({exc})"
            ) from None
        for part in re.findall(r"[^.\[\]]+|\[\d+\]", read.json):
            try:
                value = value[int(part[1:-1])] if part.startswith("[") else value[part]
            except (KeyError, IndexError, TypeError):
                raise ValueError(
                    f"{read.name}: no {read.json} in the output of {read.role}"
                ) from None
    else:
        assert read.regex is not None
        found = re.search(read.regex, output, re.MULTILINE)
        if found is None:
            raise ValueError(
                f"{read.name}: {read.regex!r} matched nothing in the output of {read.role}"
            )
        value = found.group(1)
    try:
        return float(value) * read.scale
    except (TypeError, ValueError):
        raise ValueError(f"{read.name}: {value!r} is not a number") from None


def combine(how: str, values: Sequence[float], name: str) -> float:
    """A role's hosts' values as one number (`combine:` in the file)."""
    if not values:
        raise ValueError(f"{name}: no host gave a value")
    if how == "first":
        return values[0]
    if how == "mean":
        return sum(values) / len(values)
    if how == "max":
        return max(values)
    if how == "min":
        return min(values)
    return float(sum(values))


def read_counter(conn: HostConnection, read: MetricRead, variables: Mapping[str, Any]) -> float:
    """A counter's value on one host: nstat (absolute, history untouched), ethtool -S, or
    the root qdisc's statistics from tc. ValueError when it is not there."""
    assert read.counter is not None
    args = {k: str(render_value(v, variables)) for k, v in read.counter.args.items()}
    source = read.counter.source
    if source == "nstat":
        res = conn.run(["nstat", "-asz", "-j"])
        found = json.loads(res.stdout or "{}").get("kernel", {}).get(args["name"])
        what = f"nstat {args['name']}"
    elif source == "ethtool":
        res = conn.run(["ethtool", "-S", args["dev"]])
        stats = dict(
            (k.strip(), v.strip())
            for k, _, v in (line.partition(":") for line in res.stdout.splitlines())
            if _
        )
        found = stats.get(args["stat"])
        what = f"ethtool -S {args['dev']} {args['stat']}"
    else:
        res = conn.run(["tc", "-s", "-j", "qdisc", "show", "dev", args["dev"], "root"])
        qdiscs = json.loads(res.stdout or "[]")
        found = qdiscs[0].get(args["field"]) if qdiscs else None
        what = f"tc -s qdisc show dev {args['dev']} root: {args['field']}"
    if not res.ok or found is None:
        detail = res.first_error_line() if not res.ok else "not in its output"
        raise ValueError(f"{read.name}: {conn.host.name}: {what}: {detail}")
    try:
        return float(found)
    except (TypeError, ValueError):
        raise ValueError(f"{read.name}: {conn.host.name}: {what} is {found!r}") from None
