"""Every count says what it counts, and a percentage always agrees with the counts beside it
(the calibrate CLI's lines, the certificate's sentence)."""

import json
import re

import numpy as np
import pytest

from marc_ray import cli
from marc_ray.calibrate.wording import items_phrase, share_phrase
from marc_ray.cli import main


@pytest.fixture(autouse=True)
def only_calibration_commands(monkeypatch):
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("marc_ray.calibrate.cli",))


def _scores_with_ties(path, n_items=999, every=9, seed=0):
    """A scored file where one item in ``every`` has a tied human label (ties are decided items
    too: coverage counts them, the bound does not)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_items):
        confidence = float(rng.uniform(0.5, 1.0))
        pred = str(rng.choice(["a", "b"]))
        agree = rng.random() < 0.55 + 0.45 * confidence
        human = "tie" if i % every == 0 else (pred if agree else ("b" if pred == "a" else "a"))
        rows.append({"id": f"item-{i}", "conf": confidence, "pred": pred, "human_label": human})
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return rows


def test_cli_percentages_agree_with_the_counts_beside_them(tmp_path, capsys):
    rows = _scores_with_ties(tmp_path / "scores.jsonl")
    out = tmp_path / "out"
    assert main(["calibrate", str(tmp_path / "scores.jsonl"), "--confidence-column", "conf",
                 "--alpha", "0.2", "--delta", "0.1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    result = summary["results"][0]
    assert not result["abstains"]
    # "it decides 688 of 999 items (68.9%)": the share is exactly those two counts
    decided, total, shown = re.search(r"decides (\d+) of (\d+) items \(([\d.]+)%\)", printed).groups()
    assert int(total) == 999 and float(shown) == pytest.approx(100 * int(decided) / 999, abs=0.05)
    threshold = result["threshold"]
    assert int(decided) == sum(r["conf"] >= threshold for r in rows)
    # the items the bound counts are named as such, with the ties among the decided
    ties = sum(r["conf"] >= threshold and r["human_label"] == "tie" for r in rows)
    assert f"{result['n']} of them count for the guarantee ({ties} ties dropped, policy drop)" in printed
    assert result["n"] + ties == int(decided)
    # the closing line names every count: given, ties dropped, used
    n_ties = sum(r["human_label"] == "tie" for r in rows)
    assert (f"(calibrated on 999 calibration items, {n_ties} ties dropped (policy drop), "
            f"{999 - n_ties} used:") in printed
    assert result["sentence"] in printed  # summary.json says the same sentence


def test_phrases():
    assert items_phrase(419, 360, "drop") == "419 calibration items, 59 ties dropped (policy drop), 360 used"
    assert items_phrase(419, 419, "disagree") == "419 calibration items, all used"
    assert share_phrase(633, 999) == "633 of 999 items (63.4%)"
