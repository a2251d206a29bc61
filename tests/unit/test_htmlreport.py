"""The nightly HTML page: self-contained, escaped, and honest about missing data."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import math
import re
import stat
from html.parser import HTMLParser
from pathlib import Path

import pytest

from labctl import __version__
from labctl.experiments import find
from labctl.experiments.summary import summarize_run
from labctl.metrics import PlotSpec
from labctl.paths import TEMPLATES
from labctl.results.history import HistoryPoint, RunComparison
from labctl.results.regress import MetricVerdict
from labctl.results.stamps import RunStamp, run_stamps
from labctl.results.store import ResultsStore, TrialRecord
from labctl.views.headline import headline
from labctl.views.html import STATUS_COLORS, NightlyReport, render_html, write_html
from labctl.views.plots import main_plot
from labctl.views.raw_trials import trials_text
from labctl.views.trends import stamp_marks, trend_charts
from tests.report.synthetic import (
    SPEC,
    T0,
    hosts,
    nightly_report,
    reuseport_section,
    run_params,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RAW_LINK = r"run-\d+-trials\.(csv|jsonl)"
HOSTILE = "<script>alert(1)</script>"


class Page(HTMLParser):
    """What a browser would fetch or run: every URL-bearing attribute, every element."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.rows: list[tuple[str, str]] = []  # (class of a <tr>, its text)
        self.data: dict[str, str] = {}  # text inside <style> and <script>
        self.text: list[str] = []  # everything else a reader sees, attributes included
        self.text_nodes: list[str] = []  # text between tags only: shown, never fetched
        self._row: list[str] | None = None
        self._row_class = ""
        self._in: str | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self.text += [v for k, v in attrs if v and k not in ("src", "content")]
        if tag == "tr":
            self._row, self._row_class = [], dict(attrs).get("class") or ""
        if tag in ("style", "script"):
            self._in = tag

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr" and self._row is not None:
            self.rows.append((self._row_class, " ".join(" ".join(self._row).split())))
            self._row = None
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._row is not None:
            self._row.append(data)
        if self._in:
            self.data[self._in] = self.data.get(self._in, "") + data
        else:
            self.text.append(data)
            self.text_nodes.append(data)

    def attrs(self, tag: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag]


@pytest.fixture(scope="module")
def report_html() -> str:
    return render_html(nightly_report())


def test_every_image_is_an_embedded_png(report_html: str) -> None:
    imgs = Page(report_html).attrs("img")
    # 2 metrics x 2 configs: the main plot, two strip plots and two trend plots (per metric)
    assert len(imgs) == 5
    for img in imgs:
        src = img["src"] or ""
        assert src.startswith("data:image/png;base64,"), src[:40]
        png = base64.b64decode(src.removeprefix("data:image/png;base64,"), validate=True)
        assert png.startswith(PNG_MAGIC) and len(png) > 1000
        assert img["alt"]


def test_nothing_is_fetched_from_anywhere(report_html: str) -> None:
    page = Page(report_html)
    # A URL may be shown as text (netmap's source stamp is one) but never sit in markup,
    # style or script, where a browser would follow it.
    url = re.compile(r"https?:|//[a-z0-9.-]+\.[a-z]{2,}/", re.I)
    shown = "\n".join(page.text_nodes)
    assert "https://github.com/luigirizzo/netmap" in shown  # the test sees one, as text
    assert len(url.findall(report_html)) == len(url.findall(shown))
    assert not re.search(r"url\(|@import", report_html, re.I)
    assert not page.attrs("link") and not page.attrs("iframe") and not page.attrs("object")
    for tag, attrs in page.tags:
        for name in ("src", "href", "srcset", "action", "poster", "data"):
            value = attrs.get(name)
            if value is None:
                continue
            # The raw trials beside the page: a link the reader follows, never a fetch.
            raw = tag == "a" and name == "href" and re.fullmatch(RAW_LINK, value)
            assert raw or value.startswith(("data:image/png;base64,", "#")), (tag, name, value)
    scripts = page.attrs("script")
    assert len(scripts) == 1 and "src" not in scripts[0]


