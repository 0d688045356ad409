"""Every bad input is refused cleanly through the CLI: exit 2, one line naming the file, row
and field, no traceback, and nothing left behind (issue 12).

Each case writes a small, otherwise valid input, breaks one thing, runs ``marc-ray`` in this
process (``marc_ray.cli.main``: the same code path as the console script, without paying the
interpreter start per case) and checks the exit code, the message and that ``--out`` holds
nothing. One case runs the real console script in a subprocess to check the process exit.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from marc_ray.cli import main
from replay_runs import write_replay_runs

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------

def _scores_rows(n: int = 60, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        conf = float(np.round(rng.uniform(0.5, 1.0), 4))
        pred = "a" if i % 2 else "b"
        agree = rng.uniform() < conf
        rows.append({"id": f"item-{i}", "conf": conf, "pred": pred,
                     "human_label": pred if agree else ("b" if pred == "a" else "a"),
                     "split": "calibration"})
    return rows


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _edit(rows: list[dict], index: int, **changes) -> list[dict]:
    rows = [dict(r) for r in rows]
    rows[index].update(changes)
    for key, value in list(changes.items()):
        if value is _DROP:
            del rows[index][key]
    return rows


_DROP = object()


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.err


def assert_refused(code: int, err: str, *, names: list[str], out: Path | None = None) -> None:
    """Exit 2, one line, no traceback, every expected name in the message, nothing written."""
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for name in names:
        assert str(name) in err, (name, err)
    if out is not None:
        assert not out.exists() or not any(out.iterdir()), sorted(out.rglob("*"))


# ---------------------------------------------------------------------------------------------
# calibrate / validity: the scores file
# ---------------------------------------------------------------------------------------------

SCORE_DEFECTS = {
    # name: (row index, changes, field expected in the message, problem fragment)
    "boolean confidence": (5, {"conf": True}, "conf", "boolean"),
    "confidence above 1": (7, {"conf": 5.0}, "conf", "[0, 1]"),
    "negative confidence": (3, {"conf": -0.2}, "conf", "[0, 1]"),
    "string confidence": (4, {"conf": "high"}, "conf", ""),
    "empty id": (2, {"id": ""}, "id", "empty"),
    "numeric id": (2, {"id": 17}, "id", ""),
    "duplicate id": (9, {"id": "item-1"}, "id", "duplicate"),
    "unknown verdict": (6, {"pred": "c"}, "pred", "c"),
    "unknown human label": (8, {"human_label": "maybe"}, "human_label", "maybe"),
    "missing human label": (8, {"human_label": _DROP}, "human_label", ""),
}


@pytest.mark.parametrize("case", sorted(SCORE_DEFECTS))
def test_calibrate_refuses_bad_scores(case, tmp_path, capsys):
    row, changes, field, problem = SCORE_DEFECTS[case]
    scores = _write_jsonl(tmp_path / "scores.jsonl", _edit(_scores_rows(), row, **changes))
    out = tmp_path / "out"
    code, err = run_cli(["calibrate", scores, "--confidence-column", "conf", "--out", out], capsys)
    assert_refused(code, err, names=["scores.jsonl", f"row {row}", f"'{field}'", problem], out=out)


@pytest.mark.parametrize("case", ["boolean confidence", "empty id", "duplicate id"])
def test_validity_refuses_bad_scores(case, tmp_path, capsys):
    row, changes, field, _ = SCORE_DEFECTS[case]
    scores = _write_jsonl(tmp_path / "scores.jsonl", _edit(_scores_rows(), row, **changes))
    out = tmp_path / "out"
    code, err = run_cli(["validity", scores, "--confidence-column", "conf", "--repetitions", 10,
                         "--out", out], capsys)
    assert_refused(code, err, names=["scores.jsonl", f"row {row}", f"'{field}'"], out=out)


def test_non_utf8_names_file_and_row(tmp_path, capsys):
    rows = _scores_rows()
    path = tmp_path / "scores.jsonl"
    text = "".join(json.dumps(r) + "\n" for r in rows).encode()
    lines = text.split(b"\n")
    lines[4] = lines[4].replace(b"item-4", b"item-\xff\xfe")
    path.write_bytes(b"\n".join(lines))
    out = tmp_path / "out"
    code, err = run_cli(["calibrate", path, "--confidence-column", "conf", "--out", out], capsys)
    assert_refused(code, err, names=["scores.jsonl", "row 4", "UTF-8"], out=out)


def test_malformed_json_line(tmp_path, capsys):
    path = tmp_path / "scores.jsonl"
    lines = [json.dumps(r) for r in _scores_rows()]
    lines[3] = lines[3][:-5]
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    code, err = run_cli(["calibrate", path, "--confidence-column", "conf", "--out", out], capsys)
    assert_refused(code, err, names=["scores.jsonl", "row 3"], out=out)


def test_zero_rows(tmp_path, capsys):
    path = tmp_path / "scores.jsonl"
    path.write_text("")
    out = tmp_path / "out"
    code, err = run_cli(["calibrate", path, "--confidence-column", "conf", "--out", out], capsys)
    assert_refused(code, err, names=["scores.jsonl"], out=out)


def test_missing_confidence_column(tmp_path, capsys):
    scores = _write_jsonl(tmp_path / "scores.jsonl", _scores_rows())
    out = tmp_path / "out"
    code, err = run_cli(["calibrate", scores, "--confidence-column", "conf_marc", "--out", out],
                        capsys)
    assert_refused(code, err, names=["scores.jsonl", "'conf_marc'"], out=out)


@pytest.mark.parametrize("command", ["calibrate", "validity"])
def test_out_under_a_file_is_refused_before_work(command, tmp_path, capsys):
    scores = _write_jsonl(tmp_path / "scores.jsonl", _scores_rows())
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    out = blocker / "out"
    extra = ["--repetitions", 10] if command == "validity" else []
    code, err = run_cli([command, scores, "--confidence-column", "conf", "--out", out, *extra],
                        capsys)
    assert_refused(code, err, names=[str(blocker), "--out"])
    assert blocker.read_text() == "a file"


@pytest.mark.parametrize("flag,value", [("--n-grid", "100000000000"), ("--grid-size", "0"),
                                        ("--grid-size", "1e11"), ("--grid-low", "a"),
                                        ("--delta", "1.5"), ("--alpha", "0")])
def test_bad_numbers_on_the_command_line(flag, value, tmp_path, capsys):
    scores = _write_jsonl(tmp_path / "scores.jsonl", _scores_rows())
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as info:  # argparse's own exit: status 2, one usage line
        main(["calibrate", str(scores), "--confidence-column", "conf", "--out", str(out),
              flag, value])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert flag in err and "Traceback" not in err
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# The whole process: exit status and stderr of the real console script
# ---------------------------------------------------------------------------------------------

def test_console_script_exits_2_without_traceback(tmp_path):
    scores = _write_jsonl(tmp_path / "scores.jsonl", _edit(_scores_rows(), 5, conf=True))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-m", "marc_ray.cli", "calibrate", str(scores),
                             "--confidence-column", "conf", "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "scores.jsonl, row 5, field 'conf'" in result.stderr
    debug = subprocess.run([sys.executable, "-m", "marc_ray.cli", "--debug", "calibrate",
                            str(scores), "--confidence-column", "conf", "--out",
                            str(tmp_path / "out")], capture_output=True, text=True, env=env,
                           timeout=120)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


# ---------------------------------------------------------------------------------------------
# fit / score: annotation files and models
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def annotations(tmp_path_factory):
    """A valid annotation file: the first 5 rows are test rows, the rest training rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from marc_ray.fit.synthetic import all_subsets_layout, trap_annotations

    table = trap_annotations(160, layout=all_subsets_layout(2, 2), seed=0)
    rows = table.to_pylist()
    for index, row in enumerate(rows):
        row["split"] = "test" if index < 5 else "train"
    path = tmp_path_factory.mktemp("ann") / "annotations.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)
    return path, table.schema, rows


