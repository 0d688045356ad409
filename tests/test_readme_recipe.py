"""The README's "Run it on your data" recipe, run as written on PandaLM (issue 20, defect 1).

Replayed PandaLM verdicts have no split. Before, ``fit`` trained on 714 of the 999 rows (a null
split counted as training) and ``calibrate`` then certified on all 999: the confidence model
was certified on the rows it was trained on, and no command said so. Now the recipe reaches a
certificate whose calibration rows are disjoint from the model's training and validation rows,
and a model trained on every row is refused at calibrate (exit 2).
"""

import json
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from marc_ray.cli import main
from marc_ray.contracts import Certificate
from marc_ray.contracts.provenance import provenance_from_metadata, seen_rows

README = Path(__file__).resolve().parents[1] / "README.md"


def recipe() -> list[str]:
    """The commands of the README's "Run it on your data" block, continuation lines joined;
    the annotate step (a GPU and a model) replaced by the replay line the block gives for it."""
    text = README.read_text()
    block = text[text.index("### Run it on your data"):]
    block = block[block.index("```bash") + len("```bash"):]
    block = block[:block.index("```")]
    joined = re.sub(r"\\\n\s*", " ", block)
    commands, replay = [], None
    for line in joined.splitlines():
        line = line.strip()
        stand_in = re.search(r"#\s*(marc-ray datasets replay .*)$", line)
        if stand_in:
            replay = stand_in.group(1).rstrip(")").strip()
        elif line.startswith("marc-ray"):
            commands.append(line.split("  #")[0].strip())
    assert replay is not None and commands[0].startswith("marc-ray annotate")
    return [replay] + commands[1:]


@pytest.mark.slow
def test_readme_recipe_reaches_a_valid_certificate_as_written(shared_data, tmp_path, monkeypatch,
                                                              capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MARC_RAY_SHARED_DATA", str(shared_data))
    for command in recipe():
        argv = shlex.split(command)[1:]
        if argv[0] == "apply":  # new items scored the same way: here, the scored items again
            shutil.copy("out/scored.parquet", "new_scored.parquet")
        assert main(argv) == 0, command
    out = capsys.readouterr().out
    assert "the file declares no split: drew one" in out
    assert "certificate provenance: digest" in out

    scored = pq.read_table("out/scored.parquet", columns=["id", "split"])
    ids = np.asarray(scored.column("id").to_pylist(), dtype=object)
    calibration = ids[np.asarray(scored.column("split").to_pylist(), dtype=object) == "calibration"]
    model = json.loads(Path("out/marc/config.json").read_text())
    trained = model["provenance"]["conf_marc: trained"]
    validated = model["provenance"]["conf_marc: validated"]
    certificate = Certificate.read("out/cal/certificate.json")
    # the certificate was computed on the held-out rows only, and they meet no fitted row
    assert certificate.n_calibration == calibration.size > 400
    seen, per_role = seen_rows({"trained": trained, "validated": validated}, calibration)
    assert not seen.any(), per_role
    drawn = pq.read_table("out/marc/split.parquet").to_pydict()
    held = {i for i, s in zip(drawn["id"], drawn["split"]) if s == "calibration"}
    assert held == set(calibration.tolist())
    assert trained["count"] + validated["count"] <= ids.size - calibration.size
    assert certificate.provenance["roles"]["gpt-3.5-turbo: conf_marc: trained"]["digest"] == trained["digest"]
    assert certificate.stages[0]["binding"]["confidence_model_hash"]


@pytest.mark.slow
def test_a_model_trained_on_every_row_is_refused_at_calibrate(shared_data, tmp_path, capsys):
    """Defect 1 on the Python API's side: ``MarcConfidence.fit`` on a file without a split trains
    on every row it is given; scored and calibrated on the same file, calibrate refuses."""
    from marc_ray.fit import FitConfig, MarcConfidence

    annotations = tmp_path / "annotations.parquet"
    assert main(["datasets", "replay", "pandalm", str(annotations), "--target", "gpt-3.5-turbo",
                 "--path", str(shared_data / "pandalm")]) == 0
    # the command line never trains on every row of such a file: tune refuses it
    assert main(["tune", str(annotations), "--out", str(tmp_path / "tuned")]) == 2
    assert "declares no split" in capsys.readouterr().err
    MarcConfidence(FitConfig(epochs=3)).fit(str(annotations)).save(tmp_path / "marc")
    assert main(["score", str(annotations), "--model", str(tmp_path / "marc"),
                 "--out", str(tmp_path / "scored.parquet")]) == 0
    metadata = pq.read_schema(tmp_path / "scored.parquet").metadata
    assert provenance_from_metadata(metadata, "conf_marc")["conf_marc: trained"]["count"] > 500
    capsys.readouterr()
    code = main(["calibrate", str(tmp_path / "scored.parquet"), "--confidence-column", "conf_marc",
                 "--alpha", "0.15", "--out", str(tmp_path / "cal")])
    error = capsys.readouterr().err.strip()
    assert code == 2 and not (tmp_path / "cal").exists()
    assert re.search(r"\d+ of 999 calibration rows shaped what the certificate relies on", error)
    assert "first id 'pandalm-" in error and "--exclude-seen-rows" in error
