"""Win rates from a run's items: per model pair (PPI++, human-only, judge-only, selective view)
and a Bradley–Terry leaderboard over every model.

The outcome for a pair (X, Y), X the first name alphabetically: Y = 1 if the humans prefer X's
response, 0 if Y's. A human tie follows the run's tie policy (:data:`TIE_RULES`): ``drop``
leaves tied items out (the win rate is then among items humans do not tie), ``disagree`` counts
a tie as half a win for each model (nothing is left out). The judge's prediction f is its
probability that X's response is better (P(response_a better), flipped when X wrote response_b).
"""

from __future__ import annotations

import numpy as np

from ..contracts import ContractError
from . import ppi
from .items import RunWinItems

TIE_RULES = {
    "drop": "items whose human label is a tie are left out (labelled and unlabelled alike): the "
            "win rate is P(humans prefer X | they do not tie); the interval assumes the judge's "
            "probability has the same mean on the unlabelled items humans would tie as on the others",
    "disagree": "a human tie counts as half a win for each model (Y = 1/2): no item is left out",
}
SPARSE_CHOICES = ("refuse", "skip")


def outcome(labels: np.ndarray, first_is_a: np.ndarray) -> np.ndarray:
    """Y for the first model: 1, 0, ½ for a tie; NaN without a label."""
    y = np.full(len(labels), np.nan)
    y[labels == "a"] = 1.0
    y[labels == "b"] = 0.0
    y[labels == "tie"] = 0.5
    return np.where(first_is_a, y, 1.0 - y)


def pair_of(model_a: np.ndarray, model_b: np.ndarray) -> list[tuple[str, str]]:
    return sorted({tuple(sorted((a, b))) for a, b in zip(model_a, model_b) if a != b})


def _refuse(items: RunWinItems, mask: np.ndarray, problem: str, hint: str) -> ContractError:
    where = np.flatnonzero(mask)
    return ContractError(items.comparisons_source, problem,
                         row=int(items.rows[where[0]]) if where.size else None,
                         field="human_label", hint=hint)


def pair_estimate(items: RunWinItems, first: str, second: str, sparse: str = "refuse") -> dict:
    """Every figure of one pair (``first`` < ``second``)."""
    in_pair = ((items.model_a == first) & (items.model_b == second)) | \
              ((items.model_a == second) & (items.model_b == first))
    first_is_a = items.model_a == first
    f = np.where(first_is_a, items.p_a, 1.0 - items.p_a)
    y = outcome(items.human_label, first_is_a)
    kept = in_pair & ~((items.human_label == "tie") & (items.tie_policy == "drop"))
    labelled = kept & items.eligible & np.isfinite(y)
    unlabelled = kept & ~labelled
    n, n_unlabelled = int(labelled.sum()), int(unlabelled.sum())
    record = {"first": first, "second": second, "n_items": int(in_pair.sum()),
              "n_labelled": n, "n_unlabelled": n_unlabelled,
              "n_ties_dropped": int((in_pair & ~kept).sum()),
              "judge_only": float(f[kept].mean()) if kept.any() else None}
    record["selective"] = _selective(items, in_pair & items.eligible, first_is_a, y)
    if n < ppi.MIN_LABELLED:
        problem = (f"pair ({first}, {second}): {n} labelled item(s); the interval needs at least "
                   f"{ppi.MIN_LABELLED}" if n else
                   f"pair ({first}, {second}) has no labelled item (a human label on a row that "
                   f"trained nothing); the interval needs at least {ppi.MIN_LABELLED}")
        if sparse == "refuse":
            raise _refuse(items, in_pair, problem, "label more items of this pair, or pass "
                          "--sparse skip to list such pairs without an interval")
        record["skipped"] = problem
        return record
    f_unl = f[unlabelled] if n_unlabelled >= 2 else f[labelled]  # no unlabelled item: λ = 0
    lam = None if n_unlabelled >= 2 else 0.0
    estimate = ppi.ppi_mean(y[labelled], f[labelled], f_unl, items.delta, lam=lam)
    human = ppi.ppi_mean(y[labelled], f[labelled], f_unl, items.delta, lam=0.0)
    record["ppi"], record["human_only"] = estimate.to_dict(), human.to_dict()
    record["labels_to_halve"] = ppi.labels_to_halve(estimate)
    if float(estimate.se) == 0.0 or float(human.se) == 0.0:
        record["warning"] = (f"all {n} labelled outcomes are equal: the normal interval has no "
                             "width and says nothing; label more items of this pair")
    return record