def _write_annotations(tmp_path, annotations, row=None, **changes):
    import pyarrow as pa
    import pyarrow.parquet as pq

    _, schema, rows = annotations
    rows = [dict(r) for r in rows]
    if row is not None:
        rows[row].update(changes)
    path = tmp_path / "annotations.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


FIT_DEFECTS = {
    "label outside the labels": (5, {"human_label": "maybe"}, "human_label"),
    "probability above 1": (7, {"probs": [1.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]},
                            "probs"),
    "verdict outside a/b": (9, {"pred": "c"}, "pred"),
}


@pytest.mark.parametrize("case", sorted(FIT_DEFECTS))
def test_fit_names_the_row_in_the_users_file(case, annotations, tmp_path, capsys):
    row, changes, field = FIT_DEFECTS[case]
    path = _write_annotations(tmp_path, annotations, row, **changes)
    out = tmp_path / "model"
    code, err = run_cli(["fit", path, "--out", out, "--epochs", 1], capsys)
    assert_refused(code, err, names=["annotations.parquet", f"row {row},", f"'{field}'"], out=out)


def test_fit_zero_rows(annotations, tmp_path, capsys):
    import pyarrow.parquet as pq

    _, schema, _ = annotations
    path = tmp_path / "empty.parquet"
    pq.write_table(schema.empty_table(), path)
    out = tmp_path / "model"
    code, err = run_cli(["fit", path, "--out", out], capsys)
    assert_refused(code, err, names=["empty.parquet"], out=out)


