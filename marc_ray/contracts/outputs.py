"""Output paths are checked before any work starts, so no computation is lost to a bad ``--out``.

A stage that computes for minutes and then fails to write (the parent is a file, the folder is
read-only, the extension promises a format the stage does not write) loses everything. Every
command therefore calls :func:`check_output_dir` or :func:`check_output_file` on its outputs
first; the atomic writers (:mod:`marc_ray.contracts.io`) then make sure a failure mid-write
leaves nothing half-written behind.
"""

from __future__ import annotations

import os

from .errors import ContractError


def _is_uri(path: str) -> bool:
    return "://" in path


def _check_parent_writable(path: str, flag: str) -> None:
    """The nearest existing ancestor of ``path`` is a folder this process can write into."""
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        up = os.path.dirname(parent)
        if up == parent:
            break
        parent = up
    if not os.path.isdir(parent):
        raise ContractError(path, f"cannot create it: {parent} is a file, not a folder", field=flag,
                            hint="choose another output path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ContractError(path, f"cannot write into {parent} (permission denied)", field=flag,
                            hint="choose a folder you can write to")


def check_output_dir(path: str | os.PathLike, flag: str = "--out") -> str:
    """Refuse, before any work, an output folder that cannot be created or written.

    Returns the path (as a string). URIs (``s3://``...) are checked by the filesystem when written.

    Raises
    ------
    ContractError
        ``path`` is a file, or a file stands where one of its parent folders should be, or the
        nearest existing folder is not writable.
    """
    path = os.fspath(path)
    if _is_uri(path):
        return path
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise ContractError(path, "must be a folder, but a file of that name exists", field=flag,
                                hint="remove the file or choose another folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise ContractError(path, "the folder is not writable (permission denied)", field=flag,
                                hint="choose a folder you can write to")
        return path
    _check_parent_writable(path, flag)
    return path


def check_output_file(path: str | os.PathLike, formats: dict[str, str], flag: str = "--out") -> str:
    """Refuse, before any work, an output file whose extension or folder is wrong.

    Parameters
    ----------
    path : str or PathLike
    formats : dict of extension → format name
        The extensions the command writes, e.g. ``{".parquet": "Parquet"}``; any other
        extension is refused (a ``.jsonl`` name holding Parquet bytes misleads every reader).
    flag : str
        The option the path came from, for the message.

    Raises
    ------
    ContractError
    """
    path = os.fspath(path)
    extension = os.path.splitext(path)[1].lower()
    if extension not in formats:
        allowed = ", ".join(f"{ext} ({name})" for ext, name in formats.items())
        raise ContractError(path, f"this command writes {allowed}; the name ends in "
                            f"{extension or 'no extension'}", field=flag,
                            hint=f"name the file with {' or '.join(formats)}")
    if _is_uri(path):
        return path
    if os.path.isdir(path):
        raise ContractError(path, "is a folder; a file is wanted here", field=flag)
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise ContractError(path, "the file exists and is not writable", field=flag)
    _check_parent_writable(path, flag)
    return path