def _selective(items: RunWinItems, rows: np.ndarray, first_is_a: np.ndarray, y: np.ndarray) -> dict:
    """What the certificate decides among the pair's items that trained nothing."""
    decided = rows & items.decided
    favours_first = np.where(first_is_a, items.verdict == "a", items.verdict == "b")
    human_on_decided = y[decided & np.isfinite(y)]
    return {"n_decided": int(decided.sum()), "n_escalated": int((rows & ~items.decided).sum()),
            "judge_win_rate_decided": float(favours_first[decided].mean()) if decided.any() else None,
            "human_win_rate_decided": float(human_on_decided.mean()) if human_on_decided.size else None}


def leaderboard(items: RunWinItems, sparse: str = "refuse") -> dict:
    """Bradley–Terry strengths over every model: PPI++, human-only, judge-only."""
    distinct = items.model_a != items.model_b
    kept = distinct & ~((items.human_label == "tie") & (items.tie_policy == "drop"))
    y = outcome(items.human_label, np.ones(len(items.ids), dtype=bool))
    labelled = kept & items.eligible & np.isfinite(y)
    models = sorted(set(items.model_a[distinct]) | set(items.model_b[distinct]))
    skipped = []
    while True:  # leaving a model out removes its items, which may leave another short
        short = [(m, int((labelled & ((items.model_a == m) | (items.model_b == m))).sum()))
                 for m in models]
        short = [(m, k) for m, k in short if k < ppi.MIN_LABELLED_PER_MODEL]
        if not short:
            break
        model, count = short[0]
        if sparse == "refuse":
            mask = distinct & ((items.model_a == model) | (items.model_b == model))
            raise _refuse(items, mask, f"model {model!r} is in {count} labelled item(s); its "
                          f"strength's interval needs at least {ppi.MIN_LABELLED_PER_MODEL}",
                          "label more items of this model, or pass --sparse skip to leave such "
                          "models out of the leaderboard")
        dropped = [m for m, _ in short]
        skipped += dropped
        kept &= ~np.isin(items.model_a, dropped) & ~np.isin(items.model_b, dropped)
        labelled &= kept
        models = [m for m in models if m not in dropped]
    if models and labelled.sum() < ppi.MIN_LABELLED:
        raise _refuse(items, kept, f"{int(labelled.sum())} labelled item(s); the leaderboard "
                      f"needs at least {ppi.MIN_LABELLED}", "label more items")
    if len(models) < 2:
        return {"models": [], "skipped_models": skipped}
    index = {m: k for k, m in enumerate(models)}
    first = np.array([index.get(m, -1) for m in items.model_a])
    second = np.array([index.get(m, -1) for m in items.model_b])
    unlabelled = kept & ~labelled
    args = (first[labelled], second[labelled], y[labelled], items.p_a[labelled],
            first[unlabelled], second[unlabelled], items.p_a[unlabelled], len(models), items.delta)
    tuned, human = ppi.bradley_terry(*args), ppi.bradley_terry(*args, lam=0.0)
    judge = ppi.bradley_terry(first[kept], second[kept], items.p_a[kept], items.p_a[kept],
                              first[kept][:0], second[kept][:0], items.p_a[kept][:0], len(models),
                              items.delta, lam=0.0).strength if kept.any() else None
    rows = []
    for k, model in enumerate(models):
        rows.append({"model": model, "strength": float(tuned.strength[k]),
                     "low": float(tuned.low[k]), "high": float(tuned.high[k]),
                     "human_only_low": float(human.low[k]), "human_only_high": float(human.high[k]),
                     "human_only": float(human.strength[k]),
                     "judge_only": None if judge is None else float(judge[k]),
                     "n_labelled": int((labelled & ((first == k) | (second == k))).sum())})
    rows.sort(key=lambda r: -r["strength"])
    return {"models": rows, "lambda": tuned.lam, "n_labelled": int(labelled.sum()),
            "n_unlabelled": int(unlabelled.sum()), "skipped_models": skipped}


def win_rates(items: RunWinItems, sparse: str = "refuse") -> dict:
    """The whole win-rate record of a run (what ``winrate.json`` holds)."""
    if sparse not in SPARSE_CHOICES:
        raise ValueError(f"sparse must be one of {list(SPARSE_CHOICES)}, got {sparse!r}")
    pairs = [pair_estimate(items, a, b, sparse) for a, b in pair_of(items.model_a, items.model_b)]
    return {"judge": items.judge, "probability_column": items.probability_column,
            "delta": items.delta, "alpha": items.alpha, "tie_policy": items.tie_policy,
            "tie_rule": TIE_RULES.get(items.tie_policy, items.tie_policy),
            "min_labelled": ppi.MIN_LABELLED, "min_labelled_per_model": ppi.MIN_LABELLED_PER_MODEL,
            "n_items": int(len(items.ids)),
            "n_self_comparisons": int((items.model_a == items.model_b).sum()),
            "n_training_excluded": items.n_training_excluded,
            "n_without_probability": items.n_without_probability,
            "pairs": pairs, "leaderboard": leaderboard(items, sparse)}
