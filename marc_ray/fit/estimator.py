"""MarcConfidence: the learned confidence as a scikit-learn-style estimator.

Usage
-----
1. ``model = MarcConfidence(FitConfig(...))`` stores the configuration;
2. ``model.fit("annotations.parquet")`` trains C_θ (locally or on Ray Train) and returns self;
3. ``model.score(table)`` gives m(C_θ), the estimated agreement probability, for every row
   (``raw=True``: C_θ); ``model.save(folder)`` writes ``model.safetensors`` + ``config.json``
   (feature layout, γ and its history, bound terms, history, agreement map);
   ``MarcConfidence.load(folder)`` reads them back without pickle.

References
----------
Jin, Tao, Yu, Huang. "Margin-Adaptive Confidence Ranking" (MARC), ICML 2026.
"""

from __future__ import annotations

import json
import os
from dataclasses import fields
from typing import Any

import numpy as np
import pyarrow as pa

from .. import __version__
from ..contracts import ContractError, file_hash, write_json_atomic
from ..contracts import read_columns
from ..contracts.io import is_file, join, read_bytes, read_text, write_atomic
from ..contracts.model_folder import CONFIG_FILE, MODEL_FILE  # re-exported: fit.estimator.MODEL_FILE
from ..contracts.validation import reject_unknown
from .config import FitConfig
from .data import load_annotations, prepare
from .features import FeatureLayout, build_features, check_finite

FORMAT = "marc_ray.confidence_model/1"
# Rows per forward pass when scoring, the last pass padded with zero rows. The matmul kernels
# pick their blocking (and so the rounding of each row's dot products) by the input's shape:
# scoring a 7-row batch and a 300-row table gave the same row confidences differing by ~1e-10
# (~1e-5 after the agreement map). With one shape for every pass, a row's confidence is the
# same bits whatever the batch it is scored in (tests/fit/test_score_batches.py).
SCORE_BLOCK_ROWS = 512


# The keys of config.json that load() needs (save() writes them all).
SAVED_KEYS = ("format", "column", "fit_config", "features", "gamma", "bound", "history",
              "data_hash", "n_train", "n_valid")
LAST_EPOCH = "the last epoch (a model saved before the collapse guard)"


class NotFittedError(ValueError, AttributeError):
    """The model was used before ``fit`` (or ``load``)."""


