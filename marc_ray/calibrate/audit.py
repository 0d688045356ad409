"""Audit a certificate after deployment: is the judge still agreeing with humans often enough?

A certificate promises that agreement on the items the judge decides is at least ``1 - alpha``.
After deployment, humans label a random sample of the decided items; the audit tests

    H0: agreement on decided items >= 1 - alpha      against      H1: it has dropped below,

i.e. the disagreement rate ``p`` satisfies ``p <= alpha``. Two tests, both of a Bernoulli mean:

exact (one look)
    ``k`` disagreements among ``n`` audited items; the exact one-sided p-value is
    ``P(Binomial(n, alpha) >= k)`` (``scipy.stats.binom.sf``), and the exact one-sided upper
    confidence bound on ``p`` at level ``level`` is the Clopper–Pearson bound. Valid for one
    look at the data: re-running it after every new batch inflates its false-alarm rate.
sequential (anytime valid)
    A test supermartingale by betting (Waudby-Smith & Ramdas 2023): for a bet ``lambda`` in
    ``[0, 1/alpha)`` the capital ``prod_i (1 + lambda (X_i - alpha))`` (``X_i = 1`` for a
    disagreement) has expectation at most 1 under H0, at every time. The e-value is the average
    capital over a grid of bets fixed in advance (an average of test supermartingales is one),
    and by Ville's inequality ``P(sup_t E_t >= 1/level) <= level``: a team may look after every
    weekly batch, forever, and the false-alarm rate stays at most ``level``. With fixed bets the
    capital depends only on the running counts, so the order of items inside a batch is
    irrelevant and looking at batch ends only is a special case.

Drift: when the audited items carry their confidence and the certificate stores the
calibration confidences, the same Kolmogorov–Smirnov check as ``apply`` is run.

What an audit cannot tell: it sees only decided items, so it says nothing about escalated ones;
a non-rejection is not proof that the guarantee holds (the power is reported); and the labels it
uses must be drawn at random among the decided items (a hand-picked sample voids the test).

References
----------
.. [1] I. Waudby-Smith and A. Ramdas, "Estimating means of bounded random variables by
   betting", JRSS-B 86(1), 2024 (arXiv 2010.09686, 2020).
.. [2] J. Ville, "Étude critique de la notion de collectif", Gauthier-Villars, 1939.
.. [3] C. J. Clopper and E. S. Pearson, Biometrika 26(4), 1934.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import special

from ..contracts.options import option
from ..contracts.validation import check_number, check_type, fail
from .bounds import clopper_pearson_upper

__all__ = ["AuditOptions", "AuditResult", "DEFAULT_BETS", "EXIT_CODES", "EXIT_CANNOT_TEST", "audit",
           "audit_by_group", "audit_p_value",
           "betting_e_values", "sequential_rejections", "exact_power"]

# Bets as a fraction c = lambda * alpha of the largest safe bet (1 - c is the factor of an
# agreement, so c < 1 keeps the capital positive). Geometric: small bets detect small drops
# over many items, large ones large drops quickly. Fixed here, never tuned on audit data.
DEFAULT_BETS = tuple(np.round(np.geomspace(0.01, 0.9, 16), 6).tolist())

# the outcomes of ``marc-ray audit``, distinct so that a CI gate can tell them apart (2 and 5 are
# the package's: ``contracts.errors.EXIT_CODES``)
EXIT_KEEP, EXIT_RECALIBRATE, EXIT_DRIFT, EXIT_CANNOT_TEST = 0, 3, 4, 6
EXIT_CODES = {
    EXIT_KEEP: "the guarantee is not rejected (keep the certificate)",
    2: "bad input (a message names the file, row and field)",
    EXIT_RECALIBRATE: "the audit rejects the guarantee: recalibrate with fresh labels",
    EXIT_DRIFT: "the guarantee is not rejected, but the confidences have drifted: recalibration "
                "advised",
    EXIT_CANNOT_TEST: "cannot test: no item the certificate decides carries a human label",
}


def audit_p_value(k, n, alpha: float):
    """Exact one-sided p-value of H0 "disagreement rate <= alpha": ``P(Binomial(n, alpha) >= k)``.

    Parameters
    ----------
    k, n : int or array-like of int, shape (...)
        Disagreements among audited decided items.
    alpha : float in (0, 1)

    Returns
    -------
    p_value : float or ndarray, shape (...)
        1.0 where ``k == 0`` (including ``n == 0``).
    """
    from scipy.stats import binom

    p_value = binom.sf(np.asarray(k) - 1, np.asarray(n), alpha)
    return float(p_value) if np.ndim(p_value) == 0 else p_value


def betting_e_values(k, n, alpha: float, bets=DEFAULT_BETS):
    """The betting e-value after ``k`` disagreements in ``n`` items (any shapes, broadcast).

    ``E = mean_j (1 + c_j (1 - alpha) / alpha) ** k * (1 - c_j) ** (n - k)``, the average over
    the fixed bets ``c_j = lambda_j * alpha`` of the capital of each bettor; computed in logs.
    Under H0 (disagreement rate <= alpha) its running maximum exceeds ``1/level`` with
    probability at most ``level`` (Ville's inequality).
    """
    c = np.asarray(bets, dtype=float)
    if c.ndim != 1 or c.size == 0 or np.any(c <= 0) or np.any(c >= 1):
        raise ValueError(f"bets must be fractions in (0, 1) of the largest safe bet, got {bets!r}")
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    log_capital = (k[..., None] * np.log1p(c * (1 - alpha) / alpha)
                   + (n - k)[..., None] * np.log1p(-c))
    log_e = special.logsumexp(log_capital, axis=-1) - np.log(c.size)
    e_value = np.exp(log_e)
    return float(e_value) if e_value.ndim == 0 else e_value


def sequential_rejections(batch_k, batch_n, alpha: float, level: float, bets=DEFAULT_BETS):
    """E-values after each look, and whether the anytime-valid test has rejected by then.

    Parameters
    ----------
    batch_k, batch_n : array-like of int, shape (..., n_looks)
        Disagreements and audited items in each batch, in time order.

    Returns
    -------
    e_value : ndarray, shape (..., n_looks)
        After each batch (the counts so far).
    rejected : ndarray of bool, shape (..., n_looks)
        True from the first look whose e-value reached ``1 / level`` on (a rejection is final).
    """
    k = np.cumsum(np.asarray(batch_k), axis=-1)
    n = np.cumsum(np.asarray(batch_n), axis=-1)
    e_value = betting_e_values(k, n, alpha, bets)
    rejected = np.maximum.accumulate(np.asarray(e_value) >= 1.0 / level, axis=-1)
    return np.asarray(e_value), rejected


def exact_power(n: int, alpha: float, level: float, disagreement: float) -> float:
    """Probability that the exact test rejects with ``n`` audited items at a true rate."""
    from scipy.stats import binom

    if n == 0:
        return 0.0
    k = np.arange(n + 1)
    rejects = audit_p_value(k, n, alpha) <= level
    return float(binom.pmf(k, n, disagreement)[rejects].sum())


@dataclass
class AuditResult:
    """The outcome of an audit; ``sentence``, ``advice`` and ``exit_code`` say it in plain words."""

    alpha: float
    level: float
    n: int
    agreements: int
    p_value: float
    upper_bound: float              # exact one-sided (1 - level) upper bound on the disagreement rate
    rejected: bool
    test: str                       # "exact" or "sequential"
    batches: list = field(default_factory=list)   # sequential: per look n, k, e-value, rejected
    e_value: float | None = None    # sequential: the largest e-value reached
    drift: dict | None = None
    power_at_double_alpha: float = float("nan")   # exact test's power if disagreement were 2 alpha
    counts: dict = field(default_factory=dict)    # rows read, escalated, unlabelled, ties dropped
    groups: dict = field(default_factory=dict)    # per-group audits (audit_by_group), at level / G

    @property
    def disagreements(self) -> int:
        return self.n - self.agreements

    @property
    def observed_agreement(self) -> float:
        return self.agreements / self.n if self.n else float("nan")

    @property
    def exit_code(self) -> int:
        if self.n == 0:  # nothing was tested: never read as "keep"
            return EXIT_CANNOT_TEST
        if self.rejected:
            return EXIT_RECALIBRATE
        return EXIT_DRIFT if self.drift and self.drift.get("fired") else EXIT_KEEP

    @property
    def exit_meaning(self) -> str:
        return EXIT_CODES[self.exit_code]

    def untested_groups(self) -> list:
        """Groups of a per-group audit with no audited item (their guarantee was not tested)."""
        return [g for g, r in self.groups.items() if r.n == 0]

    def sentence(self) -> str:
        promised = f"{1 - self.alpha:.0%}"
        if self.n == 0:
            decided = self.counts.get("decided")
            of = (f" (the certificate decides {decided} of the {self.counts['items']} items; "
                  f"{self.counts.get('escalated_labelled', 0)} labelled items were escalated)"
                  if decided is not None else "")
            return (f"No item the certificate decides carries a human label{of}: the audit "
                    f"cannot test the promised {promised} agreement.")
        figures = (f"the judge agreed with the humans on {self.agreements} of {self.n} audited "
                   f"decided items ({self.observed_agreement:.1%}); with {1 - self.level:.0%} "
                   f"confidence its disagreement rate is at most {self.upper_bound:.1%}")
        if self.test == "sequential":
            how = (f"the anytime-valid test over {len(self.batches)} batches reached an e-value of "
                   f"{self.e_value:.3g} (it rejects at {1 / self.level:g})")
        else:
            how = f"the exact one-sided binomial test gives p = {self.p_value:.3g}"
        if self.groups:
            failed = [g for g, r in self.groups.items() if r.rejected]
            untested = self.untested_groups()
            per_group = (f" Per group (each tested at level {self.level:g} / {len(self.groups)}): "
                         + (f"the guarantee no longer holds for {', '.join(map(repr, failed))}."
                            if failed else "no group's guarantee is rejected.")
                         + (f" Not tested (no audited item): {', '.join(map(repr, untested))}."
                            if untested else ""))
            return (("The guarantee no longer holds for some group" if failed
                     else "The guarantee is not rejected") + f": pooled, {figures}." + per_group)
        if self.rejected:
            return (f"The guarantee no longer holds: {figures}, and {how}, so agreement has "
                    f"dropped below the promised {promised} (false-alarm rate at most "
                    f"{self.level:g}).")
        return (f"The guarantee is not rejected: {figures}, and {how}; the audit finds no "
                f"evidence that agreement fell below the promised {promised}.")

    def advice(self) -> str:
        if self.rejected:
            return ("Recalibrate with fresh labels: label a new random sample of deployment "
                    "items and run `marc-ray calibrate` (or the pipeline) on them; until then, "
                    "escalate everything or accept the lower agreement knowingly.")
        if self.drift and self.drift.get("fired"):
            return ("Keep the certificate for now, but the confidences have drifted since "
                    "calibration: recalibrate on labelled items from the deployment distribution.")
        if self.n == 0:
            return ("Label a random sample of the items this certificate decides (those whose "
                    "confidence reaches their threshold) and audit again; this audit tested nothing.")
        return ("Keep the certificate, and keep auditing (a non-rejection is not proof: with "
                f"{self.n} items the exact test would catch a doubled disagreement rate "
                f"({2 * self.alpha:.0%}) with probability {self.power_at_double_alpha:.0%}).")

    def to_dict(self) -> dict:
        return {"test": self.test, "alpha": self.alpha, "level": self.level,
                "n_audited": self.n, "agreements": self.agreements,
                "disagreements": self.disagreements,
                "observed_agreement": None if self.n == 0 else self.observed_agreement,
                "upper_bound_disagreement": self.upper_bound, "p_value": self.p_value,
                "e_value": self.e_value, "rejected": self.rejected, "batches": self.batches,
                "power_at_double_alpha": self.power_at_double_alpha, "drift": self.drift,
                "counts": self.counts,
                "groups": {g: r.to_dict() for g, r in self.groups.items()},
                "sentence": self.sentence(), "advice": self.advice(),
                "exit_code": self.exit_code, "exit_meaning": self.exit_meaning}


@dataclass
class AuditOptions:
    """How ``marc-ray audit`` tests a certificate (the certificate gives alpha)."""

    level: float = option(0.05, "false-alarm rate of the test (and 1 - the confidence of the "
                          "upper bound)")
    sequential: bool = option(False, "anytime-valid test over the batches of --batch-column (the "
                              "file may be re-audited after every batch)")
    batch_column: str = option("batch", "column giving each item's batch / time")

    def validate(self, source: str = "") -> "AuditOptions":
        check_number("level", self.level, source, low=0, high=1, low_open=True, high_open=True,
                     what="a number in (0, 1) (e.g. 0.05)")
        if not isinstance(self.sequential, bool):
            fail("sequential", "true or false", self.sequential, source)
        check_type("batch_column", self.batch_column, str, "a column name", source)
        return self


def audit(agree, alpha: float, level: float = AuditOptions.level, batch=None, bets=DEFAULT_BETS,
          drift: dict | None = None, counts: dict | None = None) -> AuditResult:
    """Test a certificate's promise on audited decided items.

    Parameters
    ----------
    agree : array-like of bool, shape (n,)
        Whether each audited decided item's verdict agrees with its human label.
    alpha : float in (0, 1)
        The certificate's tolerated disagreement rate.
    level : float in (0, 1), default=AuditOptions.level
        False-alarm rate of the test (and 1 - confidence of the upper bound).
    batch : array-like, shape (n,), optional
        Batch (time) of each item; given, the anytime-valid sequential test decides, looking
        after each batch in sorted order. The exact test's figures are reported too.
    bets : sequence of float in (0, 1)
        The sequential test's bets (fractions of the largest safe bet), fixed in advance.
    drift : dict, optional
        A drift check's result (``calibrate.diagnostics.drift``), folded into the advice.
    counts : dict, optional
        Bookkeeping (rows read, escalated, unlabelled), stored as is.

    Returns
    -------
    AuditResult
    """
    for name, value in (("alpha", alpha), ("level", level)):
        if not 0 < value < 1:
            raise ValueError(f"{name} must be in (0, 1), got {value!r}")
    agree = np.asarray(agree, dtype=bool).ravel()
    n, agreements = int(agree.size), int(agree.sum())
    k = n - agreements
    p_value = audit_p_value(k, n, alpha)
    upper = float(clopper_pearson_upper(k, n, level))
    result = AuditResult(alpha=float(alpha), level=float(level), n=n, agreements=agreements,
                         p_value=float(p_value), upper_bound=upper, rejected=bool(p_value <= level),
                         test="exact", drift=drift, counts=dict(counts or {}),
                         power_at_double_alpha=exact_power(n, alpha, level, min(2 * alpha, 1.0)))
    if batch is None:
        return result
    batch = np.asarray(batch).ravel()
    if batch.size != n:
        raise ValueError(f"batch ({batch.size}) and agree ({n}) differ in length")
    looks, position = np.unique(batch, return_inverse=True)
    batch_n = np.bincount(position, minlength=looks.size)
    batch_k = np.bincount(position, weights=~agree, minlength=looks.size).astype(np.int64)
    e_value, rejected = sequential_rejections(batch_k, batch_n, alpha, level, bets)
    result.test = "sequential"
    result.rejected = bool(rejected[-1]) if looks.size else False
    result.e_value = float(e_value.max()) if looks.size else 1.0
    result.batches = [{"batch": looks[i].item() if hasattr(looks[i], "item") else looks[i],
                       "n": int(batch_n[i]), "disagreements": int(batch_k[i]),
                       "e_value": float(e_value[i]), "rejected_by_now": bool(rejected[i])}
                      for i in range(looks.size)]
    return result


def audit_by_group(agree, groups, alpha: float, level: float = AuditOptions.level, batch=None,
                   bets=DEFAULT_BETS, drift: dict | None = None, counts: dict | None = None,
                   group_names=None) -> AuditResult:
    """Audit a per-group certificate: each group tested at ``level / G``, plus pooled figures.

    A per-group certificate promises ``1 - alpha`` in every group, so each group's audited
    items are tested on their own (exact, or sequential with ``batch``) at ``level / G``; by
    the union bound the chance that any group raises a false alarm is at most ``level``. The
    result is rejected when any group is; its pooled figures are reported, not tested.
    ``group_names`` (default: the groups in ``groups``) are the G groups the certificate decides
    for; one with no audited item is reported untested (``AuditResult.untested_groups``).
    """
    agree = np.asarray(agree, dtype=bool).ravel()
    groups = np.asarray(groups, dtype=object).astype(str).ravel()
    if groups.size != agree.size:
        raise ValueError(f"groups ({groups.size}) and agree ({agree.size}) differ in length")
    batch = None if batch is None else np.asarray(batch).ravel()
    names = sorted(set(groups.tolist()) | {str(g) for g in (group_names or ())})
    per_group = {g: audit(agree[groups == g], alpha, level / max(len(names), 1),
                          batch=None if batch is None else batch[groups == g], bets=bets)
                 for g in names}
    pooled = audit(agree, alpha, level, drift=drift, counts=counts)
    pooled.groups = per_group
    pooled.test = "per-group " + ("sequential" if batch is not None else "exact")
    pooled.rejected = any(r.rejected for r in per_group.values())
    return pooled
