"""``calibrate.confidence: auto``: choose the confidence measure on training data, never calibration.

Which measure to certify (predictive probability, simulated annotators, vanilla learned, MARC, or
any other ``conf_*`` column) is decided on the **validation part of the training split**, by
the quantity a user cares about: the coverage fixed-sequence testing would certify at the
configured α and δ. For each candidate the validation items stand in for the calibration
population: at every threshold of the grid the share of validation items accepted and the
share of disagreements among them are scaled to a calibration set of ``n_calibration`` items,
and the fixed-sequence procedure is run on those counts (the "plug-in" certified coverage).
The candidate with the largest predicted coverage wins. A tie (typically: nothing predicted
certifiable at a strict α on a small validation part) goes first to a measure that was not
trained (a learned measure, :data:`LEARNED_CANDIDATES`, must predict strictly more certified
coverage to be chosen over a heuristic: on the demo's 13 validation items MARC's edge in AUROC
was noise, and it ranked below both heuristics on the test split), then to the better
validation ranking (the AUROC on the grid's cells, ties within a cell counting one half), then
to the earlier candidate in the order given (heuristics first by default).

Because the choice uses no calibration item, the calibration set is independent of it and the
chosen measure's guarantee holds exactly as for a measure fixed in advance; the validity study
:func:`validity_study_auto` re-runs the choice inside every repetition and checks it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..contracts import ContractError, agreement
from .bounds import clopper_pearson_interval
from .calibrator import check_alpha, check_delta
from .config import CalibrateConfig
from .grid import as_grid
from ..metrics import auroc
from .testing import select_thresholds
from .validity import ValidityOptions, ValidityResult, _cell_counts, _from_top

__all__ = ["choose_confidence", "choose_confidence_table", "predicted_coverage",
           "validity_study_auto", "DEFAULT_CANDIDATES", "LEARNED_CANDIDATES", "CRITERION"]

DEFAULT_CANDIDATES = ("conf_predictive", "conf_simulated", "conf_vanilla", "conf_marc")
LEARNED_CANDIDATES = ("conf_vanilla", "conf_marc")  # trained on the training split: lose ties
CRITERION = "predicted_certified_coverage"
_TRAINING_SPLITS = ("train", "valid", "validation", "dev")


def _positions(confidence: np.ndarray, grid: np.ndarray) -> np.ndarray:
    # grid cell of each item: the number of (descending) thresholds <= its confidence;
    # NaN (no verdict) and -inf fall below every threshold: never accepted
    confidence = np.where(np.isnan(confidence), -np.inf, confidence)
    return np.searchsorted(np.asarray(grid, dtype=float)[::-1], confidence, side="right")


def _plug_in(n_cells: np.ndarray, k_cells: np.ndarray, n_calibration: int, alpha: float,
             delta: float, n_thresholds: int, min_n) -> tuple[np.ndarray, np.ndarray]:
    """Scaled counts → fixed-sequence index and predicted coverage, per row."""
    total = np.maximum(n_cells.sum(axis=-1, keepdims=True), 1)
    n = np.rint(_from_top(n_cells, n_thresholds) / total * n_calibration).astype(np.int64)
    k = np.rint(_from_top(k_cells, n_thresholds) / total * n_calibration).astype(np.int64)
    index = select_thresholds(n, k, alpha, delta, "fixed_sequence", min_n).index
    safe = np.clip(index, 0, None)[..., None]
    coverage = np.where(index >= 0, np.take_along_axis(n, safe, axis=-1)[..., 0], 0) / n_calibration
    return index, coverage


def _grid_auroc(n_cells: np.ndarray, k_cells: np.ndarray) -> np.ndarray:
    """AUROC of the grid cells (ascending), per row: agree above disagree, same cell one half."""
    agree = n_cells - k_cells
    below = np.cumsum(k_cells, axis=-1) - k_cells  # disagreements in lower cells
    pairs = agree.sum(axis=-1) * k_cells.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, (agree * (below + 0.5 * k_cells)).sum(axis=-1)
                        / np.maximum(pairs, 1), 0.5)


def predicted_coverage(confidence, agree, alpha: float, delta: float, n_calibration: int,
                       grid=None, n_grid: int = CalibrateConfig.n_grid,
                       min_n=CalibrateConfig.min_n) -> tuple[float, float]:
    """The coverage fixed-sequence testing would certify on ``n_calibration`` such items.

    Parameters
    ----------
    confidence : array-like of float, shape (n,)
        A candidate's confidence on the validation items (NaN: no verdict, never accepted).
    agree : array-like of bool, shape (n,)
    alpha, delta : float
    n_calibration : int
        The size of the calibration set the measure will be certified on.
    grid, n_grid, min_n : as for :class:`SelectiveCalibrator`

    Returns
    -------
    coverage : float
        Predicted certified coverage (0 when nothing would be certified).
    threshold : float
        The threshold reached (``inf`` when none).
    """
    (alpha,) = check_alpha(alpha)
    delta = check_delta(delta)
    grid = as_grid(grid, n_grid)
    confidence = np.asarray(confidence, dtype=float).ravel()
    bad = ~np.asarray(agree, dtype=bool).ravel()
    cells = grid.size + 1
    position = _positions(confidence, grid)
    n_cells = np.bincount(position, minlength=cells)[None, :]
    k_cells = np.bincount(position, weights=bad, minlength=cells).astype(np.int64)[None, :]
    index, coverage = _plug_in(n_cells, k_cells, int(n_calibration), alpha, delta, grid.size, min_n)
    values = np.append(np.asarray(grid, dtype=float), np.inf)
    return float(coverage[0]), float(values[index[0]])


def choose_confidence(scores: dict, agree, alpha: float, delta: float, n_calibration: int, *,
                      grid=None, n_grid: int = CalibrateConfig.n_grid, min_n=CalibrateConfig.min_n,
                      learned: Sequence[str] = LEARNED_CANDIDATES) -> dict:
    """Choose among candidate confidences on validation items (training data only).

    Parameters
    ----------
    scores : dict name → array of shape (n,)
        Each candidate's confidence on the **same** validation items, in preference order for
        ties (put the heuristics first).
    agree : array-like of bool, shape (n,)
        Judge–human agreement on those items.
    alpha, delta : float
        The configured α and δ (one α).
    n_calibration : int
        Calibration items the chosen measure will be certified on.
    learned : names of trained measures: chosen over a heuristic only with strictly more
        predicted coverage

    Returns
    -------
    dict
        ``{"choice": name, "criterion": "predicted_certified_coverage", "alpha", "delta",
        "n_validation", "n_calibration", "grid": {"kind", "size"}, "scores": {name:
        {"predicted_coverage", "predicted_threshold", "grid_auroc", "validation_auroc"}},
        "ranking": [names, best first]}``. The choice is by predicted coverage, ties to a
        measure not in ``learned``, then by ``grid_auroc`` (the AUROC over grid cells), then by
        candidate order;
        ``validation_auroc`` (exact) is informative only (NaN when undefined).
    """
    if not scores:
        raise ValueError("choose_confidence needs at least one candidate")
    agree = np.asarray(agree, dtype=bool).ravel()
    grid = as_grid(grid, n_grid)
    record = {}
    for name, values in scores.items():
        values = np.asarray(values, dtype=float).ravel()
        if values.size != agree.size:
            raise ValueError(f"candidate {name!r} has {values.size} scores for {agree.size} items")
        coverage, threshold = predicted_coverage(values, agree, alpha, delta, n_calibration, grid,
                                                 min_n=min_n)
        position = _positions(values, grid)
        cells_n = np.bincount(position, minlength=grid.size + 1)
        cells_k = np.bincount(position, weights=~agree, minlength=grid.size + 1).astype(np.int64)
        ok = ~np.isnan(values)
        try:
            area = auroc(values[ok], agree[ok])
        except ValueError:
            area = float("nan")
        record[name] = {"predicted_coverage": coverage, "predicted_threshold": threshold,
                        "validation_auroc": float(area),
                        "grid_auroc": float(_grid_auroc(cells_n, cells_k))}
    names = list(scores)
    ranking = sorted(names, key=lambda n: (-record[n]["predicted_coverage"], n in learned,
                                           -record[n]["grid_auroc"], names.index(n)))
    chosen = np.asarray(scores[ranking[0]], dtype=float).ravel()
    return {"choice": ranking[0], "criterion": CRITERION, "alpha": float(check_alpha(alpha)[0]),
            "delta": check_delta(delta), "n_validation": int(agree.size),
            "n_calibration": int(n_calibration),
            "grid": {"kind": grid.kind, "size": int(grid.size)}, "scores": record,
            "ranking": ranking,
            **prediction_interval(chosen, agree, alpha, delta, n_calibration, grid, min_n,
                                  record[ranking[0]]["predicted_coverage"])}


PREDICTION_RESAMPLES = 200  # bootstrap resamples of the validation part (seeded: reproducible)


def prediction_interval(confidence, agree, alpha: float, delta: float, n_calibration: int,
                        grid, min_n, point: float, resamples: int = PREDICTION_RESAMPLES,
                        seed: int = 0) -> dict:
    """How far the chosen measure's predicted certified coverage can be trusted.

    A predictive interval by simulation, seeded: each of ``resamples`` draws resamples the
    validation items (a bootstrap: the measure's behaviour is only known from them), then draws
    a calibration set of ``n_calibration`` items from that resample and runs fixed-sequence
    testing on its actual counts. The interval is the ``delta / 2`` and ``1 - delta / 2``
    quantiles of the certified coverages (a ``1 - delta`` interval, at the run's δ). It carries
    the three sources of doubt: the share of items above a threshold, whether a threshold
    passes at all on the calibration set drawn (a draw where none passes certifies 0), and the
    validation part's own noise. ``tests/calibrate/test_select_interval.py`` checks that a fresh
    calibration set's certified coverage falls inside it about ``1 - delta`` of the time.

    ``too_small_to_predict`` is True when the validation part cannot say whether anything will
    be certified: it has fewer usable items than the fewest with which any threshold can pass
    (``bounds.min_n_to_pass``), or the interval reaches 0 while the point prediction does not.

    Returns
    -------
    dict : ``predicted_coverage_interval`` [low, high], ``interval_method``,
    ``too_small_to_predict`` (bool) and ``note`` (one sentence for the report).
    """
    from .bounds import min_n_to_pass
    from .grid import counts_at_thresholds

    (alpha,) = check_alpha(alpha)
    delta = check_delta(delta)
    grid = as_grid(grid)
    confidence = np.asarray(confidence, dtype=float).ravel()
    confidence = np.where(np.isnan(confidence), -np.inf, confidence)  # no verdict: never accepted
    agree = np.asarray(agree, dtype=bool).ravel()
    n, n_cal = agree.size, max(int(n_calibration), 1)
    needed = min_n_to_pass(alpha, delta)
    coverages = []
    if n:
        rng = np.random.default_rng(seed)
        per_chunk = max(1, 2_000_000 // n_cal)  # bounds the (draws, n_calibration) arrays
        for start in range(0, resamples, per_chunk):
            draws = min(per_chunk, resamples - start)
            validation = rng.integers(0, n, (draws, n))
            picked = np.take_along_axis(validation, rng.integers(0, n, (draws, n_cal)), axis=1)
            counts, wrong = counts_at_thresholds(confidence[picked], agree[picked], grid)
            index = select_thresholds(counts, wrong, alpha, delta, "fixed_sequence", min_n).index
            accepted = np.take_along_axis(counts, np.clip(index, 0, None)[:, None], axis=1)[:, 0]
            coverages.append(np.where(index >= 0, accepted, 0) / n_cal)
    if coverages:
        low, high = (float(v) for v in np.quantile(np.concatenate(coverages),
                                                   [delta / 2, 1 - delta / 2]))
    else:
        low = high = 0.0
    too_small = bool(n < needed or (low <= 0.0 < point))
    if n < needed:
        note = (f"the validation part has {n} items, fewer than the {needed} with which any "
                f"threshold can pass at alpha={alpha:g}, delta={delta:g}: too small to predict "
                "the certified coverage")
    elif too_small:
        note = (f"predicted coverage {point:.1%}, but from {n} validation items the "
                f"{1 - delta:.0%} interval [{low:.1%}, {high:.1%}] reaches 0: too small to "
                "predict whether anything will be certified")
    else:
        note = (f"predicted coverage {point:.1%}, {1 - delta:.0%} interval [{low:.1%}, "
                f"{high:.1%}] from {n} validation items")
    return {"predicted_coverage_interval": [low, high],
            "interval_method": f"simulation, {resamples} seeded draws: validation items "
                               f"resampled, then a calibration set of {n_cal} drawn from them "
                               "and certified; quantiles delta/2 and 1 - delta/2",
            "too_small_to_predict": too_small, "note": note}


def choose_confidence_table(table, alpha: float, delta: float, n_calibration: int, *,
                            candidates: Sequence[str] | None = None,
                            validation_ids: Sequence[str] | None = None,
                            training_splits: Sequence[str] = _TRAINING_SPLITS,
                            tie_policy: str = CalibrateConfig.tie_policy,
                            source: str = "<annotations>",
                            **options) -> dict:
    """:func:`choose_confidence` on an annotation table: only training-split rows are read.

    Rows whose ``split`` is not in ``training_splits`` (calibration, test) are dropped before
    any confidence or label is looked at; with ``validation_ids`` (e.g.
    ``MarcConfidence.valid_ids_``, the items the learned model was not trained on) only those
    rows are used. Candidates default to the ``conf_*`` columns of :data:`DEFAULT_CANDIDATES`
    present, then any other ``conf_*`` column. The result also holds ``"candidates"`` and
    ``"rows_read"``, the provenance record (``contracts.provenance``) of the rows it read:
    certification refuses them.

    Raises
    ------
    ContractError
        No ``split`` column, no training row left, or a requested candidate is missing.
    """
    import pyarrow as pa

    if "split" not in table.column_names:
        raise ContractError(source, "auto needs a split column to keep calibration items out",
                            field="split")
    split = np.asarray(table.column("split").to_pylist(), dtype=object)
    keep = np.isin(split, list(training_splits))
    if validation_ids is not None:
        keep &= np.isin(np.asarray(table.column("id").to_pylist(), dtype=object),
                        np.asarray(list(validation_ids), dtype=object))
    rows = table.filter(pa.array(keep))  # from here on no calibration row exists
    if rows.num_rows == 0:
        raise ContractError(source, f"no row in the training splits {list(training_splits)}"
                            + (" among validation_ids" if validation_ids is not None else ""),
                            field="split")
    if candidates is None:
        present = [c for c in DEFAULT_CANDIDATES if c in rows.column_names]
        candidates = present + sorted(c for c in rows.column_names
                                      if c.startswith("conf_") and c not in present)
    missing = [c for c in candidates if c not in rows.column_names]
    if missing:
        raise ContractError(source, f"candidate confidence columns {missing} are missing",
                            field=missing[0])
    pred = np.asarray(rows.column("pred").to_pylist(), dtype=object)
    agree, kept = agreement(pred, np.asarray(rows.column("human_label").to_pylist(), dtype=object),
                            tie_policy)
    scores = {c: np.asarray([np.nan if v is None else v for v in rows.column(c).to_pylist()],
                            dtype=float)[kept] for c in candidates}
    from ..contracts.provenance import provenance_record

    return {**choose_confidence(scores, agree, alpha, delta, n_calibration, **options),
            "candidates": list(candidates),
            "rows_read": provenance_record(rows.column("id").to_pylist())}


def validity_study_auto(scores: dict, agree, alpha: float = CalibrateConfig.alpha,
                        delta: float = CalibrateConfig.delta,
                        n_repetitions: int = ValidityOptions.repetitions,
                        validation_size: int = 100,
                        calibration_size: int = 200, design: str = ValidityOptions.design,
                        grid=None, n_grid: int = CalibrateConfig.n_grid,
                        min_n=CalibrateConfig.min_n, random_state=None,
                        learned: Sequence[str] = LEARNED_CANDIDATES
                        ) -> tuple[ValidityResult, np.ndarray]:
    """The validity study with the automatic choice re-run inside every repetition.

    Each repetition draws a validation set and a calibration set, chooses the measure on the
    validation set (:func:`choose_confidence`'s criterion, vectorised), certifies the chosen
    one on the calibration set and judges it. Designs: ``population`` (both sets drawn with
    replacement from the file, independently; success judged on the whole file) and ``split``
    (disjoint validation / calibration / test parts; success judged on the test part).

    Returns
    -------
    result : ValidityResult
    chosen : ndarray of int, shape (n_repetitions,)
        Index (in ``scores``' order) of the measure chosen in each repetition.
    """
    (alpha,) = check_alpha(alpha)
    delta = check_delta(delta)
    grid = as_grid(grid, n_grid)
    names = list(scores)
    agree = np.asarray(agree, dtype=bool).ravel()
    bad = ~agree
    n_items, n_thr, cells = agree.size, grid.size, grid.size + 1
    position = np.stack([_positions(np.asarray(scores[n], dtype=float).ravel(), grid) for n in names])
    is_learned = np.array([n in learned for n in names])[:, None]
    if design == "split" and validation_size + calibration_size >= n_items:
        raise ValueError("a split needs validation_size + calibration_size < n_items")
    rng = np.random.default_rng(random_state)
    values = np.append(np.asarray(grid, dtype=float), np.inf)
    out = {k: [] for k in ("success", "threshold", "coverage", "agreement", "chosen")}
    chunk = max(1, 2_000_000 // (n_items * len(names)))
    for start in range(0, n_repetitions, chunk):
        r = min(chunk, n_repetitions - start)
        if design == "population":
            valid = rng.integers(0, n_items, (r, validation_size))
            calib = rng.integers(0, n_items, (r, calibration_size))
        else:
            order = np.argsort(rng.random((r, n_items)), axis=1)
            valid = order[:, :validation_size]
            calib = order[:, validation_size:validation_size + calibration_size]
        rows_v = np.broadcast_to(np.arange(r)[:, None], valid.shape)
        rows_c = np.broadcast_to(np.arange(r)[:, None], calib.shape)
        predicted = np.empty((len(names), r))
        ranked = np.empty((len(names), r))
        cal_counts = []
        for c in range(len(names)):
            n_cells, k_cells = _cell_counts(rows_v, valid, position[c], bad, r, cells)
            predicted[c] = _plug_in(n_cells, k_cells, calibration_size, alpha, delta, n_thr, min_n)[1]
            ranked[c] = _grid_auroc(n_cells, k_cells)
            cal_counts.append(_cell_counts(rows_c, calib, position[c], bad, r, cells))
        # choose_confidence's rule: largest coverage, then a heuristic over a learned measure,
        # then grid AUROC, then the earlier candidate
        best = predicted == predicted.max(axis=0)
        heuristic_best = best & ~is_learned
        best = np.where(heuristic_best.any(axis=0), heuristic_best, best)
        chosen = np.argmax(np.where(best, ranked, -np.inf), axis=0)
        cal_cells = np.stack([cal_counts[c][0] for c in range(len(names))])[chosen, np.arange(r)]
        cal_wrong = np.stack([cal_counts[c][1] for c in range(len(names))])[chosen, np.arange(r)]
        index = select_thresholds(_from_top(cal_cells, n_thr), _from_top(cal_wrong, n_thr),
                                  alpha, delta, "fixed_sequence", min_n).index
        # evaluation: the whole file (population) or the rest (split), under the chosen measure
        if design == "population":
            eval_set = np.broadcast_to(np.arange(n_items), (r, n_items))
        else:
            eval_set = order[:, validation_size + calibration_size:]
        accepted_pos = position[chosen][np.arange(r)[:, None], eval_set]  # (r, n_eval)
        # conf >= the i-th descending threshold  <=>  its cell (thresholds <= conf) >= n_thr - i;
        # index -1 (nothing certified) gives n_thr + 1, above every cell
        accepted = accepted_pos >= (n_thr - index)[:, None]
        wrong = (accepted & bad[eval_set]).sum(axis=1)
        n_acc = accepted.sum(axis=1)
        out["success"].append((n_acc == 0) | (wrong <= alpha * n_acc + 1e-9))
        out["threshold"].append(values[index])
        out["coverage"].append(n_acc / eval_set.shape[1])
        with np.errstate(invalid="ignore", divide="ignore"):
            out["agreement"].append(np.where(n_acc > 0, 1 - wrong / np.maximum(n_acc, 1), np.nan))
        out["chosen"].append(chosen)
    success = np.concatenate(out["success"])
    n_success = int(success.sum())
    low, high = clopper_pearson_interval(n_success, n_repetitions, 0.95)
    threshold = np.concatenate(out["threshold"])
    coverage = np.concatenate(out["coverage"])
    result = ValidityResult(
        design=f"{design}+auto", procedure="fixed_sequence", alpha=alpha, delta=delta,
        n_repetitions=int(n_repetitions), n_items=n_items, calibration_size=int(calibration_size),
        success=success, threshold=threshold, coverage=coverage,
        agreement=np.concatenate(out["agreement"]), success_rate=n_success / n_repetitions,
        success_interval=(float(low), float(high)), mean_coverage=float(coverage.mean()),
        abstention_rate=float(np.isinf(threshold).mean()))
    return result, np.concatenate(out["chosen"])
