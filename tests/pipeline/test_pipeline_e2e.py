"""The reduced demo end to end, interrupted during annotate and resumed; the report's numbers
are checked against the certificate and the scored files.

One pipeline run serves every test of this module (it is the expensive part: ~1-2 minutes on
2 cores with the real SmolLM2 judge).
"""

from __future__ import annotations

import glob
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from marc_ray.contracts import Certificate, agreement

REPO = Path(__file__).resolve().parents[2]
JUDGE = "SmolLM2-135M-Instruct"
pytestmark = pytest.mark.slow


def marc_ray(*args: str) -> list[str]:
    return [sys.executable, "-m", "marc_ray.cli", *args]


def environment() -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO), RAY_AUTH_MODE="disabled",
                TOKENIZERS_PARALLELISM="false")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Start `marc-ray run`, interrupt it once the first annotation shard exists, rerun it."""
    run_dir = tmp_path_factory.mktemp("ci_demo") / "run"
    shards = run_dir / "annotate" / JUDGE
    command = marc_ray("run", str(REPO / "configs" / "ci_demo.yaml"), "--out", str(run_dir))
    first = subprocess.Popen(command, cwd=REPO, env=environment(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.monotonic() + 400
    while not glob.glob(str(shards / "part-*.parquet")):
        if first.poll() is not None or time.monotonic() > deadline:
            first.kill()
            pytest.fail("no shard appeared before the run ended:\n" + first.stdout.read()[-3000:])
        time.sleep(0.2)
    first.send_signal(signal.SIGINT)  # Ctrl-C: finished shards stay, the run stops
    try:
        log = first.communicate(timeout=120)[0]
    except subprocess.TimeoutExpired:
        os.killpg(first.pid, signal.SIGKILL)
        pytest.fail("marc-ray run did not stop on SIGINT")
    kept = {path: (os.stat(path).st_mtime_ns, open(path, "rb").read())
            for path in glob.glob(str(shards / "part-*.parquet"))}
    second = subprocess.run(command, cwd=REPO, env=environment(), capture_output=True, text=True,
                            timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    return {"dir": run_dir, "first_code": first.returncode, "first_log": log, "kept": kept,
            "second_log": second.stdout + second.stderr}


def test_interrupted_run_resumes_without_recomputing(run):
    assert run["first_code"] != 0  # it was interrupted, not finished
    assert "interrupted" in run["first_log"] or run["first_code"] in (130, -signal.SIGINT)
    assert run["kept"], "the interrupted run kept no finished shard"
    for path, (mtime, content) in run["kept"].items():
        assert os.stat(path).st_mtime_ns == mtime and open(path, "rb").read() == content
    manifest = json.loads((run["dir"] / "manifests" / f"annotate-{JUDGE}.json").read_text())
    assert manifest["details"]["shards resumed"] == len(run["kept"])
    shards = pq.read_table(run["dir"] / "annotate" / JUDGE)
    comparisons = pq.read_table(run["dir"] / "data" / "comparisons.parquet")
    assert sorted(shards.column("id").to_pylist()) == sorted(comparisons.column("id").to_pylist())


def test_every_stage_left_its_outputs(run):
    run_dir = run["dir"]
    for stage in ("prepare", f"annotate-{JUDGE}", f"fit-{JUDGE}", f"score-{JUDGE}", "calibrate", "report"):
        assert (run_dir / "manifests" / f"{stage}.json").is_file(), stage
    for path in ("fit/%s/model.safetensors" % JUDGE, "report/report.html", "report/report.md",
                 "report/report.json", "report/certificate.json", "calibrate/certificate.json"):
        assert (run_dir / path).is_file(), path
    # the resumed run: prepare finished before the interruption and is skipped; every later
    # stage really ran (its progress line says "done", not "skipped")
    status = stage_status(run["second_log"])
    assert status["prepare"] == "skipped", status
    for stage in ("annotate", "fit", "score", "calibrate", "report"):
        assert status[stage] == "done", (stage, status)


def stage_status(log: str) -> dict[str, str]:
    """Stage → its last status ("running", "skipped", "done", ...) from the progress lines."""
    out = {}
    for line in log.splitlines():
        match = re.match(r"^\[\d+/\d+\] (\w+)(?: \S+)?\s+(running|skipped|done|disabled)\b", line)
        if match:
            out[match.group(1)] = match.group(2)
    return out


def test_report_numbers_match_the_certificate(run):
    run_dir = run["dir"]
    certificate = Certificate.read(run_dir / "calibrate" / "certificate.json")
    report = json.loads((run_dir / "report" / "report.json").read_text())
    assert report["certificate"]["stages"] == certificate.to_dict()["stages"]
    stage = certificate.stages[0]
    assert stage["confidence"] == "conf_marc" and certificate.alpha == 0.25
    # recompute n, k and coverage at lambda-hat from the scored calibration items
    scores = pq.read_table(run_dir / "score" / f"{JUDGE}.parquet").to_pydict()
    split = np.array(scores["split"], dtype=object)
    cal = split == "calibration"
    confidence = np.array(scores["conf_marc"], dtype=float)[cal]
    pred = np.array(scores["pred"], dtype=object)[cal]
    human = np.array(scores["human_label"], dtype=object)[cal]
    assert certificate.n_calibration == cal.sum()
    threshold = float(stage["threshold"])
    accepted = confidence >= threshold
    agree, kept = agreement(pred, human, certificate.tie_policy)
    assert stage["n"] == int(accepted[kept].sum())
    assert stage["k"] == int((accepted[kept] & ~agree).sum())
    assert certificate.coverage == pytest.approx(accepted.mean())
    assert all(check["match"] for check in report["consistency"])
    headline = report["guarantee"]["headline"]
    page = (run_dir / "report" / "report.html").read_text()
    assert headline in page.replace("&#x27;", "'")
    if np.isfinite(threshold):
        assert "at least 75% of the time, with 80% confidence" in headline
    else:
        assert headline.startswith("No threshold passed")
    assert "SmolLM2-135M-Instruct (135 million parameters" in page  # the tiny-judge disclaimer


def test_rerun_skips_every_stage(run):
    result = subprocess.run(marc_ray("run", str(REPO / "configs" / "ci_demo.yaml"), "--out",
                                     str(run["dir"])), cwd=REPO, env=environment(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert len(lines) == 6 and all("skipped" in line for line in lines), lines
    assert set(stage_status(result.stderr).values()) == {"skipped"}


def test_report_command_rewrites_the_report(run, tmp_path):
    from marc_ray.cli import main

    assert main(["report", str(run["dir"]), "--out", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "report.json").read_text())
    first = json.loads((run["dir"] / "report" / "report.json").read_text())
    assert again["certificate"] == first["certificate"] and again["calibration"] == first["calibration"]


def test_apply_with_the_run_folder_reproduces_the_report_on_new_items(run, tmp_path):
    """Raw comparisons through `marc-ray apply RUN_DIR`: the run's annotators, model and
    certificate decide them exactly as the report says they did on the same (test) items."""
    import pyarrow.compute as pc

    comparisons = pq.read_table(run["dir"] / "data" / "comparisons.parquet")
    test_items = comparisons.filter(pc.equal(comparisons["split"], "test")).drop_columns(["split"])
    new_items = tmp_path / "new.parquet"
    pq.write_table(test_items, new_items)
    out = tmp_path / "applied"
    result = subprocess.run(marc_ray("apply", str(run["dir"]), str(new_items), "--out", str(out)),
                            cwd=REPO, env=environment(), capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    summary = json.loads((out / "apply_summary.json").read_text())
    deployment = json.loads((run["dir"] / "report" / "report.json").read_text())["deployment"]
    assert summary["n"] == deployment["n"] == test_items.num_rows
    assert summary["coverage"] == pytest.approx(deployment["coverage"])
    observed = summary["agreement_on_decided"]
    if deployment["n_accepted"]:
        assert observed["n"] == deployment["n_accepted"]
        assert observed["agreement"] == pytest.approx(deployment["agreement_on_accepted"])
    decisions = pq.read_table(out / "decisions.parquet").to_pylist()
    assert sorted(d["id"] for d in decisions) == sorted(test_items.column("id").to_pylist())
    assert all((d["verdict"] == "escalate") == (d["decided_by"] is None) for d in decisions)
    # the scores are the pipeline's own, item for item
    ours = pq.read_table(out / "score" / f"{JUDGE}.parquet").to_pydict()
    theirs = pq.read_table(run["dir"] / "score" / f"{JUDGE}.parquet").to_pydict()
    confidence = json.loads((run["dir"] / "calibrate" / "certificate.json").read_text())[
        "stages"][0]["confidence"]
    reference = dict(zip(theirs["id"], theirs[confidence]))
    assert np.allclose([reference[i] for i in ours["id"]], ours[confidence], atol=1e-6)


def test_apply_refuses_a_folder_that_is_not_a_run(tmp_path):
    from marc_ray.cli import main

    items = tmp_path / "new.jsonl"
    items.write_text('{"id": "x", "instruction": "i", "response_a": "a", "response_b": "b"}\n')
    assert main(["apply", str(tmp_path), str(items), "--out", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()


def test_a_threshold_per_kind_on_the_finished_run_then_apply_routes_new_items_by_it(run, tmp_path):
    """`calibrate.by` added to a finished run with a real judge: the annotate shards are kept
    (only their carried column is rewritten, nothing is judged again), the certificate has a
    threshold per demo kind, and `marc-ray apply RUN_DIR` annotates new items with the engine
    and routes each by its kind; a kind calibration never saw is escalated with that reason."""
    import shutil

    import pyarrow.compute as pc
    import yaml

    run_dir = tmp_path / "run"
    shutil.copytree(run["dir"], run_dir)
    config = yaml.safe_load((REPO / "configs" / "ci_demo.yaml").read_text())
    config["calibrate"]["by"] = "kind"
    config_path = tmp_path / "by_kind.yaml"
    config_path.write_text(yaml.safe_dump(config))
    rerun = subprocess.run(marc_ray("run", str(config_path), "--out", str(run_dir)), cwd=REPO,
                           env=environment(), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-3000:]
    log = rerun.stdout + rerun.stderr
    assert re.search(r"annotate \S+ +done .*shards written 0, shards resumed 3", log), log[-3000:]
    certificate = Certificate.read(run_dir / "calibrate" / "certificate.json")
    assert certificate.groups["column"] == "kind"
    comparisons = pq.read_table(run_dir / "data" / "comparisons.parquet")
    calibration_kinds = set(comparisons.filter(pc.equal(comparisons["split"], "calibration"))
                            .column("kind").to_pylist())
    assert set(certificate.groups["values"]) == calibration_kinds

    test_items = comparisons.filter(pc.equal(comparisons["split"], "test")).drop_columns(["split"])
    kinds = test_items.column("kind").to_pylist()
    kinds[0] = "poem"  # a kind the calibration split never had
    test_items = test_items.set_column(test_items.column_names.index("kind"), "kind",
                                       pa.array(kinds, pa.string()))
    new_items = tmp_path / "new.parquet"
    pq.write_table(test_items, new_items)
    out = tmp_path / "applied"
    applied = subprocess.run(marc_ray("apply", str(run_dir), str(new_items), "--out", str(out)),
                             cwd=REPO, env=environment(), capture_output=True, text=True, timeout=400)
    assert applied.returncode == 0, applied.stdout[-2000:] + applied.stderr[-3000:]
    decisions = {d["id"]: d for d in pq.read_table(out / "decisions.parquet").to_pylist()}
    assert sorted(decisions) == sorted(test_items.column("id").to_pylist())
    unseen = decisions[test_items.column("id")[0].as_py()]
    assert unseen["verdict"] == "escalate" and "'poem' was not in the calibration set" in unseen["reason"]
    assert all(d["reason"] for d in decisions.values())
