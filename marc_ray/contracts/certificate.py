"""The certificate of a calibrated selective judge, and the assumptions its guarantee rests on.

A certificate *binds* to what it certifies. Each stage records its ``binding``: the judge (name
and model identity), the confidence column and the fitted confidence model's hash, and the run
layout (annotators, shot subsets, orders); the grid is recorded once. The whole content carries a
SHA-256 ``digest``. :meth:`Certificate.read` refuses a certificate whose content no longer
matches its digest (edited by hand), whose thresholds are not numbers on its own grid (or +inf),
or whose records are malformed; :func:`check_binding` refuses data from another judge, model or
layout before anything is decided.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import ContractError
from .io import exists, is_file, is_uri, json_restore, json_safe, read_bytes, write_json_atomic


ASSUMPTIONS = (
    "The calibration items and the items the judge is applied to are exchangeable draws from "
    "the same distribution (the calibration set is representative of deployment).",
    "Agreement is with the humans who labelled the calibration set, under the stated label "
    "and tie policies; it says nothing about other annotators or about correctness.",
    "The threshold grid was fixed without looking at the calibration scores.",
    "The guarantee holds with probability 1 - delta over the draw of the calibration set; "
    "it is a statement about the selection rule, not about any single verdict.",
)


@dataclass
class Certificate:
    """A calibrated selective judge: everything needed to check, reproduce and apply it.

    ``stages`` holds one record per judge in a cascade (one for a single judge): its name,
    confidence measure, threshold (``inf``: nothing accepted), n, k, upper bound, coverage and
    the δ it was given.

    ``provenance`` (written by ``marc_ray.calibrate.certify``): the digest of the rows that
    trained the confidence model, chose the measure (``auto``) or built the grid, per role a
    count and digest, and ``n_excluded`` (calibration rows left out because one of those saw
    them). Every calibration row is disjoint from those rows.

    ``groups`` (optional; absent in single-threshold certificates, and then not written) holds
    a per-context certificate: ``{"column", "delta_split", "unseen", "values": {group:
    {"delta", "stages": [...], ...}}}`` (``marc_ray.calibrate.groups.groups_record``). Its
    top-level stages then carry threshold ``inf``, so a router unaware of groups escalates all.
    """

    alpha: float
    delta: float
    procedure: str
    tie_policy: str
    grid: dict
    stages: list[dict]
    delta_split: str
    coverage: float
    n_calibration: int
    agreement_on_accepted: float | None
    data_hash: str
    model_hash: str | None = None
    assumptions: list[str] = field(default_factory=lambda: list(ASSUMPTIONS))
    created_by: str = "marc_ray"
    version: str = ""
    extra: dict = field(default_factory=dict)
    groups: dict | None = None  # per-context certificates (calibrate.groups); None: one threshold
    # the rows that shaped what it relies on (contracts.provenance.provenance_summary: a digest
    # and, per role, a count and digest) and how many calibration rows were excluded for it;
    # None only in certificates written before provenance was recorded
    provenance: dict | None = None
    digest: str = ""  # SHA-256 of every other field (content_digest); set by to_dict / write

    @property
    def thresholds(self) -> list[float]:
        """λ̂ of every stage, in cascade order (``inf``: that stage accepts nothing)."""
        return [float(stage["threshold"]) for stage in self.stages]

    def to_dict(self) -> dict:
        data = asdict(self)
        for optional in ("groups", "provenance"):  # absent when unset: older shapes still verify
            if data[optional] is None:
                del data[optional]
        data = json_safe(data)
        data["digest"] = content_digest(data)
        return data

    def write(self, path: str | os.PathLike) -> None:
        write_json_atomic(self.to_dict(), path)

    @classmethod
    def read(cls, path: str | os.PathLike) -> "Certificate":
        """Read and verify a certificate file (digest, types, thresholds on the grid).

        Raises
        ------
        ContractError
            Missing or unreadable file, malformed JSON, a malformed record, or content that
            does not match its digest (the certificate was edited after calibrate wrote it).
        """
        source = os.fspath(path)
        try:
            if is_uri(source) and not is_file(source):  # say what the OS would say
                raise (IsADirectoryError if exists(source) else FileNotFoundError)(source)
            raw = read_bytes(source) if is_uri(source) else _read_local(source)
        except FileNotFoundError as error:
            raise ContractError(source, "no such file") from error
        except IsADirectoryError as error:
            raise ContractError(source, "is a folder; a certificate.json file is wanted") from error
        except OSError as error:
            raise ContractError(source, f"cannot read it: {error.strerror}") from error
        try:
            data = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as error:
            raise ContractError(source, f"not UTF-8 text (byte {error.start})") from error
        except json.JSONDecodeError as error:
            raise ContractError(source, f"malformed JSON: {error.msg} (line {error.lineno})") from error
        if isinstance(data, dict) and "digest" not in data:
            # a file without its digest cannot be told apart from an edited one
            raise ContractError(source, "has no digest, so it cannot be verified", field="digest",
                                hint="use a certificate written by marc-ray calibrate or run")
        return cls.from_dict(data, source)

    @classmethod
    def from_dict(cls, data: Any, source: str = "<certificate>") -> "Certificate":
        """Validate a certificate record; a stored ``digest`` must match the content."""
        if not isinstance(data, dict):
            raise ContractError(source, f"a certificate is a JSON object, got {type(data).__name__}")
        names = {f.name for f in cls.__dataclass_fields__.values()}
        required = {"alpha", "delta", "procedure", "grid", "stages", "coverage", "data_hash"}
        for name in sorted(required):
            if name not in data:
                raise ContractError(source, "missing key", field=name)
        unknown = sorted(set(data) - names)
        if unknown:
            raise ContractError(source, f"unknown keys {unknown}", field=unknown[0])
        if "digest" in data:
            stored = data["digest"]
            if not isinstance(stored, str) or stored != content_digest(data):
                raise ContractError(source, "its content does not match its digest: the "
                                    "certificate was edited after calibrate wrote it",
                                    field="digest", hint="a certificate cannot be edited; "
                                    "re-run calibrate to certify other settings")
        data = json_restore(data)  # null + "<key>_status" back to inf / NaN (older files: "inf")
        for name in ("alpha", "delta"):
            value = data[name]
            if not _is_number(value) or not 0 < value < 1:
                raise ContractError(source, f"must be a number in (0, 1), got {value!r}", field=name)
        if not _is_number(data["coverage"]) or not 0 <= data["coverage"] <= 1:
            raise ContractError(source, f"must be a number in [0, 1], got {data['coverage']!r}",
                                field="coverage")
        grid = _grid_values(data["grid"], source)
        stages = data["stages"]
        if not isinstance(stages, list) or not stages:
            raise ContractError(source, f"must be a non-empty list of stage records, got {stages!r}",
                                field="stages")
        for index, stage in enumerate(stages):
            where = f"stages[{index}]"
            if not isinstance(stage, dict):
                raise ContractError(source, f"a stage is a JSON object, got {stage!r}", field=where)
            for key in ("name", "confidence", "threshold"):
                if key not in stage:
                    raise ContractError(source, "missing key", field=f"{where}.{key}")
            for key in ("name", "confidence"):
                if not isinstance(stage[key], str) or not stage[key]:
                    raise ContractError(source, f"must be a non-empty string, got {stage[key]!r}",
                                        field=f"{where}.{key}")
            if stage.get("binding") is not None and not isinstance(stage["binding"], dict):
                raise ContractError(source, f"must be a JSON object, got {stage['binding']!r}",
                                    field=f"{where}.binding")
            threshold = _threshold(stage["threshold"], source, f"{where}.threshold")
            if math.isfinite(threshold) and grid is not None and not _on_grid(threshold, grid):
                raise ContractError(source, f"threshold {threshold!r} is not a point of the "
                                    f"certificate's grid (nor +inf)", field=f"{where}.threshold",
                                    hint="thresholds come from calibrate; re-run it")
            stage["threshold"] = threshold
        provenance = data.get("provenance")
        if provenance is not None and not (isinstance(provenance, dict)
                                           and isinstance(provenance.get("digest"), str)):
            raise ContractError(source, f"must be a JSON object with a digest, got {provenance!r}",
                                field="provenance")
        return cls(**{k: v for k, v in data.items() if k in names})


def content_digest(data: dict) -> str:
    """SHA-256 of a certificate record's content: every key but ``digest``, canonical JSON."""
    content = {k: v for k, v in json_safe(data).items() if k != "digest"}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _is_number(value: Any) -> bool:
    # a JSON true is not a number here: it would silently read as 1
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not (
        isinstance(value, float) and math.isnan(value))


