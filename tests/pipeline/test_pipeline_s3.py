"""``marc-ray run`` with ``run_dir: s3://…`` against a moto S3 server on localhost (the real S3
protocol over a real socket): every stage reads and writes the bucket, the certificate and the
report land there, a rerun skips every stage, ``marc-ray apply`` reads the certificate and
scores from the bucket and writes its decisions there, and the credentials (in the environment
only) appear in no object written and no line logged.

A replay judge (no engine, no Ray) on demo data, with a small local fit: seconds.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import yaml

from marc_ray.cli import main
from marc_ray.contracts import Certificate
from marc_ray.contracts.io import resolve
from marc_ray.demo import DemoSpec, write_demo

def write_config(folder: Path, run_dir: str) -> Path:
    comparisons, pool = write_demo(folder / "data", DemoSpec(
        n_items=120, pool_annotators=2, pool_per_annotator=3, ambiguous_rate=0.2, seed=4))
    rng = np.random.default_rng(2)
    lines = []
    for row in map(json.loads, Path(comparisons).read_text().splitlines()):
        votes = [v["label"] for v in row["human_votes"]]
        target = 0.9 if votes.count("a") >= votes.count("b") else 0.1
        if rng.random() < 0.2:
            target = 1 - target
        for annotator in ("zero", "sim-1", "sim-2"):
            for order in ("ab", "ba"):
                lines.append(json.dumps({"id": row["id"], "annotator": annotator, "order": order,
                                         "p_response_a": float(np.clip(
                                             target + rng.normal(0, 0.05), 0.01, 0.99))}))
    runs = folder / "runs.jsonl"
    runs.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = {
        "run_dir": run_dir, "seed": 0,
        "data": {"comparisons": comparisons, "pool": pool},
        "annotate": {"judge_name": "replayed", "engine": "replay",
                     "engine_options": {"runs": str(runs), "zero_shot": "zero"}},
        "fit": {"backend": "local", "epochs": 3, "n_pairs": 100, "pairs_per_step": 50,
                "hidden_sizes": [8, 4]},
        "calibrate": {"alpha": 0.2, "delta": 0.2, "grid": "fixed", "n_grid": 10,
                      "confidence": "conf_marc", "tie_policy": "drop"},
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def marc_ray_run(config: Path, capfd) -> tuple[int, str]:
    """`marc-ray run CONFIG` in this process; its exit code and everything it printed."""
    handler = signal.getsignal(signal.SIGTERM)  # `marc-ray run` installs its own
    try:
        code = main(["run", str(config)])
    finally:
        signal.signal(signal.SIGTERM, handler)
    out, err = capfd.readouterr()
    return code, out + err


def bucket_objects(location: str) -> dict[str, bytes]:
    filesystem, root = resolve(location)
    infos = filesystem.get_file_info(pafs.FileSelector(root, recursive=True))
    objects = {}
    for info in infos:
        if info.type == pafs.FileType.File:
            with filesystem.open_input_stream(info.path) as stream:
                objects[info.path[len(root) + 1:]] = stream.read()
    return objects


def test_marc_ray_run_on_s3_resumes_and_leaks_no_credential(s3_env, tmp_path, capfd, monkeypatch):
    bucket = "marc-ray-pipeline"
    resolve(f"s3://{bucket}?{s3_env}")[0].create_dir(bucket)
    run_dir = f"s3://{bucket}/runs/replay?{s3_env}"
    config = write_config(tmp_path, run_dir)
    key, secret = os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
    monkeypatch.chdir(tmp_path)  # anything written locally by mistake would land here

    code, first = marc_ray_run(config, capfd)
    assert code == 0, first[-3000:]
    objects = bucket_objects(run_dir)
    for name in ("config.yaml", "data/comparisons.parquet", "annotate/replayed/part-00000.parquet",
                 "fit/replayed/model.safetensors", "score/replayed.parquet",
                 "calibrate/certificate.json", "report/report.html", "report/certificate.json",
                 "manifests/report.json"):
        assert name in objects, sorted(objects)
    assert not any(os.path.basename(name).startswith(".tmp") for name in objects)
    certificate = Certificate.read(f"s3://{bucket}/runs/replay/calibrate/certificate.json?{s3_env}")
    assert certificate.stages[0]["name"] == "replayed" and certificate.n_calibration > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "data", "runs.jsonl"]

    code, second = marc_ray_run(config, capfd)
    assert code == 0, second[-3000:]
    stage_lines = [line for line in second.splitlines() if line.startswith("[")]
    assert len(stage_lines) == 6 and all(" skipped " in line for line in stage_lines), stage_lines
    assert bucket_objects(run_dir)["calibrate/certificate.json"] == objects["calibrate/certificate.json"]

    in_run = lambda name: f"s3://{bucket}/runs/replay/{name}?{s3_env}"  # noqa: E731
    assert main(["apply", in_run("calibrate/certificate.json"), in_run("score/replayed.parquet"),
                 "--out", in_run("applied")]) == 0  # the certified judge, applied from the bucket
    applied = bucket_objects(in_run("applied"))
    assert set(applied) == {"decisions.parquet", "apply_summary.json"}
    objects.update({f"applied/{name}": data for name, data in applied.items()})
    third = capfd.readouterr()

    for name, data in objects.items():
        assert key.encode() not in data and secret.encode() not in data, name
    for log in (first, second, third.out + third.err):
        assert key not in log and secret not in log
