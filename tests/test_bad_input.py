"""Every bad input is refused cleanly through the CLI: exit 2, one line naming the file, row
and field, no traceback, and nothing left behind (issue 12).

Each case writes a small, otherwise valid input, breaks one thing, runs ``marc-ray`` in this
process (``marc_ray.cli.main``: the same code path as the console script, without paying the
interpreter start per case) and checks the exit code, the message and that ``--out`` holds
nothing. One case runs the real console script in a subprocess to check the process exit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from marc_ray.cli import main

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
