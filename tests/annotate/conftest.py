"""Fixtures of the annotate tests: a tiny generated judge and toy comparison / pool files."""

from __future__ import annotations

import pytest

from annotate_toys import arithmetic_rows, write_jsonl


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """A 2-layer random LlamaForCausalLM with the real SmolLM2 tokenizer (seeded)."""
    from marc_ray.annotate.models import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny-model"), seed=0)


@pytest.fixture
def toy_files(tmp_path) -> dict:
    """12 items and a 12-example pool from 3 annotators (4 examples each), disjoint by id."""
    return {"input": write_jsonl(tmp_path / "items.jsonl", arithmetic_rows("item-", 0, 12)),
            "pool": write_jsonl(tmp_path / "pool.jsonl",
                                arithmetic_rows("pool-", 100, 12, annotators=3)),
            "output": str(tmp_path / "annotations")}