def test_policy_allows_exactly_the_inline_style_and_script(report_html: str) -> None:
    page = Page(report_html)
    [meta] = [m for m in page.attrs("meta") if m.get("http-equiv") == "Content-Security-Policy"]
    csp = meta["content"] or ""
    assert "default-src 'none'" in csp and "img-src data:" in csp
    for tag in ("style", "script"):
        digest = hashlib.sha256(page.data[tag].encode()).digest()
        assert f"'sha256-{base64.b64encode(digest).decode()}'" in csp, tag
    assert "unsafe-inline" not in csp
    assert not any("style" in attrs for _, attrs in page.tags)  # the policy would block it


def test_hostile_strings_are_escaped() -> None:
    section = reuseport_section(params=run_params(backlog=5) | {"note": HOSTILE, HOSTILE: 1})
    trials = list(section.trials)
    trials[3] = dataclasses.replace(trials[3], valid=False, reason=HOSTILE)
    hosts = dict(section.hosts) | {HOSTILE: ('"role" & <b>', {"kernel_release": HOSTILE})}
    section = dataclasses.replace(
        section, trials=trials, hosts=hosts, history_note=HOSTILE, changes=[HOSTILE]
    )
    report = NightlyReport(
        title=HOSTILE, started=0.0, finished=1.0, status=HOSTILE, sections=[section],
        notes=[HOSTILE, "a & b"],
    )  # fmt: skip
    text = render_html(report)
    assert "<script>alert" not in text
    assert text.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 8
    assert "&#34;role&#34; &amp; &lt;b&gt;" in text and "a &amp; b" in text
    assert len(Page(text).attrs("script")) == 1
    assert 'class="badge badge-other"' in text  # an unknown status gets the neutral badge


def test_regression_rows_are_highlighted(report_html: str) -> None:
    rows = Page(report_html).rows
    flagged = [text for cls, text in rows if cls == "verdict-regression"]
    assert len(flagged) == 1  # the verdict table's row; the headline's is "deciding ..."
    [deciding] = [text for cls, text in rows if cls == "deciding verdict-regression"]
    assert deciding == (
        "conn_per_s accept mode=reuseport workers=2 77,016 → 57,642 ×0.748 2.6e-08 regression"
    )
    assert flagged[0].startswith("conn_per_s accept mode=reuseport workers=2")
    assert "regression" in flagged[0] and "0.748" in flagged[0]
    assert sum(cls == "verdict-ok" for cls, _ in rows) == 3
    assert 'class="badge badge-regression"' in report_html
    css = Page(report_html).data["style"]
    assert re.search(r"tr\.verdict-regression td \{ background: #[0-9a-f]{6}", css)


def test_a_metric_without_data_shows_dashes_not_nan() -> None:
    section = reuseport_section()
    empty = MetricVerdict(
        "reuseport", "rx_pps", "pktgen", "higher", None, None, (), None, None, "no-data",
        "rx_pps: no valid trial tonight (1 invalid: netmap not loaded)",
    )  # fmt: skip
    nan_trial = TrialRecord(
        99, "accept", False, {"mode": "shared", "workers": 2}, 0.0, 1.0, True, "",
        {"conn_per_s": float("nan")},
    )  # fmt: skip
    section = dataclasses.replace(
        section,
        verdicts=[*section.verdicts, empty],
        trials=[*section.trials, nan_trial],
        trends={
            **section.trends,
            ("rx_pps", "pktgen"): [HistoryPoint(4, 0.0, None), HistoryPoint(5, 1.0, None)],
        },
    )
    text = render_html(NightlyReport("n", 0.0, None, "failed", [section]))
    visible = " ".join(Page(text).text)
    assert not re.search(r"\b(nan|inf|none|null)\b", visible, re.I), re.findall(
        r".{40}\b(?:nan|inf|none|null)\b.{40}", visible, re.I
    )
    [row] = [t for cls, t in Page(text).rows if cls == "verdict-no-data"]
    assert row == "rx_pps pktgen ↑ higher – – 0 – 0 – – – – – no-data"
    [why] = [t for cls, t in Page(text).rows if cls == "why verdict-no-data-why"]
    assert why.startswith("rx_pps: no valid trial tonight")
    assert "rx_pps: no valid trial and no baseline" in text
    assert "not drawn yet: rx_pps · pktgen." in " ".join(text.split())
    assert len(Page(text).attrs("img")) == 5  # nothing drawn for the empty metric
    assert "still running" in text and 'class="badge badge-failed"' in text


