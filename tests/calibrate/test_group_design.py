"""Per-group designs (calibrate.design with calibrate.by, calibrate/group_design.py): each
group's grid, start and stage split come from its own training rows and are recorded in its
certificate entry; a group with too few training rows keeps the fixed procedure and says so;
the whole per-group procedure keeps the simultaneous guarantee over seeded repetitions."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from marc_ray.calibrate.certify import Stage, certify
from marc_ray.calibrate.config import CalibrateConfig
from marc_ray.calibrate.design import MIN_TRAINING_ROWS, design_stages, design_validity
from marc_ray.calibrate.generated import piled_up_groups
from marc_ray.calibrate.group_design import FALLBACK, design_groups
from marc_ray.calibrate.groups import group_deltas
from marc_ray.calibrate.stage import calibrate_stage
from marc_ray.contracts import JUDGE_METADATA_KEY, Certificate

ALPHA, DELTA = 0.15, 0.1


def two_groups(n_a: int, n_b: int, seed: int, prefix: str) -> dict:
    """Group "A": judges piled up near 1 (a weak and a strong one); group "B": the same judges
    on other items, much stronger there (``calibrate.generated``, as the benchmark)."""
    return piled_up_groups({"A": n_a, "B": n_b}, seed, prefix=prefix)


def test_each_group_is_designed_on_its_own_training_rows():
    train = two_groups(600, 400, 0, "t")
    calibration_groups = np.array(["A"] * 300 + ["B"] * 200, dtype=object)
    deltas = group_deltas(["A", "B"], DELTA)
    designs = design_groups(train, calibration_groups, ALPHA, deltas, names=["weak", "strong"],
                            costs=[1, 10], delta_split="optimised")
    for group, n_calibration in (("A", 300), ("B", 200)):
        rows = train["groups"] == group
        part = {k: v[rows] for k, v in train.items() if k != "groups"}
        chosen, grids = design_stages(part, n_calibration, ALPHA, deltas[group], costs=[1, 10],
                                      delta_split="optimised", drop=False)
        design = designs[group]
        assert design["delta_split"] == chosen.delta_weights
        assert [np.asarray(g) for g, _ in design["stage_grids"]][0].tolist() == np.asarray(grids[0].grid).tolist()
        record = design["record"]
        assert record["source"] == "training rows of this group" and record["order"] == ["weak", "strong"]
        # the grid's source rows are this group's training rows only
        assert design["stage_grids"][0][0].source_ids <= set(train["ids"][rows].tolist())
    assert designs["A"]["record"]["stage_grids"][0]["start"] != designs["B"]["record"]["stage_grids"][0]["start"]
    with pytest.raises(ValueError, match="keeps every judge in the given order"):
        design_groups(train, calibration_groups, ALPHA, deltas, order="cost", costs=[1, 10])
    with pytest.raises(ValueError, match="needs the training rows' groups"):
        design_groups({k: v for k, v in train.items() if k != "groups"}, calibration_groups, ALPHA, deltas)


def test_certify_records_each_groups_design_and_falls_back_where_rows_are_few():
    train = two_groups(600, MIN_TRAINING_ROWS - 5, 1, "t")  # group B: too few training rows
    calibration = two_groups(400, 300, 2, "c")
    stages = [Stage(name, "conf_simulated", calibration["confidence"][:, j], calibration["pred"][:, j])
              for j, name in enumerate(["weak", "strong"])]
    certified = certify(stages, calibration["human_label"], calibration["ids"], alpha=ALPHA,
                        delta=DELTA, groups=calibration["groups"], by="group",
                        design={"train": train, "costs": [1, 10], "drop": False,
                                "delta_split": "optimised"})
    certificate = certified.certificates[ALPHA]
    values = certificate.groups["values"]
    assert values["A"]["design"]["source"] == "training rows of this group"
    assert [s["delta"] for s in values["A"]["stages"]] == pytest.approx(
        [DELTA / 2 * w for w in values["A"]["design"]["delta_weights"]])
    assert values["B"]["design"] == {"source": FALLBACK, "training_rows": MIN_TRAINING_ROWS - 5,
                                     "usable_training_rows": MIN_TRAINING_ROWS - 5,
                                     "min_training_rows": MIN_TRAINING_ROWS}
    assert [s["delta"] for s in values["B"]["stages"]] == pytest.approx([DELTA / 4, DELTA / 4])
    assert "per-group designs" in certificate.groups["delta_split"]
    assert certificate.extra["design"]["per_group"] is True
    assert certificate.provenance["roles"]["design: rows it read"]["count"] == len(train["ids"])


def _scored_files(tmp_path, data: dict, split: np.ndarray) -> list[str]:
    paths = []
    for j, name in enumerate(["weak", "strong"]):
        table = pa.table({"id": data["ids"].tolist(), "judge": [name] * len(split),
                          "pred": data["pred"][:, j].tolist(), "conf_simulated": data["confidence"][:, j],
                          "human_label": data["human_label"].tolist(), "split": split.tolist(),
                          "group": data["groups"].tolist()})
        path = tmp_path / f"{name}.parquet"
        pq.write_table(table.replace_schema_metadata(
            {JUDGE_METADATA_KEY: json.dumps({"name": name}).encode()}), path)
        paths.append(str(path))
    return paths


def test_the_pipeline_designs_per_group_with_calibrate_by(tmp_path):
    data = two_groups(900, 600, 3, "i")
    split = np.where(np.arange(1500) % 2 == 0, "train", "calibration").astype(object)
    paths = _scored_files(tmp_path, data, split)
    out = str(tmp_path / "certificate.json")
    calibrate_stage(CalibrateConfig(confidence="conf_simulated", by="group", design=True,
                                    costs=[1, 10]), ["weak", "strong"], paths, out,
                    model_folders=[None, None])
    values = Certificate.read(out).groups["values"]
    for group in ("A", "B"):
        record = values[group]["design"]
        assert record["source"] == "training rows of this group" and record["dropped"] == []
        assert record["training_rows"] == int(((data["groups"] == group) & (split == "train")).sum())


@pytest.mark.slow
@pytest.mark.parametrize("design", ["split", "population"])
def test_the_per_group_procedure_keeps_the_simultaneous_guarantee(design):
    data = two_groups(800, 500, 7, "v")
    repetitions = 200
    result = design_validity(data, ALPHA, DELTA, repetitions=repetitions, design=design,
                             costs=[1, 10], seed=5)
    slack = 3 * np.sqrt(DELTA * (1 - DELTA) / repetitions)
    assert result["success_rate"] >= 1 - DELTA - slack
    assert result["mean_coverage"] > 0.3
