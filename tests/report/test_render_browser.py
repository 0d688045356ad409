"""The HTML report renders in headless Chromium: every figure decodes, no console error."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from marc_ray.report import ItemSet, ReportInputs, write_report

from report_toys import toy_items

CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(name)), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0"]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                                "(apt-get install -y chromium); the HTML is checked without a browser "
                                "in test_report.py")


@pytest.fixture(scope="module")
def report_html(single, tmp_path_factory):
    certificate, (confidence, pred, human) = single
    out = tmp_path_factory.mktemp("report")
    paths = write_report(ReportInputs(certificate, ItemSet("calibration", confidence, pred, human),
                                      ItemSet("test", *toy_items(200, seed=3)),
                                      measures={"conf_marc": {"auroc": 0.8}}), out)
    return paths["html"]


def chromium(html: str, tmp_path, *extra: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra,
                           "file://" + os.path.abspath(html)],
                          capture_output=True, text=True, timeout=120)


def test_every_figure_decodes(report_html, tmp_path):
    result = chromium(report_html, tmp_path, "--virtual-time-budget=5000", "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    marker = re.search(r'data-render-check="([^"]+)"', result.stdout)
    assert marker is not None, "the page's load handler did not run"
    assert marker.group(1) == "ok:6", marker.group(1)  # six figures, none broken
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console


def test_screenshot(report_html, tmp_path):
    shot = tmp_path / "report.png"
    result = chromium(report_html, tmp_path, "--window-size=1200,2400", f"--screenshot={shot}")
    assert result.returncode == 0, result.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000  # a page with figures, not blank
    keep = os.environ.get("MARC_RAY_SCREENSHOT_DIR")
    if keep:  # CI can keep the screenshot as an artifact
        shutil.copy(shot, os.path.join(keep, "report.png"))
