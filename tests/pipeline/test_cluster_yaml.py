"""cluster.yaml parses, passes Ray's own launcher schema, and provides what the jobs need."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster() -> dict:
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def test_passes_ray_launcher_schema(cluster):
    from ray.autoscaler._private.util import prepare_config, validate_config

    # what `ray up` does: fill in the provider's defaults, then check against ray-schema.json
    validate_config(prepare_config(copy.deepcopy(cluster)))
    broken = copy.deepcopy(cluster)
    broken["available_node_types"]["gpu_worker"]["min_wrkers"] = 0
    with pytest.raises(Exception, match="min_wrkers"):
        validate_config(prepare_config(broken))


def test_cpu_head_and_gpu_worker_group(cluster):
    types = cluster["available_node_types"]
    head = types[cluster["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0 and head["resources"]["CPU"] >= 4
    gpu_groups = [name for name, t in types.items() if t.get("resources", {}).get("GPU", 0) >= 1]
    assert gpu_groups, "no worker group offers GPUs for the vLLM engines"
    assert all(types[name]["max_workers"] >= 1 for name in gpu_groups)


def test_nodes_get_what_the_jobs_import(cluster):
    import ray

    setup = "\n".join(cluster["setup_commands"])
    assert f"ray[default,data,train,tune]=={ray.__version__}" in setup  # job submission needs [default]
    for package in ("vllm", "transformers", "pyarrow", "scipy", "safetensors", "matplotlib"):
        assert package in setup, package
    assert "pip install -e /home/ubuntu/marc_ray" in setup
    assert cluster["file_mounts"]["/home/ubuntu/marc_ray"] == "."
    assert any("--head" in c for c in cluster["head_start_ray_commands"])


def test_documented_submission_matches_the_repository():
    text = (REPO / "cluster.yaml").read_text()
    assert "python jobs/pipeline.py configs/example_gpu.yaml" in text
    assert (REPO / "jobs" / "pipeline.py").is_file() and (REPO / "configs" / "example_gpu.yaml").is_file()
    runtime_env = yaml.safe_load((REPO / "jobs" / "pipeline.runtime_env.yaml").read_text())
    assert runtime_env["working_dir"] == "."
    assert "runs/" in runtime_env["excludes"]
    assert runtime_env["env_vars"]["OMP_NUM_THREADS"] == "1"
