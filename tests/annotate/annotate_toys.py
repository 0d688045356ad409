"""Toy data for the annotate tests (importable helpers; fixtures live in conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path


def arithmetic_rows(prefix: str, start: int, n: int, *, annotators: int = 0) -> list[dict]:
    """Comparisons with one right and one wrong sum; ``annotators`` > 0 adds annotator ids."""
    rows = []
    for i in range(start, start + n):
        right, wrong = str(i + 7), str(i + 9)
        row = {"id": f"{prefix}{i}", "instruction": f"What is {i} + 7?",
               "response_a": right if i % 2 else wrong, "response_b": wrong if i % 2 else right,
               "human_label": "a" if i % 2 else "b"}
        if annotators:
            row["annotator"] = f"human-{i % annotators}"
        rows.append(row)
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)
