"""LLMBar: 885 comparisons with one gold label each, and the verdicts of 4-6 LLM judges.

Source
    Zeng et al., "Evaluating Large Language Models at Evaluating Instruction Following",
    ICLR 2024. https://github.com/princeton-nlp/LLMBar, commit 900616bf (2024-07-08), folder
    ``Dataset/``: ``LLMBar/Natural`` (100), ``LLMBar/Adversarial/{Neighbor, GPTInst, GPTOut,
    Manual}`` (134, 92, 47, 46) and ``Processed/{MT-Bench, LLMEval2, FairEval}`` (200, 200, 66;
    re-packaged from MT-Bench human judgments, LLMEval², FairEval).
License
    MIT (the repository). The Processed subsets keep their originals' licenses (MT-Bench human
    judgments: CC-BY-4.0).
Label policy
    ``label`` 1 / 2 is the gold label (expert-curated or filtered to an objective answer): the
    human label is "a" / "b", with no per-annotator votes and no ties. ``response_a`` is
    ``output_1``. Ids are ``llmbar/<subset path>/<position>`` (e.g.
    ``llmbar/Adversarial/Neighbor/12``), so the subset stays visible; ``group`` is the subset
    path (for splits that keep a subset together; each item has its own instruction).
Judge verdicts (:func:`load_llmbar_verdicts`)
    ``evaluators/<LLM>/<prompt>/result.json``: LLMs ChatGPT, ChatGPT-0301, GPT-4, LLaMA2,
    Falcon, PaLM2 (ChatGPT-0301 and Falcon only on the LLMBar subsets), prompts ``Vanilla`` and
    ``Vanilla_NoRules`` (the Processed subsets have only ``Vanilla_NoRules``). Each record's
    ``results`` holds ``'swap = False'`` (order ab) and ``'swap = True'`` (order ba) with a
    ``winner`` already mapped back to the original outputs ("1" → "a", "2" → "b"); a null
    winner (the judge's answer could not be parsed) is an unusable verdict. ``results`` is
    either a list or its Python-repr string (parsed with ``ast.literal_eval``).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Sequence

import pyarrow as pa

from .verdicts import verdict_table
from ..contracts import ContractError, validate_comparisons
from ._io import coded_label, default_root, read_json_list, require_file, require_keys, text_field

NAME = "llmbar"
SUBSETS = ("LLMBar/Natural", "LLMBar/Adversarial/Neighbor", "LLMBar/Adversarial/GPTInst",
           "LLMBar/Adversarial/GPTOut", "LLMBar/Adversarial/Manual", "Processed/MT-Bench",
           "Processed/LLMEval2", "Processed/FairEval")
LABEL_CODES = {"1": "a", "2": "b"}
WINNER_CODES = {"1": "a", "2": "b", "null": None, "None": None}
SWAP_ORDERS = {"swap = False": "ab", "swap = True": "ba"}


def _select(subsets: Sequence[str] | None) -> tuple[str, ...]:
    """Subsets by path or prefix: "Natural", "Adversarial", "LLMBar", "Processed", or a full path."""
    if subsets is None:
        return SUBSETS
    chosen = []
    for name in subsets:
        found = [s for s in SUBSETS if s == name or s.startswith(name + "/")
                 or s.split("/", 1)[1] == name or s.split("/", 1)[1].startswith(name + "/")]
        if not found:
            raise ValueError(f"unknown LLMBar subset {name!r}; choose among {list(SUBSETS)} "
                             f"or a prefix such as 'Natural', 'Adversarial', 'Processed'")
        chosen.extend(s for s in found if s not in chosen)
    return tuple(s for s in SUBSETS if s in chosen)


def item_id(subset: str, position: int) -> str:
    return f"llmbar/{subset}/{position}"


def load_llmbar(path: str | Path | None = None, subsets: Sequence[str] | None = None) -> pa.Table:
    """LLMBar in the comparison contract (885 rows with every subset).

    Source, license and label policy: the docstring of :mod:`marc_ray.datasets.llmbar`.

    Parameters
    ----------
    path : str or Path, optional
        The folder holding ``Dataset/``; defaults to the shared copy.
    subsets : sequence of str, optional
        Subset paths or prefixes (``"Natural"``, ``"Adversarial"``, ``"Processed/MT-Bench"``);
        all by default.

    Raises
    ------
    ContractError
        Missing file, malformed JSON, a missing key, a label outside {1, 2}.
    ValueError
        An unknown subset name (the message lists them).
    """
    root = Path(path) if path is not None else default_root(NAME)
    rows = []
    for subset in _select(subsets):
        source = require_file(root / "Dataset" / subset / "dataset.json", f"LLMBar {subset}")
        for index, record in enumerate(read_json_list(source)):
            require_keys(record, ("input", "output_1", "output_2", "label"), source, index)
            rows.append({
                "id": item_id(subset, index),
                "instruction": text_field(record, "input", source, index),
                "response_a": text_field(record, "output_1", source, index),
                "response_b": text_field(record, "output_2", source, index),
                "human_label": coded_label(record["label"], LABEL_CODES, source, index, "label"),
                "group": subset,
            })
    return validate_comparisons(pa.Table.from_pylist(rows), str(root / "Dataset"),
                                require_labels=True)


def _results(record: dict, source: Path, index: int) -> dict:
    results = record["results"]
    if isinstance(results, str):
        try:
            results = ast.literal_eval(results)
        except (ValueError, SyntaxError) as error:
            raise ContractError(str(source), f"unparseable results string: {error}",
                                row=index, field="results") from error
    if not (isinstance(results, list) and results and isinstance(results[0], dict)):
        raise ContractError(str(source), "expected a list holding one {'swap = False', "
                            "'swap = True'} record", row=index, field="results")
    return results[0]


def load_llmbar_verdicts(path: str | Path | None = None,
                         subsets: Sequence[str] | None = None) -> pa.Table:
    """Every judge × prompt × order verdict as a verdict table (see :mod:`marc_ray.annotate.replay`).

    Returns
    -------
    pyarrow.Table
        Columns ``id``, ``judge``, ``variant`` (the prompt: "Vanilla" or "Vanilla_NoRules"),
        ``order`` ("ab" / "ba"), ``verdict`` ("a" / "b", null when unusable), ``raw``.

    Raises
    ------
    ContractError
        Malformed JSON or results, a winner outside {1, 2, null}, a result file whose length or
        inputs do not match its subset's ``dataset.json``.
    """
    root = Path(path) if path is not None else default_root(NAME)
    rows = []
    for subset in _select(subsets):
        folder = root / "Dataset" / subset
        dataset = read_json_list(require_file(folder / "dataset.json", f"LLMBar {subset}"))
        for source in sorted((folder / "evaluators").glob("*/*/result.json")):
            judge, variant = source.parent.parent.name, source.parent.name
            records = read_json_list(source)
            if len(records) != len(dataset):
                raise ContractError(str(source), f"{len(records)} records for the {len(dataset)} "
                                    f"items of {subset}", hint="the result file must align with "
                                    "dataset.json record by record")
            for index, record in enumerate(records):
                require_keys(record, ("input", "results"), source, index)
                if record["input"] != dataset[index].get("input"):
                    raise ContractError(str(source), "input differs from dataset.json's record at "
                                        "the same position", row=index, field="input")
                swaps = _results(record, source, index)
                for key, order in SWAP_ORDERS.items():
                    if key not in swaps or not isinstance(swaps[key], dict):
                        raise ContractError(str(source), f"no {key!r} run", row=index, field="results")
                    winner = swaps[key].get("winner")
                    rows.append({"id": item_id(subset, index), "judge": judge, "variant": variant,
                                 "order": order, "raw": str(winner),
                                 "verdict": coded_label(winner, WINNER_CODES, source, index,
                                                        f"results[{key}].winner")})
    return verdict_table(rows, str(root / "Dataset"))
