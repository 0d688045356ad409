"""Small generated annotation files for the fit tests (3 annotators x 3 shots: 42 runs)."""

from __future__ import annotations

import pytest

from marc_ray.fit.synthetic import all_subsets_layout, trap_annotations


@pytest.fixture(scope="session")
def small_layout():
    return all_subsets_layout(3, 3)


@pytest.fixture(scope="session")
def trap_table(small_layout):
    """600 items, 30% traps, splits train/valid/test 60/20/20."""
    return trap_annotations(600, layout=small_layout, seed=0)
