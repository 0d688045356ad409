"""Features of the MARC confidence model, computed from annotation rows.

Everything is oriented towards the judge's verdict ``pred``: for each run, ``q = P(run favours
pred)`` = p if pred is "a" else 1 − p, where p = P(response_a better). The confidence model
then answers one question: how likely is *this verdict* to agree with humans.

The feature vector, in this fixed order (``FeatureLayout.names`` spells every entry):

1. ``q[r]`` for every run r of the :class:`~marc_ray.contracts.RunLayout`, in its flat order
   ``r = (annotator * n_subsets + subset) * 2 + order`` (the full tensor
   annotators × shot subsets × orders); 0 where the run is missing;
2. ``present[r]``: the mask channel, 1 where run r was read, 0 where it is missing
   (missing runs are never filled with a value that could pass for data: the value slot is 0
   and the mask says so);
3. the two zero-shot runs, ``q`` then their mask (orders ab, ba);
4. order-invariant summaries over the present runs: ``mean`` and ``spread`` (standard
   deviation) of q, ``agree_share`` (share of runs whose own verdict is pred), ``entropy_runs``
   (mean binary entropy of the runs, nats), ``entropy_mean`` (binary entropy of the mean),
   ``label_mass`` (mean label-token mass where it is defined, 0 otherwise) with its mask
   ``label_mass_present``, and ``present_share`` (share of runs read).

Rows whose verdict is null (no run could be read) or with every simulated run missing have no
features: they raise a :class:`~marc_ray.contracts.ContractError` naming the row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..contracts import ContractError, RunLayout, validate_annotations

SUMMARY_NAMES = ("mean", "spread", "agree_share", "entropy_runs", "entropy_mean",
                 "label_mass", "label_mass_present", "present_share")
FEATURE_VERSION = 1


@dataclass(frozen=True)
class FeatureLayout:
    """What a model was trained on: the run layout and the names of its feature columns."""

    run_layout: RunLayout
    version: int = FEATURE_VERSION

    @property
    def names(self) -> tuple[str, ...]:
        layout = self.run_layout
        runs = [f"q[a{j},s{s},{o}]" for j in range(layout.n_annotators)
                for s in range(layout.n_subsets) for o in layout.orders]
        return tuple(runs + [f"present{n[1:]}" for n in runs]
                     + ["q_zero_shot[ab]", "q_zero_shot[ba]",
                        "present_zero_shot[ab]", "present_zero_shot[ba]"]
                     + list(SUMMARY_NAMES))

    @property
    def n_features(self) -> int:
        return 2 * self.run_layout.n_runs + 4 + len(SUMMARY_NAMES)

    def to_dict(self) -> dict:
        return {"version": self.version, "run_layout": json.loads(self.run_layout.to_json()),
                "n_features": self.n_features, "names": list(self.names)}

    @classmethod
    def from_dict(cls, data: dict, source: str = "<model config>") -> "FeatureLayout":
        if data.get("version") != FEATURE_VERSION:
            raise ContractError(source, f"feature version {data.get('version')!r} is not "
                                f"{FEATURE_VERSION}", field="features",
                                hint="refit the model with this version of marc_ray")
        return cls(RunLayout.from_json(json.dumps(data["run_layout"])))

    def check_matches(self, other: RunLayout, source: str) -> None:
        """Raise if an annotation file's run layout is not the one the model was trained on."""
        if other != self.run_layout:
            raise ContractError(
                source, f"feature layout mismatch: the model was trained on runs "
                f"{self.run_layout.shape} (annotators, shot subsets, orders) with subsets "
                f"{[list(s) for s in self.run_layout.subsets][:4]}..., the file has runs "
                f"{other.shape} with subsets {[list(s) for s in other.subsets][:4]}...",
                field="probs", hint="score files annotated with the same annotators, shots and "
                "subsets as the training file, or refit the model on this layout")


def _binary_entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return -(p * np.log(p) + (1 - p) * np.log(1 - p))


