"""Reading and writing tables and records: locations, JSONL/Parquet readers, atomic writes, hashes.

A *location* is a local path or any URI pyarrow has a filesystem for (``s3://bucket/run``,
``gs://…``, ``file:///mnt/shared/run``; options such as ``endpoint_override`` ride in the query
and stay at the end when parts are joined, :func:`join`). Every reader and writer here takes a
location, so a run folder on an object store is read and written by the same calls as a local
one. Credentials never belong in a location (:func:`resolve` refuses them): pyarrow reads them
from the environment or the node's role.

Atomic writes: on a local filesystem a temporary file beside the target is renamed onto it; on
an object store (where a rename is a copy, not atomic) the complete file is written to a local
temporary first, then uploaded to its final key in one put, which only becomes visible once
complete. A crash therefore never leaves a half-written local file under the final name, nor a
killed process a half-uploaded object; resume rules still trust only a record written after
the file (a shard marker, a stage manifest), since pyarrow completes an interrupted upload.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import posixpath
import re
import tempfile
from typing import Any, Callable, Iterable
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .errors import ContractError
from .redact import is_secret_name, redact_url


# ---- locations: local paths and filesystem URIs -----------------------------------------------

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_uri(location: str | os.PathLike) -> bool:
    """``scheme://…`` (``file://`` included), as opposed to a plain filesystem path."""
    return bool(_URI.match(os.fspath(location)))


def join(base: str | os.PathLike, *parts: str) -> str:
    """Join parts onto a location: ``os.path`` for a path, ``/`` for a URI (its query kept last)."""
    base = os.fspath(base)
    if not is_uri(base):
        return os.path.join(base, *parts)
    split = urlsplit(base)
    return urlunsplit(split._replace(path=posixpath.join(split.path or "/", *parts)))


def parent(location: str | os.PathLike) -> str:
    """The folder holding ``location`` (a URI keeps its scheme and query)."""
    location = os.fspath(location)
    if not is_uri(location):
        return os.path.dirname(location)
    split = urlsplit(location)
    return urlunsplit(split._replace(path=posixpath.dirname(split.path.rstrip("/"))))


def absolute(location: str | os.PathLike) -> str:
    """A path made absolute (what a record names), a URI as it is."""
    location = os.fspath(location)
    return location if is_uri(location) else os.path.abspath(location)


def resolve(location: str | os.PathLike):
    """A location → ``(pyarrow filesystem, path on it)``.

    ``s3://bucket/runs/x?endpoint_override=127.0.0.1:9000&scheme=http`` gives an
    ``S3FileSystem`` and ``bucket/runs/x``; a plain path gives the local filesystem and the
    absolute path.

    Raises
    ------
    ValueError
        The URI carries credentials (user:password, a secret-named query option).
    """
    from pyarrow import fs

    location = os.fspath(location)
    if not is_uri(location):
        return fs.LocalFileSystem(), os.path.abspath(location)
    split = urlsplit(check_location(location))
    if split.scheme in _BUCKET_SCHEMES:
        # one client per bucket and options: building one can cost a round trip (S3 looks up
        # the bucket's region when the URI names none), and a run touches thousands of keys
        filesystem = _bucket_filesystem(split.scheme, split.netloc, split.query)
        return filesystem, posixpath.join(split.netloc, split.path.lstrip("/")).rstrip("/")
    return fs.FileSystem.from_uri(location)


_BUCKET_SCHEMES = ("s3", "gs", "gcs")


@functools.lru_cache(maxsize=64)
def _bucket_filesystem(scheme: str, bucket: str, query: str):
    """The pyarrow filesystem of ``scheme://bucket?query`` (cached per process)."""
    from pyarrow import fs

    return fs.FileSystem.from_uri(urlunsplit((scheme, bucket, "", query, "")))[0]


def check_location(location: str | os.PathLike) -> str:
    """Refuse a URI that carries credentials (no filesystem is contacted); return it.

    Raises
    ------
    ValueError
        user:password in the URI, or a secret-named query option (``secret_key=…``).
    """
    location = os.fspath(location)
    split = urlsplit(location) if is_uri(location) else None
    keys = sorted({k for k, _ in parse_qsl(split.query) if is_secret_name(k)}) if split else []
    if split is not None and (split.password or keys):
        raise ValueError(f"the location {redact_url(location)!r} carries credentials "
                         f"({keys or ['user:password']}); put them in the environment "
                         f"(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, "
                         f"GOOGLE_APPLICATION_CREDENTIALS) or use the node's role instead")
    return location


