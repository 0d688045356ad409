"""The split ``marc-ray fit`` draws when the data declares none, so no row is silently both
trained on and certified on.

A file whose ``split`` column is absent or entirely null declares no split. Fitting on it as it
stands would train on every row, and calibrating the same file would then certify the model on
the rows it was trained on. So the command line draws one, documented and seeded:

* whole groups (the ``group`` column, else each id alone) are shuffled with
  ``FitConfig.random_state``; :data:`HELD_OUT_FRACTION` of them are held out as
  ``calibration`` and never read by the fit; the rest are ``train`` (of which
  ``FitConfig.valid_fraction`` of the groups then become the validation part, as for any file
  without a validation split);
* the drawn split is written beside the model (:data:`SPLIT_FILE`: ``id``, ``split``) and
  recorded in its ``config.json``; ``marc-ray score`` fills the scored file's null ``split``
  values from it, so ``marc-ray calibrate`` then certifies on the held-out rows by default.

The Python API draws nothing: ``MarcConfidence.fit`` trains on what it is given, and its
provenance (``MarcConfidence.provenance_``) lets calibration refuse those rows.
"""

from __future__ import annotations

import numpy as np

HELD_OUT_FRACTION = 0.5   # share of groups held out for calibration when no split is declared
HELD_OUT = "calibration"  # the drawn split's name for them (what `marc-ray calibrate` reads)
SPLIT_FILE = "split.parquet"


def declares_split(splits) -> bool:
    """Whether any row names a split (a column of nulls declares none)."""
    return splits is not None and any(s is not None for s in splits)


def draw_split(ids, groups, seed: int, held_out: float = HELD_OUT_FRACTION) -> np.ndarray:
    """Per row, ``"train"`` or ``"calibration"``: ``held_out`` of the groups are held out.

    Whole groups move (items sharing a prompt never straddle the two parts); seeded, so the same
    file and seed give the same split. At least one group goes to each side when there are two.
    """
    ids = np.asarray(ids, dtype=object)
    groups = np.asarray(groups if groups is not None else [None] * len(ids), dtype=object)
    keys = np.array([f"g:{g}" if g is not None else f"id:{i}" for g, i in zip(groups, ids)],
                    dtype=object)
    unique = np.array(sorted(set(keys.tolist())), dtype=object)
    order = np.random.default_rng(seed).permutation(unique)
    n_held = int(round(held_out * len(order)))
    if len(order) >= 2:
        n_held = min(max(1, n_held), len(order) - 1)
    held = set(order[:n_held].tolist())
    return np.where(np.isin(keys, list(held)), HELD_OUT, "train").astype(object)
