"""The transformers judge engine: CPU or GPU, batched, with shared-prefix KV reuse.

Every item of one (annotator, shot subset) starts with the same few-shot prefix. Instead of
prefilling it for every run, the engine runs the prefix once, keeps its key/value cache
(a small LRU keyed by the prefix text, since the job feeds runs grouped by prefix) and runs
only each item's suffix (and, in likelihood mode, continuation) on top of it, the cache
expanded across the batch. Prefill work drops from ``runs × (P + S)`` to
``prefixes × P + runs × S`` tokens.

Batches on top of a shared prefix are **right**-padded: the prefix occupies positions
``0..P-1`` for every row, so padding the item tokens at the end keeps positions contiguous
without per-row position offsets, and causal attention never lets a real token see a pad.
Without reuse (``reuse_prefix=False``, the reference path) full prompts are **left**-padded
with explicit position ids. Logits are computed only where they are read (the answer position;
the continuation tokens): the vocabulary projection is applied to the gathered hidden states,
not to every position.

Choice mode reads the label probabilities at the last prompt position; likelihood mode gives
each continuation's mean per-token log-likelihood and P = sigmoid(β·ΔLL)
(:func:`marc_ray.annotate.engine.p_first_from_loglik`).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Sequence

from .engine import (RunResult, encode_parts, label_token_ids, p_first_from_label_probs,
                     p_first_from_loglik)
from .models import load_model, load_tokenizer
from .config import AnnotateConfig


def resolve_device(device: str = AnnotateConfig.device) -> str:
    """"auto" → "cuda" when torch sees a GPU, else "cpu"."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str, device: str) -> str:
    """"auto" → float32 on CPU (exact, and CPU bf16 is slow), bfloat16 on GPU."""
    if dtype == "auto":
        return "float32" if device == "cpu" else "bfloat16"
    return dtype