@pytest.mark.parametrize("config", ["missing.json", "folder", "broken.json", "list.json",
                                    "unknown_key.json", "wrong_type.json"])
def test_fit_config_file_errors(config, annotations, tmp_path, capsys):
    (tmp_path / "folder").mkdir()
    (tmp_path / "broken.json").write_text('{"epochs": 3,')
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "unknown_key.json").write_text('{"epochz": 3}')
    (tmp_path / "wrong_type.json").write_text('{"epochs": "three"}')
    out = tmp_path / "model"
    code, err = run_cli(["fit", annotations[0], "--out", out, "--config", tmp_path / config], capsys)
    assert_refused(code, err, names=[config.split(".")[0]], out=out)


def test_fit_out_under_a_file(annotations, tmp_path, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    code, err = run_cli(["fit", annotations[0], "--out", blocker / "model"], capsys)
    assert_refused(code, err, names=[str(blocker), "--out"])


@pytest.fixture(scope="module")
def fitted_model(annotations, tmp_path_factory):
    folder = tmp_path_factory.mktemp("model") / "model"
    assert main(["fit", str(annotations[0]), "--out", str(folder), "--epochs", "2"]) == 0
    return folder


@pytest.mark.parametrize("damage", ["truncated weights", "garbage weights", "config missing a key",
                                    "config not JSON", "no weights"])
def test_score_refuses_a_damaged_model(damage, annotations, fitted_model, tmp_path, capsys):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(fitted_model, model)
    weights, config = model / "model.safetensors", model / "config.json"
    if damage == "truncated weights":
        weights.write_bytes(weights.read_bytes()[:100])
    elif damage == "garbage weights":
        weights.write_bytes(b"\x00" * 64)
    elif damage == "config missing a key":
        data = json.loads(config.read_text())
        data.pop("features")
        config.write_text(json.dumps(data))
    elif damage == "config not JSON":
        config.write_text("{")
    else:
        weights.unlink()
    out = tmp_path / "scored.parquet"
    code, err = run_cli(["score", annotations[0], "--model", model, "--out", out], capsys)
    assert_refused(code, err, names=[str(model)])
    assert not out.exists()


@pytest.mark.parametrize("name", ["scored.jsonl", "scored.csv", "scored"])
def test_score_out_extension_must_be_parquet(name, annotations, fitted_model, tmp_path, capsys):
    out = tmp_path / name
    code, err = run_cli(["score", annotations[0], "--model", fitted_model, "--out", out], capsys)
    assert_refused(code, err, names=[name, ".parquet"])
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# datasets: the format the name promises is the format written
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv,name", [
    (["datasets", "replay", "llmbar", "{out}/annotations.jsonl", "--target", "gpt4"], "annotations.jsonl"),
    (["datasets", "export", "llmbar", "{out}/items.csv"], "items.csv"),
    (["datasets", "export", "llmbar", "{out}/items"], "items"),
])
def test_dataset_outputs_match_their_extension(argv, name, tmp_path, capsys):
    out = tmp_path / "out"
    code, err = run_cli([a.format(out=out) for a in argv], capsys)
    assert_refused(code, err, names=[name, "OUTPUT"], out=out)