def _threshold(value: Any, source: str, where: str) -> float:
    """A threshold: a number in [0, 1] or +inf (written "inf"); anything else is refused."""
    if value == "inf" or (isinstance(value, float) and value == math.inf):
        return math.inf
    if not _is_number(value) or not math.isfinite(value) or not 0 <= value <= 1:
        raise ContractError(source, f"must be a number in [0, 1] or \"inf\" (nothing accepted), "
                            f"got {value!r}", field=where)
    return float(value)


def _grid_values(grid: Any, source: str) -> list[float] | None:
    if not isinstance(grid, dict):
        raise ContractError(source, f"must be a JSON object describing the grid, got {grid!r}",
                            field="grid")
    values = grid.get("values")
    if values is None:
        return None
    if not isinstance(values, list) or not all(_is_number(v) for v in values):
        raise ContractError(source, "must be a list of numbers", field="grid.values")
    return [float(v) for v in values]


def _on_grid(threshold: float, grid: list[float]) -> bool:
    return any(math.isclose(threshold, point, rel_tol=0, abs_tol=1e-12) for point in grid)


# ---------------------------------------------------------------------------------------------
# Binding: a certificate certifies one judge, one confidence model and one run layout
# ---------------------------------------------------------------------------------------------

BINDING_KEYS = {
    "judge": "the judge's name (the rows' judge column)",
    "model": "the judge model's identity (engine, model, mode)",
    "confidence": "the confidence column",
    "confidence_model_hash": "the fitted confidence model's SHA-256 (learned measures)",
    "layout": "the run layout (annotators, shot subsets, orders)",
}