class MarcConfidence:
    """The MARC confidence model C_θ(s) = sigmoid(MLP_θ(s)) over simulated-annotator runs.

    Parameters
    ----------
    config : FitConfig, optional
        Architecture, loss, margin search, training and execution settings (default
        ``FitConfig()``); :meth:`from_config` says the same.
    **params
        Keyword hyperparameters, scikit-learn style: any ``FitConfig`` field
        (``MarcConfidence(epochs=10, margin_init=0.3, variant="vanilla")``), over ``config``.
        They are validated here; :meth:`get_params` returns every setting.

    Attributes
    ----------
    model_ : ConfidenceMLP
        The trained network (CPU, eval mode).
    feature_layout_ : FeatureLayout
        The run layout and feature names the model reads.
    best_epoch_ : int
        The epoch whose weights ``model_`` holds: the collapse guard keeps the iterate with the
        lowest validation ranking risk, not the last one (:func:`marc_ray.fit.train.kept_iterate_key`
        says why and how ties break); ``best_reason_`` says it in words.
    gamma_ : float
        The margin γ of the kept epoch.
    gamma_history_ : list of float
        γ chosen by the line search after each epoch (MARC's training objective; see
        :mod:`marc_ray.fit.loss`); constant for "vanilla".
    bound_ : dict
        Every term of the bound at ``gamma_`` (see :class:`marc_ray.fit.bound.BoundTerms`); a
        diagnostic: its O(·) constants are unknown and it is not what γ minimises.
    history_ : list of dict
        Per-epoch metrics (every epoch, including those after ``best_epoch_``).
    agreement_map_ : AgreementMap
        Strictly increasing map C_θ → estimated agreement probability, fitted on the
        validation part of the training split (:mod:`marc_ray.fit.monotone`); ``score``
        returns mapped values unless ``raw=True``.
    data_hash_ : str
        Hash of the training file's ids, runs and verdicts.
    n_train_, n_valid_ : int
    valid_ids_ : list of str
        Ids of the validation part of the training split (not trained on; the agreement map
        and ``calibrate.select.choose_confidence_table(validation_ids=...)`` use them).
    n_without_verdict_ : int
        Rows left out of training because the judge gave no verdict on them (after ``fit``).
    rows_sampled_ : dict
        ``{"training" | "validation": (rows read, rows the set had)}`` for a set larger than
        ``FitConfig.max_rows_per_set`` (a seeded sample was read); empty otherwise.
    provenance_ : dict
        The rows that shaped the model (``contracts.provenance``): ``"<column>: trained"`` and
        ``"<column>: validated"``, each a count, a digest and a compact id set. ``score``
        carries it into the scored file; calibration refuses those rows.
    drawn_split_ : dict or None
        When ``fit(splits=...)`` was given the split ``marc-ray fit`` drew (``fit.split``): its
        seed and the rows it held out for calibration.
    """

    def __init__(self, config: FitConfig | None = None, **params: Any):
        if config is not None and not isinstance(config, FitConfig):
            raise ValueError(f"config must be a FitConfig, got {type(config).__name__}")
        if params:
            reject_unknown(params, [f.name for f in fields(FitConfig)], "MarcConfidence")
            config = (config or FitConfig()).replace(**params)
        self.config = config
        self.params = dict(params)

    @classmethod
    def from_config(cls, config: FitConfig) -> "MarcConfidence":
        """The estimator of a ``FitConfig`` (the pipeline's ``fit:`` section, a JSON file)."""
        return cls(config)

    def get_params(self) -> dict[str, Any]:
        """Every hyperparameter (the ``FitConfig`` fields), as keywords for the constructor."""
        return (self.config or FitConfig()).to_dict()

    def set_params(self, **params: Any) -> "MarcConfidence":
        """Change hyperparameters (validated); a fitted model must be fitted again."""
        self.__init__(self.config, **{**self.params, **params})
        return self

    @property
    def column(self) -> str:
        """The score column this model writes: ``conf_marc`` or ``conf_vanilla``."""
        return f"conf_{(self.config or FitConfig()).variant}"

    def fit(self, annotations, *, source: str | None = None, splits=None) -> "MarcConfidence":
        """Train on an annotation table or file (rows in the training/validation splits).

        Parameters
        ----------
        annotations : pyarrow.Table or path
        source : str, optional
            A name for the data in errors (defaults to the path).
        splits : sequence of str, optional
            One per row, standing for the file's ``split`` column (``fit.split.draw_split``:
            what ``marc-ray fit`` draws for a file that declares no split). Recorded, with the
            rows it held out, in :attr:`drawn_split_`.

        Returns
        -------
        self

        Raises
        ------
        ContractError
            Bad annotation file, too few agreement or disagreement cases, non-finite features.
        """
        config = self.config or FitConfig()
        data = prepare(annotations, config, source, splits=splits)
        if config.backend == "ray":
            from .train import fit_ray

            model, state = fit_ray(config, data.train, data.valid)
        else:
            from .train import fit_local

            model, state = fit_local(config, data.train, data.valid)
        self.set_trained(model, state, data)
        if splits is not None:
            from ..contracts.provenance import provenance_record
            from .split import HELD_OUT

            ids = (annotations.column("id") if isinstance(annotations, pa.Table)
                   else read_columns(os.fspath(annotations), ["id"]).column("id"))
            held = np.asarray(splits, dtype=object) == HELD_OUT
            self.drawn_split_ = {"seed": config.random_state, "held_out": HELD_OUT,
                                 "rows": provenance_record(np.asarray(ids.to_pylist(),
                                                                      dtype=object)[held])}
        return self

    def set_trained(self, model, state: dict, data) -> "MarcConfidence":
        """Take a network trained by ``train.fit_local`` / ``train.fit_ray`` on ``prepare``'s data
        (what :meth:`fit` does; a test that injects faults into the Ray Train loop calls
        ``fit_ray`` itself and hands the result here)."""
        self.model_ = model
        self.feature_layout_ = data.layout
        kept = state.get("best") or {"epoch": state["epoch"], "gamma": state["gamma"],
                                     "bound": state["bound"], "reason": LAST_EPOCH}
        self.best_epoch_, self.best_reason_ = int(kept["epoch"]), str(kept["reason"])
        self.gamma_ = float(kept["gamma"])
        self.bound_ = dict(kept["bound"])
        self.history_ = list(state["history"])
        self.gamma_history_ = [float(h["gamma"]) for h in self.history_]
        self.data_hash_ = data.data_hash
        from .monotone import fit_agreement_map

        self.agreement_map_ = fit_agreement_map(
            self.score_features(data.valid.features, raw=True) if len(data.valid) else [],
            data.valid.agree, self.score_features(data.train.features, raw=True), data.train.agree)
        self.n_train_, self.n_valid_ = len(data.train), len(data.valid)
        self.valid_ids_ = [str(i) for i in data.valid.ids]
        self.provenance_ = self.fit_provenance(data.train.ids, data.valid.ids)
        self.drawn_split_ = None
        self.n_without_verdict_ = data.n_without_verdict
        self.rows_sampled_ = dict(data.sampled)
        return self

    def fit_provenance(self, train_ids, valid_ids) -> dict:
        """The rows that shaped this model (``contracts.provenance``): those it was trained on
        and those that chose its epoch and fitted its agreement map (the validation part)."""
        from ..contracts.provenance import provenance_record

        return {f"{self.column}: trained": provenance_record(train_ids),
                f"{self.column}: validated": provenance_record(valid_ids)}

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError("this MarcConfidence is not fitted yet: call fit(annotations) "
                                 "or MarcConfidence.load(folder) first")

    def score_features(self, features: np.ndarray, source: str = "<features>", *,
                       raw: bool = False) -> np.ndarray:
        """The confidence of a feature matrix of shape (n, n_features); returns shape (n,).

        The estimated agreement probability m(C_θ) (``agreement_map_``), or C_θ itself with
        ``raw=True`` (or when the model has no map: one saved before the map existed).

        Raises
        ------
        ContractError
            Wrong width, or a non-finite feature.
        """
        self._check_fitted()
        import torch

        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 2 or features.shape[1] != self.feature_layout_.n_features:
            raise ContractError(source, f"feature layout mismatch: expected shape (n, "
                                f"{self.feature_layout_.n_features}), got {features.shape}",
                                field="features")
        check_finite(features, self.feature_layout_, source)
        scores = np.empty(len(features), dtype=np.float64)
        block = torch.zeros(SCORE_BLOCK_ROWS, features.shape[1], dtype=torch.float32)
        with torch.no_grad():
            for start in range(0, len(features), SCORE_BLOCK_ROWS):
                rows = features[start:start + SCORE_BLOCK_ROWS]
                block.zero_()  # the last block is padded: every forward pass has one shape
                block[: len(rows)] = torch.from_numpy(rows)
                scores[start:start + len(rows)] = self.model_.confidence(block)[: len(rows)].numpy()
        mapping = getattr(self, "agreement_map_", None)
        return scores if raw or mapping is None else mapping.transform(scores)

    def score(self, annotations, source: str | None = None, *, raw: bool = False) -> np.ndarray:
        """The confidence of every row of an annotation table or file, shape (n_rows,).

        m(C_θ), the estimated agreement probability, or C_θ with ``raw=True`` (see
        :meth:`score_features`).

        Raises
        ------
        ContractError
            The file's run layout is not the one the model was trained on; a row has no
            verdict or no run; bad annotation contract.
        """
        self._check_fitted()
        table, source = load_annotations(annotations, source)
        hidden = None
        if self.config is not None and self.config.label_mode == "simulated":
            # the model never saw its pseudo-human's runs: hide them here too (the verdict
            # scored is still the file's own ``pred``)
            from .labels import annotator_runs

            hidden = annotator_runs(self.feature_layout_.run_layout, self.config.held_out_annotator)
        features, _ = build_features(table, source, self.feature_layout_, hidden)
        return self.score_features(features, source, raw=raw)

    # -- persistence: safetensors + JSON, no pickle -------------------------------------------

    def save(self, folder: str | os.PathLike) -> str:
        """Write ``model.safetensors`` and ``config.json`` into ``folder`` (each atomically; any
        location ``contracts.io`` takes, an object store URI included)."""
        self._check_fitted()
        from safetensors.torch import save_file

        folder = os.fspath(folder)
        weights = {k: v.detach().cpu().contiguous() for k, v in self.model_.state_dict().items()}
        write_atomic(join(folder, MODEL_FILE), lambda temporary: save_file(weights, temporary),
                     suffix=".safetensors")
        write_json_atomic({
            "format": FORMAT, "marc_ray_version": __version__, "column": self.column,
            "fit_config": (self.config or FitConfig()).to_dict(),
            "features": self.feature_layout_.to_dict(), "gamma": self.gamma_,
            "bound": self.bound_, "history": self.history_, "data_hash": self.data_hash_,
            "gamma_history": self.gamma_history_, "valid_ids": self.valid_ids_,
            "provenance": getattr(self, "provenance_", None) or {},
            **({"drawn_split": self.drawn_split_} if getattr(self, "drawn_split_", None) else {}),
            "best_epoch": self.best_epoch_, "best_reason": self.best_reason_,
            **({"agreement_map": self.agreement_map_.to_dict()}
               if getattr(self, "agreement_map_", None) is not None else {}),
            "n_train": self.n_train_, "n_valid": self.n_valid_,
            **({"rows_sampled": {name: list(counts) for name, counts in self.rows_sampled_.items()}}
               if getattr(self, "rows_sampled_", None) else {}),
        }, join(folder, CONFIG_FILE))
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "MarcConfidence":
        """Read a model written by :meth:`save` (safetensors + JSON only).

        Raises
        ------
        ContractError
            A missing, truncated or foreign weights file, or a config.json that is malformed
            or lacks a key, named with the file.
        """
        from safetensors import SafetensorError
        from safetensors.torch import load as load_weights

        from .model import ConfidenceMLP

        folder = os.fspath(folder)
        config_path = join(folder, CONFIG_FILE)
        if not is_file(config_path):
            raise ContractError(config_path, "no such file",
                                hint="pass the folder written by `marc-ray fit`")
        try:
            data = json.loads(read_text(config_path))
        except json.JSONDecodeError as error:
            raise ContractError(config_path, f"malformed JSON: {error.msg}") from error
        if data.get("format") != FORMAT:
            raise ContractError(config_path, f"not a marc_ray confidence model (format "
                                f"{data.get('format')!r}, expected {FORMAT!r})", field="format")
        missing = [key for key in SAVED_KEYS if key not in data]
        if missing:
            raise ContractError(config_path, "missing key", field=missing[0],
                                hint="the file was edited or truncated; re-run `marc-ray fit`")
        try:
            estimator = cls(FitConfig.from_dict(data["fit_config"]))
        except (TypeError, ValueError) as error:
            raise ContractError(config_path, str(error), field="fit_config") from error
        layout = FeatureLayout.from_dict(data["features"], config_path)
        model = ConfidenceMLP(layout.n_features, estimator.config.hidden_sizes)
        weights_path = join(folder, MODEL_FILE)
        if not is_file(weights_path):
            raise ContractError(weights_path, "no such file",
                                hint="pass the folder written by `marc-ray fit`")
        try:
            model.load_state_dict(load_weights(read_bytes(weights_path)))
            estimator.weights_hash_ = file_hash(weights_path)  # what a certificate binds to
        except (SafetensorError, RuntimeError, KeyError) as error:
            # a truncated or foreign file, or weights of another architecture
            raise ContractError(weights_path, "not the weights this model's config.json describes "
                                f"({' '.join(str(error).split())[:160]})",
                                hint="the file is damaged; re-run `marc-ray fit`") from error
        estimator.model_ = model.eval()
        estimator.feature_layout_ = layout
        estimator.gamma_ = float(data["gamma"])
        estimator.bound_ = dict(data["bound"])
        estimator.history_ = list(data["history"])
        estimator.best_epoch_ = int(data.get("best_epoch", len(estimator.history_) - 1))
        estimator.best_reason_ = str(data.get("best_reason", LAST_EPOCH))
        estimator.gamma_history_ = [float(g) for g in data.get(
            "gamma_history", [h["gamma"] for h in estimator.history_])]
        estimator.data_hash_ = data["data_hash"]
        estimator.valid_ids_ = list(data.get("valid_ids", []))
        # a model saved before provenance records knows its validation rows only
        estimator.provenance_ = dict(data.get("provenance") or {}) or (
            {f"{estimator.column}: validated": _record(estimator.valid_ids_)}
            if estimator.valid_ids_ else {})
        estimator.drawn_split_ = data.get("drawn_split")
        if "agreement_map" in data:
            from .monotone import AgreementMap

            estimator.agreement_map_ = AgreementMap.from_dict(data["agreement_map"])
        estimator.n_train_, estimator.n_valid_ = int(data["n_train"]), int(data["n_valid"])
        estimator.rows_sampled_ = {name: tuple(counts)
                                   for name, counts in (data.get("rows_sampled") or {}).items()}
        return estimator


def _record(ids) -> dict:
    from ..contracts.provenance import provenance_record

    return provenance_record(ids)


def fit_confidence_model(annotations, config: FitConfig | None = None, **kwargs
                         ) -> MarcConfidence:
    """Fit a MARC (or vanilla) confidence model: ``MarcConfidence(config).fit(annotations)``.

    Parameters
    ----------
    annotations : pyarrow.Table or path
    config : FitConfig, optional
    **kwargs : passed to :meth:`MarcConfidence.fit` (``source``)
    """
    return MarcConfidence(config).fit(annotations, **kwargs)


def add_column(table: pa.Table, name: str, values: np.ndarray) -> pa.Table:
    """``table`` with column ``name`` set to ``values`` (replaced when present), metadata kept."""
    array = pa.array(np.asarray(values, dtype=np.float64), pa.float64())
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, array)
    return table.append_column(name, array)