# ---------------------------------------------------------------------------------------------
# apply: a certificate applies only to what it certifies (binding), and only to valid data
# ---------------------------------------------------------------------------------------------

SECRET_PASSWORD, SECRET_KEY = "s3cr3tPassw0rd", "sk-LEAK-0123456789"


def _majority(votes: list[dict]) -> str:
    a = sum(v["label"] == "a" for v in votes)
    b = sum(v["label"] == "b" for v in votes)
    return "a" if a > b else "b" if b > a else "tie"


def _write_run_table(path: Path, rows: list[dict], seed: int = 7) -> str:
    """A replay run table (zero-shot + two simulated annotators, both orders): right and sure,
    except on a fifth of the items, where it leans the wrong way with little confidence."""
    def target(row, rng):
        label = _majority(row["human_votes"])
        return (0.42 if label == "a" else 0.58) if rng.random() < 0.2 else \
            {"a": 0.92, "b": 0.08, "tie": 0.5}[label]

    return write_replay_runs(path, rows, target, seed)


def _run_config(folder: Path, **sections) -> dict:
    """A small, fast, real run: the demo benchmark, a replay judge, MARC fitted locally."""
    from marc_ray.demo import DemoSpec, write_demo

    data = folder / "data"
    if not (data / "comparisons.jsonl").exists():
        write_demo(data, DemoSpec(n_items=160, pool_annotators=2, pool_per_annotator=3,
                                  ambiguous_rate=0.3, seed=3))
    comparisons, pool = data / "comparisons.jsonl", data / "pool.jsonl"
    runs = folder / "runs.jsonl"
    if not runs.exists():
        rows = [json.loads(line) for line in comparisons.read_text().splitlines()]
        _write_run_table(runs, rows)
    config = {
        "run_dir": str(folder / "run"), "seed": 0,
        "data": {"comparisons": str(comparisons), "pool": str(pool), "train_fraction": 0.3,
                 "calibration_fraction": 0.5, "test_fraction": 0.2},
        "annotate": {"judge_name": "large", "engine": "replay",
                     "engine_options": {"runs": str(runs), "zero_shot": "zero"}},
        "fit": {"backend": "local", "epochs": 20, "n_pairs": 300, "pairs_per_step": 100,
                "hidden_sizes": [8, 4], "learning_rate": 0.01},
        "calibrate": {"alpha": 0.2, "delta": 0.2, "grid": "fixed", "n_grid": 20,
                      "confidence": "conf_marc", "tie_policy": "drop"},
    }
    for name, values in sections.items():
        config[name] = {**config.get(name, {}), **values}
    return config


def _write_config(folder: Path, config: dict) -> Path:
    import yaml

    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    """One real run whose config carries an API key and a credentialed URL (in a report note)."""
    import signal

    folder = tmp_path_factory.mktemp("run")
    note = (f"The judge was served at https://judge-user:{SECRET_PASSWORD}@judge.example/v1"
            f"?api_key={SECRET_KEY} for this run.")
    config = _write_config(folder, _run_config(folder, report={"notes": [note]}))
    handler = signal.getsignal(signal.SIGTERM)  # `marc-ray run` installs its own
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            assert main(["run", str(config)]) == 0
    finally:
        signal.signal(signal.SIGTERM, handler)
    return {"folder": folder, "dir": folder / "run", "config": config, "log": stderr.getvalue()}


def test_secrets_reach_no_file_of_the_run(pipeline_run):
    run_dir = pipeline_run["dir"]
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert len(files) > 10 and (run_dir / "report" / "report.html") in files
    for path in files:
        data = path.read_bytes()
        for secret in (SECRET_PASSWORD, SECRET_KEY):
            assert secret.encode() not in data, (secret, path)
    for secret in (SECRET_PASSWORD, SECRET_KEY):
        assert secret not in pipeline_run["log"]
    html = (run_dir / "report" / "report.html").read_text()
    assert "judge.example" in html and "&lt;redacted&gt;" in html  # the note is shown, redacted


