"""Provenance: which rows shaped an artifact, so that a certificate is never computed on them.

Every artifact a certificate relies on records the rows that shaped it: the fitted confidence
model (its training and validation rows), an ``auto`` choice of the confidence measure (the rows
it read), a quantile grid (the rows it read). A :data:`Provenance` maps a *role* (a short name
saying what the rows did, e.g. ``"conf_marc: trained"``) to a record of those rows::

    {"count": 714, "digest": "<SHA-256 of the sorted id hashes>", "hashes": "<base64>"}

``hashes`` is the compact set: the sorted 64-bit hashes of the ids (FNV-1a over 8-byte words) (8 bytes an id, so
about 11 MB of base64 text at a million rows, against ~60 MB for a Python set of id strings;
``benchmarks/bench_provenance.py``). Membership is a binary search. A hash collision can only
make a fresh row look seen (a refusal, never a false pass): the check is conservative, with a
collision chance of about n·m / 2^64 for m calibration rows against n recorded ones.

The scored file carries the provenance of each confidence column in its Parquet metadata
(:data:`PROVENANCE_METADATA_KEY`); the certificate records :func:`provenance_summary` (counts
and digests, not the hashes) and its :func:`provenance_digest`. ``marc_ray.calibrate.certify``
refuses calibration rows that any role saw (:func:`seen_rows`).
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Iterable

import numpy as np
import pyarrow as pa

from .errors import ContractError

__all__ = ["PROVENANCE_METADATA_KEY", "Provenance", "id_hashes", "provenance_record",
           "merge_provenance", "seen_rows", "provenance_summary", "provenance_digest",
           "provenance_from_metadata", "provenance_metadata", "check_unseen"]

Provenance = dict  # role -> {"count", "digest", "hashes"}

# Parquet schema metadata of a scored file: {confidence column: Provenance}
PROVENANCE_METADATA_KEY = b"marc_ray.provenance"

_FNV_OFFSET, _FNV_PRIME = np.uint64(0xCBF29CE484222325), np.uint64(0x100000001B3)
_HASH_CHUNK = 1 << 14  # ids hashed at once: bounds the padded matrix (chunk x longest id x 9 B)


def id_hashes(ids: Iterable) -> np.ndarray:
    """The 64-bit hash of each id's UTF-8 bytes and length, shape (n,), uint64 (FNV-1a over
    8-byte words, each step folded by a shift; stable across versions and platforms).

    Vectorised over the ids' Arrow buffers (a loop over byte positions, not over ids), so a
    million ids hash in well under a second.
    """
    if isinstance(ids, (pa.Array, pa.ChunkedArray)):
        array = ids
    else:
        values = ids if isinstance(ids, np.ndarray) else np.asarray(list(ids), dtype=object)
        try:
            array = pa.array(values, pa.large_string())
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # ids that are not strings: their text
            array = pa.array([str(i) for i in values], pa.large_string())
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks else pa.array([], pa.large_string())
    out = np.empty(len(array), dtype=np.uint64)
    for start in range(0, len(array), _HASH_CHUNK):  # cast chunk by chunk: memory stays a chunk's
        out[start:start + _HASH_CHUNK] = _fnv(array.slice(start, _HASH_CHUNK).cast(pa.large_string()))
    return out


def _fnv(array: pa.Array) -> np.ndarray:
    """FNV-1a over 8-byte little-endian words of each id (zero-padded), seeded with its length.

    Word-wise: a loop of (longest id / 8) steps over the chunk, each a few numpy operations; an
    id takes exactly its own words' steps, so its hash never depends on the other ids.
    """
    _, offsets_buffer, data_buffer = array.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[array.offset:array.offset + len(array) + 1]
    data = (np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None
            else np.zeros(1, dtype=np.uint8))
    starts, lengths = offsets[:-1], np.diff(offsets)
    n_words = (lengths + 7) // 8
    width = int(n_words.max()) * 8 if len(lengths) else 0
    hashes = np.full(len(array), _FNV_OFFSET, dtype=np.uint64)
    with np.errstate(over="ignore"):
        hashes ^= lengths.astype(np.uint64)  # "a" and "a\0" differ
        hashes *= _FNV_PRIME
        if width == 0:
            return hashes
        position = np.arange(width)
        index = np.minimum(starts[:, None] + position, max(data.size - 1, 0))
        padded = np.where(position < lengths[:, None], data[index], 0).astype(np.uint8)
        words = padded.view("<u8")  # (n, width / 8)
        for w in range(words.shape[1]):
            stepped = (hashes ^ words[:, w]) * _FNV_PRIME
            stepped ^= stepped >> np.uint64(29)  # fold the high bits down: words are 64 bits wide
            hashes = np.where(n_words > w, stepped, hashes)
    return hashes


def provenance_record(ids: Iterable) -> dict:
    """The record of a set of rows: count, SHA-256 digest of the sorted ids, compact hash set."""
    hashes = np.sort(id_hashes(ids)).astype("<u8")  # np.unique is ~20x slower here (numpy 2.3)
    hashes = hashes[np.concatenate(([True], hashes[1:] != hashes[:-1]))]  # sorted, each id once
    # the digest of the set: SHA-256 of its sorted hashes (the same rows in any order, same digest)
    digest = hashlib.sha256(hashes.tobytes()).hexdigest()
    return {"count": int(hashes.size), "digest": digest,
            "hashes": base64.b64encode(hashes.tobytes()).decode("ascii")}


def _hash_set(record: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(record.get("hashes", "")), dtype="<u8")


def merge_provenance(*parts: Provenance | None) -> Provenance:
    """One provenance from several (roles are kept apart; a repeated role must be the same rows)."""
    merged: Provenance = {}
    for part in parts:
        for role, record in (part or {}).items():
            if role in merged and merged[role]["digest"] != record["digest"]:
                raise ValueError(f"two different row sets under one provenance role {role!r}")
            merged[role] = record
    return merged


def seen_rows(provenance: Provenance | None, ids) -> tuple[np.ndarray, dict]:
    """Which of ``ids`` some role saw: (mask of shape (n,), {role: count seen})."""
    n = len(ids)
    seen = np.zeros(n, dtype=bool)
    per_role = {}
    if not provenance or n == 0:
        return seen, per_role
    hashes = id_hashes(ids)
    for role, record in provenance.items():
        recorded = _hash_set(record)
        if recorded.size == 0:
            continue
        position = np.minimum(np.searchsorted(recorded, hashes), recorded.size - 1)
        hit = recorded[position] == hashes
        if hit.any():
            per_role[role] = int(hit.sum())
            seen |= hit
    return seen, per_role


def check_unseen(provenance: Provenance | None, ids, source: str, *, exclude_seen: bool,
                 flag: str = "--exclude-seen-rows") -> np.ndarray:
    """Refuse calibration rows that shaped an artifact the certificate relies on.

    Returns the mask of rows to keep (all of them, or the unseen ones with ``exclude_seen``).

    Raises
    ------
    ContractError
        Without ``exclude_seen``, when any row was seen: the count, the first id, which roles
        saw them, and the way out.
    """
    seen, per_role = seen_rows(provenance, ids)
    if not seen.any():
        return ~seen
    roles = ", ".join(f"{role} ({count})" for role, count in per_role.items())
    if not exclude_seen:
        first = np.asarray(ids, dtype=object)[np.flatnonzero(seen)[0]]
        raise ContractError(source, f"{int(seen.sum())} of {len(ids)} calibration rows shaped "
                            f"what the certificate relies on ({roles}; first id {str(first)!r}): "
                            "a certificate computed on them is not valid", field="id",
                            hint=f"calibrate on rows none of these saw (a split column with "
                                 f"calibration rows), or pass {flag} to leave those rows out")
    if seen.all():
        raise ContractError(source, f"every one of the {len(ids)} calibration rows shaped what "
                            f"the certificate relies on ({roles}); none is left to calibrate on",
                            field="id", hint="calibrate on rows the confidence model, the "
                            "measure choice and the grid never saw")
    return ~seen


def provenance_summary(provenance: Provenance | None) -> dict:
    """What a certificate records: per role, the count and digest (the hashes stay in the scored
    file); and one digest over all of them."""
    roles = {role: {"count": int(record["count"]), "digest": record["digest"]}
             for role, record in sorted((provenance or {}).items())}
    return {"digest": provenance_digest(provenance), "roles": roles}


def provenance_digest(provenance: Provenance | None) -> str:
    """SHA-256 over the roles and their row digests (sorted): one value to show and compare."""
    text = json.dumps({role: record["digest"] for role, record in (provenance or {}).items()},
                      sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def provenance_metadata(by_column: dict[str, Provenance]) -> dict[bytes, bytes]:
    """Schema metadata carrying each confidence column's provenance (empty when none)."""
    by_column = {c: p for c, p in by_column.items() if p}
    return {PROVENANCE_METADATA_KEY: json.dumps(by_column, sort_keys=True).encode()} if by_column else {}


def provenance_from_metadata(metadata: dict | None, column: str | None = None) -> Provenance:
    """A scored file's provenance: of ``column``, or of every column merged (None)."""
    raw = (metadata or {}).get(PROVENANCE_METADATA_KEY)
    if raw is None:
        return {}
    try:
        by_column = json.loads(raw)
    except (TypeError, ValueError):
        return {}
    if not isinstance(by_column, dict):
        return {}
    if column is not None:
        return dict(by_column.get(column) or {})
    return merge_provenance(*by_column.values())
