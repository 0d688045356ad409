"""Loaders for public human-preference datasets, into the comparison contract.

Each loader takes the dataset's local folder (default: the team's shared copy, or
``$MARC_RAY_SHARED_DATA/<name>``), documents its source, license and label policy in its
docstring, validates its input (a malformed copy raises
:class:`~marc_ray.contracts.ContractError` naming file, row and field) and returns a table
checked by :func:`marc_ray.contracts.validate_comparisons`. Datasets that ship judge verdicts
also have a verdict loader (a verdict table, see :mod:`marc_ray.annotate.replay`).

Usage
-----
>>> from marc_ray.datasets import load_dataset, load_verdicts   # doctest: +SKIP
>>> comparisons = load_dataset("pandalm")                        # doctest: +SKIP
>>> verdicts = load_verdicts("pandalm")                          # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import pyarrow as pa

from .hub import load_alpacafarm_human, load_chatbot_arena, load_mt_bench_human
from .llmbar import load_llmbar, load_llmbar_verdicts
from .llmfao import load_llmfao, load_llmfao_verdicts
from .pandalm import load_pandalm, load_pandalm_verdicts

DatasetName = Literal["pandalm", "llmbar", "llmfao", "mt_bench_human", "alpacafarm_human",
                      "chatbot_arena"]


@dataclass(frozen=True)
class Dataset:
    """One registered dataset: its loaders and a one-line description."""

    name: str
    load: Callable[..., pa.Table]              # (path=None, **options) → comparisons
    load_verdicts: Callable[..., pa.Table] | None  # (path=None) → verdict table, or None
    description: str
    hub: bool = False                          # needs the Hugging Face hub (network)


DATASETS: dict[str, Dataset] = {
    "pandalm": Dataset("pandalm", load_pandalm, load_pandalm_verdicts,
                       "PandaLM test set: 999 items, 3 annotators, ties; GPT-3.5 / PandaLM-7B verdicts"),
    "llmbar": Dataset("llmbar", load_llmbar, load_llmbar_verdicts,
                      "LLMBar: 885 items with gold labels; 6 judges x 2 prompts x 2 orders"),
    "llmfao": Dataset("llmfao", load_llmfao, load_llmfao_verdicts,
                      "LLMFAO: 2,139 pairs, crowd votes by 124 workers, 13 prompts; GPT-4 / GPT-3.5"),
    "mt_bench_human": Dataset("mt_bench_human", load_mt_bench_human, None,
                              "MT-Bench human judgments (hub)", hub=True),
    "alpacafarm_human": Dataset("alpacafarm_human", load_alpacafarm_human, None,
                                "AlpacaFarm human cross-annotations (hub)", hub=True),
    "chatbot_arena": Dataset("chatbot_arena", load_chatbot_arena, None,
                             "Chatbot Arena conversations (hub, gated)", hub=True),
}


def get_dataset(name: str) -> Dataset:
    """The registered dataset ``name``.

    Raises
    ------
    ValueError
        Unknown name; the message lists the registered ones.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    return DATASETS[name]


def load_dataset(name: str, path=None, **options) -> pa.Table:
    """Comparisons of dataset ``name`` (see :data:`DATASETS`) from ``path`` or the default folder."""
    return get_dataset(name).load(path, **options)


def load_verdicts(name: str, path=None) -> pa.Table:
    """The judge verdicts shipped with dataset ``name``, as a verdict table.

    Raises
    ------
    ValueError
        Unknown dataset, or one that ships no verdicts (the message lists those that do).
    """
    dataset = get_dataset(name)
    if dataset.load_verdicts is None:
        with_verdicts = sorted(n for n, d in DATASETS.items() if d.load_verdicts is not None)
        raise ValueError(f"dataset {name!r} ships no judge verdicts; these do: {with_verdicts}")
    return dataset.load_verdicts(path)


__all__ = ["DATASETS", "Dataset", "DatasetName", "get_dataset", "load_dataset", "load_verdicts",
           "load_pandalm", "load_pandalm_verdicts", "load_llmbar", "load_llmbar_verdicts",
           "load_llmfao", "load_llmfao_verdicts", "load_mt_bench_human", "load_alpacafarm_human",
           "load_chatbot_arena"]
