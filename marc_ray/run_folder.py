"""RunFolder: every path of a pipeline run, in one place.

::

    <root>/
      config.yaml               the resolved configuration
      manifests/<stage>.json    per stage: settings, input and output hashes, wall time
      data/                     comparisons.parquet (validated, with a split), pool.parquet
      annotate/<judge>/         annotation shards (the annotate job resumes shard by shard)
      fit/<judge>/              model.safetensors + config.json (the MARC confidence model)
      score/<judge>.parquet     annotations + the learned confidence column
      calibrate/                certificate.json
      report/                   report.html, report.md, report.json, certificate.json, figures/

``apply_run`` writes the same ``annotate/`` and ``score/`` layout under its own output folder,
so it builds a RunFolder on that folder too. Paths are plain strings: the root is a local path
or any filesystem URI (``s3://bucket/run?endpoint_override=…``), joined by ``contracts.io.join``
(``/`` for a URI, its query kept last), and every reader and writer of ``contracts.io`` takes
either.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from urllib.parse import urlsplit

from .contracts.errors import ContractError
from .contracts.io import is_uri, join
from .contracts.model_folder import CONFIG_FILE, MODEL_FILE

RUN_CONFIG = "config.yaml"          # the resolved configuration, in every run folder
CERTIFICATE_FILE = "certificate.json"


@dataclass(frozen=True)
class RunFolder:
    """The layout of one run folder (nothing is created or read here)."""

    root: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", os.fspath(self.root))

    @classmethod
    def of(cls, run_dir: "str | os.PathLike | RunFolder") -> "RunFolder":
        """``run_dir`` itself when it is a RunFolder already (a command builds its folder once
        and passes it down), else the folder at that path."""
        return run_dir if isinstance(run_dir, cls) else cls(run_dir)

    @property
    def is_uri(self) -> bool:
        return is_uri(self.root)

    def path(self, *parts: str) -> str:
        """``root/part/...``, joined as the root's kind of path wants; never outside the root.

        Raises
        ------
        ContractError
            A part is absolute or climbs out (``..``): a name from a config or a certificate
            must not make a run read or write outside its folder.
        """
        for part in parts:
            pieces = str(part).replace("\\", "/").split("/")
            if os.path.isabs(str(part)) or str(part).startswith("/") or ".." in pieces:
                raise ContractError(self.root, f"the path {str(part)!r} would leave the run folder",
                                    hint="names that become paths use letters, digits, '.', '_' "
                                         "and '-' only")
        return join(self.root, *parts)

    # -- the files and folders ----------------------------------------------------------------

    @property
    def config(self) -> str:
        return self.path(RUN_CONFIG)

    @property
    def data_dir(self) -> str:
        return self.path("data")

    @property
    def comparisons(self) -> str:
        return self.path("data", "comparisons.parquet")

    @property
    def pool(self) -> str:
        return self.path("data", "pool.parquet")

    def annotations(self, judge: str) -> str:
        return self.path("annotate", judge)

    @property
    def fit_dir(self) -> str:
        return self.path("fit")

    def model_folder(self, judge: str) -> str:
        return self.path("fit", judge)

    def model_files(self, judge: str) -> list[str]:
        """The fitted model's weights and config (``contracts.model_folder`` names them)."""
        return [self.path("fit", judge, MODEL_FILE), self.path("fit", judge, CONFIG_FILE)]

    def model_weights(self, judge: str) -> str:
        return self.model_files(judge)[0]

    def scores(self, judge: str) -> str:
        return self.path("score", f"{judge}.parquet")

    @property
    def certificate(self) -> str:
        return self.path("calibrate", CERTIFICATE_FILE)

    @property
    def report_dir(self) -> str:
        return self.path("report")

    @property
    def report_html(self) -> str:
        return self.path("report", "report.html")

    @property
    def manifests_dir(self) -> str:
        return self.path("manifests")

    def manifest(self, stage: str, label: str = "") -> str:
        return self.path("manifests", stage + (f"-{label}" if label else "") + ".json")

    def relative(self, path: str) -> str:
        """``path`` relative to the root, "/"-separated (the keys the report's hashes use)."""
        if self.is_uri:
            return posixpath.relpath(urlsplit(path).path, urlsplit(self.root).path or "/")
        return posixpath.join(*os.path.relpath(path, self.root).split(os.sep))