def test_the_run_certificate_records_its_binding(pipeline_run):
    from marc_ray.contracts import file_hash

    run_dir = pipeline_run["dir"]
    certificate = json.loads((run_dir / "calibrate" / "certificate.json").read_text())
    binding = certificate["stages"][0]["binding"]
    assert binding["judge"] == "large" and binding["confidence"] == "conf_marc"
    assert binding["model"]["engine"] == "replay"
    assert binding["confidence_model_hash"] == file_hash(run_dir / "fit" / "large" / "model.safetensors")
    assert binding["layout"]["n_annotators"] == 2


def _certificate_path(pipeline_run) -> Path:
    return pipeline_run["dir"] / "calibrate" / "certificate.json"


def _scored(pipeline_run):
    import pyarrow.parquet as pq

    return pq.read_table(pipeline_run["dir"] / "score" / "large.parquet")


def test_apply_accepts_the_certified_judges_own_file(pipeline_run, tmp_path, capsys):
    out = tmp_path / "out"
    code, err = run_cli(["apply", _certificate_path(pipeline_run),
                         pipeline_run["dir"] / "score" / "large.parquet", "--out", out], capsys)
    assert code == 0, err
    assert (out / "decisions.parquet").exists()


def _swap_judge(table):
    import pyarrow as pa

    from marc_ray.contracts import JUDGE_METADATA_KEY

    metadata = dict(table.schema.metadata)
    identity = json.loads(metadata[JUDGE_METADATA_KEY])
    identity["name"], identity["model"]["model"] = "small", "/models/small"
    metadata[JUDGE_METADATA_KEY] = json.dumps(identity).encode()
    table = table.set_column(table.column_names.index("judge"), "judge",
                             pa.array(["small"] * table.num_rows))
    return table.replace_schema_metadata(metadata)


def _swap_layout(table):
    from marc_ray.contracts import LAYOUT_METADATA_KEY, RunLayout

    metadata = dict(table.schema.metadata)
    layout = RunLayout.from_json(metadata[LAYOUT_METADATA_KEY])
    metadata[LAYOUT_METADATA_KEY] = RunLayout(layout.n_annotators + 1, layout.subsets).to_json().encode()
    return table.replace_schema_metadata(metadata)


def _swap_judge_model(table):
    from marc_ray.contracts import JUDGE_METADATA_KEY

    metadata = dict(table.schema.metadata)
    identity = json.loads(metadata[JUDGE_METADATA_KEY])
    identity["model"]["mode"] = "choice" if identity["model"]["mode"] != "choice" else "likelihood"
    metadata[JUDGE_METADATA_KEY] = json.dumps(identity).encode()
    return table.replace_schema_metadata(metadata)


@pytest.mark.parametrize("swap,field", [(_swap_judge, "judge"), (_swap_layout, "layout"),
                                        (_swap_judge_model, "model")],
                         ids=["another judge", "another layout", "another judge model"])
def test_apply_refuses_data_the_certificate_does_not_certify(swap, field, pipeline_run, tmp_path,
                                                             capsys):
    import pyarrow.parquet as pq

    data = tmp_path / "scored.parquet"
    pq.write_table(swap(_scored(pipeline_run)), data)
    out = tmp_path / "out"
    code, err = run_cli(["apply", _certificate_path(pipeline_run), data, "--out", out], capsys)
    assert_refused(code, err, names=["scored.parquet", f"'{field}'", "certified", "data has"],
                   out=out)


def test_apply_refuses_a_swapped_confidence_model(pipeline_run, tmp_path, capsys):
    """The same annotations scored by another fitted MARC model: its hash differs."""
    annotations = pipeline_run["dir"] / "annotate" / "large"
    model, scored = tmp_path / "other_model", tmp_path / "scored.parquet"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["fit", str(annotations), "--out", str(model), "--epochs", "2",
                     "--random-state", "5"]) == 0
        assert main(["score", str(annotations), "--model", str(model), "--out", str(scored)]) == 0
    capsys.readouterr()
    out = tmp_path / "out"
    code, err = run_cli(["apply", _certificate_path(pipeline_run), scored, "--out", out], capsys)
    assert_refused(code, err, names=["scored.parquet", "'confidence_model_hash'"], out=out)


