"""PandaLM human-annotated test set: 999 comparisons, 3 annotators each, ties allowed.

Source
    Wang et al., "PandaLM: An Automatic Evaluation Benchmark for LLM Instruction Tuning
    Optimization", ICLR 2024. https://github.com/WeOpenML/PandaLM, commit 3871806e (2024-05-21),
    files ``data/testset-v1.json``, ``data/gpt-3.5-turbo-testset-v1.json``,
    ``data/pandalm-7b-testset-v1.json``.
License
    Apache-2.0 (the repository; only the PandaLM weights follow the LLaMA license). Instructions
    come from the self-instruct human-eval set (Apache-2.0).
Label policy
    Each of ``annotator1..3`` codes 0 = tie, 1 = response1 better, 2 = response2 better; they
    become three votes ({"annotator": "annotator1", "label": "tie" | "a" | "b"}) and the human
    label is their majority (:func:`marc_ray.contracts.majority_label`: a 1-1-1 split or a
    tie-vote majority is "tie"). ``response_a`` is ``response1``. The instruction shown to judges
    is ``instruction`` followed by a blank line and ``input`` when ``input`` is not empty.
    ``group`` is the instruction text (several comparisons share one instruction), for
    group-aware splits. ``model_a`` / ``model_b`` come from ``cmp_key`` ("bloom-7b_llama-7b"),
    read as response1's model, then response2's (five 7B models, 10 pairs; the keys list the two
    names in alphabetical order, so this reading is the release's convention as we understand it,
    not something the files state). Six responses are stored as the JSON boolean ``true`` (the model
    answered "True"); they become the text "True". The authors removed high-disagreement items (2.5k → 1k), so disagreement
    among annotators is mild (879 unanimous, 120 split 2-1).
Judge verdicts (:func:`load_pandalm_verdicts`)
    GPT-3.5-turbo (``gpt_result`` "1" / "2" / "Tie" / "garbage") and PandaLM-7B
    (``pandalm_result`` 0 / 1 / 2), each in the order shown (``ab``) only: there are no swapped
    runs and no probabilities. "garbage" (an unparseable answer) is an unusable verdict (null).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from .verdicts import verdict_table
from ..contracts import ContractError, validate_comparisons
from ._io import (coded_label, default_root, read_json_list, require_file, require_keys,
                  scalar_text_field, text_field)

NAME = "pandalm"
TESTSET = "data/testset-v1.json"
JUDGE_FILES = {  # judge name → (file, verdict key, codes)
    "gpt-3.5-turbo": ("data/gpt-3.5-turbo-testset-v1.json", "gpt_result",
                      {"1": "a", "2": "b", "Tie": "tie", "garbage": None}),
    "pandalm-7b": ("data/pandalm-7b-testset-v1.json", "pandalm_result",
                   {"0": "tie", "1": "a", "2": "b"}),
}
ANNOTATOR_CODES = {"0": "tie", "1": "a", "2": "b"}
ANNOTATORS = ("annotator1", "annotator2", "annotator3")


def item_id(idx) -> str:
    return f"pandalm-{idx}"


def model_names(record: dict, source, index: int) -> dict:
    """``model_a`` / ``model_b`` from ``cmp_key`` ("bloom-7b_llama-7b": response1's model first);
    nothing when the record has no ``cmp_key``."""
    key = record.get("cmp_key")
    if key is None:
        return {}
    names = str(key).split("_")
    if len(names) != 2 or not all(name.strip() for name in names):
        raise ContractError(str(source), f"cmp_key {key!r} is not '<model1>_<model2>'", row=index,
                            field="cmp_key")
    return {"model_a": names[0], "model_b": names[1]}


def load_pandalm(path: str | Path | None = None) -> pa.Table:
    """The PandaLM test set in the comparison contract (999 rows, ``human_votes`` of 3).

    Source, license and label policy: the docstring of :mod:`marc_ray.datasets.pandalm`.

    Parameters
    ----------
    path : str or Path, optional
        The folder holding ``data/testset-v1.json``; defaults to the shared copy.

    Returns
    -------
    pyarrow.Table
        Validated by :func:`marc_ray.contracts.validate_comparisons`; ids ``pandalm-<idx>``.

    Raises
    ------
    ContractError
        Missing file, malformed JSON, a missing key, a non-text field, an annotator code
        outside {0, 1, 2}, a duplicate ``idx``.
    """
    root = Path(path) if path is not None else default_root(NAME)
    source = require_file(root / TESTSET, "PandaLM test set")
    records = read_json_list(source)
    rows = []
    for index, record in enumerate(records):
        require_keys(record, ("idx", "instruction", "input", "response1", "response2") + ANNOTATORS,
                     source, index)
        instruction = text_field(record, "instruction", source, index)
        extra = record.get("input") or ""
        if not isinstance(extra, str):
            raise ContractError(str(source), f"expected text, got {extra!r}", row=index, field="input")
        votes = [{"annotator": name,
                  "label": coded_label(record[name], ANNOTATOR_CODES, source, index, name)}
                 for name in ANNOTATORS]
        rows.append({
            "id": item_id(record["idx"]),
            "instruction": f"{instruction}\n\n{extra}" if extra.strip() else instruction,
            "response_a": scalar_text_field(record, "response1", source, index),
            "response_b": scalar_text_field(record, "response2", source, index),
            "human_votes": votes,
            "group": instruction,
            **model_names(record, source, index),
        })
    return validate_comparisons(pa.Table.from_pylist(rows), str(source), require_labels=True)


def load_pandalm_verdicts(path: str | Path | None = None) -> pa.Table:
    """GPT-3.5-turbo and PandaLM-7B verdicts as a verdict table (see :mod:`marc_ray.annotate.replay`).

    Returns
    -------
    pyarrow.Table
        Columns ``id``, ``judge``, ``variant`` ("default"), ``order`` ("ab"), ``verdict``
        ("a" / "b" / "tie", null when unusable) and ``raw`` (the original value as text):
        2 × 999 rows.

    Raises
    ------
    ContractError
        Missing file, malformed JSON, an unknown verdict code, a judge file whose ``idx`` do not
        line up with the test set.
    """
    root = Path(path) if path is not None else default_root(NAME)
    rows = []
    for judge, (relative, key, codes) in JUDGE_FILES.items():
        source = require_file(root / relative, f"{judge} verdicts")
        for index, record in enumerate(read_json_list(source)):
            require_keys(record, ("idx", key), source, index)
            rows.append({"id": item_id(record["idx"]), "judge": judge, "variant": "default",
                         "order": "ab", "verdict": coded_label(record[key], codes, source, index, key),
                         "raw": str(record[key])})
    return verdict_table(rows, str(root))