def test_a_failed_night_without_experiments_still_renders() -> None:
    text = render_html(
        NightlyReport("nightly", 0.0, 30.0, "failed", [], notes=["lab lock held by ci@x"])
    )
    assert "No experiment ran." in text and "lab lock held by ci@x" in text
    assert 'class="badge badge-failed"' in text and not Page(text).attrs("img")


def test_ten_trend_plots_stay_under_a_megabyte() -> None:
    section = reuseport_section(tonight_id=12, past_runs=11)
    trends = dict(section.trends)
    for i in range(6):  # ten in all, each with a twelve-run history
        trends[(f"metric_{i}", "accept mode=shared workers=2")] = list(trends.values())[i % 4]
    text = render_html(
        NightlyReport("n", 0.0, 1.0, "ok", [dataclasses.replace(section, trends=trends)])
    )
    assert len(Page(text).attrs("img")) == 1 + 2 + 8  # main, strips, a trend plot per metric
    assert len(text.encode()) < 1_000_000


def test_write_is_atomic_and_readable(tmp_path: Path) -> None:
    report = NightlyReport("n", 0.0, 1.0, "ok", [])
    path = write_html(report, tmp_path / "out" / "report.html")
    assert path.read_text(encoding="utf-8") == render_html(report)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]  # no temp file left


