"""deploy/rayjob.yaml (KubeRay RayJob) and cluster.yaml's shared storage: they parse, and what
they reference exists in the repository."""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def load(name: str) -> dict:
    return yaml.safe_load((REPO / name).read_text())


def test_rayjob_runs_the_pipeline_entry_point_with_a_config_in_the_repo():
    job = load("deploy/rayjob.yaml")
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    spec = job["spec"]
    argv = shlex.split(spec["entrypoint"])
    assert argv[0] == "python"
    script, config = (Path(a.replace("/app/", "", 1)) for a in argv[1:3])  # the image has the repo at /app
    assert script == Path("jobs/pipeline.py") and (REPO / script).is_file()
    assert (REPO / config).is_file() and config.suffix == ".yaml"
    assert argv[argv.index("--out") + 1].startswith("s3://")  # outputs on shared storage
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    submitted = load("jobs/pipeline.runtime_env.yaml")
    assert runtime_env["env_vars"] == {k: v for k, v in submitted["env_vars"].items()
                                       if k in runtime_env["env_vars"]}
    assert "working_dir" not in runtime_env  # the code ships in the image
    assert spec["shutdownAfterJobFinishes"] is True


def test_rayjob_cluster_cpu_head_autoscaling_gpu_workers_and_secret_credentials():
    import ray

    cluster = load("deploy/rayjob.yaml")["spec"]["rayClusterSpec"]
    assert cluster["rayVersion"] == ray.__version__ and cluster["enableInTreeAutoscaling"]
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in head["resources"]["limits"]
    gpu = [g for g in cluster["workerGroupSpecs"]
           if "nvidia.com/gpu" in g["template"]["spec"]["containers"][0]["resources"]["limits"]]
    assert gpu and gpu[0]["minReplicas"] == 0 and gpu[0]["maxReplicas"] >= 1
    text = (REPO / "deploy/rayjob.yaml").read_text()
    for container in [head] + [g["template"]["spec"]["containers"][0]
                               for g in cluster["workerGroupSpecs"]]:
        env = {e["name"]: e for e in container["env"]}
        assert "secretKeyRef" in env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]  # never a literal
    assert "value: AKIA" not in text


def test_cluster_yaml_mounts_shared_storage_and_declares_it():
    cluster = load("cluster.yaml")
    init = "\n".join(cluster["initialization_commands"])
    assert "/mnt/shared" in init
    for command in cluster["head_start_ray_commands"] + cluster["worker_start_ray_commands"]:
        if "ray start" in command:
            assert "MARC_RAY_SHARED_MOUNTS=/mnt/shared" in command
    from marc_ray import storage

    assert storage.SHARED_MOUNTS_ENV == "MARC_RAY_SHARED_MOUNTS"
