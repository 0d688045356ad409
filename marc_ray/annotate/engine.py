"""The judge-engine interface: what every engine (transformers, vLLM, HTTP) receives and returns.

The annotate job expands each comparison into *run rows* (one per simulated annotator, shot
subset and order, plus the two zero-shot runs); an engine turns run rows into results. Run rows
are plain dicts / Ray Data rows with these columns:

=====================  =======================================================================
``id``                 the comparison id (carried through unchanged)
``run``                index into the run layout (``RunLayout.run_index``); -1 / -2 are the
                       zero-shot runs in orders ab / ba
``mode``               ``"choice"`` or ``"likelihood"``
``prefix``             text shared by every item of one (annotator, shot subset): the chat
                       template's opening and the annotator's examples. Engines cache its KV.
``suffix``             the item-specific text. Choice: ends exactly at the answer position (the
                       next token is the label). Likelihood: the instruction, ending where the
                       response starts.
``continuation_first``  likelihood only: the response shown first ("" in choice mode)
``continuation_second`` likelihood only: the response shown second
``label_first``        choice only: the label naming the first-shown response, e.g. "A"
``label_second``       choice only: e.g. "B"
=====================  =======================================================================

Results add ``p_first`` (P(first-shown response better), NaN when missing), ``label_mass``
(choice: the probability mass of the two label tokens before renormalisation; likelihood: NaN)
and ``status`` ("ok" or "missing: <reason>"). The job maps order ba back to P(response_a better).

Tokenisation is shared by every local engine so that they see identical token ids:
``encode_parts`` tokenises prefix, suffix and continuation separately (no special tokens added
after the first part) and concatenates them. Label probabilities are read at the last prompt
position and summed over every token id that decodes to the label with or without a leading
space ("A" and " A"), see ``label_token_ids``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

RUN_COLUMNS = ("id", "run", "mode", "prefix", "suffix", "continuation_first",
               "continuation_second", "label_first", "label_second")
RESULT_COLUMNS = ("p_first", "label_mass", "status")
MODES = ("choice", "likelihood")
ZERO_SHOT_RUNS = (-1, -2)  # orders ab, ba


@dataclass(frozen=True)
class RunResult:
    """One run's outcome."""

    p_first: float
    label_mass: float = math.nan
    status: str = "ok"

    @classmethod
    def missing(cls, reason: str) -> "RunResult":
        return cls(math.nan, math.nan, f"missing: {reason}")


class JudgeEngine(Protocol):
    """A judge engine: run rows in, results out, in the same order."""

    name: str

    def judge(self, runs: Sequence[dict[str, Any]]) -> list[RunResult]:
        ...


def encode_parts(tokenizer, parts: Sequence[str]) -> tuple[list[int], list[int]]:
    """Token ids of ``parts`` tokenised separately and concatenated, and each part's end offset.

    The first part gets the tokenizer's special tokens (BOS) unless the text already starts with
    them (a chat template usually writes its own); later parts get none.
    """
    ids: list[int] = []
    ends: list[int] = []
    for index, text in enumerate(parts):
        piece = tokenizer(text, add_special_tokens=False)["input_ids"] if text else []
        if index == 0 and getattr(tokenizer, "bos_token_id", None) is not None:
            bos = tokenizer.bos_token or ""
            if not (bos and text.startswith(bos)) and getattr(tokenizer, "add_bos_token", False):
                piece = [tokenizer.bos_token_id] + piece
        ids.extend(piece)
        ends.append(len(ids))
    return ids, ends


def label_token_ids(tokenizer, label: str) -> list[int]:
    """Every single-token id that decodes to ``label`` or ``" " + label`` (e.g. "A" and " A").

    Raises
    ------
    ValueError
        When neither spelling is a single token of the vocabulary: the model cannot name the label.
    """
    found: list[int] = []
    for text in (label, " " + label):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) == 1 and ids[0] not in found:
            found.append(ids[0])
    if not found:
        raise ValueError(f"the model's tokenizer has no single token for label {label!r} "
                         f"(nor ' {label}'); choose labels that are single tokens or use likelihood mode")
    return found


def p_first_from_label_probs(first_mass: float, second_mass: float) -> RunResult:
    """Renormalise the two labels' probability masses into P(first-shown response better)."""
    total = first_mass + second_mass
    if not math.isfinite(total) or total <= 0.0:
        return RunResult.missing("no probability on either label token")
    return RunResult(first_mass / total, total)


def p_first_from_loglik(mean_loglik_first: float, mean_loglik_second: float, beta: float) -> RunResult:
    """Likelihood mode: P(first better) = sigmoid(beta * (mean LL first - mean LL second))."""
    if not (math.isfinite(mean_loglik_first) and math.isfinite(mean_loglik_second)):
        return RunResult.missing("non-finite log-likelihood")
    z = beta * (mean_loglik_first - mean_loglik_second)
    return RunResult(1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0)
