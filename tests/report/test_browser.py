"""The nightly page in a real browser: Debian's chromium, headless, offline, from a file.

Chromium is not optional here (scripts/setup.sh installs it, CI too): a missing browser fails
the test instead of skipping it, so "the report renders" is never claimed untested.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

import pytest

from labctl.views.html import STATUS_COLORS, write_html
from labctl.views.plots import BASELINE_COLOR, SERIES_COLOR
from tests.report.synthetic import nightly_report

CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT = 120.0  # ~1 s on an idle 2-core machine; the lab tests may be running alongside
# Set to a path to keep the screenshot (CI artifact, or a human looking at it).
KEEP_SCREENSHOT = os.environ.get("LABCTL_KEEP_SCREENSHOT")


def chromium(args: Sequence[str], profile: Path) -> subprocess.CompletedProcess[str]:
    """Run headless chromium once, offline, in its own process group and a fresh profile."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/setup.sh (Debian package chromium)")
    profile.mkdir()
    argv = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",  # chromium refuses to run as root with its sandbox
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *args,
    ]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its renderer and helpers share this group: kill them all
    )
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"chromium did not finish within {TIMEOUT:g} s: {err[-2000:]}")
    finally:
        # Its zygote helpers outlive the browser process for a moment: they go with the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, f"chromium exited {proc.returncode}: {err[-2000:]}"
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def fake_export(run_id: int, fmt: str) -> str:
    return f"{fmt} of run {run_id}\n"


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A night with a history of four runs and three regressions (a sweep of 1, 2, 4 workers)."""
    report = nightly_report(workers=(1, 2, 4))
    return write_html(report, tmp_path_factory.mktemp("report") / "nightly.html", fake_export)


@pytest.fixture(scope="module")
def first_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first run of a history: nothing to compare with."""
    report = nightly_report(tonight_id=1, past_runs=0, workers=(1, 2, 4))
    return write_html(report, tmp_path_factory.mktemp("first") / "run-1.html", fake_export)


def dom(page: Path, profile: Path) -> str:
    done = chromium(["--virtual-time-budget=5000", "--dump-dom", page.as_uri()], profile)
    assert "Content Security Policy" not in done.stderr  # nothing of ours was blocked
    return done.stdout


def body_data(text: str, name: str) -> str:
    body = re.search(r"<body[^>]*>", text)
    assert body, text[:500]
    found = re.search(rf'data-{name}="([^"]*)"', body.group(0))
    assert found, body.group(0)
    return found.group(1)


def visible(text: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", text).split())


def test_every_image_loads(page: Path, tmp_path: Path) -> None:
    text = dom(page, tmp_path / "profile")
    # The page's own script counted decoded images after "load": the main plot, a strip plot
    # per metric (2) and a trend plot per metric (2).
    assert body_data(text, "images-ok") == "5/5"


def test_the_story_is_told_at_the_top(page: Path, tmp_path: Path) -> None:
    text = dom(page, tmp_path / "profile")
    shown = visible(text)
    assert "3 regressions" in shown
    assert re.search(
        r"conn_per_s accept mode=reuseport workers=1 [\d,]+ → [\d,]+ ×0\.\d{3} [\d.e-]+ regression",
        shown,
    ), shown[:800]
    headline_at, plot_at, table_at = map(int, body_data(text, "layout").split(","))
    assert 0 <= headline_at < plot_at < table_at  # as laid out, not only in source order
    trend_alts = re.findall(r'alt="([^"]*against the date)"', text)
    assert len(trend_alts) == 2  # conn_per_s and latency_p99_us, five runs each
    assert "changed: labctl 0.9.0" in shown


def test_raw_trial_links_resolve_to_files_beside_the_page(page: Path, tmp_path: Path) -> None:
    hrefs = re.findall(r'<a class="raw" href="([^"]+)"', dom(page, tmp_path / "profile"))
    assert hrefs == ["run-5-trials.csv", "run-5-trials.jsonl"]
    for href in hrefs:
        target = Path(urllib.parse.urlparse(urllib.parse.urljoin(page.as_uri(), href)).path)
        fmt = href.rsplit(".", 1)[1]
        assert target.parent == page.parent and target.read_text() == f"{fmt} of run 5\n"


def test_a_first_run_says_no_baseline_and_draws_no_trend(first_page: Path, tmp_path: Path) -> None:
    text = dom(first_page, tmp_path / "profile")
    shown = visible(text)
    assert "no baseline yet" in shown and 'class="badge badge-no-baseline"' in text
    assert "Trends appear after 3 runs" in shown
    assert not re.search(r'alt="[^"]*against the date"', text)
    assert body_data(text, "images-ok") == "3/3"  # the main plot and two strip plots
    headline_at, plot_at, table_at = map(int, body_data(text, "layout").split(","))
    assert 0 <= headline_at < plot_at < table_at
    assert (first_page.parent / "run-1-trials.csv").is_file()


def _pixels_near(image: object, color: str, tolerance: float = 6 / 255) -> int:
    import numpy as np

    rgb = np.asarray(image)[..., :3]
    target = np.array([int(color[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return int(np.all(np.abs(rgb - target) <= tolerance, axis=-1).sum())


def test_screenshot_shows_the_badge_and_the_plots(page: Path, tmp_path: Path) -> None:
    import matplotlib.image

    shot = tmp_path / "nightly.png"
    chromium(
        [f"--screenshot={shot}", "--window-size=1280,3600", page.as_uri()], tmp_path / "profile"
    )
    if KEEP_SCREENSHOT:
        shutil.copyfile(shot, KEEP_SCREENSHOT)
    image = matplotlib.image.imread(shot)
    assert image.shape[:2] == (3600, 1280)
    assert image[..., :3].std() > 0.05  # not a blank page
    # The red badge is ~150 x 34 px (~5500 px of red with the plots' red marks); the blue
    # series (~2000 px) and the orange baseline markers (~250 px) appear only in the plots.
    # Thresholds at about half: fonts may differ a little, a page without plots has none.
    assert _pixels_near(image, STATUS_COLORS["regression"]) > 3000
    assert _pixels_near(image, SERIES_COLOR) > 1000
    assert _pixels_near(image, BASELINE_COLOR) > 120


def test_a_first_run_is_never_painted_green(first_page: Path, tmp_path: Path) -> None:
    import matplotlib.image

    shot = tmp_path / "first.png"
    chromium(
        [f"--screenshot={shot}", "--window-size=1280,1200", first_page.as_uri()],
        tmp_path / "profile",
    )
    image = matplotlib.image.imread(shot)
    assert _pixels_near(image, STATUS_COLORS["no-baseline"]) > 3000  # the badge and the bar
    assert _pixels_near(image, STATUS_COLORS["ok"]) < 50
    assert _pixels_near(image, STATUS_COLORS["regression"]) < 50
