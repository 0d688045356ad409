"""Scoring: add a learned confidence column to an annotation file.

``score_annotations(model_dirs, annotations, out)`` loads each saved model (safetensors + JSON,
no pickle), checks that the file's run layout is the one the model was trained on, and writes
the file back with ``conf_marc`` (or ``conf_vanilla``, the column named in the model's
``config.json``) added, atomically. Every row with a verdict is scored, whatever its split;
a row without one gets NaN (:func:`score_table`, the rule the pipeline and ``apply`` use).

A file is scored batch by batch (``SCORE_BATCH_ROWS`` rows: each row's confidence depends only
on its own runs), written through one ``ParquetWriter`` to a temporary file renamed at the end,
so memory is one batch's, not the file's. The output schema and its metadata are built in one
place, :func:`scored_schema`.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..contracts import ContractError, read_columns, write_table_atomic
from ..contracts.io import is_parquet, parquet_batches, parquet_schema, write_atomic
from ..contracts.schemas import _normalise_ids, check_annotation_keys
from .data import load_annotations
from .estimator import MarcConfidence, add_column


def score_table(models: Sequence[MarcConfidence], table: pa.Table, source: str = "<annotations>"
                ) -> pa.Table:
    """``table`` with one confidence column per model (``model.column``), metadata kept.

    The one scoring rule (``marc-ray score``, the pipeline's score stage and ``apply``): a row
    with a verdict gets C_θ; a row without one (``pred`` null: every run failed) gets NaN, so
    it is never accepted downstream but stays in the table.

    Raises
    ------
    ContractError
        Layout mismatch between a model and the table, a row without features.
    ValueError
        Two models write the same column.
    """
    columns = [m.column for m in models]
    if len(set(columns)) != len(columns):
        raise ValueError(f"two models write the same column ({columns}); score them into "
                         "separate files or fit one of each variant")
    has_verdict = table.column("pred").is_valid().to_numpy(zero_copy_only=False) if models else None
    for model in models:
        values = np.full(table.num_rows, np.nan)
        if has_verdict.any():
            try:
                values[has_verdict] = model.score(table.filter(pa.array(has_verdict)), source)
            except ContractError as error:  # name the table's row, not the filtered one's
                if error.row is None:
                    raise
                raise ContractError(error.source, error.problem,
                                    row=int(np.flatnonzero(has_verdict)[error.row]),
                                    field=error.field, hint=error.hint) from error
        table = add_column(table, model.column, values)
    table = fill_drawn_split(models, table)
    # the metadata of every scored output (in memory or batch by batch) comes from one place
    if not models:
        return table  # nothing scored: the table itself
    return table.replace_schema_metadata(scored_schema(models, table.schema).metadata)


SCORE_BATCH_ROWS = 1 << 14  # rows scored at once (~40 MB of runs at 310 runs per item)


def scored_schema(models: Sequence[MarcConfidence], schema: pa.Schema) -> pa.Schema:
    """The scored file's schema: the annotation schema (metadata kept) with one float64
    confidence column per model (replaced when present), as :func:`score_table` adds them.

    The one place the scored output's schema and metadata are built: :func:`score_table` takes
    its metadata from here, and :func:`score_file` writes every batch in this schema."""
    for model in models:
        field = pa.field(model.column, pa.float64())
        if model.column in schema.names:
            schema = schema.set(schema.get_field_index(model.column), field)
        else:
            schema = schema.append(field)
    metadata = {**confidence_models_metadata(models), **scored_provenance(models, schema)}
    return schema.with_metadata({**(schema.metadata or {}), **metadata}) if metadata else schema


def score_file(models: Sequence[MarcConfidence], annotations_path: str | os.PathLike,
               out_path: str | os.PathLike, batch_rows: int = SCORE_BATCH_ROWS) -> int:
    """:func:`score_table` on a Parquet file or folder, batch by batch, written atomically;
    returns the rows written.

    Equal to scoring the whole table at once (``tests/fit/test_score_batches.py``); errors name
    the row of the file. Keys are checked over the whole file first (a duplicate (id, judge)
    in two batches is refused as before).
    """
    source = os.fspath(annotations_path)
    schema = parquet_schema(source)
    keys = read_columns(source, ["id", "judge"])
    if keys.num_rows == 0:
        raise ContractError(source, "the table has no rows")
    check_annotation_keys(_normalise_ids(keys), source)
    del keys
    out_schema = scored_schema(models, schema)
    rows = 0

    def write(temporary: str) -> None:
        nonlocal rows
        with pq.ParquetWriter(temporary, out_schema) as writer:
            offset = 0
            for batch in parquet_batches(source, batch_rows):
                if batch.num_rows == 0:
                    continue
                table = pa.Table.from_batches([batch]).replace_schema_metadata(schema.metadata)
                try:
                    scored = score_table(models, table, source)
                except ContractError as error:
                    if error.row is None:
                        raise
                    raise ContractError(error.source, error.problem, row=offset + error.row,
                                        field=error.field, hint=error.hint) from error
                writer.write_table(scored.cast(out_schema))
                offset += batch.num_rows
        rows = offset

    write_atomic(out_path, write, suffix=".parquet")
    return rows


def write_scores(model_dirs: str | os.PathLike | Sequence[str | os.PathLike],
                 annotations_path: str | os.PathLike | pa.Table, out_path: str | os.PathLike
                 ) -> int:
    """:func:`score_annotations` without reading the result back; returns the rows written
    (the pipeline's score stage and ``apply`` read the scored file themselves)."""
    return _score(model_dirs, annotations_path, out_path)[0]


def score_annotations(model_dirs: str | os.PathLike | Sequence[str | os.PathLike],
                      annotations_path: str | os.PathLike | pa.Table,
                      out_path: str | os.PathLike) -> pa.Table:
    """Score an annotation file with one or more saved models and write it to ``out_path``.

    Parameters
    ----------
    model_dirs : path or sequence of paths
        Folders written by ``MarcConfidence.save`` / ``marc-ray fit`` (none: the table is
        written unchanged, e.g. a run that calibrates a heuristic confidence).
    annotations_path : path or pyarrow.Table
    out_path : path
        A Parquet file, written atomically (may equal ``annotations_path``).

    Returns
    -------
    pyarrow.Table : the scored table (also written); for a Parquet input, scored batch by
    batch (:func:`score_file`), its columns other than the per-run lists, read back.
    """
    _, scored = _score(model_dirs, annotations_path, out_path)
    return read_columns(out_path) if scored is None else scored


def _score(model_dirs, annotations_path, out_path) -> tuple[int, pa.Table | None]:
    """Score and write; (rows, the scored table, or None when a Parquet input was streamed)."""
    if isinstance(model_dirs, (str, os.PathLike)):
        model_dirs = [model_dirs]
    models = [MarcConfidence.load(folder) for folder in model_dirs]
    if is_parquet(annotations_path):
        return score_file(models, annotations_path, out_path), None
    table, source = load_annotations(annotations_path)
    scored = score_table(models, table, source)
    write_table_atomic(scored, out_path)
    return scored.num_rows, scored


def scored_provenance(models: Sequence[MarcConfidence], schema: pa.Schema) -> dict[bytes, bytes]:
    """Schema metadata carrying each confidence column's provenance (the rows its model was
    trained and validated on), kept beside any the annotation file already carried."""
    from ..contracts.provenance import (PROVENANCE_METADATA_KEY, provenance_metadata)

    import json

    existing = {}
    raw = (schema.metadata or {}).get(PROVENANCE_METADATA_KEY)
    if raw is not None:
        try:
            existing = json.loads(raw)
        except ValueError:
            existing = {}
    by_column = {**existing, **{m.column: getattr(m, "provenance_", None) or {} for m in models}}
    return provenance_metadata(by_column)


def fill_drawn_split(models: Sequence[MarcConfidence], table: pa.Table) -> pa.Table:
    """A null ``split`` of a row that a model's drawn split placed (``fit.split``) takes that
    split: ``calibration`` (held out), ``train`` or ``valid`` (the rows the model saw).

    Only files without a declared split get a drawn one, so a declared split is never changed;
    rows the model never met (new data) stay null.
    """
    from ..contracts.provenance import seen_rows

    drawn = [m for m in models if getattr(m, "drawn_split_", None)]
    if not drawn or "split" not in table.column_names:
        return table
    splits = np.asarray(table.column("split").to_pylist(), dtype=object)
    unset = np.equal(splits, None)
    if not unset.any():
        return table
    ids = table.column("id")
    for model in drawn:
        provenance = model.provenance_
        for value, record in (("calibration", model.drawn_split_["rows"]),
                              ("train", provenance.get(f"{model.column}: trained")),
                              ("valid", provenance.get(f"{model.column}: validated"))):
            if record:
                hit, _ = seen_rows({value: record}, ids)
                splits[unset & hit] = value
    position = table.schema.get_field_index("split")
    column = pa.array(splits.tolist(), table.schema.field("split").type)
    return table.set_column(position, table.schema.field("split"), column)


def confidence_models_metadata(models: Sequence[MarcConfidence]) -> dict[bytes, bytes]:
    """Schema metadata mapping each confidence column to its model's SHA-256 (model.safetensors).

    The certificate binds to that hash and ``apply`` checks it: data scored by another fitted
    model is refused. The annotation table's layout and judge metadata are kept beside it.
    Models not loaded from a folder (no ``weights_hash_``) add nothing.
    """
    import json

    from ..contracts import CONFIDENCE_MODELS_METADATA_KEY

    hashes = {model.column: model.weights_hash_ for model in models
              if getattr(model, "weights_hash_", None)}
    return {CONFIDENCE_MODELS_METADATA_KEY: json.dumps(hashes, sort_keys=True).encode()} if hashes else {}

