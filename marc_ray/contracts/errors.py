"""The two kinds of failure a user sees: bad input (it names the file, the row and the field),
and a failure of the infrastructure or the judge engine (the cluster, a node, a server).

Exit codes of every ``marc-ray`` command (``EXIT_CODES``); the audit adds its own outcomes
(``calibrate.audit.EXIT_CODES``) in the same space.
"""

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


class InfrastructureError(RuntimeError):
    """The cluster or the judge engine failed, not the input: Ray could not start, a node was
    lost beyond the retries, no capacity appeared in time, a judge server answered 4xx/5xx or
    could not be reached, a worker was killed for memory.

    The message is one line, already redacted, and says "rerun to resume" where that is true
    (``resumable``). ``marc_ray.cli.main`` prints it and exits with ``EXIT_INFRASTRUCTURE``.
    """

    def __init__(self, message: str, *, resumable: bool = True, hint: str | None = None):
        self.resumable, self.hint = resumable, hint
        text = message
        if hint:
            text += f" ({hint})"
        if resumable:
            text += "; finished outputs are kept, rerun to resume"
        super().__init__(text)

    def __reduce__(self):  # across processes (a Ray worker's error) the text arrives as it was
        return _restore_error, (type(self), self.args, self.__dict__)


def _restore_error(cls: type, args: tuple, state: dict) -> BaseException:
    error = cls.__new__(cls)
    BaseException.__init__(error, *args)
    error.__dict__.update(state)
    return error


EXIT_OK = 0
EXIT_INPUT = 2            # bad input or configuration: the message names the file, row and field
EXIT_INFRASTRUCTURE = 5   # the cluster or the judge engine failed (InfrastructureError)
EXIT_INTERRUPTED = 130    # Ctrl-C / SIGINT: finished outputs are kept
EXIT_CODES = {EXIT_OK: "success", EXIT_INPUT: "bad input or configuration",
              EXIT_INFRASTRUCTURE: "infrastructure or judge engine failure",
              EXIT_INTERRUPTED: "interrupted"}
