"""Work spreads over the nodes of a real two-node cluster: engine actors, DDP workers, trials.

Each node has 1 CPU and each of these actors asks for 1 CPU, so two of them can only run at
once on two different nodes; the tests assert the node ids Ray's actor table records. The same
cluster checks that outputs on a node-local path are refused before anything runs.
"""

from __future__ import annotations

import json
import os

import pytest

from conftest import actor_nodes, annotate_files

from marc_ray.fit.synthetic import all_subsets_layout, trap_annotations


@pytest.fixture(scope="module")
def trap_table():
    return trap_annotations(300, layout=all_subsets_layout(3, 3), seed=0)


def replay_runs(folder) -> str:
    path = folder / "runs.jsonl"
    path.write_text("".join(json.dumps({"id": f"item-{i}", "annotator": "judge", "order": order,
                                        "verdict": "a"}) + "\n"
                            for i in range(4) for order in ("ab", "ba")), encoding="utf-8")
    return str(path)


def new_actor_nodes(fragment: str, before: dict) -> set[str]:
    return {node for actor, node in actor_nodes(fragment).items() if actor not in before}


@pytest.mark.slow
def test_annotate_places_engine_actors_on_both_nodes(multinode, tiny_model, tmp_path):
    from marc_ray.annotate.config import AnnotateConfig
    from marc_ray.annotate.job import annotate
    from marc_ray.contracts import read_table

    before = actor_nodes("EngineBatches")
    config = AnnotateConfig(**annotate_files(tmp_path, 8), model=tiny_model, n_annotators=2,
                            k_shots=1, shard_size=4, batch_size=4, mode="choice",
                            num_workers=2, device="cpu", progress=False)
    summary = annotate(config)
    assert sorted(summary.shards_written) == [0, 1]
    assert sorted(read_table(config.output).column("id").to_pylist()) == \
        sorted(f"item-{i}" for i in range(8))
    nodes = new_actor_nodes("EngineBatches", before)
    assert nodes == multinode.alive_node_ids() and len(nodes) == 2


@pytest.mark.slow
def test_fit_runs_ddp_workers_on_two_nodes(multinode, trap_table, tmp_path):
    from marc_ray.fit import FitConfig, MarcConfidence

    before = actor_nodes("RayTrainWorker")
    config = FitConfig(epochs=2, n_pairs=500, backend="ray", num_workers=2,
                       storage_path=str(tmp_path / "train"))
    model = MarcConfidence(config).fit(trap_table)
    assert [h["epoch"] for h in model.history_] == [0, 1]
    nodes = new_actor_nodes("RayTrainWorker", before)
    assert nodes == multinode.alive_node_ids() and len(nodes) == 2


@pytest.mark.slow
def test_tune_sweep_spreads_trials_over_both_nodes(multinode, trap_table, tmp_path):
    from ray import tune

    from marc_ray.fit import FitConfig, tune_margin

    before = actor_nodes("ImplicitFunc")  # Tune's actor for a function trainable
    outcome = tune_margin(trap_table, FitConfig(epochs=2, n_pairs=500), num_samples=1,
                          search_space={"margin_init": tune.grid_search([0.05, 0.2])},
                          storage_path=str(tmp_path / "tune"), name="spread", refit=False)
    assert len(outcome.trials) == 2
    nodes = new_actor_nodes("ImplicitFunc", before)
    assert nodes == multinode.alive_node_ids() and len(nodes) == 2


@pytest.mark.slow
def test_node_local_outputs_are_refused_before_anything_runs(multinode, tmp_path, monkeypatch):
    """On two nodes, an annotate output on a node-local path is refused up front, naming the
    setting and what to use instead; the same path under a declared shared mount is accepted."""
    from marc_ray.annotate.config import AnnotateConfig
    from marc_ray.annotate.job import annotate

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MARC_RAY_SHARED_MOUNTS", str(tmp_path / "shared"))
    files = annotate_files(tmp_path, 4)
    config = AnnotateConfig(**dict(files, output="node-local/annotations"), engine="http",
                            model="judge", n_annotators=2, k_shots=1, progress=False)
    with pytest.raises(ValueError) as error:
        annotate(config)
    message = str(error.value)
    assert "2 nodes" in message and "annotate output='node-local/annotations'" in message
    assert "s3://" in message and "MARC_RAY_SHARED_MOUNTS" in message
    assert not (tmp_path / "node-local").exists()  # refused before anything was written

    from marc_ray.config import PipelineConfig
    from marc_ray.pipeline import run_pipeline

    pipeline = PipelineConfig.from_dict({"run_dir": "node-local/run", "data": {"demo": {}},
                                         "annotate": {"engine": "http", "model": "judge"}})
    with pytest.raises(ValueError, match=r"2 nodes, but run_dir='node-local/run' is a node-local"):
        run_pipeline(pipeline, stream=open(os.devnull, "w"))
    checkpoints = pipeline.replace(run_dir=str(tmp_path / "shared" / "run"),
                                   fit={"backend": "ray", "storage_path": "node-local/train"})
    with pytest.raises(ValueError, match=r"fit.storage_path='node-local/train' is a node-local"):
        run_pipeline(checkpoints, stream=open(os.devnull, "w"))  # before any stage, not at fit
    assert not (tmp_path / "node-local").exists() and not (tmp_path / "shared" / "run").exists()
    shared = tmp_path / "shared" / "annotations"  # under the declared mount: accepted
    replay = AnnotateConfig(input=files["input"], output=str(shared), pool="", engine="replay",
                            judge_name="panel", engine_options={"runs": replay_runs(tmp_path)})
    assert annotate(replay).n_items == 4