def _redigest(data: dict) -> dict:
    from marc_ray.contracts import content_digest

    data["digest"] = content_digest(data)
    return data


def _edited_certificate(pipeline_run, edit, redigest: bool) -> dict:
    data = json.loads(_certificate_path(pipeline_run).read_text())
    edit(data)
    return _redigest(data) if redigest else data


def _set_threshold(value):
    def edit(data):
        data["stages"][0]["threshold"] = value
    return edit


def _next_grid_point(data):
    values = data["grid"]["values"]
    current = data["stages"][0]["threshold"]
    data["stages"][0]["threshold"] = values[0] if current == "inf" or current != values[0] else values[1]


def _and_data_hash(edit):
    def both(data):
        edit(data)
        data["data_hash"] = "0" * 64
    return both


CERTIFICATE_EDITS = {
    # name: (edit, recompute the digest?, names expected in the message)
    "threshold edited": (_next_grid_point, False, ["'digest'", "edited"]),
    "threshold and data_hash edited": (_and_data_hash(_next_grid_point), False, ["'digest'"]),
    "binding judge edited": (lambda d: d["stages"][0]["binding"].update(judge="small"), False,
                             ["'digest'"]),
    "threshold -1": (_set_threshold(-1), True, ["'stages[0].threshold'", "-1"]),
    "threshold '-inf'": (_set_threshold("-inf"), True, ["'stages[0].threshold'", "-inf"]),
    "threshold a list": (_set_threshold([0.9]), True, ["'stages[0].threshold'"]),
    "threshold a number as string": (_set_threshold("0.9"), True, ["'stages[0].threshold'"]),
    "threshold off the grid": (_set_threshold(0.123456), True, ["'stages[0].threshold'", "grid"]),
    "threshold true": (_set_threshold(True), True, ["'stages[0].threshold'"]),
    "stages empty": (lambda d: d.update(stages=[]), True, ["'stages'"]),
    "stages null": (lambda d: d.update(stages=None), True, ["'stages'"]),
    "alpha a string": (lambda d: d.update(alpha="0.2"), True, ["'alpha'"]),
    "digest removed": (lambda d: d.pop("digest"), False, ["'digest'"]),
    "binding a string": (lambda d: d["stages"][0].update(binding="large"), True,
                         ["'stages[0].binding'"]),
}


@pytest.mark.parametrize("case", sorted(CERTIFICATE_EDITS))
def test_apply_refuses_an_edited_certificate(case, pipeline_run, tmp_path, capsys):
    edit, redigest, names = CERTIFICATE_EDITS[case]
    data = _edited_certificate(pipeline_run, edit, redigest)
    if case == "digest removed":
        data.pop("digest", None)
    certificate = tmp_path / "certificate.json"
    certificate.write_text(json.dumps(data))
    out = tmp_path / "out"
    code, err = run_cli(["apply", certificate, pipeline_run["dir"] / "score" / "large.parquet",
                         "--out", out], capsys)
    assert_refused(code, err, names=["certificate.json", *names], out=out)


@pytest.mark.parametrize("text", ['{"alpha": 0.1,', "[1, 2]", "", "\xff"],
                         ids=["truncated", "a list", "empty", "not UTF-8"])
def test_apply_refuses_a_malformed_certificate(text, pipeline_run, tmp_path, capsys):
    certificate = tmp_path / "certificate.json"
    certificate.write_bytes(text.encode("latin-1"))
    out = tmp_path / "out"
    code, err = run_cli(["apply", certificate, pipeline_run["dir"] / "score" / "large.parquet",
                         "--out", out], capsys)
    assert_refused(code, err, names=["certificate.json"], out=out)


@pytest.fixture(scope="module")
def heuristic_certificate(tmp_path_factory):
    """A certificate of `marc-ray calibrate` on a JSONL scores file (no binding metadata)."""
    folder = tmp_path_factory.mktemp("heuristic")
    scores = _write_jsonl(folder / "scores.jsonl", _scores_rows(200))
    assert main(["calibrate", str(scores), "--confidence-column", "conf", "--alpha", "0.3",
                 "--out", str(folder / "cal")]) == 0
    return folder / "cal" / "certificate.json"


