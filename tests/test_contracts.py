"""Validation error paths of ``marc_ray.contracts``: every message names file, row and field."""

import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from marc_ray.contracts import (Certificate, ContractError, RunLayout, annotation_schema,
                                read_table, validate_annotations, validate_comparisons,
                                validate_scores)

SOURCE = "scores.jsonl"


def _scores(n=5):
    return [{"id": f"i{i}", "conf": 0.5 + i / 20, "pred": "a", "human_label": "b" if i % 2 else "a"}
            for i in range(n)]


def _table(rows):
    return pa.Table.from_pylist(rows)


def _raises(function, *args, row=None, field=None, problem="", **kwargs):
    with pytest.raises(ContractError, match=problem) as info:
        function(*args, **kwargs)
    error = info.value
    message = str(error)
    assert error.source in message
    if row is not None:
        assert error.row == row and f"row {row}" in message
    if field is not None:
        assert error.field == field and f"field '{field}'" in message
    return error


def test_contract_error_message_format():
    error = ContractError("f.jsonl", "bad value", row=3, field="conf", hint="fix it")
    assert str(error) == "f.jsonl, row 3, field 'conf': bad value (fix it)"
    assert isinstance(error, ValueError)


def test_valid_scores_pass():
    table = validate_scores(_table(_scores()), "conf", SOURCE)
    assert table.num_rows == 5


@pytest.mark.parametrize("column", ["id", "pred", "human_label", "conf"])
def test_scores_missing_column(column):
    rows = _scores()
    for row in rows:
        del row[column]
    error = _raises(validate_scores, _table(rows), "conf", SOURCE, field=column, problem="missing column")
    assert error.source == SOURCE


def test_scores_label_outside_set():
    rows = _scores()
    rows[3]["human_label"] = "A"
    _raises(validate_scores, _table(rows), "conf", SOURCE, row=3, field="human_label",
            problem="label 'A' is not one of")
    rows = _scores()
    rows[2]["pred"] = "tie"  # a judge verdict is a or b only
    _raises(validate_scores, _table(rows), "conf", SOURCE, row=2, field="pred",
            problem="label 'tie' is not one of")


def test_scores_missing_label_value():
    rows = _scores()
    rows[1]["human_label"] = None
    _raises(validate_scores, _table(rows), "conf", SOURCE, row=1, field="human_label",
            problem="missing value")


@pytest.mark.parametrize("value, shown", [(math.nan, "nan"), (1.01, "1.01"), (-0.5, "-0.5"),
                                          (math.inf, "inf")])
def test_scores_bad_confidence(value, shown):
    rows = _scores()
    rows[4]["conf"] = value
    _raises(validate_scores, _table(rows), "conf", SOURCE, row=4, field="conf",
            problem=f"confidence {shown} is not a number in")


def test_scores_non_numeric_confidence():
    rows = _scores()
    for row in rows:
        row["conf"] = str(row["conf"])
    _raises(validate_scores, _table(rows), "conf", SOURCE, field="conf", problem="must be numeric")


def test_scores_duplicate_ids():
    rows = _scores()
    rows[3]["id"] = "i1"
    _raises(validate_scores, _table(rows), "conf", SOURCE, row=3, field="id",
            problem="duplicate id 'i1' \\(first seen in row 1\\)")


def test_scores_integer_ids_are_text():
    rows = _scores()
    for index, row in enumerate(rows):
        row["id"] = index
    assert validate_scores(_table(rows), "conf", SOURCE).column("id").to_pylist()[0] == "0"


def test_scores_empty_and_too_few():
    empty = _table(_scores()).slice(0, 0)
    _raises(validate_scores, empty, "conf", SOURCE, problem="the table has no rows")
    _raises(validate_scores, _table(_scores()), "conf", SOURCE, min_rows=10,
            problem="5 rows, fewer than the 10 needed")


def test_read_table_errors(tmp_path):
    missing = tmp_path / "missing.jsonl"
    _raises(read_table, missing, problem="no such file")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    _raises(read_table, empty, problem="the file has no rows")
    malformed = tmp_path / "bad.jsonl"
    malformed.write_text('{"id": "a"}\n{"id": "b",\n')
    error = _raises(read_table, malformed, row=1, problem="malformed JSON line")
    assert error.source == str(malformed) and "line 2" in str(error)
    not_object = tmp_path / "list.jsonl"
    not_object.write_text('{"id": "a"}\n[1, 2]\n')
    _raises(read_table, not_object, row=1, problem="each line must be a JSON object")
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('[{"id": "a"},')
    _raises(read_table, bad_json, problem="malformed JSON")
    unknown = tmp_path / "scores.csv"
    unknown.write_text("id\n1\n")
    _raises(read_table, unknown, problem="unknown file format")
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet")
    _raises(read_table, broken, problem="not a readable Parquet file")


def test_read_table_type_clash_names_row_and_field(tmp_path):
    path = tmp_path / "clash.jsonl"
    path.write_text(json.dumps({"id": "a", "conf": 0.5}) + "\n" + json.dumps({"id": "b", "conf": {"x": 1}}) + "\n")
    _raises(read_table, path, row=1, field="conf", problem="value of a different type")


