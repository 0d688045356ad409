"""Scoring: add a learned confidence column to an annotation file.

``score_annotations(model_dirs, annotations, out)`` loads each saved model (safetensors + JSON,
no pickle), checks that the file's run layout is the one the model was trained on, and writes
the file back with ``conf_marc`` (or ``conf_vanilla``, the column named in the model's
``config.json``) added, atomically. Every row with a verdict is scored, whatever its split;
a row without one gets NaN (:func:`score_table`, the rule the pipeline and ``apply`` use).
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import pyarrow as pa

from ..contracts import write_table_atomic
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
            values[has_verdict] = model.score(table.filter(pa.array(has_verdict)), source)
        table = add_column(table, model.column, values)
    return table


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
    pyarrow.Table : the scored table (also written).
    """
    if isinstance(model_dirs, (str, os.PathLike)):
        model_dirs = [model_dirs]
    models = [MarcConfidence.load(folder) for folder in model_dirs]
    table, source = load_annotations(annotations_path)
    scored = score_table(models, table, source)
    scored = scored.replace_schema_metadata({**(scored.schema.metadata or {}),
                                             **confidence_models_metadata(model_dirs, models)})
    write_table_atomic(scored, out_path)
    return scored


def confidence_models_metadata(model_dirs: Sequence[str | os.PathLike],
                               models: Sequence[MarcConfidence]) -> dict[bytes, bytes]:
    """Schema metadata mapping each confidence column to its model's SHA-256 (model.safetensors).

    The certificate binds to that hash and ``apply`` checks it: data scored by another fitted
    model is refused. The annotation table's layout and judge metadata are kept beside it.
    """
    import json

    from ..contracts import CONFIDENCE_MODELS_METADATA_KEY, file_hash
    from .estimator import MODEL_FILE

    if not models:
        return {}
    hashes = {model.column: file_hash(os.path.join(os.fspath(folder), MODEL_FILE))
              for folder, model in zip(model_dirs, models)}
    return {CONFIDENCE_MODELS_METADATA_KEY: json.dumps(hashes, sort_keys=True).encode()}
