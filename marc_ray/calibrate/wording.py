"""The sentences that state counts: every count says what it counts, and a percentage is
always printed next to the two counts it divides.

Two denominators exist and must never be mixed:

* **all items**: the calibration items as given (ties included); coverage is a share of these
  (an item with a tied human label is still decided or escalated at deployment);
* **items used**: what the guarantee counts after the tie policy (``drop`` removes items whose
  human label is a tie; ``disagree`` keeps them as disagreements), the n and k of the bound.

The calibrate CLI, the certificate's ``sentence`` and the report all word their counts here.
Nothing here computes a guarantee.
"""

from __future__ import annotations

import math


def percent(value: float | None) -> str:
    """0.85 → "85%", 0.125 → "12.5%"; None/NaN → "n/a"."""
    if value is None or not math.isfinite(value):
        return "n/a"
    text = f"{100 * value:.1f}".rstrip("0").rstrip(".")
    return text + "%"


def items_phrase(n_items: int, n_used: int, tie_policy: str, what: str = "calibration items") -> str:
    """"419 calibration items, 59 ties dropped (policy drop), 360 used"; no tie note when none
    was dropped ("419 calibration items, all used")."""
    dropped = int(n_items) - int(n_used)
    if dropped <= 0:
        return f"{int(n_items)} {what}, all used"
    return f"{int(n_items)} {what}, {dropped} ties dropped (policy {tie_policy}), {int(n_used)} used"


def share_phrase(count: int, total: int, what: str = "items", article: str = "") -> str:
    """"688 of 999 items (68.9%)" (``article="the "``: "688 of the 999 items (68.9%)"): a share,
    always with the two counts it divides."""
    share = count / total if total else math.nan
    return f"{int(count)} of {article}{int(total)} {what} ({percent(share)})"


def result_sentence(result, n_items: int, n_ties_dropped: int, tie_policy: str) -> str:
    """One calibration result in plain words, its counts named (the calibrate CLI's line).

    Parameters
    ----------
    result : CalibrationResult
        ``coverage`` is a share of all ``n_items`` (ties included); ``n``, ``k`` count the
        accepted items that the guarantee counts (after the tie policy).
    n_items : int
        Calibration items as given (ties included).
    n_ties_dropped : int
        Items the tie policy removed (``drop``), 0 otherwise.
    tie_policy : str
    """
    confidence, target = f"{1 - result.delta:.0%}", f"{1 - result.alpha:.0%}"
    if result.abstains:
        return (f"No threshold could be certified for at least {target} agreement with "
                f"{confidence} confidence on {items_phrase(n_items, n_items - n_ties_dropped, tie_policy)}: "
                f"every item is escalated.")
    decided = int(round(result.coverage * n_items))
    tied = decided - int(result.n)
    counted = (f"all {result.n} count for the guarantee" if tied <= 0 else
               f"{result.n} of them count for the guarantee ({tied} ties dropped, policy {tie_policy})")
    return (f"With {confidence} confidence, the judge agrees with the human labels on at least "
            f"{target} of the items whose confidence is >= {result.threshold:.4g}; on the "
            f"calibration set it decides {share_phrase(decided, n_items)}; {counted}: "
            f"{result.k} disagreements, bound {result.upper_bound:.3f}.")


def calibrated_on_line(n_items: int, n_ties_dropped: int, tie_policy: str, note: str,
                       out: str) -> str:
    """The calibrate CLI's closing line: what was calibrated on, and where it was written."""
    used = n_items - n_ties_dropped
    return f"(calibrated on {items_phrase(n_items, used, tie_policy)}: {note}; written to {out})"