def test_read_table_round_trip(tmp_path):
    path = tmp_path / "scores.parquet"
    pq.write_table(_table(_scores()), path)
    assert read_table(path).num_rows == 5
    jsonl = tmp_path / "scores.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in _scores()))
    assert read_table(jsonl).column_names == ["id", "conf", "pred", "human_label"]


def _comparisons():
    return [{"id": f"c{i}", "instruction": "q", "response_a": "x", "response_b": "y",
             "human_votes": [{"annotator": "u1", "label": "a"}, {"annotator": "u2", "label": "a"}]}
            for i in range(3)]


def test_comparison_errors():
    rows = _comparisons()
    assert validate_comparisons(_table(rows), "c.jsonl").column("human_label").to_pylist() == ["a"] * 3
    rows[1]["human_votes"][0]["label"] = "maybe"
    _raises(validate_comparisons, _table(rows), "c.jsonl", row=1, field="human_votes",
            problem="has no label in")
    rows = _comparisons()
    for row in rows:
        del row["response_b"]
    _raises(validate_comparisons, _table(rows), "c.jsonl", field="response_b", problem="missing column")
    rows = _comparisons()
    rows[2]["id"] = "  "
    _raises(validate_comparisons, _table(rows), "c.jsonl", row=2, field="id", problem="empty id")
    rows = _comparisons()
    for row in rows:
        del row["human_votes"]
    _raises(validate_comparisons, _table(rows), "c.jsonl", row=0, field="human_label",
            require_labels=True, problem="no human label")


def test_annotation_errors():
    layout = RunLayout(n_annotators=1, subsets=((0,),))
    row = {"id": "x", "judge": "j", "probs": [0.5, 0.6], "status": ["ok", "ok"], "pred": "a"}
    table = pa.Table.from_pylist([row])
    _raises(validate_annotations, table, "ann.parquet", field="probs", problem="no run layout")
    schema = annotation_schema(layout)

    def annotated(**changes):
        values = dict(row, **changes)
        full = {name: [values.get(name)] for name in schema.names}
        return pa.table(full, schema=schema)

    assert validate_annotations(annotated(), "ann.parquet")[1] == layout
    _raises(validate_annotations, annotated(probs=[0.5]), "ann.parquet", row=0, field="probs",
            problem="expected 2 runs")
    _raises(validate_annotations, annotated(probs=[0.5, 1.5]), "ann.parquet", row=0, field="probs",
            problem="outside \\[0, 1\\]")
    _raises(validate_annotations, annotated(probs=[0.5, math.nan]), "ann.parquet", row=0,
            field="status", problem="does not match probability")


def test_certificate_from_dict_errors():
    good = {"alpha": 0.1, "delta": 0.1, "procedure": "fixed_sequence", "tie_policy": "drop",
            "grid": {}, "stages": [{"name": "j", "confidence": "c", "threshold": "inf"}],
            "delta_split": "none", "coverage": 0.0, "n_calibration": 10,
            "agreement_on_accepted": None, "data_hash": "h"}
    assert Certificate.from_dict(dict(good)).stages[0]["threshold"] == math.inf
    _raises(Certificate.from_dict, {k: v for k, v in good.items() if k != "alpha"}, "cert.json",
            field="alpha", problem="missing key")
    _raises(Certificate.from_dict, dict(good, delta=1.5), "cert.json", field="delta",
            problem="must be a number in \\(0, 1\\)")
    _raises(Certificate.from_dict, dict(good, colour="red"), "cert.json", field="colour",
            problem="unknown keys")
    _raises(Certificate.from_dict, dict(good, stages=[{"name": "j"}]), "cert.json",
            field="stages[0].confidence", problem="missing key")


def test_the_hash_of_run_vectors_is_their_content_however_stored(tmp_path):
    # run vectors (list columns of numbers) are hashed as bytes, not JSON (minutes at 1M items):
    # the digest must still be the table's content, whatever its chunks or file
    import numpy as np

    from marc_ray.contracts.io import file_table_hash, table_hash

    rng = np.random.default_rng(0)
    vectors = [None if i % 97 == 0 else [None if j == 3 and i % 5 == 0 else float(x)
                                         for j, x in enumerate(rng.random(7))] for i in range(5000)]
    vectors[10] = [math.nan] * 7

    def table(values):
        return pa.table({"id": [str(i) for i in range(len(values))],
                         "probs": pa.array(values, pa.list_(pa.float32()))})

    digest = table_hash(table(vectors))
    pq.write_table(table(vectors), tmp_path / "runs.parquet", row_group_size=700)
    assert table_hash(pa.Table.from_batches(table(vectors).to_batches(max_chunksize=333))) == digest
    assert file_table_hash(tmp_path / "runs.parquet", ["id", "probs"]) == digest
    changed = [list(v) if v else v for v in vectors]
    changed[20][2] = 0.5
    assert table_hash(table(changed)) != digest
    changed = [list(v) if v else v for v in vectors]
    changed[30][3] = math.nan  # a missing run (null) and an unreadable one (NaN) differ
    assert vectors[30][3] is None and table_hash(table(changed)) != digest
    # the same values, split differently between two items
    assert table_hash(table([[1.0, 2.0], [3.0]])) != table_hash(table([[1.0], [2.0, 3.0]]))