APPLY_DEFECTS = {
    # name: (row index, changes, field expected in the message, problem fragment)
    "confidence 5.0": (7, {"conf": 5.0}, "conf", "[0, 1]"),
    "negative confidence": (3, {"conf": -0.5}, "conf", "[0, 1]"),
    "NaN confidence with a verdict": (4, {"conf": float("nan")}, "conf", "[0, 1]"),
    "boolean confidence": (5, {"conf": True}, "conf", "boolean"),
    "duplicate id": (9, {"id": "item-1"}, "id", "duplicate"),
    "empty id": (2, {"id": ""}, "id", "empty"),
    "unknown verdict": (6, {"pred": "c"}, "pred", "c"),
}


@pytest.mark.parametrize("case", sorted(APPLY_DEFECTS))
def test_apply_validates_its_data(case, heuristic_certificate, tmp_path, capsys):
    row, changes, field, problem = APPLY_DEFECTS[case]
    data = _write_jsonl(tmp_path / "new.jsonl", _edit(_scores_rows(30, seed=1), row, **changes))
    out = tmp_path / "out"
    code, err = run_cli(["apply", heuristic_certificate, data, "--out", out], capsys)
    assert_refused(code, err, names=["new.jsonl", f"row {row}", f"'{field}'", problem], out=out)


def test_apply_escalates_nan_without_a_verdict(heuristic_certificate, tmp_path, capsys):
    """The stated NaN rule: an item with no verdict may have no confidence; it is escalated."""
    import pyarrow.parquet as pq

    rows = _edit(_scores_rows(30, seed=1), 4, conf=None, pred=None)
    data = _write_jsonl(tmp_path / "new.jsonl", rows)
    code, err = run_cli(["apply", heuristic_certificate, data, "--out", tmp_path / "out"], capsys)
    assert code == 0, err
    decisions = pq.read_table(tmp_path / "out" / "decisions.parquet").to_pylist()
    assert [d["verdict"] for d in decisions if d["id"] == "item-4"] == ["escalate"]


def test_apply_refuses_zero_rows(heuristic_certificate, tmp_path, capsys):
    data = tmp_path / "new.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": pa.array([], pa.string()), "pred": pa.array([], pa.string()),
                             "conf": pa.array([], pa.float64())}), data)
    out = tmp_path / "out"
    code, err = run_cli(["apply", heuristic_certificate, data, "--out", out], capsys)
    assert_refused(code, err, names=["new.parquet", "no rows"], out=out)


def test_apply_out_under_a_file(heuristic_certificate, tmp_path, capsys):
    data = _write_jsonl(tmp_path / "new.jsonl", _scores_rows(30, seed=1))
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    code, err = run_cli(["apply", heuristic_certificate, data, "--out", blocker / "out"], capsys)
    assert_refused(code, err, names=[str(blocker), "--out"])
    assert blocker.read_text() == "x"


