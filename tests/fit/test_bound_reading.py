"""A bound above 1 is labelled vacuous, with the number of pairs at which it would fall below 0.5."""

import math

import numpy as np
import pytest

from marc_ray.fit.bound import _terms, bound_reading, bound_sentence, pairs_for_bound


def _at(risk, phi, gamma, m, delta_prime=0.05):
    parts = {"depth": 4, "width": 64, "spectral_product": 1.0, "frobenius_ratio_sum": 4.0}
    return _terms(risk, phi, parts, gamma, m, delta_prime).to_dict()


def test_a_bound_above_one_is_vacuous_and_says_where_it_would_not_be():
    # the demo-scale case of the issue: 585 at 20,000 pairs
    gamma, m, risk = 0.1, 20_000, 0.05
    phi = ((585 - risk) * gamma) ** 2 * (m - 1) - math.log(3 * m / 0.05)
    terms = _at(risk, phi, gamma, m)
    assert terms["bound"] == pytest.approx(585)
    reading = bound_reading(terms)
    assert reading["vacuous"] and reading["n_pairs"] == m
    needed = reading["pairs_for_target"]
    # exactly the first m_p where the same formula drops below 0.5
    assert _at(risk, phi, gamma, int(needed))["bound"] < 0.5 <= _at(risk, phi, gamma, int(needed) - 1)["bound"]
    assert needed > 1e9  # (585 / 0.45)^2 times as many pairs: about 3.4e10
    sentence = bound_sentence(reading)
    assert sentence.startswith("bound 585 (above 1: vacuous, it says nothing about the ranking risk;")
    assert f"about {needed:.3g} pairs" in sentence and "computed on 20000 pairs" in sentence


def test_readings_below_one_and_hopeless_margins():
    small = _at(0.05, 10.0, 1.0, 5000)
    assert small["bound"] < 1 and not bound_reading(small)["vacuous"]
    assert "vacuous" not in bound_sentence(bound_reading(small))
    assert pairs_for_bound(_at(0.6, 10.0, 1.0, 5000)) == math.inf
    assert "no number of pairs" in bound_sentence(bound_reading(_at(0.6, 10.0, 1.0, 5000)))
    assert bound_reading(None) is None and bound_sentence(None) == "no bound recorded"
    terms = _at(0.1, 50.0, 0.5, 100)
    needed = int(pairs_for_bound(terms))
    assert _at(0.1, 50.0, 0.5, needed)["bound"] < 0.5 <= _at(0.1, 50.0, 0.5, needed - 1)["bound"]
