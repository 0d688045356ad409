"""The annotate stage's configuration: one flat, commented dataclass, validated once.

Every field has a default and a comment with its units and the reason for its value; CLI flags
(``marc-ray annotate --help``) map one-to-one onto the fields, a config file (YAML or JSON)
sets any of them, and an unknown key is an error. :meth:`AnnotateConfig.validate` is called
once, at the boundary (the job), before any data is read or any engine starts.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..contracts.options import option
from ..contracts.schemas import carry_problem
from ..contracts.validation import is_safe_name, reject_unknown
from ..contracts.redact import shown
from .engines import REGISTRY, engine_spec
from .models import DEFAULT_MODEL

ENGINES = {name: spec.summary for name, spec in REGISTRY.items()}  # the registry's, for --help
MODES = {
    "choice": "the judge names the better response; P read at the answer position",
    "likelihood": "each response's mean per-token log-likelihood; P = sigmoid(beta * dLL)",
}
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16", "float16")
ORDER_SETS = (("ab", "ba"), ("ab",))


@dataclass
class AnnotateConfig:
    """Settings of ``marc-ray annotate`` (see the module docstring)."""

    # --- I/O --------------------------------------------------------------------------------
    input: str = option("", "comparisons to judge: .jsonl/.json/.parquet, local or any pyarrow "
                            "URI")
    pool: str = option("", "few-shot pool (comparisons with human labels, optional `annotator`)")
    output: str = option("", "folder of annotation Parquet shards (+ _manifest.json); resumable")
    carry: tuple[str, ...] = option((), "extra comparison columns copied (as text) into each row "
                                        "(e.g. the one calibrate.by names); () keeps the "
                                        "contract's schema")
    # --- judge ------------------------------------------------------------------------------
    engine: str = option("transformers", "the judge's engine: one of ENGINES")
    model: str = option(DEFAULT_MODEL, "'smollm2' (offline default, SmolLM2-135M-Instruct) or a "
                                   "local HF folder")
    judge_name: str = option("", "name written into each row; '' = derived from the model")
    mode: str = option("likelihood", "how P is read: one of MODES; likelihood because the "
                       "offline 135M model cannot answer the choice question (PLATFORM.md); "
                       "instruction-tuned judges: 'choice'")
    labels: tuple[str, str] = option(("A", "B"), "choice mode: labels of the first / second "
                                                 "shown response; each must be a single token "
                                                 "(with or without a space)")
    beta: float = option(5.0, "likelihood mode: P = sigmoid(beta * dLL), dLL in nats per token; "
                              "5 gave mean confidence 0.87 with 96% accuracy on trivial items")
    template: str = option("default", "prompt template: a name in prompts.TEMPLATES or a "
                                      ".json/.yaml file")
    # --- simulated annotators (Jung et al. 2025; MARC defaults) ------------------------------
    n_annotators: int = option(5, "N simulated annotators (MARC: 5)")
    k_shots: int = option(5, "K examples each (MARC: 5) -> N * (2^K - 1) = 155 runs per order")
    max_subset_size: int = option(0, "largest shot subset run; 0 = K (every non-empty subset, as "
                                     "MARC)")
    orders: tuple[str, ...] = option(("ab", "ba"), "response orders; both cancel position bias")
    zero_shot: bool = option(True, "also run the two zero-shot runs (the predictive-probability "
                                   "baseline)")
    seed: int = option(0, "seeds annotator grouping and example draws (nothing else is random)")
    # --- execution --------------------------------------------------------------------------
    device: str = option("auto", "transformers engine: 'cuda' when available, else 'cpu'")
    dtype: str = option("auto", "'auto' = float32 on CPU (exact), bfloat16 on GPU (speed, "
                                "memory)")
    batch_size: int = option(16, "sequences per forward pass (likelihood: 2 per run); "
                                 "memory-bound")
    num_workers: int = option(1, "engine actors (one model each); on CPU each uses one thread")
    num_gpus_per_worker: float = option(0.0, "GPUs requested by each actor; 0 = 1 when device is "
                                             "cuda")
    shard_size: int = option(256, "items per output Parquet shard: the unit of resume and of KV "
                                  "reuse (each (annotator, subset) prefix is prefilled once per "
                                  "shard)")
    max_restarts: int = option(3, "an engine actor that dies is restarted this many times")
    max_task_retries: int = option(3, "and its unfinished batches are retried this many times")
    progress: bool = option(True, "a progress bar over finished items")
    engine_options: dict = option({}, "engine-specific settings (vllm, http, replay), passed "
                                  "through unchanged to that engine")

    def validate(self) -> "AnnotateConfig":
        """Check every field once; return ``self``.

        Raises
        ------
        ValueError
            Naming the field, the allowed values or range, the value received and the fix.
        """
        def fail(name: str, allowed: str, hint: str = "") -> None:
            value = getattr(self, name)
            raise ValueError(f"annotate config: {name} must be {allowed}, got {shown(value)}"
                             + (f"; {hint}" if hint else ""))

        if self.engine not in ENGINES:
            fail("engine", f"one of {sorted(ENGINES)}")
        if self.judge_name and not is_safe_name(self.judge_name):
            fail("judge_name", "a name of letters, digits, '.', '_' and '-' (not starting with "
                 "'.'), since it can name files and folders")
        if self.mode not in MODES:
            fail("mode", f"one of {sorted(MODES)}")
        if self.device not in DEVICES and not str(self.device).startswith("cuda:"):
            fail("device", f"one of {list(DEVICES)} or 'cuda:N'")
        if self.dtype not in DTYPES:
            fail("dtype", f"one of {list(DTYPES)}")
        for name in ("input", "output"):
            if not getattr(self, name):
                fail(name, "a path", f"pass --{name}")
        if not self.pool and engine_spec(self.engine).needs_pool:
            fail("pool", "a path to the few-shot pool", "pass --pool (labelled examples "
                 "disjoint from the input; simulated annotators are built from it)")
        if not self.model:
            fail("model", "'smollm2' or a local model folder")
        labels = tuple(self.labels)
        if len(labels) != 2 or labels[0] == labels[1] or not all(isinstance(x, str) and x.strip()
                                                                  for x in labels):
            fail("labels", "two different non-empty strings", "e.g. A,B")
        self.labels = labels
        self.carry = (self.carry,) if isinstance(self.carry, str) else tuple(self.carry or ())
        for name in self.carry:
            problem = carry_problem(name)
            if problem is not None:
                fail("carry", "comparison column names", problem)
        self.orders = tuple(self.orders)
        if self.orders not in ORDER_SETS:
            fail("orders", f"one of {[','.join(o) for o in ORDER_SETS]}",
                 "ab comes first because run order 0 is response_a shown first")
        if not (isinstance(self.beta, (int, float)) and self.beta > 0):
            fail("beta", "a positive number")
        for name, low in (("n_annotators", 1), ("k_shots", 1), ("batch_size", 1),
                          ("num_workers", 1), ("shard_size", 1), ("max_subset_size", 0),
                          ("max_restarts", 0), ("max_task_retries", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                fail(name, f"an integer >= {low}")
        if self.max_subset_size > self.k_shots:
            fail("max_subset_size", f"at most k_shots ({self.k_shots}), or 0 for all subsets")
        if self.num_gpus_per_worker < 0:
            fail("num_gpus_per_worker", "a number >= 0")
        if not isinstance(self.engine_options, dict):
            fail("engine_options", "a mapping")
        allowed = engine_option_names(self.engine)
        unknown = sorted(set(self.engine_options) - set(allowed))
        if unknown:
            fail("engine_options", f"keys of the {self.engine} engine ({sorted(allowed) or 'none'})",
                 f"unknown {unknown}")
        return self

    @property
    def subset_size_limit(self) -> int:
        """The largest shot-subset size actually run."""
        return self.max_subset_size or self.k_shots

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["labels"] = list(self.labels)
        data["orders"] = list(self.orders)
        data["carry"] = list(self.carry)
        if not self.carry:  # a run that carries nothing keeps the settings (and stage keys) it had
            del data["carry"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<config>") -> "AnnotateConfig":
        """Build from a mapping; an unknown key is an error naming the known ones."""
        reject_unknown(data, [f.name for f in fields(cls)], source)
        values = dict(data)
        for name in ("labels", "orders", "carry"):
            if isinstance(values.get(name), str):
                values[name] = tuple(x.strip() for x in values[name].split(","))
            elif values.get(name) is not None:
                values[name] = tuple(values[name])
        return cls(**values)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "AnnotateConfig":
        """Read a YAML or JSON file; an ``annotate:`` section is used when present."""
        path = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as stream:
                text = stream.read()
        except FileNotFoundError as error:
            raise ValueError(f"{path}: no such config file") from error
        from ..contracts.yaml_file import load_yaml

        # JSON is read by the strict YAML loader too (JSON is YAML's flow style): a duplicate
        # key is refused naming the line, never silently taken as the last one
        data = load_yaml(text, path) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a config file must hold a mapping of settings")
        if isinstance(data.get("annotate"), dict):
            data = data["annotate"]
        return cls.from_dict(data, path)


def engine_option_names(engine: str) -> list[str]:
    """The ``engine_options`` keys an engine takes (checked at validation, before it starts)."""
    return engine_spec(engine).option_names()


def judge_name(config: AnnotateConfig) -> str:
    """The name of a judge's folders (annotate/<name>, fit/<name>, score/<name>.parquet):
    ``judge_name``, else its engine's rule (the model's short name; "replay" for a replay judge,
    which has no model)."""
    # an unknown engine is refused by validate(), which may come later (a pipeline names its
    # judges' folders first): meanwhile it is named as the default engine names its judges
    known = config.engine in REGISTRY
    return engine_spec(config.engine if known else AnnotateConfig.engine).judge_name(config)
