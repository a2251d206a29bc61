"""Verdicts as JUnit XML, so Jenkins and GitLab show a regression as a failed test (issue 7).

One <testsuite> per experiment, one <testcase> per (metric, configuration); a regression is a
<failure>, a metric without a valid trial tonight is <skipped>, and so is one the trial test
could not decide at its sample sizes (verdict "undecided": no outcome could have reached alpha,
labctl.results.power), so a CI page does not show it as passed; a run that failed is an
<error>. Every testcase carries its reason (the numbers) in <system-out>.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import UTC, datetime

from labctl.results.regress import MetricVerdict

SKIPPED = ("no-data", "undecided")  # verdicts that are <skipped>: nothing was tested

# XML 1.0 forbids most control characters; a reason may quote a tool's raw output.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _text(value: str) -> str:
    return _NOT_XML.sub("\ufffd", value)


def case_name(verdict: MetricVerdict) -> str:
    """ "conn_per_s [accept mode=shared workers=1]"; the metric alone without a config."""
    return f"{verdict.metric} [{verdict.config}]" if verdict.config else verdict.metric


def junit_xml(
    suite: str,
    verdicts: Sequence[MetricVerdict],
    errors: Sequence[tuple[str, str]] = (),
    timestamp: float | None = None,
) -> str:
    """The JUnit document. `errors`: (experiment, message) of runs that failed. `timestamp`
    (epoch seconds) is written in UTC on each testsuite; None leaves it out, so the output is
    a function of the arguments alone."""
    experiments = list(dict.fromkeys([v.experiment for v in verdicts] + [e for e, _ in errors]))
    root = ET.Element("testsuites", name=_text(suite))
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    for experiment in experiments:
        mine = [v for v in verdicts if v.experiment == experiment]
        failed_runs = [message for e, message in errors if e == experiment]
        counts = {
            "tests": len(mine) + len(failed_runs),
            "failures": sum(v.verdict == "regression" for v in mine),
            "errors": len(failed_runs),
            "skipped": sum(v.verdict in SKIPPED for v in mine),
        }
        ts = ET.SubElement(root, "testsuite", name=_text(experiment))
        for k, n in counts.items():
            ts.set(k, str(n))
        if timestamp is not None:
            when = datetime.fromtimestamp(timestamp, tz=UTC)
            ts.set("timestamp", when.strftime("%Y-%m-%dT%H:%M:%S"))
        classname = _text(f"labctl.{experiment}")
        lines = []
        for message in failed_runs:
            case = ET.SubElement(ts, "testcase", classname=classname, name="run")
            err = ET.SubElement(case, "error", message=_text(message), type="run-failed")
            err.text = _text(message)
            lines.append(f"run: error: {message}")
        for v in mine:
            case = ET.SubElement(ts, "testcase", classname=classname, name=_text(case_name(v)))
            if v.verdict == "regression":
                fail = ET.SubElement(case, "failure", message=_text(v.reason), type="regression")
                fail.text = _text(v.reason)
            elif v.verdict in SKIPPED:
                ET.SubElement(case, "skipped", message=_text(v.warning or v.reason))
            said = f"{v.verdict}: {v.reason}" + (f" (warning: {v.warning})" if v.warning else "")
            ET.SubElement(case, "system-out").text = _text(said)
            lines.append(f"{case_name(v)}: {said}")
        ET.SubElement(ts, "system-out").text = _text("\n".join(lines) + "\n")
        for k, n in counts.items():
            totals[k] += n
    for k, n in totals.items():
        root.set(k, str(n))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