def test_apply_names_the_users_row_in_a_multi_judge_table(pipeline_run, tmp_path, capsys):
    """Rows of the certified judge among another judge's rows: the error names the file row."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = _scored(pipeline_run)
    other = table.set_column(table.column_names.index("judge"), "judge",
                             pa.array(["other"] * table.num_rows))
    both = pa.concat_tables([other, table])  # the certified judge's rows start at row n
    column = both.column_names.index("conf_marc")
    values = both.column("conf_marc").to_pylist()
    row = table.num_rows + 3
    values[row] = 5.0
    both = both.set_column(column, "conf_marc", pa.array(values, pa.float64()))
    data = tmp_path / "two_judges.parquet"
    pq.write_table(both, data)
    out = tmp_path / "out"
    code, err = run_cli(["apply", _certificate_path(pipeline_run), data, "--out", out], capsys)
    assert_refused(code, err, names=["two_judges.parquet", f"row {row},", "'conf_marc'"], out=out)


# ---------------------------------------------------------------------------------------------
# run: config values are checked before anything runs; names never become paths
# ---------------------------------------------------------------------------------------------

RUN_CONFIG_DEFECTS = {
    # name: (sections to merge, names expected in the message)
    "judge_name climbs out": ({"annotate": {"judge_name": "../../../x"}}, ["judge_name", "../../../x"]),
    "judge_name with a slash": ({"annotate": {"judge_name": "a/b"}}, ["judge_name"]),
    "judge_name hidden": ({"annotate": {"judge_name": ".hidden"}}, ["judge_name"]),
    "report.title a number": ({"report": {"title": 123}}, ["report.title", "123"]),
    "report.notes a string": ({"report": {"notes": "text"}}, ["report.notes", "a list"]),
    "report.notes a number inside": ({"report": {"notes": ["ok", 5]}}, ["report.notes"]),
    "grid_low a string": ({"calibrate": {"grid_low": "a"}}, ["calibrate.grid_low", "'a'"]),
    "drift_significance a string": ({"calibrate": {"drift_significance": "x"}},
                                    ["calibrate.drift_significance", "'x'"]),
    "alpha a boolean": ({"calibrate": {"alpha": True}}, ["calibrate.alpha"]),
}


@pytest.mark.parametrize("case", sorted(RUN_CONFIG_DEFECTS))
def test_run_refuses_a_bad_config_before_anything_runs(case, tmp_path, capsys):
    sections, names = RUN_CONFIG_DEFECTS[case]
    config = _run_config(tmp_path)
    for name, values in sections.items():
        config[name] = {**config.get(name, {}), **values}
    path = _write_config(tmp_path, config)
    code, err = run_cli(["run", path], capsys)
    assert_refused(code, err, names=["config.yaml", *names])
    assert not (tmp_path / "run").exists()
    assert not list(tmp_path.parent.glob("x"))  # nothing written where ../../../x points


def test_run_refuses_a_folder_as_config(tmp_path, capsys):
    folder = tmp_path / "configs"
    folder.mkdir()
    code, err = run_cli(["run", folder], capsys)
    assert_refused(code, err, names=[str(folder), "folder"])


def test_run_folder_refuses_a_path_that_leaves_it(tmp_path):
    from marc_ray.contracts import ContractError
    from marc_ray.run_folder import RunFolder

    folder = RunFolder(str(tmp_path / "run"))
    for name in ("../x", "../../etc", "/abs", "a/../../b"):
        with pytest.raises(ContractError, match="leave the run folder"):
            folder.scores(name)
    assert folder.scores("large").endswith(os.path.join("score", "large.parquet"))


def test_report_refuses_a_stage_name_that_is_a_path(pipeline_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(pipeline_run["dir"], run)
    certificate = run / "calibrate" / "certificate.json"
    data = json.loads(certificate.read_text())
    data["stages"][0]["name"] = "../../outside"
    certificate.write_text(json.dumps(_redigest(data)))
    out = tmp_path / "report"
    code, err = run_cli(["report", run, "--out", out], capsys)
    assert_refused(code, err, names=["certificate.json", "'stages[0].name'", "../../outside"],
                   out=out)
    assert not out.exists()


def test_calibrate_records_the_binding_of_a_scored_file(pipeline_run, tmp_path, capsys):
    """`marc-ray calibrate` on the run's scored file binds what the file's metadata records;
    `--model-hash` overrides the confidence model's hash, and apply then checks it."""
    from marc_ray.contracts import file_hash

    scored = pipeline_run["dir"] / "score" / "large.parquet"
    args = ["calibrate", scored, "--confidence-column", "conf_marc", "--alpha", "0.3"]
    assert run_cli([*args, "--out", tmp_path / "cal"], capsys)[0] == 0
    binding = json.loads((tmp_path / "cal" / "certificate.json").read_text())["stages"][0]["binding"]
    weights = pipeline_run["dir"] / "fit" / "large" / "model.safetensors"
    assert binding["judge"] == "large" and binding["layout"]["n_annotators"] == 2
    assert binding["confidence_model_hash"] == file_hash(weights)
    assert run_cli([*args, "--model-hash", "f" * 64, "--out", tmp_path / "cal2"], capsys)[0] == 0
    out = tmp_path / "out"
    code, err = run_cli(["apply", tmp_path / "cal2" / "certificate.json", scored, "--out", out],
                        capsys)
    assert_refused(code, err, names=["large.parquet", "'confidence_model_hash'"], out=out)