def test_a_failed_render_leaves_the_old_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "report.html"
    path.write_text("yesterday")

    def broken_replace(src: str, dst: Path) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("labctl.views.raw_trials.os.replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_html(NightlyReport("n", 0.0, 1.0, "ok", []), path)
    assert path.read_text() == "yesterday"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_sections_are_dataclasses_of_the_documented_shape() -> None:
    fields = [f.name for f in dataclasses.fields(RunComparison)]
    assert fields == [
        "run", "trials", "hosts", "fingerprint", "history", "history_note", "verdicts",
        "changes", "trends", "spec",
    ]  # fmt: skip
    assert [f.name for f in dataclasses.fields(HistoryPoint)] == ["run_id", "started", "median"]


def test_dollar_signs_in_names_do_not_break_the_plots() -> None:
    # matplotlib reads "$...$" as math; a lone "$" in a metric name would raise mid-render.
    section = reuseport_section()
    verdicts = [dataclasses.replace(v, metric=v.metric + "_$", config="$" + v.config) for v in
                section.verdicts]  # fmt: skip
    trends = {(m + "_$", "$" + c): pts for (m, c), pts in section.trends.items()}
    text = render_html(
        NightlyReport(
            "n", 0.0, 1.0, "ok", [dataclasses.replace(section, verdicts=verdicts, trends=trends)]
        )
    )
    assert len(Page(text).attrs("img")) == 5 and "conn_per_s_$" in text


# ---------------------------------------------------------------------------- the headline


def _first_run() -> RunComparison:
    return reuseport_section(tonight_id=1, past_runs=0)


def test_a_first_run_says_no_baseline_never_ok() -> None:
    top = headline("ok", [_first_run()])  # overall() says "ok" when nothing regressed
    assert (top.state, top.badge, top.text) == ("no-baseline", "no baseline", "no baseline yet")
    assert top.detail.startswith("no earlier run to compare with") and not top.rows
    text = render_html(NightlyReport("n", 0.0, 1.0, "ok", [_first_run()]))
    assert 'class="badge badge-no-baseline"' in text and 'class="badge badge-ok"' not in text
    assert "<title>n – no baseline yet</title>" in text
    assert STATUS_COLORS["no-baseline"] != STATUS_COLORS["ok"]


def test_a_quiet_night_is_all_within_noise_with_its_largest_changes() -> None:
    section = reuseport_section(slowdown=1.0)
    top = headline("ok", [section])
    assert (top.state, top.badge, top.text) == ("ok", "ok", "all within noise")
    assert top.detail.startswith("4 medians (metric × configuration) compared with 4 past runs")
    assert 1 <= len(top.rows) <= 3 and all(r.verdict == "ok" for r in top.rows)
    changes = [abs(math.log(r.ratio or 1)) for r in top.rows]
    assert changes == sorted(changes, reverse=True)


def test_regressions_are_counted_with_the_numbers_that_decided_them() -> None:
    section = reuseport_section(workers=(1, 2, 4))
    top = headline("regression", [section])
    assert (top.state, top.text) == ("regression", "3 regressions")
    for row in top.rows:
        assert row.verdict == "regression" and row.metric == "conn_per_s"
        assert row.before and row.after and row.after < row.before
        assert row.ratio == pytest.approx(row.after / row.before)
        assert row.p_value is not None and row.p_value < 0.05
    assert headline("regression", [reuseport_section()]).text == "1 regression"


def test_improvements_alone_are_good_news_with_their_numbers() -> None:
    top = headline("ok", [reuseport_section(slowdown=1.4)])
    assert (top.state, top.text) == ("ok", "no regression, 1 improvement")
    assert [(r.metric, r.config, r.verdict) for r in top.rows] == [
        ("conn_per_s", "accept mode=reuseport workers=2", "improvement")
    ]


def test_several_runs_are_named_in_the_headline() -> None:
    first = reuseport_section()
    second = dataclasses.replace(first, run=dataclasses.replace(first.run, id=6))
    text = render_html(NightlyReport("n", 0.0, 1.0, "regression", [first, second]))
    rows = [t for cls, t in Page(text).rows if cls == "deciding verdict-regression"]
    assert [r.split(" accept")[0] for r in rows] == [
        "reuseport run 5: conn_per_s", "reuseport run 6: conn_per_s",
    ]  # fmt: skip
    assert "2 regressions" in text


def test_a_failed_run_says_so_first() -> None:
    top = headline("failed", [reuseport_section()])
    assert (top.state, top.text) == ("failed", "run failed; 1 regression")
    assert headline("failed", []).detail == "no experiment finished"


def test_badge_colours_in_the_style_match_the_status_colours() -> None:
    css = (TEMPLATES / "report.css").read_text()
    for state, color in STATUS_COLORS.items():
        assert re.search(rf"\.badge-{state}[^{{]*\{{ background: {color}", css), state


# ---------------------------------------------------------------------------- the main plot


def test_each_experiment_declares_its_main_plot_as_data() -> None:
    plots = {name: find(name).spec.plot for name in ("reuseport", "pktgen", "qdisc")}
    assert plots["reuseport"] == PlotSpec(
        "accept", "workers", ("conn_per_s",), "mode", "accepting workers"
    )
    assert plots["pktgen"] == PlotSpec("pktgen", "size", ("rx_pps",), "mode", "packet size (bytes)")
    assert plots["qdisc"] == PlotSpec(
        "qdisc", "qdisc", ("throughput_mbps", "pps"), None, "root qdisc"
    )
    for name, plot in plots.items():
        spec = find(name).spec
        assert plot is not None and spec.kind(plot.kind) is not None, name
        for y in plot.y:
            metric = spec.metric(y)
            assert metric is not None and metric.unit, (name, y)  # the y axis says its unit


def _main_plot_then_verdicts(text: str) -> tuple[int, int]:
    return text.index('<img class="main-plot"'), text.index('<table class="verdicts">')


def test_the_main_plot_comes_first_with_the_history_beside() -> None:
    text = render_html(nightly_report(workers=(1, 2, 4)))
    plot_at, table_at = _main_plot_then_verdicts(text)
    assert text.index('id="headline"') < plot_at < table_at
    [img] = [i for i in Page(text).attrs("img") if i.get("class") == "main-plot"]
    assert img["alt"] == (
        "conn_per_s against accepting workers, one line per mode: tonight's medians with "
        "IQR bars, the history's medians beside them"
    )
    first = render_html(NightlyReport("n", 0.0, 1.0, "ok", [_first_run()]))
    [img] = [i for i in Page(first).attrs("img") if i.get("class") == "main-plot"]
    assert "history" not in (img["alt"] or "")  # no history on a first run


def test_no_main_plot_without_a_declared_one() -> None:
    section = dataclasses.replace(reuseport_section(), spec=dataclasses.replace(SPEC, plot=None))
    text = render_html(NightlyReport("n", 0.0, 1.0, "ok", [section]))
    assert 'class="main-plot"' not in text and '<table class="verdicts">' in text


# ---------------------------------------------------------------------------- trends


def _points(*medians: float | None) -> tuple[HistoryPoint, ...]:
    return tuple(HistoryPoint(i + 1, T0 + i * 86_400.0, m) for i, m in enumerate(medians))


def test_a_trend_line_needs_three_runs_with_a_median() -> None:
    trends = {
        ("conn_per_s", "a"): _points(1.0, 2.0),
        ("conn_per_s", "b"): _points(1.0, None, 2.0),
        ("latency", "a"): _points(1.0, 2.0, 3.0),
    }
    [chart] = trend_charts(trends, [], {}, {})
    assert chart.metric == "latency" and [line.config for line in chart.lines] == ["a"]
    trends[("conn_per_s", "b")] = _points(1.0, None, 2.0, 2.5)
    charts = trend_charts(trends, [], {}, {})
    assert [c.metric for c in charts] == ["conn_per_s", "latency"]
    assert charts[0].short == ("a",)  # named under the plot, not drawn


def test_a_first_run_has_no_trend_plot_and_says_when_they_come() -> None:
    text = render_html(NightlyReport("n", 0.0, 1.0, "ok", [_first_run()]))
    assert "Trends appear after 3 runs of this history (it has 1 with a median so far)." in text
    alts = [i["alt"] or "" for i in Page(text).attrs("img")]
    assert len(alts) == 3 and not any("against the date" in a for a in alts)


def test_kernel_and_labctl_changes_are_marked_where_they_change() -> None:
    pts = _points(1.0, 2.0, 3.0, 4.0)
    stamps = {
        1: RunStamp("6.1", "0.8"),
        2: RunStamp("6.1", ""),  # not recorded: no change either way
        3: RunStamp("6.1", "0.9"),
        4: RunStamp("6.5", "0.9"),
    }
    marks = stamp_marks(pts, stamps)
    assert [(m.run_id, m.label) for m in marks] == [(3, "labctl 0.9"), (4, "kernel 6.5")]
    # a store several labs share: where the lab changes is marked too (issue 19)
    labs = {
        n: dataclasses.replace(s, lab="lab-b" if n == 3 else "lab-a") for n, s in stamps.items()
    }
    assert [(m.run_id, m.label) for m in stamp_marks(pts, labs)] == [
        (3, "lab lab-b"), (3, "labctl 0.9"), (4, "lab lab-a"), (4, "kernel 6.5"),
    ]  # fmt: skip
    text = render_html(nightly_report())
    assert "changed: labctl 0.9.0" in text  # the synthetic history's upgrade, on each plot


def test_run_stamps_read_the_stored_kernel_and_version(tmp_path: Path) -> None:
    with ResultsStore(tmp_path / "labctl.db") as db:
        run_id = db.start_run("reuseport", run_params(), "inv", 1)
        db.add_hosts(run_id, hosts(kernel="6.1.0-26-amd64"))
        other = db.start_run("reuseport", run_params(), "inv", 1)
        db.add_hosts(other, {"srv1": ("server", {"kernel_release": "6.5"}), "cli1": ("client", {})})
        stamps = run_stamps(db, [run_id, other, run_id])
    assert stamps[run_id] == RunStamp("6.1.0-26-amd64", __version__, "inv")
    assert stamps[other].kernel == "6.5"


# ---------------------------------------------------------------------------- raw trials


def test_raw_trials_are_written_beside_the_page_and_linked(tmp_path: Path) -> None:
    asked: list[tuple[int, str]] = []

    def export(run_id: int, fmt: str) -> str:
        asked.append((run_id, fmt))
        return f"{fmt} of run {run_id}\n"

    path = write_html(nightly_report(), tmp_path / "out" / "nightly.html", export=export)
    assert asked == [(5, "csv"), (5, "jsonl")]
    hrefs = [a["href"] for a in Page(path.read_text()).attrs("a") if a.get("class") == "raw"]
    assert hrefs == ["run-5-trials.csv", "run-5-trials.jsonl"]
    for href in hrefs:
        assert (path.parent / str(href)).read_text().endswith("of run 5\n")
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "nightly.html", "run-5-trials.csv", "run-5-trials.jsonl",
    ]  # fmt: skip