def _is_local(filesystem) -> bool:
    from pyarrow import fs

    return isinstance(filesystem, fs.LocalFileSystem)


def exists(location: str | os.PathLike) -> bool:
    """A file or folder is at ``location`` (an object store: an object, or a key prefix)."""
    from pyarrow import fs

    filesystem, path = resolve(location)
    return filesystem.get_file_info(path).type != fs.FileType.NotFound


def is_file(location: str | os.PathLike) -> bool:
    from pyarrow import fs

    filesystem, path = resolve(location)
    return filesystem.get_file_info(path).type == fs.FileType.File


def is_dir(location: str | os.PathLike) -> bool:
    """A folder (an object store: a key prefix with objects under it) is at ``location``."""
    from pyarrow import fs

    filesystem, path = resolve(location)
    return filesystem.get_file_info(path).type == fs.FileType.Directory


def list_names(folder: str | os.PathLike, recursive: bool = False) -> list[str]:
    """The files under ``folder`` ("/"-separated, relative to it, sorted); [] when it is absent."""
    from pyarrow import fs

    filesystem, path = resolve(folder)
    if filesystem.get_file_info(path).type != fs.FileType.Directory:
        return []
    infos = filesystem.get_file_info(fs.FileSelector(path, recursive=recursive))
    base = path.rstrip("/") + "/"
    return sorted(info.path[len(base):] if info.path.startswith(base) else info.base_name
                  for info in infos if info.type == fs.FileType.File)


def make_dirs(location: str | os.PathLike) -> None:
    """Create a folder and its parents (an object store needs none: it gets empty markers)."""
    filesystem, path = resolve(location)
    filesystem.create_dir(path, recursive=True)


def remove(location: str | os.PathLike) -> None:
    """Delete the file at ``location`` if there is one."""
    from pyarrow import fs

    filesystem, path = resolve(location)
    if filesystem.get_file_info(path).type == fs.FileType.File:
        filesystem.delete_file(path)


def check_readable(location: str | os.PathLike, folder_ok: bool = False) -> None:
    """Refuse, before opening it, a local input that would not read as a file: a symlink loop
    (named as such, not "no such file"), or a FIFO, socket or device, which would block or
    stream forever ("not a regular file"). Object-store locations hold only regular objects.

    Raises
    ------
    ContractError
        Naming the path and what it is.
    """
    import errno
    import stat

    location = os.fspath(location)
    if is_uri(location):
        return
    try:
        mode = os.stat(location).st_mode
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise ContractError(location, "a symlink loop (a link that leads back to itself)",
                                hint="point the link at a real file") from None
        return  # missing or unreadable: the reader says so in its own words
    if stat.S_ISDIR(mode) and folder_ok:
        return
    if not stat.S_ISREG(mode):
        kind = ("a folder" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "a device")
        raise ContractError(location, f"not a regular file ({kind})",
                            hint="give a file" + (" or a folder of Parquet shards" if folder_ok
                                                  else ""))


def read_bytes(location: str | os.PathLike) -> bytes:
    check_readable(location)
    filesystem, path = resolve(location)
    with filesystem.open_input_stream(path) as stream:
        return stream.read()


def read_text(location: str | os.PathLike) -> str:
    return read_bytes(location).decode("utf-8")