def orient(probs: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """q = P(run favours the verdict): p where pred is "a", 1 − p where it is "b".

    Parameters
    ----------
    probs : ndarray of float, shape (n, n_runs)
        P(response_a better); NaN where missing (stays NaN).
    pred : ndarray of str, shape (n,)
    """
    flip = (np.asarray(pred, dtype=object) == "b")[:, None]
    return np.where(flip, 1.0 - probs, probs)


def build_features(table: pa.Table, source: str = "<annotations>",
                   layout: FeatureLayout | None = None,
                   hidden_runs: np.ndarray | None = None) -> tuple[np.ndarray, FeatureLayout]:
    """The feature matrix of an annotation table.

    Parameters
    ----------
    table : pyarrow.Table
        Annotation rows (``marc_ray.contracts.ANNOTATION_SCHEMA``, run layout in the metadata).
    source : str
        Named in errors (the file).
    layout : FeatureLayout, optional
        The layout a model was trained on; the table's run layout must equal it.
    hidden_runs : ndarray of bool, shape (n_runs,), optional
        Runs treated as missing (a model trained in simulated mode never saw its pseudo-human's
        runs, so they are hidden when it scores real data too).

    Returns
    -------
    features : ndarray of float32, shape (n, n_features)
    layout : FeatureLayout

    Raises
    ------
    ContractError
        The table breaks the annotation contract, its run layout differs from ``layout``, a
        row has no verdict or no simulated run, or a feature is not finite.
    """
    table, run_layout = validate_annotations(table, source)
    if layout is not None:
        layout.check_matches(run_layout, source)
    layout = layout or FeatureLayout(run_layout)
    n, n_runs = table.num_rows, run_layout.n_runs
    no_verdict = pc.is_null(table.column("pred")).to_numpy(zero_copy_only=False)
    for index in np.flatnonzero(no_verdict):
        raise ContractError(source, "no verdict: no run of this item could be read, so it has no "
                            "features", row=int(index), field="pred",
                            hint="drop the item or re-annotate it")
    hidden = None if hidden_runs is None else np.asarray(hidden_runs, dtype=bool)
    features = None
    # row blocks: the float64 temporaries hold one block, not the whole table
    step = max(1, FEATURE_BLOCK_VALUES // max(n_runs, 1))
    for lo in range(0, n, step):
        block = _block_features(table.slice(lo, step), run_layout, hidden, source, lo)
        if features is None:
            features = np.empty((n, block.shape[1]), np.float32)
        features[lo:lo + len(block)] = block
    if features is None:
        features = _block_features(table, run_layout, hidden, source, 0)
    check_finite(features, layout, source)
    return features, layout


FEATURE_BLOCK_VALUES = 1 << 22  # run values per block of rows (float64 temporaries: ~32 MB each)


def _block_features(table: pa.Table, run_layout: RunLayout, hidden: np.ndarray | None,
                    source: str, offset: int) -> np.ndarray:
    """Features of a block of rows (``offset``: the block's first row, for errors)."""
    n, n_runs = table.num_rows, run_layout.n_runs
    pred = np.asarray(table.column("pred").to_pylist(), dtype=object)
    probs = _matrix(table, "probs", n, n_runs)
    if hidden is not None:
        probs[:, hidden] = np.nan
    present = np.isfinite(probs)
    for index in np.flatnonzero(~present.any(axis=1)):
        raise ContractError(source, "every simulated-annotator run is missing", row=offset + int(index),
                            field="probs", hint="drop the item or re-annotate it")
    q = orient(probs, pred)
    zero = _matrix(table, "zero_shot_probs", n, 2) if "zero_shot_probs" in table.column_names \
        else np.full((n, 2), np.nan)
    zero_present = np.isfinite(zero)
    q_zero = orient(zero, pred)
    mass = _matrix(table, "label_mass", n, n_runs) if "label_mass" in table.column_names \
        else np.full((n, n_runs), np.nan)
    mass_present = np.isfinite(mass) & present

    count = present.sum(axis=1)
    q0 = np.where(present, q, 0.0)
    mean = q0.sum(axis=1) / count
    spread = np.sqrt(np.where(present, (q - mean[:, None]) ** 2, 0.0).sum(axis=1) / count)
    agree_share = np.where(present, q >= 0.5, False).sum(axis=1) / count
    entropy_runs = np.where(present, _binary_entropy(np.nan_to_num(q)), 0.0).sum(axis=1) / count
    entropy_mean = _binary_entropy(mean)
    mass_count = mass_present.sum(axis=1)
    label_mass = np.where(mass_present, mass, 0.0).sum(axis=1) / np.maximum(mass_count, 1)
    summaries = np.stack([mean, spread, agree_share, entropy_runs, entropy_mean, label_mass,
                          (mass_count > 0).astype(float), count / n_runs], axis=1)
    return np.concatenate([q0, present, np.where(zero_present, q_zero, 0.0), zero_present,
                           summaries], axis=1).astype(np.float32)


def check_finite(features: np.ndarray, layout: FeatureLayout, source: str) -> None:
    """Raise a ContractError naming the row and feature of the first non-finite value."""
    bad = np.argwhere(~np.isfinite(features))
    if bad.size:
        row, column = (int(v) for v in bad[0])
        raise ContractError(source, f"feature {layout.names[column]!r} is "
                            f"{features[row, column]} (not a finite number)", row=row,
                            field="features", hint="check the annotation's probabilities and "
                            "label masses; the model cannot score non-finite features")


def _matrix(table: pa.Table, name: str, n: int, width: int) -> np.ndarray:
    """A list column as an (n, width) float matrix (NaN for nulls), column-wise."""
    column = table.column(name).combine_chunks()
    out = np.full((n, width), np.nan)
    lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False)
    values = pc.fill_null(pc.cast(pc.list_flatten(column), pa.float64()), np.nan)
    values = values.to_numpy(zero_copy_only=False)
    rows = np.repeat(np.arange(n), lengths)
    starts = np.cumsum(lengths) - lengths
    cols = np.arange(len(values)) - np.repeat(starts, lengths)
    keep = cols < width
    out[rows[keep], cols[keep]] = values[keep]
    return out
