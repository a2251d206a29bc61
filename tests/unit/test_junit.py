"""JUnit XML read back by a JUnit parser (junitparser) and by xml.etree, counts checked."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from junitparser import Error, Failure, JUnitXml, Skipped

from labctl.results.regress import MetricVerdict
from labctl.stats import summarize
from labctl.views.junit import junit_xml
from tests.unit.test_regress import BASELINE_A, HALVED, HISTORY, WATCHED, compare, trials


def nightly_verdicts() -> list[MetricVerdict]:
    """conn/s halved for shared (a regression), reuseport mode all invalid tonight (no data),
    latency unchanged (ok)."""
    tonight = [
        *trials(HALVED),
        *trials([700.0, 650.0], mode="reuseport", valid=False, reason="listen queue <overflowed>"),
    ]
    history = [*HISTORY, (2, trials(BASELINE_A, mode="reuseport"))]
    verdicts = compare(
        "reuseport", tonight, history, {k: WATCHED["reuseport"][k] for k in ("conn_per_s",)}
    )
    verdicts += compare(
        "reuseport",
        trials(BASELINE_A),
        HISTORY,
        {"latency_p99_us": WATCHED["reuseport"]["latency_p99_us"]},
    )
    return verdicts


def test_parses_back_with_junitparser_and_counts_add_up() -> None:
    verdicts = nightly_verdicts()
    assert [v.verdict for v in verdicts] == ["no-data", "regression", "ok"]
    text = junit_xml(
        "nightly",
        verdicts,
        errors=[("qdisc", "cli1: iperf3 exited 127: iperf3: not found")],
        timestamp=1_700_000_000.0,
    )
    doc = JUnitXml.fromstring(text)
    assert (doc.name, doc.tests, doc.failures, doc.errors, doc.skipped) == ("nightly", 4, 1, 1, 1)
    suites = {s.name: s for s in doc}
    assert list(suites) == ["reuseport", "qdisc"]

    rp = suites["reuseport"]
    assert (rp.tests, rp.failures, rp.errors, rp.skipped) == (3, 1, 0, 1)
    assert rp.timestamp == "2023-11-14T22:13:20"
    cases = {c.name: c for c in rp}
    assert list(cases) == [
        "conn_per_s [accept mode=reuseport workers=2]",
        "conn_per_s [accept mode=shared workers=2]",
        "latency_p99_us [accept mode=shared workers=2]",
    ]
    assert {c.classname for c in rp} == {"labctl.reuseport"}
    failed = cases["conn_per_s [accept mode=shared workers=2]"]
    (failure,) = failed.result
    assert isinstance(failure, Failure) and failure.type == "regression"
    assert failure.message == verdicts[1].reason
    assert "x0.50 beyond 10%" in failure.message and "p=3.7e-05 < 0.05" in failure.message
    skipped = cases["conn_per_s [accept mode=reuseport workers=2]"]
    assert isinstance(skipped.result[0], Skipped)
    assert "listen queue <overflowed>" in skipped.result[0].message
    passed = cases["latency_p99_us [accept mode=shared workers=2]"]
    assert passed.is_passed and "within 10%" in (passed.system_out or "")

    (run,) = list(suites["qdisc"])
    assert (run.classname, run.name) == ("labctl.qdisc", "run")
    assert isinstance(run.result[0], Error)
    assert run.result[0].message == "cli1: iperf3 exited 127: iperf3: not found"

    # the counts written agree with what the cases hold
    for suite in doc:
        attrs = (suite.tests, suite.failures, suite.errors, suite.skipped)
        suite.update_statistics()
        assert (suite.tests, suite.failures, suite.errors, suite.skipped) == attrs


def test_parses_back_with_elementtree() -> None:
    verdicts = nightly_verdicts()
    root = ET.fromstring(junit_xml("nightly", verdicts).encode())
    assert root.tag == "testsuites"
    assert {k: root.get(k) for k in ("tests", "failures", "errors", "skipped")} == {
        "tests": "3",
        "failures": "1",
        "errors": "0",
        "skipped": "1",
    }
    (suite,) = root.findall("testsuite")
    assert suite.get("timestamp") is None  # no timestamp given: none invented
    cases = suite.findall("testcase")
    assert len(cases) == 3 == len(suite.findall("testcase/system-out"))
    assert [f.get("type") for f in suite.iter("failure")] == ["regression"]
    assert len(suite.findall("testcase/skipped")) == 1
    out = suite.findtext("system-out") or ""
    assert out.splitlines() == [
        f"{c.get('name')}: {v.verdict}: {v.reason}"
        + (f" (warning: {v.warning})" if v.warning else "")
        for c, v in zip(cases, verdicts, strict=True)
    ]
    assert any(v.warning for v in verdicts) and "(warning: resolves only" in out


def test_no_verdicts_is_an_empty_valid_document() -> None:
    root = ET.fromstring(junit_xml("nightly", []).encode())
    assert (root.tag, root.get("tests"), list(root)) == ("testsuites", "0", [])


def test_odd_text_survives_and_a_verdict_without_config_is_named_by_its_metric() -> None:
    reason = "rx_pps: no valid trial tonight (1 invalid: pkt-gen: \x1b[31mfail\x1b[0m & <stop>)"
    v = MetricVerdict(
        "reuseport",
        "rx_pps",
        "",
        "higher",
        None,
        summarize([1e6, 1.1e6]),
        (3,),
        None,
        None,
        "no-data",
        reason,
    )
    text = junit_xml("nightly <lab>", [v], errors=[("reuseport", 'lock held by "cron" & co')])
    doc = JUnitXml.fromstring(text)
    (suite,) = doc
    names = [c.name for c in suite]
    assert names == ["run", "rx_pps"]
    assert (suite.tests, suite.errors, suite.skipped) == (2, 1, 1)
    skipped = [c for c in suite if c.name == "rx_pps"][0].result[0]
    assert "& <stop>" in skipped.message and "\x1b" not in skipped.message
    assert ET.fromstring(text.encode()).get("name") == "nightly <lab>"