def read_table(path: str | os.PathLike) -> pa.Table:
    """Read a JSONL / JSON-lines or Parquet file (or a folder of Parquet shards) into a table.

    Raises
    ------
    ContractError
        If the file is missing, empty, of an unknown format, or a JSON line is malformed.
    """
    path = os.fspath(path)
    check_readable(path, folder_ok=True)
    filesystem, resolved = resolve(path)
    from pyarrow import fs

    info = filesystem.get_file_info(resolved)
    if info.type == fs.FileType.NotFound:
        raise ContractError(path, "no such file")
    lower = resolved.lower().rstrip("/")  # the path without a URI's query
    if info.type == fs.FileType.Directory or lower.endswith(".parquet"):
        try:
            return pq.read_table(resolved, filesystem=filesystem)
        except (pa.ArrowInvalid, OSError) as error:
            raise ContractError(path, f"not a readable Parquet file or folder: {error}") from error
    if lower.endswith((".jsonl", ".json", ".ndjson")):
        rows = []
        with filesystem.open_input_stream(resolved) as stream:
            raw = stream.read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            row = len([line for line in raw[:error.start].split(b"\n")[:-1] if line.strip()])
            raise ContractError(path, f"not UTF-8 text (byte {error.start}: {error.reason})",
                                row=row, hint="re-save the file as UTF-8") from error
        stripped = text.lstrip()
        if lower.endswith(".json") and stripped.startswith("["):
            try:
                rows = json.loads(text)
            except json.JSONDecodeError as error:
                raise ContractError(path, f"malformed JSON: {error.msg}",
                                    hint=f"line {error.lineno}, column {error.colno}") from error
        else:
            for line_number, line in enumerate(text.splitlines()):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    raise ContractError(path, f"malformed JSON line: {error.msg}",
                                        row=len(rows), hint=f"line {line_number + 1}") from error
                if not isinstance(row, dict):
                    raise ContractError(path, "each line must be a JSON object", row=len(rows))
                rows.append(row)
        if not rows:
            raise ContractError(path, "the file has no rows")
        return rows_to_table(rows, path)
    raise ContractError(path, "unknown file format", hint="use .jsonl, .json or .parquet")


def is_parquet(location: str | os.PathLike) -> bool:
    """A Parquet file (``.parquet``) or a folder (of Parquet shards), at a path or a URI."""
    if isinstance(location, pa.Table):
        return False
    from pyarrow import fs

    filesystem, resolved = resolve(os.fspath(location))
    info = filesystem.get_file_info(resolved)
    return info.type == fs.FileType.Directory or (
        info.type == fs.FileType.File and resolved.lower().endswith(".parquet"))


def parquet_schema(location: str | os.PathLike) -> pa.Schema:
    """The schema (with its metadata) of a Parquet file or folder, at a path or a URI."""
    import pyarrow.dataset as pa_dataset

    filesystem, resolved = resolve(os.fspath(location))
    return pa_dataset.dataset(resolved, filesystem=filesystem, format="parquet").schema


def parquet_batches(location: str | os.PathLike, batch_rows: int,
                    columns: Iterable[str] | None = None):
    """The record batches of a Parquet file or folder in file order, one row group read at a
    time (memory: one row group), at a path or a URI (an object store streams its ranges).

    One ``iter_batches`` per row group: a reader pre-buffers the byte ranges of the row groups
    it is asked for and keeps them until it is done, so one call over the whole file kept the
    file's compressed columns in memory by the end (~1 GB of run vectors at a million items,
    the bulk of report's and apply's peak: issue 22). Asked one row group at a time, it drops
    each group's buffers when it reads the next, and still coalesces an object store's reads."""
    import pyarrow.dataset as pa_dataset

    filesystem, resolved = resolve(os.fspath(location))
    files = pa_dataset.dataset(resolved, filesystem=filesystem, format="parquet").files
    for file in files:
        with filesystem.open_input_file(file) as stream:
            reader = pq.ParquetFile(stream)
            for group in range(reader.num_row_groups):
                yield from reader.iter_batches(batch_size=batch_rows, row_groups=[group],
                                               columns=None if columns is None else list(columns))


def read_columns(path: str | os.PathLike, columns: Iterable[str] | None = None,
                 also: Iterable[str] = ()) -> pa.Table:
    """Read only some columns of a table file (Parquet: column projection, nothing else is read).

    ``columns=None`` reads every column that is not a list: an annotation or scored file's
    per-run vectors (``probs``, ``label_mass``, ``status``, ``zero_shot_probs``: hundreds of
    values per item) are what makes it large, and verdicts, confidences and routing never need
    them; ``also`` adds named ones back (``also=["probs"]``), in the same single read. Named
    columns the file lacks are skipped (the caller's validation names them).
    Schema metadata (the run layout) is kept. Other formats are read whole, then selected.

    Raises
    ------
    ContractError
        As :func:`read_table`.
    """
    path = os.fspath(path)
    filesystem, resolved = resolve(path)
    lower = resolved.lower().rstrip("/")
    from pyarrow import fs

    info = filesystem.get_file_info(resolved)
    parquet = info.type == fs.FileType.Directory or (info.type == fs.FileType.File
                                                     and lower.endswith(".parquet"))
    if parquet:
        try:
            if info.type == fs.FileType.Directory:
                import pyarrow.dataset as pa_dataset

                schema = pa_dataset.dataset(resolved, filesystem=filesystem, format="parquet").schema
            else:
                schema = pq.read_schema(resolved, filesystem=filesystem)
            wanted = _wanted_columns(schema, columns, also)
            return pq.read_table(resolved, columns=wanted, filesystem=filesystem)
        except (pa.ArrowInvalid, OSError):
            pass  # read_table words the error
    table = read_table(path)
    return table.select(_wanted_columns(table.schema, columns, also))


