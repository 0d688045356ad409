"""`marc-ray plan`'s expected cost per item (plan.expected_costs): the worst case before any
run, then the shares the test design predicts on the scored training items a run left; the
numbers recomputed from those files."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import yaml

from marc_ray.calibrate.config import CalibrateConfig
from marc_ray.calibrate.design import design_stages
from marc_ray.calibrate.stage import design_options, design_rows
from marc_ray.cli import main
from marc_ray.config import PipelineConfig
from marc_ray.contracts.align import aligned_sets
from marc_ray.demo import DemoSpec, write_demo
from marc_ray.plan import WORST_CASE, build_plan, format_plan
from replay_runs import write_replay_runs

pytestmark = pytest.mark.slow
COSTS = [1.0, 20.0]


def _runs(path: Path, rows: list[dict], good_kinds: tuple, seed: int) -> str:
    """A replay run table: confident and right on ``good_kinds`` items, unsure elsewhere."""
    def target(row, rng):
        a, b = (sum(v["label"] == x for v in row["human_votes"]) for x in "ab")
        label = "a" if a > b else "b" if b > a else "tie"
        if row["kind"] in good_kinds and label != "tie":
            return 0.95 if label == "a" else 0.05
        return 0.5 + float(rng.choice([-1, 1])) * float(rng.uniform(0.02, 0.15))

    return write_replay_runs(path, rows, target, seed)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plan_cost")
    comparisons, pool = write_demo(folder / "data", DemoSpec(n_items=300, pool_annotators=2,
                                                              pool_per_annotator=3, seed=3))
    rows = [json.loads(line) for line in Path(comparisons).read_text().splitlines()]
    kinds = sorted({row["kind"] for row in rows})
    judges = [{"judge_name": name, "engine": "replay",
               "engine_options": {"runs": _runs(folder / f"{name}.jsonl", rows, good, seed),
                                  "zero_shot": "zero"}}
              for name, good, seed in (("cheap", tuple(kinds[:2]), 1), ("strong", tuple(kinds), 2))]
    config = {"run_dir": str(folder / "run"), "seed": 0,
              "data": {"comparisons": comparisons, "pool": pool, "train_fraction": 0.4,
                       "calibration_fraction": 0.4, "test_fraction": 0.2},
              "annotate": {}, "cascade": judges, "fit": {"enabled": False},
              "calibrate": {"alpha": 0.2, "delta": 0.2, "confidence": "conf_simulated",
                            "n_grid": 50, "costs": COSTS, "compare": ["conf_simulated"]}}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_the_plan_states_the_worst_case_then_predicts_from_a_runs_training_items(scenario):
    config = PipelineConfig.from_yaml(str(scenario))
    before = build_plan(config)["expected_cost"]
    assert before["source"] == WORST_CASE and before["costs_given"]
    assert [j["reach"] for j in before["judges"]] == [1.0, 1.0]
    assert before["cascade"] == sum(COSTS)

    handler = signal.getsignal(signal.SIGTERM)  # `marc-ray run` installs its own
    try:
        assert main(["run", str(scenario)]) == 0
    finally:
        signal.signal(signal.SIGTERM, handler)
    plan = build_plan(config)
    after = plan["expected_cost"]
    assert after["source"].startswith("predicted by calibrate.design on the")
    # recomputed: the design on the scored files' train split, as the calibrate stage runs it
    run = Path(config.run_dir)
    sets = aligned_sets([str(run / "score" / f"{n}.parquet") for n in ("cheap", "strong")],
                        ["cheap", "strong"], "conf_simulated", "group")
    design, _ = design_stages(design_rows(sets["train"]), plan["splits"]["calibration"], 0.2, 0.2,
                              n_grid=50, **design_options(CalibrateConfig(costs=COSTS), 2))
    reach = [j["reach"] for j in after["judges"]]
    assert reach == design.predicted_reach and reach[0] == 1.0 and 0 < reach[1] < 1
    assert after["cascade"] == pytest.approx(COSTS[0] + COSTS[1] * reach[1])
    assert after["cascade"] < COSTS[1]  # cheaper than the strong judge alone
    text = format_plan(plan)
    assert f"strong: cost 20 x {reach[1]:.1%} of items reaching it" in text
    assert f"cascade: {after['cascade']:.3g} per item" in text
