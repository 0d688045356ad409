"""LLMFAO: 2,139 crowd-annotated comparisons over 13 prompts, with GPT-4 / GPT-3.5 verdicts.

Source
    Dmitry Ustalov, "LLMFAO: Large Language Model Feedback Analysis and Optimization",
    https://github.com/dustalov/llmfao, commit 9e224e94 (2024-08-16): ``pairs-crowd.jsonl``
    (the pairs with prompt text and both responses), ``crowd-comparisons.csv`` (8,931 crowd
    votes by 124 workers), ``gpt4-crowd-comparisons.csv`` and ``gpt3-crowd-comparisons.csv``
    (one verdict per pair).
License
    CC BY 4.0 (the data files; the repository's code is GPL and none of it is used).
Label policy
    Each crowd vote (``winner`` left / right / tie; the left response is model_x's, as the
    ``left`` / ``right`` model names in every file confirm) becomes
    {"annotator": "worker-<id>", "label": "a" | "b" | "tie"}; ``response_a`` is ``result_x``
    (shown on the left). A vote whose models differ from its pair's is refused. The human
    label is the majority (:func:`marc_ray.contracts.majority_label`): ties are frequent (39% of
    votes) and so are tied majorities. Pairs have 1-5 votes (mostly 4-5); a pair with no vote
    has no human label and is refused. ``group`` is the prompt id: only 13 prompts, so items
    cluster heavily and splits should keep a prompt's pairs together. Some responses are empty
    (a model answered nothing); they are kept as empty text. ``model_a`` / ``model_b`` are the
    names of ``model_x`` / ``model_y`` in ``models.jsonl`` (the ``left`` / ``right`` columns of
    the vote file use the same names).
Judge verdicts (:func:`load_llmfao_verdicts`)
    GPT-4 and GPT-3.5 (judge names ``gpt-4``, ``gpt-3.5``), asked to answer "A", "B" or "TIE"
    with model_x shown first (order ab only): left → "a", right → "b", tie → "tie".
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pyarrow as pa

from .verdicts import verdict_table
from ..contracts import ContractError, validate_comparisons
from ._io import coded_label, default_root, read_csv, read_jsonl, require_file, require_keys, text_field

NAME = "llmfao"
PAIRS = "pairs-crowd.jsonl"
MODELS = "models.jsonl"  # model id → display name (model_a / model_b)
CROWD = "crowd-comparisons.csv"
JUDGE_FILES = {"gpt-4": "gpt4-crowd-comparisons.csv", "gpt-3.5": "gpt3-crowd-comparisons.csv"}
WINNER_CODES = {"left": "a", "right": "b", "tie": "tie"}


def item_id(pair_id) -> str:
    return f"llmfao-{pair_id}"


def load_llmfao(path: str | Path | None = None) -> pa.Table:
    """LLMFAO's crowd-annotated pairs in the comparison contract (2,139 rows).

    Source, license and label policy: the docstring of :mod:`marc_ray.datasets.llmfao`.

    Parameters
    ----------
    path : str or Path, optional
        The folder holding ``pairs-crowd.jsonl`` and ``crowd-comparisons.csv``; defaults to the
        shared copy.

    Raises
    ------
    ContractError
        Missing file, malformed line, a missing key or column, a winner outside
        {left, right, tie}, a vote for a pair that is not in ``pairs-crowd.jsonl``, a vote whose
        models do not match its pair's, a pair with no vote.
    """
    root = Path(path) if path is not None else default_root(NAME)
    pairs_source = require_file(root / PAIRS, "LLMFAO pairs")
    votes_source = require_file(root / CROWD, "LLMFAO crowd votes")
    pairs = read_jsonl(pairs_source)
    models = {}
    for index, pair in enumerate(pairs):
        require_keys(pair, ("id", "prompt", "text", "model_x", "result_x", "model_y", "result_y"),
                     pairs_source, index)
        models[str(pair["id"])] = (str(pair["model_x"]), str(pair["model_y"]))
    votes: dict[str, list[dict]] = defaultdict(list)
    for index, vote in enumerate(read_csv(votes_source, ("id", "model_x", "model_y", "worker", "winner"))):
        key = vote["id"]
        if key not in models:
            raise ContractError(str(votes_source), f"vote for pair {key!r}, which is not in {PAIRS}",
                                row=index, field="id")
        if (vote["model_x"], vote["model_y"]) != models[key]:
            raise ContractError(str(votes_source), f"models {vote['model_x']}/{vote['model_y']} differ "
                                f"from the pair's {models[key][0]}/{models[key][1]}", row=index,
                                field="model_x")
        votes[key].append({"annotator": f"worker-{vote['worker']}",
                           "label": coded_label(vote["winner"], WINNER_CODES, votes_source, index,
                                                "winner")})
    names = model_names(root)
    rows = []
    for index, pair in enumerate(pairs):
        key = str(pair["id"])
        if not votes.get(key):
            raise ContractError(str(pairs_source), f"pair {key!r} has no crowd vote in {CROWD}",
                                row=index, field="id")
        rows.append({
            "id": item_id(key),
            "instruction": text_field(pair, "text", pairs_source, index),
            "response_a": text_field(pair, "result_x", pairs_source, index),
            "response_b": text_field(pair, "result_y", pairs_source, index),
            "human_votes": votes[key],
            "group": f"prompt-{pair['prompt']}",
            "model_a": names.get(str(pair["model_x"]), f"model-{pair['model_x']}"),
            "model_b": names.get(str(pair["model_y"]), f"model-{pair['model_y']}"),
        })
    return validate_comparisons(pa.Table.from_pylist(rows), str(pairs_source), require_labels=True)


def model_names(root: Path) -> dict[str, str]:
    """{model id: name} from ``models.jsonl``; {} when the file is absent (ids then name the
    models as ``model-<id>``)."""
    source = root / MODELS
    if not source.exists():
        return {}
    out = {}
    for index, record in enumerate(read_jsonl(source)):
        require_keys(record, ("id", "name"), source, index)
        out[str(record["id"])] = text_field(record, "name", source, index)
    return out


def load_llmfao_verdicts(path: str | Path | None = None) -> pa.Table:
    """GPT-4 and GPT-3.5 verdicts (order ab) as a verdict table (:mod:`marc_ray.annotate.replay`).

    Raises
    ------
    ContractError
        Missing file or column, a winner outside {left, right, tie}.
    """
    root = Path(path) if path is not None else default_root(NAME)
    rows = []
    for judge, relative in JUDGE_FILES.items():
        source = require_file(root / relative, f"{judge} verdicts")
        for index, record in enumerate(read_csv(source, ("id", "winner"))):
            rows.append({"id": item_id(record["id"]), "judge": judge, "variant": "default",
                         "order": "ab", "raw": record["winner"],
                         "verdict": coded_label(record["winner"], WINNER_CODES, source, index, "winner")})
    return verdict_table(rows, str(root))