class TransformersEngine:
    """A local causal LM as a judge engine (see the module docstring).

    Parameters
    ----------
    model : str, default="smollm2"
        A model spec (:func:`marc_ray.annotate.models.materialize_model`).
    device : {"auto", "cpu", "cuda", "cuda:N"}, default="auto"
    dtype : {"auto", "float32", "bfloat16", "float16"}, default="auto"
    batch_size : int, default=16
        Sequences per forward pass (likelihood mode has two per run).
    beta : float, default=5.0
        Likelihood mode: P = sigmoid(beta · ΔLL).
    reuse_prefix : bool, default=True
        Prefill each shared prefix once and reuse its KV cache.
    num_threads : int or None, default=1
        torch CPU threads of this process (one per worker on shared 2-core machines).
    prefix_cache_size : int, default=4
        Prefix KV caches kept (LRU).

    Attributes
    ----------
    model_, tokenizer_ : loaded on first use (:meth:`load`)
    n_prefill_tokens_ : int
        Tokens run through the model so far (the prefill work).
    n_prefix_prefills_ : int
        Prefixes prefilled so far.
    """

    name = "transformers"

    def __init__(self, model: str = AnnotateConfig.model, *, device: str = AnnotateConfig.device,
                 dtype: str = AnnotateConfig.dtype, batch_size: int = AnnotateConfig.batch_size,
                 beta: float = AnnotateConfig.beta, reuse_prefix: bool = True,
                 num_threads: int | None = 1, prefix_cache_size: int = 4):
        self.model = model
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.beta = beta
        self.reuse_prefix = reuse_prefix
        self.num_threads = num_threads
        self.prefix_cache_size = prefix_cache_size

    # ---- setup -------------------------------------------------------------------------------
    def load(self) -> "TransformersEngine":
        """Load the tokenizer and model; returns self."""
        import torch

        self.device_ = resolve_device(self.device)
        if self.device_ == "cpu" and self.num_threads:
            torch.set_num_threads(self.num_threads)
        self.tokenizer_ = load_tokenizer(self.model)
        self.model_ = load_model(self.model, self.device_, resolve_dtype(self.dtype, self.device_))
        self.pad_id_ = (self.tokenizer_.pad_token_id if self.tokenizer_.pad_token_id is not None
                        else (self.tokenizer_.eos_token_id or 0))
        self.max_length_ = int(getattr(self.model_.config, "max_position_embeddings", 0) or 1 << 30)
        self._prefixes: OrderedDict[str, tuple[list[int], Any]] = OrderedDict()
        self._tokens: dict[str, list[int]] = {}
        self._labels: dict[str, list[int]] = {}
        self.n_prefill_tokens_ = 0
        self.n_prefix_prefills_ = 0
        return self

    def _loaded(self) -> None:
        if not hasattr(self, "model_"):
            self.load()

    def _encode(self, text: str) -> list[int]:
        """Token ids of a non-initial part (as ``encode_parts`` tokenises it), memoised."""
        ids = self._tokens.get(text)
        if ids is None:
            # encode_parts tokenises every part after the first like this (no special tokens)
            ids = self.tokenizer_(text, add_special_tokens=False)["input_ids"] if text else []
            if len(self._tokens) > 50_000:
                self._tokens.clear()
            self._tokens[text] = ids
        return ids

    def _label_ids(self, label: str) -> list[int]:
        if label not in self._labels:
            self._labels[label] = label_token_ids(self.tokenizer_, label)
        return self._labels[label]

    # ---- public ------------------------------------------------------------------------------
    def judge(self, runs: Sequence[dict[str, Any]]) -> list[RunResult]:
        """Results of ``runs`` (run-row dicts, see :mod:`marc_ray.annotate.engine`), in order."""
        self._loaded()
        results: list[RunResult | None] = [None] * len(runs)
        # sequences: (run index, slot, prefix text, item token ids, n suffix tokens)
        sequences: list[tuple[int, int, str, list[int], int]] = []
        for index, run in enumerate(runs):
            suffix = self._encode(run["suffix"])
            if not suffix:
                raise ValueError(f"run {run['id']}/{run['run']}: empty suffix; the prompt builder "
                                 f"always ends with the query")
            if run["mode"] == "choice":
                sequences.append((index, 0, run["prefix"], suffix, len(suffix)))
                continue
            for slot, key in enumerate(("continuation_first", "continuation_second")):
                continuation = self._encode(run[key])
                if not continuation:
                    results[index] = RunResult.missing(f"empty {key.split('_')[1]} response")
                sequences.append((index, slot, run["prefix"], suffix + continuation, len(suffix)))
        outputs: dict[tuple[int, int], float | tuple[float, float]] = {}
        # identical sequences run once (likelihood mode: orders ab and ba score the same two)
        first_seen: dict[tuple, tuple[int, int]] = {}
        copies: list[tuple[tuple[int, int], tuple[int, int]]] = []
        by_prefix: OrderedDict[str, list] = OrderedDict()
        for sequence in sequences:
            key = (sequence[2], tuple(sequence[3]), sequence[4], runs[sequence[0]]["mode"],
                   runs[sequence[0]]["label_first"], runs[sequence[0]]["label_second"])
            if key in first_seen:
                copies.append(((sequence[0], sequence[1]), first_seen[key]))
                continue
            first_seen[key] = (sequence[0], sequence[1])
            by_prefix.setdefault(sequence[2], []).append(sequence)
        for prefix, group in by_prefix.items():
            self._run_group(prefix, group, runs, outputs)
        for target, source in copies:
            outputs[target] = outputs[source]
        for index, run in enumerate(runs):
            if results[index] is not None:
                continue
            if run["mode"] == "choice":
                value = outputs[(index, 0)]
                results[index] = (RunResult.missing(value) if isinstance(value, str)
                                  else p_first_from_label_probs(*value))
            else:
                first, second = outputs[(index, 0)], outputs[(index, 1)]
                for value in (first, second):
                    if isinstance(value, str):
                        results[index] = RunResult.missing(value)
                        break
                else:
                    results[index] = p_first_from_loglik(first, second, self.beta)
        return results

    # ---- forward passes ----------------------------------------------------------------------
    def _prefix_state(self, prefix: str):
        """(prefix token ids, per-layer (keys, values) of shape (1, kv_heads, P, head_dim))."""
        import torch

        if prefix in self._prefixes:
            self._prefixes.move_to_end(prefix)
            return self._prefixes[prefix]
        ids = encode_parts(self.tokenizer_, [prefix])[0]
        kv = None
        if self.reuse_prefix:
            with torch.inference_mode():
                out = self.model_.get_decoder()(
                    input_ids=torch.tensor([ids], device=self.device_), use_cache=True)
            kv = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
            self.n_prefill_tokens_ += len(ids)
            self.n_prefix_prefills_ += 1
        self._prefixes[prefix] = (ids, kv)
        while len(self._prefixes) > self.prefix_cache_size:
            self._prefixes.popitem(last=False)
        return ids, kv

    def _run_group(self, prefix: str, group: list, runs, outputs: dict) -> None:
        prefix_ids, kv = self._prefix_state(prefix)
        n_prefix = len(prefix_ids)
        fitting = []
        for sequence in group:
            if n_prefix + len(sequence[3]) > self.max_length_:
                outputs[(sequence[0], sequence[1])] = (
                    f"prompt of {n_prefix + len(sequence[3])} tokens exceeds the model's "
                    f"{self.max_length_}")
            else:
                fitting.append(sequence)
        # similar lengths together: less padding
        fitting.sort(key=lambda sequence: len(sequence[3]))
        for start in range(0, len(fitting), self.batch_size):
            batch = fitting[start:start + self.batch_size]
            hidden, offsets = (self._forward_reused(prefix_ids, kv, batch) if self.reuse_prefix
                               else self._forward_full(prefix_ids, batch))
            self._read(hidden, offsets, batch, runs, outputs)

    def _forward_reused(self, prefix_ids, kv, batch):
        """Hidden states (B, L, H) of the item tokens on top of the cached prefix."""
        import torch
        from transformers import DynamicCache

        n_rows, n_prefix = len(batch), len(prefix_ids)
        length = max(len(sequence[3]) for sequence in batch)
        input_ids = torch.full((n_rows, length), self.pad_id_, dtype=torch.long)
        mask = torch.zeros((n_rows, n_prefix + length), dtype=torch.long)
        mask[:, :n_prefix] = 1
        for row, sequence in enumerate(batch):
            input_ids[row, :len(sequence[3])] = torch.tensor(sequence[3])
            mask[row, n_prefix:n_prefix + len(sequence[3])] = 1
        positions = torch.arange(n_prefix, n_prefix + length).unsqueeze(0).expand(n_rows, -1)
        # expand() is a view; the cache's first update copies it once into (B, heads, P, d)
        cache = DynamicCache(ddp_cache_data=[(k.expand(n_rows, -1, -1, -1), v.expand(n_rows, -1, -1, -1))
                                             for k, v in kv])
        with torch.inference_mode():
            out = self.model_.get_decoder()(
                input_ids=input_ids.to(self.device_), attention_mask=mask.to(self.device_),
                position_ids=positions.to(self.device_), past_key_values=cache, use_cache=True)
        self.n_prefill_tokens_ += int(mask[:, n_prefix:].sum())
        return out.last_hidden_state, [0] * n_rows

    def _forward_full(self, prefix_ids, batch):
        """Hidden states of prefix + item tokens, left-padded (the no-reuse reference)."""
        import torch

        n_rows = len(batch)
        full = [prefix_ids + sequence[3] for sequence in batch]
        length = max(len(ids) for ids in full)
        input_ids = torch.full((n_rows, length), self.pad_id_, dtype=torch.long)
        mask = torch.zeros((n_rows, length), dtype=torch.long)
        offsets = []
        for row, ids in enumerate(full):
            input_ids[row, length - len(ids):] = torch.tensor(ids)
            mask[row, length - len(ids):] = 1
            offsets.append(length - len(ids) + len(prefix_ids))  # where the item tokens start
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            out = self.model_.get_decoder()(
                input_ids=input_ids.to(self.device_), attention_mask=mask.to(self.device_),
                position_ids=positions.to(self.device_), use_cache=False)
        self.n_prefill_tokens_ += int(mask.sum())
        return out.last_hidden_state, offsets

    def _read(self, hidden, offsets, batch, runs, outputs) -> None:
        """Label masses (choice) or mean continuation log-likelihoods (likelihood)."""
        import torch

        head = self.model_.get_output_embeddings()
        with torch.inference_mode():
            for row, (index, slot, _, ids, n_suffix) in enumerate(batch):
                base = offsets[row]
                run = runs[index]
                if run["mode"] == "choice":
                    logits = head(hidden[row, base + len(ids) - 1]).float()
                    probs = torch.softmax(logits, dim=-1)
                    first = float(probs[self._label_ids(run["label_first"])].sum())
                    second = float(probs[self._label_ids(run["label_second"])].sum())
                    outputs[(index, slot)] = (first, second)
                else:
                    # the token at item position t is predicted by the hidden state at t - 1
                    states = hidden[row, base + n_suffix - 1: base + len(ids) - 1]
                    logits = head(states).float()
                    targets = torch.tensor(ids[n_suffix:], device=logits.device)
                    loglik = torch.log_softmax(logits, dim=-1).gather(1, targets[:, None])
                    value = float(loglik.mean())
                    outputs[(index, slot)] = value if math.isfinite(value) else "non-finite log-likelihood"
