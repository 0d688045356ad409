"""Reading the raw files of public datasets, with errors that name the file, row and field.

Shared by the dataset modules (never imported by users). Each reader turns a missing file,
malformed JSON / CSV or a missing key into a :class:`~marc_ray.contracts.ContractError`.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..contracts import ContractError

SHARED_DATA_ENV = "MARC_RAY_SHARED_DATA"  # overrides the default folder of the public datasets


def default_root(name: str) -> Path:
    """The default local folder of dataset ``name``: ``$MARC_RAY_SHARED_DATA/<name>``, else the
    ``shared/data/<name>`` folder beside the checkout (where the team keeps the public copies)."""
    base = os.environ.get(SHARED_DATA_ENV)
    if base:
        return Path(base) / name
    return Path(__file__).resolve().parents[3] / "shared" / "data" / name


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise ContractError(str(path), f"no such file ({what})",
                            hint="pass the dataset's local folder as `path`, or set "
                                 f"{SHARED_DATA_ENV} to the folder holding it")
    return path


def read_json(path: Path) -> Any:
    """A whole JSON document."""
    try:
        with open(path, encoding="utf-8") as stream:
            return json.load(stream)
    except json.JSONDecodeError as error:
        raise ContractError(str(path), f"malformed JSON: {error.msg}",
                            hint=f"line {error.lineno}, column {error.colno}") from error


def read_json_list(path: Path) -> list[dict]:
    """A JSON array of objects."""
    data = read_json(path)
    if not isinstance(data, list):
        raise ContractError(str(path), f"expected a JSON array of records, got {type(data).__name__}")
    for index, record in enumerate(data):
        if not isinstance(record, dict):
            raise ContractError(str(path), "each record must be a JSON object", row=index)
    if not data:
        raise ContractError(str(path), "the file has no records")
    return data


def read_jsonl(path: Path) -> list[dict]:
    """JSON lines (one object per line; blank lines skipped)."""
    rows: list[dict] = []
    with open(path, encoding="utf-8") as stream:
        for line_number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ContractError(str(path), f"malformed JSON line: {error.msg}", row=len(rows),
                                    hint=f"line {line_number}") from error
            if not isinstance(row, dict):
                raise ContractError(str(path), "each line must be a JSON object", row=len(rows))
            rows.append(row)
    if not rows:
        raise ContractError(str(path), "the file has no rows")
    return rows


def read_csv(path: Path, columns: Sequence[str]) -> list[dict]:
    """A CSV file with a header that must contain ``columns``."""
    with open(path, encoding="utf-8", newline="") as stream:
        reader = csv.DictReader(stream)
        header = reader.fieldnames or []
        for name in columns:
            if name not in header:
                raise ContractError(str(path), "missing column", field=name,
                                    hint=f"columns present: {', '.join(header)}")
        rows = []
        for row in reader:
            if None in row:  # more cells than header names
                raise ContractError(str(path), f"{len(row[None])} cell(s) beyond the header",
                                    row=len(rows))
            rows.append(row)
    if not rows:
        raise ContractError(str(path), "the file has no rows")
    return rows


def require_keys(record: Mapping, keys: Iterable[str], source: Path | str, row: int) -> None:
    for key in keys:
        if key not in record:
            raise ContractError(str(source), "missing key", row=row, field=key)


def text_field(record: Mapping, key: str, source: Path | str, row: int) -> str:
    """A field that must be text (empty allowed: a model may have answered nothing)."""
    value = record.get(key)
    if not isinstance(value, str):
        raise ContractError(str(source), f"expected text, got {type(value).__name__} {value!r}",
                            row=row, field=key)
    return value


def scalar_text_field(record: Mapping, key: str, source: Path | str, row: int) -> str:
    """A text field that some public files store as a JSON scalar (PandaLM has responses that are
    the JSON boolean ``true`` where the model answered "True"): booleans become "True" / "False",
    numbers their decimal text; lists, objects and null are refused."""
    value = record.get(key)
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (int, float)):
        return str(value)
    return text_field(record, key, source, row)


def coded_label(value: Any, codes: Mapping[str, str | None], source: Path | str, row: int,
                field: str) -> str | None:
    """Map a coded label (ints and strings alike, e.g. 1 / "1") through ``codes``.

    ``codes`` maps the code (as text) to "a", "b", "tie", or None for a documented unusable value.
    """
    key = str(value).strip() if value is not None else "null"
    if key not in codes:
        allowed = ", ".join(repr(k) for k in codes)
        raise ContractError(str(source), f"unknown label {value!r}", row=row, field=field,
                            hint=f"expected one of {allowed}")
    return codes[key]