def check_binding(certificate: Certificate, stage_index: int, observed: dict,
                  source: str) -> None:
    """Refuse data whose judge, model, confidence model or layout differs from the certificate's.

    ``observed`` maps :data:`BINDING_KEYS` to what the data carries (``None``: not known from
    the data, not checked). A key the certificate binds but the data cannot show is refused only
    for the confidence model of a learned measure, which must always be shown.

    Raises
    ------
    ContractError
        Naming every key that differs, the certified value and the data's.
    """
    stage = certificate.stages[stage_index]
    binding = stage.get("binding") or {}
    differences = []
    for key in BINDING_KEYS:
        certified, seen = binding.get(key), observed.get(key)
        if certified is None or seen is None:
            continue
        if _canonical(certified) != _canonical(seen):
            differences.append(f"{key}: certified {_short(certified)}, data has {_short(seen)}")
    if differences:
        raise ContractError(source, f"the data does not match what stage {stage['name']!r} of the "
                            f"certificate certifies: " + "; ".join(differences),
                            field=next(k for k in BINDING_KEYS if any(d.startswith(k + ":")
                                                                      for d in differences)),
                            hint="a certificate certifies one judge, one confidence model and one "
                                 "run layout; score the data with those, or calibrate anew")


def _canonical(value: Any) -> str:
    return json.dumps(json_safe(value), sort_keys=True)


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else _canonical(value)
    return repr(text if len(text) <= 60 else text[:57] + "...")


# Where a table carries what a stage binds: the annotate job writes the judge, the run layout is
# the annotation schema's, and the score stage maps each confidence column to its model's hash.
JUDGE_METADATA_KEY = b"marc_ray.judge"                    # {"name", "model": {engine, model, mode}}
CONFIDENCE_MODELS_METADATA_KEY = b"marc_ray.confidence_models"  # {column: SHA-256 of the weights}


def metadata_binding(metadata: dict | None, confidence: str, judge: str | None = None) -> dict:
    """What a table's schema metadata says about :data:`BINDING_KEYS` (``None``: not recorded).

    ``judge`` (the rows' judge column) stands in for the judge's name when the metadata has none.
    """
    from .schemas import LAYOUT_METADATA_KEY

    metadata = metadata or {}

    def load(key: bytes):
        if key not in metadata:
            return None
        try:
            return json.loads(metadata[key])
        except (TypeError, ValueError):
            return None

    identity = load(JUDGE_METADATA_KEY) or {}
    models = load(CONFIDENCE_MODELS_METADATA_KEY) or {}
    return {"judge": identity.get("name") or judge, "model": identity.get("model"),
            "confidence": confidence,
            "confidence_model_hash": models.get(confidence) if isinstance(models, dict) else None,
            "layout": load(LAYOUT_METADATA_KEY)}


def with_binding(certificate: Certificate, bindings: list[dict]) -> Certificate:
    """``certificate`` with each stage's ``binding`` recorded (one dict per stage, in order).

    Written once, right after calibration, so the digest covers it: a binding cannot be edited.
    """
    if len(bindings) != len(certificate.stages):
        raise ValueError(f"{len(bindings)} bindings for {len(certificate.stages)} stages")
    for stage, binding in zip(certificate.stages, bindings):
        stage["binding"] = {key: binding.get(key) for key in BINDING_KEYS}
    return certificate


def _read_local(path: str) -> bytes:
    with open(path, "rb") as stream:
        return stream.read()