def _wanted_columns(schema: pa.Schema, columns: Iterable[str] | None, also: Iterable[str] = ()
                    ) -> list[str]:
    if columns is None:
        columns = [f.name for f in schema
                   if not (pa.types.is_list(f.type) or pa.types.is_large_list(f.type))]
    return [name for name in dict.fromkeys([*columns, *also]) if name in schema.names]


def rows_to_table(rows: list[dict], source: str = "<rows>") -> pa.Table:
    """Rows (dicts) to a table, with a ContractError naming the row when types clash.

    A JSON ``true`` among numbers is refused rather than read as 1.0: pyarrow would coerce
    it silently, and one such value can flip a certificate.
    """
    _refuse_booleans_among_numbers(rows, source)
    try:
        return pa.Table.from_pylist(rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        # Find the first row whose fields cannot be typed like the first row's.
        for index in range(1, len(rows)):
            try:
                pa.Table.from_pylist(rows[: index + 1])
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                keys = sorted(set(rows[index]) | set(rows[0]))
                for key in keys:
                    try:
                        pa.array([r.get(key) for r in rows[: index + 1]])
                    except (pa.ArrowInvalid, pa.ArrowTypeError):
                        raise ContractError(source, f"value of a different type than earlier rows: "
                                            f"{rows[index].get(key)!r}", row=index, field=key) from error
        raise ContractError(source, f"rows cannot form a table: {error}") from error


def _refuse_booleans_among_numbers(rows: list[dict], source: str) -> None:
    kinds: dict[str, set] = {}
    for row in rows:
        for key, value in row.items():
            if isinstance(value, (bool, int, float)):
                kinds.setdefault(key, set()).add(bool if isinstance(value, bool) else float)
    mixed = {key for key, seen in kinds.items() if len(seen) == 2}
    if not mixed:
        return
    for index, row in enumerate(rows):
        for key in mixed:
            if isinstance(row.get(key), bool):
                raise ContractError(source, f"a boolean ({json.dumps(row[key])}) where the other "
                                    "rows hold numbers", row=index, field=key,
                                    hint="write a number, or null for a missing value")


def write_atomic(path: str | os.PathLike, write: Callable[[str], None], suffix: str = "") -> None:
    """Call ``write(temporary)`` for a local temporary file, then make it the file at ``path``.

    Local filesystem: the temporary sits beside ``path`` and is renamed onto it (atomic on one
    filesystem). Object store: the temporary is uploaded to ``path``'s key in one put, which
    appears only once complete (a rename there would be a copy, not atomic). Either way a reader
    (or a resumed run) sees the old file or the complete new one, never a partial write.
    """
    filesystem, target = resolve(path)
    local = _is_local(filesystem)
    folder = os.path.dirname(target) if local else None
    if local:
        os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    os.close(handle)
    try:
        write(temporary)
        if local:
            # mkstemp makes the file 0600; the result gets the mode any new file gets (0644
            # under umask 022, as pyarrow's own writes do), so a shared run folder stays readable
            os.chmod(temporary, 0o666 & ~current_umask())
            os.replace(temporary, target)
        else:
            _upload(temporary, filesystem, target)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def current_umask() -> int:
    """The process's umask, read without changing it (``/proc/self/status`` on Linux; elsewhere
    set and restored at once, which another thread could observe)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UPLOAD_CHUNK = 1 << 24  # 16 MiB per write of an upload


def _upload(local_path: str, filesystem, target: str) -> None:
    """One put of a complete local file to ``target`` (pyarrow sends a large one in parts).

    pyarrow closes (completes) an output stream even when the upload is interrupted, so an
    object cut short by Ctrl-C could still appear: what a resumed run trusts is therefore a
    record written *after* the file (the annotate job's shard markers, the pipeline's stage
    manifests with their outputs' hashes), never the file's presence alone.
    """
    folder = posixpath.dirname(target)
    if folder:
        filesystem.create_dir(folder, recursive=True)
    with open(local_path, "rb") as source, filesystem.open_output_stream(target) as sink:
        for chunk in iter(lambda: source.read(UPLOAD_CHUNK), b""):
            sink.write(chunk)


def write_table_atomic(table: pa.Table, path: str | os.PathLike) -> None:
    """Write Parquet atomically: to a temporary file beside ``path``, then rename."""
    write_atomic(path, lambda temporary: pq.write_table(table, temporary), suffix=".parquet")


def write_bytes_atomic(data: bytes, path: str | os.PathLike) -> None:
    """Write a file's bytes atomically (:func:`write_atomic`)."""
    def write(temporary: str) -> None:
        with open(temporary, "wb") as stream:
            stream.write(data)

    write_atomic(path, write)


def write_text_atomic(text: str, path: str | os.PathLike) -> None:
    """Write a UTF-8 text file atomically (:func:`write_atomic`)."""
    write_bytes_atomic(text.encode("utf-8"), path)


def write_json_atomic(data: Any, path: str | os.PathLike) -> None:
    """Write strict JSON atomically: a non-finite number is null plus a status (:func:`json_safe`)."""
    write_text_atomic(json.dumps(json_safe(data), indent=2, sort_keys=False) + "\n", path)


# JSON has no literal for infinity or a missing number. Every JSON file marc_ray writes encodes
# them one way (docs/report.md, "Infinity and missing values"): the number is null, and beside
# it, under the same key plus "_status", a word saying why. In a list there is no place for a
# status: the entry is null (a missing number, or one the field's documentation names).
NUMBER_STATUS = {"inf": "infinite", "-inf": "negative infinite", "nan": "missing"}
THRESHOLD_KEYS = ("threshold", "certified_threshold", "predicted_threshold", "lambda_hat")
NONE_PASSED = "none passed"  # a threshold of +inf: no threshold passed, nothing is accepted
_RESTORED = {"infinite": math.inf, NONE_PASSED: math.inf, "negative infinite": -math.inf,
             "missing": math.nan}


def number_status(key: str, value: float) -> str:
    """The ``<key>_status`` word of a non-finite number (``"none passed"`` for a +inf threshold)."""
    if math.isnan(value):
        return NUMBER_STATUS["nan"]
    if value > 0:
        return NONE_PASSED if key in THRESHOLD_KEYS else NUMBER_STATUS["inf"]
    return NUMBER_STATUS["-inf"]


def json_safe(value: Any) -> Any:
    """``value`` as strict JSON: numpy types made plain, and every non-finite number null, with
    its ``<key>_status`` beside it inside a mapping (``"threshold": null, "threshold_status":
    "none passed"``); :func:`json_restore` reads it back."""
    if isinstance(value, dict):
        out: dict = {}
        for key, item in value.items():
            key = str(key)
            item = item.item() if isinstance(item, np.generic) else item
            if isinstance(item, float) and not math.isfinite(item):
                out[key] = None
                out[f"{key}_status"] = number_status(key, item)
            elif f"{key}" not in out:  # a status already set for a null number stays
                out[key] = json_safe(item)
        return out
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        return [json_safe(v) for v in value.tolist()]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_restore(value: Any) -> Any:
    """The inverse of :func:`json_safe` for mappings: a null with a ``<key>_status`` of
    :data:`NUMBER_STATUS` (or "none passed") becomes the number again and the status goes."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            status = value.get(f"{key}_status")
            if item is None and status in _RESTORED:
                out[key] = _RESTORED[status]
            elif key.endswith("_status") and item in _RESTORED and key[:-7] in value \
                    and value[key[:-7]] is None:
                continue
            else:
                out[key] = json_restore(item)
        return out
    if isinstance(value, list):
        return [json_restore(v) for v in value]
    return value


def table_hash(table: pa.Table, columns: Iterable[str] | None = None) -> str:
    """A SHA-256 of a table's content (selected columns, in order), independent of chunking.

    Each column is hashed as the JSON text of its values, serialised slice by slice (the same
    text as one ``json.dumps`` of the whole column, without holding it as Python objects); a
    list column of numbers (an annotation's run vectors) as its bytes instead
    (:class:`_NumberListDigest`): its JSON took minutes at a million items.
    """
    names = list(columns) if columns is not None else table.column_names
    return _hash_columns(names, lambda name: (table.column(name).slice(lo, HASH_ROWS).combine_chunks()
                                              for lo in range(0, table.num_rows, HASH_ROWS)))


def file_table_hash(path: str | os.PathLike, columns: Iterable[str]) -> str:
    """:func:`table_hash` of a Parquet file or folder's columns, read one column and one batch
    at a time (equal to ``table_hash(read_table(path), columns)``)."""
    import pyarrow.dataset as pa_dataset

    filesystem, resolved = resolve(path)
    dataset = pa_dataset.dataset(resolved, filesystem=filesystem, format="parquet")

    # pre_buffer off: the scanner otherwise keeps every row group's buffered column chunk until
    # the file is done, the whole compressed run-vector column by the end (~1 GB at 1M items)
    options = pa_dataset.ParquetFragmentScanOptions(pre_buffer=False)

    def slices(name):
        for batch in dataset.to_batches(columns=[name], batch_size=HASH_ROWS, batch_readahead=0,
                                        fragment_readahead=0, fragment_scan_options=options):
            yield batch.column(0)

    return _hash_columns(list(columns), slices)


HASH_ROWS = 1 << 13  # rows serialised at once (~2.5M values at 310 runs per item)


def _hash_columns(names: list[str], slices: Callable[[str], Iterable[pa.Array]]) -> str:
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode())
        digest.update(b"[")
        first, numbers = True, None
        for part in slices(name):
            if len(part) == 0:
                continue
            if _is_number_list(part.type):
                numbers = numbers or _NumberListDigest(part.type)
                numbers.update(part)
                continue
            text = json.dumps(part.to_pylist(), default=str)[1:-1]
            digest.update(text.encode() if first else b", " + text.encode())
            first = False
        if numbers is not None:
            digest.update(numbers.hexdigest().encode())
        digest.update(b"]")
    return "sha256:" + digest.hexdigest()


def _is_list(data_type: pa.DataType) -> bool:
    return pa.types.is_list(data_type) or pa.types.is_large_list(data_type)


def _list_values(data_type: pa.DataType) -> tuple[pa.DataType, int]:
    """The type of a (nested) list's values and its depth (0: not a list)."""
    depth = 0
    while _is_list(data_type):
        data_type, depth = data_type.value_type, depth + 1
    return data_type, depth


def _is_number_list(data_type: pa.DataType) -> bool:
    """A list (of lists...) whose values are integers or floats."""
    values, depth = _list_values(data_type)
    return depth > 0 and (pa.types.is_integer(values) or pa.types.is_floating(values))


class _NumberListDigest:
    """SHA-256 of a list column of numbers, fed slice by slice: for each list level, which
    entries are null and each entry's length, then which values are null and the values' bytes
    (little-endian, one NaN). Each of these is its own stream, so where the column is sliced
    does not change the digest; together they determine the column's values exactly."""

    def __init__(self, data_type: pa.DataType):
        values, depth = _list_values(data_type)
        # the depth and the values' type (a list's field name differs between Arrow and Parquet)
        self.data_type = f"list{depth}<{values}>"
        self.streams: dict[str, "hashlib._Hash"] = {}

    def _feed(self, key: str, array: np.ndarray) -> None:
        self.streams.setdefault(key, hashlib.sha256()).update(np.ascontiguousarray(array).tobytes())

    def update(self, part: pa.Array) -> None:
        level, depth = part, 0
        while _is_list(level.type):
            self._feed(f"valid{depth}", pc.is_valid(level).to_numpy(zero_copy_only=False))
            lengths = pc.fill_null(pc.list_value_length(level), 0)
            self._feed(f"length{depth}", lengths.to_numpy(zero_copy_only=False).astype("<i8"))
            level, depth = pc.list_flatten(level), depth + 1  # a null entry adds no values
        self._feed("valid", pc.is_valid(level).to_numpy(zero_copy_only=False))
        values = pc.fill_null(level, 0).to_numpy(zero_copy_only=False)
        values = values.astype(values.dtype.newbyteorder("<"), copy=True)
        if values.dtype.kind == "f":
            values[np.isnan(values)] = np.nan  # one NaN pattern, whatever payload was stored
        self._feed("values", values)

    def hexdigest(self) -> str:
        combined = hashlib.sha256(self.data_type.encode())
        for key in sorted(self.streams):
            combined.update(key.encode() + self.streams[key].digest())
        return combined.hexdigest()


def file_hash(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (for manifests); any location."""
    check_readable(path)
    digest = hashlib.sha256()
    filesystem, resolved = resolve(path)
    with filesystem.open_input_stream(resolved) as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()