def test_raw_trials_come_from_the_store(tmp_path: Path) -> None:
    with ResultsStore(tmp_path / "labctl.db") as db:
        run_id = db.start_run("reuseport", run_params(), "inv", 1)
        db.add_hosts(run_id, hosts())
        for t in reuseport_section().trials[:3]:
            db.add_trial(run_id, t)
        db.finish_run(run_id, "finished")
        csv_text = trials_text(db, run_id, "csv")
        lines = trials_text(db, run_id, "jsonl").splitlines()
    assert csv_text.splitlines()[0].startswith("run,experiment,labctl_version,time,kernel")
    rows = [json.loads(line) for line in lines]
    assert {r["run"] for r in rows} == {run_id} and {r["metric"] for r in rows} == {
        "conn_per_s", "latency_p99_us",
    }  # fmt: skip


def _trial(
    seq: int, kind: str, params: dict[str, object], metrics: dict[str, float]
) -> TrialRecord:
    return TrialRecord(seq, kind, False, params, 0.0, 1.0, True, "", metrics)


METRIC_OF = {"tcp": "throughput_mbps", "udp": "pps"}


@pytest.mark.parametrize("name", ["pktgen", "qdisc"])
def test_the_other_experiments_main_plots_draw(name: str) -> None:
    spec = find(name).spec
    assert spec.plot is not None
    if name == "pktgen":  # pps against packet size, a line per mode
        configs = [(m, s) for m in ("native", "generic") for s in (60, 1514)] * 3
        trials = [
            _trial(i, "pktgen", {"mode": m, "size": s}, {"rx_pps": 1e6 / s * (1 + i % 3 / 50)})
            for i, (m, s) in enumerate(configs)
        ]
        history = {("rx_pps", ("native", 60)): 40_000.0}
    else:  # bars per qdisc, a panel per metric
        pairs = [(p, q) for p in ("tcp", "udp") for q in ("noqueue", "pfifo")] * 3
        trials = [
            _trial(i, "qdisc", {"proto": p, "qdisc": q}, {METRIC_OF[p]: 900.0 + i})
            for i, (p, q) in enumerate(pairs)
        ]
        history = {("pps", ("udp", "pfifo")): 950.0}
    rows = summarize_run(spec, trials)
    src = main_plot(spec.plot, rows, history, name)
    png = base64.b64decode(src.removeprefix("data:image/png;base64,"), validate=True)
    assert png.startswith(PNG_MAGIC) and len(png) > 5000
    assert main_plot(spec.plot, [], {}, name) == ""  # no valid trial: nothing drawn


def test_a_change_too_few_trials_can_judge_is_undecided_never_ok() -> None:
    section = reuseport_section()
    verdicts = [
        dataclasses.replace(v, verdict="undecided") if v.verdict == "regression" else v
        for v in section.verdicts
    ]
    undecided = dataclasses.replace(section, verdicts=verdicts)
    top = headline("ok", [undecided])  # overall() says "ok": undecided is no regression
    assert (top.state, top.badge, top.text) == (
        "undecided",
        "undecided",
        "1 change undecided at this n",
    )
    assert [r.verdict for r in top.rows] == ["undecided"] and "reach alpha" in top.detail
    text = render_html(NightlyReport("n", 0.0, 1.0, "ok", [undecided]))
    assert 'class="badge badge-undecided"' in text and 'class="badge badge-ok"' not in text
