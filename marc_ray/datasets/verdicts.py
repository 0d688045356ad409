"""Building the dataset loaders' verdict tables (schema and validator: ``contracts.verdicts``)."""

from __future__ import annotations

from typing import Sequence

import pyarrow as pa

from ..contracts.verdicts import VERDICT_SCHEMA, validate_verdicts


def verdict_table(rows: Sequence[dict], source: str = "<verdicts>") -> pa.Table:
    """Verdict rows (dicts with the ``VERDICT_SCHEMA`` keys) → a validated verdict table."""
    table = pa.Table.from_pylist(list(rows), schema=VERDICT_SCHEMA)
    return validate_verdicts(table, source)
