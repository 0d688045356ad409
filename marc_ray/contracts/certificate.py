"""The certificate of a calibrated selective judge, and the assumptions its guarantee rests on."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

from .errors import ContractError
from .io import json_safe, write_json_atomic


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
    groups: dict | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        if data["groups"] is None:  # single-threshold certificates keep their old shape
            del data["groups"]
        return json_safe(data)

    def write(self, path: str | os.PathLike) -> None:
        write_json_atomic(self.to_dict(), path)

    @classmethod
    def read(cls, path: str | os.PathLike) -> "Certificate":
        source = os.fspath(path)
        try:
            with open(source, encoding="utf-8") as stream:
                data = json.load(stream)
        except FileNotFoundError as error:
            raise ContractError(source, "no such file") from error
        except json.JSONDecodeError as error:
            raise ContractError(source, f"malformed JSON: {error.msg}") from error
        return cls.from_dict(data, source)

    @classmethod
    def from_dict(cls, data: dict, source: str = "<certificate>") -> "Certificate":
        names = {f.name for f in cls.__dataclass_fields__.values()}
        required = {"alpha", "delta", "procedure", "grid", "stages", "coverage", "data_hash"}
        for name in sorted(required):
            if name not in data:
                raise ContractError(source, "missing key", field=name)
        unknown = sorted(set(data) - names)
        if unknown:
            raise ContractError(source, f"unknown keys {unknown}", field=unknown[0])
        for name in ("alpha", "delta"):
            value = data[name]
            if not isinstance(value, (int, float)) or not 0 < value < 1:
                raise ContractError(source, f"must be in (0, 1), got {value!r}", field=name)
        for index, stage in enumerate(data["stages"]):
            if "threshold" in stage and isinstance(stage["threshold"], str):
                stage["threshold"] = float(stage["threshold"])
            for key in ("name", "confidence", "threshold"):
                if key not in stage:
                    raise ContractError(source, f"stage {index} lacks '{key}'", field="stages")
        return cls(**{k: v for k, v in data.items() if k in names})
