"""What a win rate is computed from: every item of a finished run, as arrays.

From a run folder (``marc_ray.run_folder``): the comparisons' ``model_a`` / ``model_b``
(``data/comparisons.parquet``), the first judge's probability P(response_a better) and verdict
on every item (``score/<judge>.parquet``), the human labels, and where the certificate sends
each item (``calibrate/certificate.json``, through ``calibrate.decide``).

Which items are *labelled* for the estimate (item 3 of the design's win-rate paragraph): items
with a human label that trained or selected nothing. Excluded are the rows of every fitted
confidence model's training and validation splits (``fit/<judge>/config.json``: its
``fit_config.train_splits`` / ``valid_splits``, a null split counting as training as in
``fit.data``, and its ``valid_ids``), any ids a provenance record lists there (``train_ids``),
the pipeline's ``train`` split, which also chooses an ``auto`` measure, and every row the scored
file's provenance record lists (when the version records one). Their human labels
are not used; the judge's probability on them is (the judge is fixed: nothing was fitted to it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from ..contracts import Certificate, ContractError
from ..contracts.io import is_file, read_columns, read_text
from ..run_folder import RunFolder

TRAINING_SPLIT = "train"  # the pipeline's training split (config.py requires it in train_splits)
PROBABILITY_COLUMNS = ("p_simulated", "p_predictive")  # the judge's P(a better), first present


@dataclass
class RunWinItems:
    """Every item of a run with both models named (arrays of shape (n,))."""

    ids: np.ndarray            # str
    rows: np.ndarray           # int: the item's row in the comparisons file (for errors)
    model_a: np.ndarray        # str
    model_b: np.ndarray        # str
    p_a: np.ndarray            # the judge's P(response_a better); 0.5 where it gave none
    human_label: np.ndarray    # "a", "b", "tie" or None
    eligible: np.ndarray       # bool: may be a labelled item (trained and selected nothing)
    decided: np.ndarray        # bool: the certificate decides it (else escalated)
    verdict: np.ndarray        # "a", "b" or "escalate"
    tie_policy: str
    delta: float
    alpha: float
    judge: str
    probability_column: str
    n_training_excluded: int   # labelled items left out because they trained or selected
    n_without_probability: int
    comparisons_source: str


def training_ids(folder: RunFolder, judges: list[str], ids: np.ndarray, splits: np.ndarray) -> np.ndarray:
    """Boolean mask over ``ids``: the rows that trained or selected a fitted model of the run."""
    used = splits == TRAINING_SPLIT
    for judge in judges:
        config_path = folder.path("fit", judge, "config.json")
        if not is_file(config_path):
            continue  # a heuristic confidence: nothing was fitted for this judge
        try:
            saved = json.loads(read_text(config_path))
        except json.JSONDecodeError as error:
            raise ContractError(config_path, f"malformed JSON: {error.msg}") from error
        fit_config = saved.get("fit_config") or {}
        fit_splits = set(fit_config.get("train_splits") or [TRAINING_SPLIT]) \
            | set(fit_config.get("valid_splits") or [])
        used |= np.array([s is None or s in fit_splits for s in splits])
        listed = set(map(str, saved.get("valid_ids") or [])) | set(map(str, saved.get("train_ids") or []))
        if listed:
            used |= np.isin(ids, list(listed))
    return used


def recorded_seen(table, ids: np.ndarray) -> np.ndarray:
    """The rows a provenance record of the scored file lists (trained, validated, chose a
    measure, built a grid: ``contracts.provenance``, in the file's Parquet metadata), when this
    version of marc_ray records provenance; none otherwise (the splits and ``valid_ids`` rule)."""
    try:
        from ..contracts.provenance import provenance_from_metadata, seen_rows
    except ImportError:  # before provenance records (issue 24): training_ids alone decides
        return np.zeros(len(ids), dtype=bool)
    return seen_rows(provenance_from_metadata(table.schema.metadata), ids)[0]


def read_run(run_dir: "str | RunFolder", delta: float | None = None) -> RunWinItems:
    """Read a finished run's items for win rates.

    Raises
    ------
    ContractError
        No certificate or scores; no item with both models named (naming the comparisons file
        and field ``model_a``); a scored item missing from the comparisons.
    """
    from ..calibrate.decide import decide

    folder = RunFolder.of(run_dir)
    certificate = Certificate.read(folder.certificate)
    judges = [stage["name"] for stage in certificate.stages]
    confidence = certificate.stages[0]["confidence"]
    group_column = certificate.groups["column"] if certificate.groups else "group"

    comparisons = read_columns(folder.comparisons, ["id", "model_a", "model_b"])
    if "model_a" not in comparisons.column_names or comparisons.column("model_a").null_count == comparisons.num_rows:
        raise ContractError(folder.comparisons, "no comparison names its models", field="model_a",
                            hint="give model_a and model_b in the comparisons (docs/datasets.md "
                                 "lists the data sets that have them)")
    for row, (a, b) in enumerate(zip(comparisons.column("model_a").to_pylist(),
                                     comparisons.column("model_b").to_pylist())):
        if (a is None) != (b is None):  # validate_comparisons refuses it; a file edited since
            raise ContractError(folder.comparisons, "a model is named on one side only", row=row,
                                field="model_b" if b is None else "model_a",
                                hint="give both model_a and model_b, or neither")
    names = {i: (a, b, row) for row, (i, a, b) in enumerate(zip(*(
        comparisons.column(c).to_pylist() for c in ("id", "model_a", "model_b"))))}

    tables = [read_columns(folder.scores(judge), ["id", "pred", "human_label", "split", group_column,
                                                  *PROBABILITY_COLUMNS, *_confidences(certificate, i)])
              for i, judge in enumerate(judges)]
    first = tables[0]
    column = next((c for c in PROBABILITY_COLUMNS if c in first.column_names), None)
    if column is None:
        raise ContractError(folder.scores(judges[0]), "no judge probability column",
                            field=PROBABILITY_COLUMNS[0])
    ids = np.array(first.column("id").to_pylist(), dtype=object)
    missing = [i for i in ids if i not in names]
    if missing:
        raise ContractError(folder.comparisons, f"scored item {missing[0]!r} is not in the "
                            "comparisons", field="id")
    model_a = np.array([names[i][0] for i in ids], dtype=object)
    model_b = np.array([names[i][1] for i in ids], dtype=object)
    rows = np.array([names[i][2] for i in ids], dtype=int)
    splits = np.array(first.column("split").to_pylist() if "split" in first.column_names
                      else [None] * len(ids), dtype=object)
    labels = np.array(first.column("human_label").to_pylist(), dtype=object)

    p_a = np.asarray(first.column(column).to_numpy(zero_copy_only=False), dtype=float)
    without = ~np.isfinite(p_a)
    # any fixed prediction keeps PPI valid; 0.5 says "no information" for an item with no verdict
    p_a = np.where(without, 0.5, p_a)

    confidences, preds = _aligned(tables, ids, certificate)
    groups = np.array(first.column(group_column).to_pylist(), dtype=object) \
        if group_column in first.column_names else None
    routing = decide(certificate, confidences, preds, groups=groups)

    used = training_ids(folder, judges, ids, splits) | recorded_seen(first, ids)
    named = np.array([a is not None and b is not None for a, b in zip(model_a, model_b)])
    labelled = np.array([label in ("a", "b", "tie") for label in labels])
    keep = named
    return RunWinItems(
        ids=ids[keep], rows=rows[keep], model_a=model_a[keep], model_b=model_b[keep], p_a=p_a[keep],
        human_label=labels[keep], eligible=(~used)[keep], decided=(routing.stage >= 0)[keep],
        verdict=np.asarray(routing.verdict, dtype=object)[keep], tie_policy=certificate.tie_policy,
        delta=float(certificate.delta if delta is None else delta), alpha=float(certificate.alpha),
        judge=judges[0], probability_column=column,
        n_training_excluded=int((used & labelled & keep).sum()),
        n_without_probability=int((without & keep).sum()), comparisons_source=folder.comparisons)


def _confidences(certificate: Certificate, index: int) -> list[str]:
    return [certificate.stages[index]["confidence"]]


def _aligned(tables, ids: np.ndarray, certificate: Certificate):
    """Each stage's confidence and verdict on the first table's items, shape (n, n_stages)."""
    n, n_stages = len(ids), len(tables)
    confidence = np.full((n, n_stages), np.nan)
    pred = np.full((n, n_stages), None, dtype=object)
    position = {item: row for row, item in enumerate(ids)}
    for stage, table in enumerate(tables):
        name = certificate.stages[stage]["confidence"]
        rows = np.array([position.get(i, -1) for i in table.column("id").to_pylist()])
        present = rows >= 0
        values = np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=float)
        confidence[rows[present], stage] = values[present]
        pred[rows[present], stage] = np.asarray(table.column("pred").to_pylist(), dtype=object)[present]
    return confidence, pred
