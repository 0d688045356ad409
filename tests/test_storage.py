"""marc_ray.storage: URIs, node-local paths refused on many nodes, and s3:// end to end
against a moto S3 server on localhost (the real S3 protocol over a real socket)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from marc_ray import storage


def secrets() -> tuple[str, str]:
    """The credentials the ``s3_env`` fixture put in the environment (and nowhere else)."""
    return os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]


def test_node_local_paths_and_uris(tmp_path, monkeypatch):
    monkeypatch.delenv(storage.SHARED_MOUNTS_ENV, raising=False)
    assert storage.is_node_local(str(tmp_path)) and storage.is_node_local("runs/x")
    assert storage.is_node_local(f"file://{tmp_path}")
    assert not storage.is_node_local("s3://bucket/runs") and not storage.is_node_local("gs://b/x")
    monkeypatch.setenv(storage.SHARED_MOUNTS_ENV, f"/mnt/nfs{os.pathsep}{tmp_path}")
    assert not storage.is_node_local(str(tmp_path / "runs"))
    assert storage.is_node_local(str(tmp_path) + "-other")  # a sibling is not under the mount


def test_multi_node_refuses_node_local_outputs_with_what_to_use(tmp_path, monkeypatch):
    monkeypatch.delenv(storage.SHARED_MOUNTS_ENV, raising=False)
    locations = {"run_dir": str(tmp_path), "fit.storage_path": "s3://bucket/ckpt"}
    storage.require_shared(locations, n_nodes=1)  # one node: any path will do
    with pytest.raises(ValueError) as error:
        storage.require_shared(locations, n_nodes=3)
    message = str(error.value)
    assert "run_dir" in message and "fit.storage_path" not in message
    assert "s3://" in message and storage.SHARED_MOUNTS_ENV in message and "3 nodes" in message


def test_credentials_in_a_uri_are_refused_and_redacted():
    uri = "s3://bucket/x?access_key=AK&secret_key=SEKRIT&region=us-east-1"
    assert "SEKRIT" not in storage.redact(uri) and "region=us-east-1" in storage.redact(uri)
    assert "pw" not in storage.redact("s3://user:pw@host/bucket")
    with pytest.raises(ValueError, match="environment") as error:
        storage.resolve(uri)
    assert "SEKRIT" not in str(error.value)
    assert storage.join("s3://b/runs?region=r", "fit", "m") == "s3://b/runs/fit/m?region=r"


def test_s3_uri_resolves_and_round_trips_a_parquet_file(s3_env):
    import pyarrow as pa
    import pyarrow.parquet as pq

    uri = f"s3://marc-ray-runs/run-1?{s3_env}"
    filesystem, root = storage.resolve(uri)
    assert root == "marc-ray-runs/run-1" and filesystem.type_name == "s3"
    filesystem.create_dir("marc-ray-runs")
    table = pa.table({"id": ["a", "b"], "p": [0.25, 0.75]})
    pq.write_table(table, f"{root}/part-00000.parquet", filesystem=filesystem)
    assert pq.read_table(f"{root}/part-00000.parquet", filesystem=filesystem).equals(table)
    assert not storage.is_node_local(uri)
    KEY, SECRET = secrets()
    assert SECRET not in storage.redact(uri) and KEY not in storage.redact(uri)


@pytest.mark.slow
def test_ray_train_checkpoints_to_s3(ray_local, s3_env, capfd, tmp_path):
    """A Ray Train fit with storage_path=s3://…: checkpoints land in the bucket.

    The Train workers write the checkpoints, so the credentials must be in *their*
    environment: a cluster started after they are set (on a real cluster: the nodes' role or
    environment), not the suite's cluster started before this test set them.
    """
    ray = ray_local
    ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        _fit_to_s3(s3_env, capfd)
    finally:
        ray.shutdown()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)  # ray_local again


def _fit_to_s3(s3_env, capfd):
    from marc_ray.fit import FitConfig
    from marc_ray.fit.data import prepare
    from marc_ray.fit.synthetic import all_subsets_layout, trap_annotations
    from marc_ray.fit.train import fit_ray

    filesystem, _ = storage.resolve(f"s3://marc-ray-ckpt?{s3_env}")
    filesystem.create_dir("marc-ray-ckpt")
    config = FitConfig(epochs=2, n_pairs=500, backend="ray", num_workers=1,
                       storage_path=f"s3://marc-ray-ckpt/train?{s3_env}")
    data = prepare(trap_annotations(200, layout=all_subsets_layout(3, 3), seed=0), config)
    model, state = fit_ray(config, data.train, data.valid, name="s3-fit")
    assert [h["epoch"] for h in state["history"]] == [0, 1]
    import pyarrow.fs as pafs

    listed = filesystem.get_file_info(pafs.FileSelector("marc-ray-ckpt/train/s3-fit",
                                                        recursive=True))
    names = {Path(info.path).name for info in listed}
    assert {"model.safetensors", "optimizer.safetensors", "state.json"} <= names
    out, err = capfd.readouterr()
    assert secrets()[1] not in out + err


def test_one_filesystem_client_per_bucket_and_options():
    # building an S3 client can cost a round trip (the bucket's region); a run touches
    # thousands of keys, so resolve builds one per bucket and options, and paths match pyarrow's
    from pyarrow import fs

    from marc_ray.contracts.io import resolve

    options = "endpoint_override=127.0.0.1:1&scheme=http&region=us-east-1"
    first, path = resolve(f"s3://bucket-a/run/x.parquet?{options}")
    assert path == fs.FileSystem.from_uri(f"s3://bucket-a/run/x.parquet?{options}")[1]
    assert resolve(f"s3://bucket-a/run/manifests/fit.json?{options}")[0] is first
    assert resolve(f"s3://bucket-b/run/x.parquet?{options}")[0] is not first
    assert resolve(f"s3://bucket-a/run/x.parquet?{options}&allow_bucket_creation=true")[0] is not first


def test_redacting_a_message_twice_changes_nothing():
    # the CLI redacts every error line, and an error may already name a redacted location
    from marc_ray.contracts.redact import redact_text

    once = redact_text("the location 's3://b/run?secret_key=abc&region=x' carries credentials")
    assert once == "the location 's3://b/run?secret_key=<redacted>&region=x' carries credentials"
    assert redact_text(once) == once
    assert redact_text("https://user:pw@host/v1 <b>") == "https://<redacted>@host/v1 <b>"
