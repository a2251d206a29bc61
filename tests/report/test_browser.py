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


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_html(nightly_report(), tmp_path_factory.mktemp("report") / "nightly.html")


def test_every_image_loads(page: Path, tmp_path: Path) -> None:
    done = chromium(
        ["--virtual-time-budget=5000", "--dump-dom", page.as_uri()], tmp_path / "profile"
    )
    body = re.search(r"<body[^>]*>", done.stdout)
    assert body, done.stdout[:500]
    # The page's own script counted decoded images after "load"; 6 = 2 strip + 4 trend plots.
    assert 'data-images-ok="6/6"' in body.group(0), body.group(0)
    assert "Content Security Policy" not in done.stderr  # nothing of ours was blocked


def _pixels_near(image: object, color: str, tolerance: float = 6 / 255) -> int:
    import numpy as np

    rgb = np.asarray(image)[..., :3]
    target = np.array([int(color[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return int(np.all(np.abs(rgb - target) <= tolerance, axis=-1).sum())


def test_screenshot_shows_the_badge_and_the_plots(page: Path, tmp_path: Path) -> None:
    import matplotlib.image

    shot = tmp_path / "nightly.png"
    chromium(
        [f"--screenshot={shot}", "--window-size=1280,2400", page.as_uri()], tmp_path / "profile"
    )
    if KEEP_SCREENSHOT:
        shutil.copyfile(shot, KEEP_SCREENSHOT)
    image = matplotlib.image.imread(shot)
    assert image.shape[:2] == (2400, 1280)
    assert image[..., :3].std() > 0.05  # not a blank page
    # The red badge is ~150 x 34 px (~5500 px of red with the plots' red marks); the blue
    # series (~2000 px) and the orange baseline markers (~250 px) appear only in the plots.
    # Thresholds at about half: fonts may differ a little, a page without plots has none.
    assert _pixels_near(image, STATUS_COLORS["regression"]) > 3000
    assert _pixels_near(image, SERIES_COLOR) > 1000
    assert _pixels_near(image, BASELINE_COLOR) > 120
