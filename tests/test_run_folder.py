"""RunFolder: the run's layout, for a local folder and for a URI root."""

from __future__ import annotations

import os

from marc_ray.fit.estimator import CONFIG_FILE, MODEL_FILE
from marc_ray.run_folder import RunFolder


def test_local_layout(tmp_path):
    folder = RunFolder(tmp_path)
    assert folder.config == os.path.join(tmp_path, "config.yaml")
    assert folder.comparisons == os.path.join(tmp_path, "data", "comparisons.parquet")
    assert folder.annotations("small") == os.path.join(tmp_path, "annotate", "small")
    assert folder.model_files("small") == [os.path.join(tmp_path, "fit", "small", MODEL_FILE),
                                           os.path.join(tmp_path, "fit", "small", CONFIG_FILE)]
    assert folder.scores("small") == os.path.join(tmp_path, "score", "small.parquet")
    assert folder.certificate == os.path.join(tmp_path, "calibrate", "certificate.json")
    assert folder.manifest("fit", "small") == os.path.join(tmp_path, "manifests", "fit-small.json")
    assert folder.report_html == os.path.join(tmp_path, "report", "report.html")
    assert folder.relative(folder.model_weights("small")) == f"fit/small/{MODEL_FILE}"


def test_uri_root_joins_with_slashes():
    folder = RunFolder("s3://bucket/runs/demo")
    assert folder.is_uri
    assert folder.certificate == "s3://bucket/runs/demo/calibrate/certificate.json"
    assert folder.scores("large") == "s3://bucket/runs/demo/score/large.parquet"
    assert folder.relative(folder.pool) == "data/pool.parquet"


def test_uri_root_keeps_its_query_last():
    """Options such as endpoint_override ride in the query; every path keeps them at the end."""
    folder = RunFolder("s3://bucket/runs/demo?endpoint_override=127.0.0.1:9000&scheme=http")
    assert folder.certificate == ("s3://bucket/runs/demo/calibrate/certificate.json"
                                  "?endpoint_override=127.0.0.1:9000&scheme=http")
    assert folder.relative(folder.model_weights("small")) == f"fit/small/{MODEL_FILE}"
