"""The report says what each number counts, and nothing it shows misleads (issue 20, item 6)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from marc_ray.contracts import ItemSet
from marc_ray.report import ReportInputs, summarize, write_report

from report_toys import toy_items


def test_counts_say_what_they_count(single, tmp_path):
    certificate, (confidence, pred, human) = single
    n_ties = int((human == "tie").sum())
    assert n_ties > 0
    paths = write_report(ReportInputs(certificate, ItemSet("calibration", confidence, pred, human)),
                         tmp_path)
    page = open(paths["html"], encoding="utf-8").read()
    markdown = open(paths["markdown"], encoding="utf-8").read()
    header = (f"{len(confidence)} calibration items, {n_ties} ties dropped (policy drop), "
              f"{len(confidence) - n_ties} used")
    assert header in page and header in markdown
    # the size diagnostic names the same count of items used, not a bare "calibration set"
    assert f"The bound counts {len(confidence) - n_ties} calibration items" in page
    assert "The calibration set has" not in page
    # every "k of n ... (p%)" printed agrees: p = k / n
    for text in (page, markdown):
        shares = re.findall(r"(\d+) of (\d+) [^()]*?\(([\d.]+)%\)", text)
        assert shares
        for count, total, shown in shares:
            assert float(shown) == pytest.approx(100 * int(count) / int(total), abs=0.05)
