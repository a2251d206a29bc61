"""The nightly HTML page: self-contained, escaped, and honest about missing data."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
import stat
from html.parser import HTMLParser
from pathlib import Path

import pytest

from labctl.results.history import HistoryPoint, RunComparison
from labctl.results.regress import MetricVerdict
from labctl.results.store import TrialRecord
from labctl.views.html import NightlyReport, render_html, write_html
from tests.report.synthetic import nightly_report, reuseport_section, run_params

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
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
    # 2 metrics x 2 configs: two strip plots (one per metric) and four trend plots
    assert len(imgs) == 6
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
            if value is not None:
                assert value.startswith(("data:image/png;base64,", "#")), (tag, name, value[:40])
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
    assert len(flagged) == 1
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
    assert row.startswith("rx_pps pktgen ↑ higher – – 0 – 0 – – – – – no-data rx_pps: no valid")
    assert "rx_pps: no valid trial and no baseline" in text
    assert "rx_pps · pktgen: no median in 2 runs" in text
    assert len(Page(text).attrs("img")) == 6  # nothing drawn for the empty metric
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
    assert len(Page(text).attrs("img")) == 12
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

    monkeypatch.setattr("labctl.views.html.os.replace", broken_replace)
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
    assert len(Page(text).attrs("img")) == 6 and "conn_per_s_$" in text
