"""The one exception of bad input: it names the file, the row and the field."""

from __future__ import annotations


class ContractError(ValueError):
    """Bad input: names the file, the row (0-based, data rows) and the field.

    Parameters
    ----------
    source : str
        The file (or a description of the in-memory table).
    problem : str
        What is wrong, in a sentence.
    row : int or None
        The 0-based data row, when one row is at fault.
    field : str or None
        The column or key at fault.
    hint : str or None
        What the user can do about it.
    """

    def __init__(self, source: str, problem: str, row: int | None = None,
                 field: str | None = None, hint: str | None = None):
        self.source, self.problem, self.row, self.field, self.hint = source, problem, row, field, hint
        where = str(source)
        if row is not None:
            where += f", row {row}"
        if field is not None:
            where += f", field '{field}'"
        message = f"{where}: {problem}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)
