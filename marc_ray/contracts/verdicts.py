"""The verdict table: what the dataset loaders return for the judges they ship.

One row per run of a real judge: ``id``, ``judge``, ``variant`` (the prompt), ``order`` ("ab" /
"ba"), ``verdict`` ("a", "b", "tie"; null: unusable) and ``raw`` (the judge's answer).
``marc_ray.datasets.verdicts.verdict_table`` builds one; ``annotate.replay.panel_runs`` turns
one into a run table.
"""

from __future__ import annotations

import pyarrow as pa

from .errors import ContractError
from .schemas import ORDERS

VERDICTS = ("a", "b", "tie")
VERDICT_SCHEMA = pa.schema([("id", pa.string()), ("judge", pa.string()), ("variant", pa.string()),
                            ("order", pa.string()), ("verdict", pa.string()), ("raw", pa.string())])


def validate_verdicts(table: pa.Table, source: str = "<verdicts>") -> pa.Table:
    """Check a verdict table: columns, orders, verdicts, one row per (id, judge, variant, order).

    Raises
    ------
    ContractError
        Missing column, empty table, an order outside {ab, ba}, a verdict outside {a, b, tie}
        (null allowed: unusable), a duplicate run.
    """
    if table.num_rows == 0:
        raise ContractError(source, "the verdict table has no rows")
    for name in ("id", "judge", "variant", "order", "verdict"):
        if name not in table.column_names:
            raise ContractError(source, "missing column", field=name,
                                hint=f"columns present: {', '.join(table.column_names)}")
    columns = {name: table.column(name).to_pylist() for name in ("id", "judge", "variant", "order", "verdict")}
    seen: dict[tuple, int] = {}
    for index in range(table.num_rows):
        for name in ("id", "judge", "variant", "order"):
            if not isinstance(columns[name][index], str) or not columns[name][index]:
                raise ContractError(source, f"expected non-empty text, got {columns[name][index]!r}",
                                    row=index, field=name)
        if columns["order"][index] not in ORDERS:
            raise ContractError(source, f"order {columns['order'][index]!r} is not one of {list(ORDERS)}",
                                row=index, field="order")
        verdict = columns["verdict"][index]
        if verdict is not None and verdict not in VERDICTS:
            raise ContractError(source, f"verdict {verdict!r} is not one of "
                                f"{list(VERDICTS)} (or null: unusable)", row=index,
                                field="verdict")
        key = tuple(columns[name][index] for name in ("id", "judge", "variant", "order"))
        if key in seen:
            raise ContractError(source, f"duplicate run {key!r} (first in row {seen[key]})",
                                row=index, field="id")
        seen[key] = index
    if "raw" not in table.column_names:
        table = table.append_column("raw", pa.nulls(table.num_rows, pa.string()))
    return table.select(VERDICT_SCHEMA.names).cast(VERDICT_SCHEMA)
