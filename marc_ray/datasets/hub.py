"""Human-preference datasets read from the Hugging Face hub (only when it is reachable).

These loaders need the optional ``datasets`` package and network access (or its local cache);
offline they raise a :class:`~marc_ray.contracts.ContractError` that says so, and nothing in the
test suite touches the network. The row mapping of each set is a pure function
(``*_rows``), tested offline on records shaped like the published ones. Below, for each set:
its source (paper and hub id), license and label policy.

MT-Bench human judgments
    Zheng et al., "Judging LLM-as-a-Judge with MT-Bench and Chatbot Arena", NeurIPS 2023.
    Hub ``lmsys/mt_bench_human_judgments``, split ``human`` (3.3k expert votes on 80 questions).
    License CC-BY-4.0. Each row is one vote (``judge`` is the annotator, ``winner`` model_a /
    model_b / tie) on one turn of a conversation; votes on the same (question, model pair,
    turn) are grouped into one comparison whatever the order the pair was shown in, with
    response_a the alphabetically first model's answer; the human label is their majority.
    ``group`` is the question id. The instruction is the conversation up to that turn's user
    message; the responses are the two models' answers at that turn.
AlpacaFarm human cross-annotations
    Dubois et al., "AlpacaFarm", NeurIPS 2023. Hub ``tatsu-lab/alpaca_eval``, configuration
    ``alpaca_farm_human_crossannotations`` (about 650 instructions × 4 human annotators).
    License CC-BY-NC-4.0 (research use). ``preference`` 1 / 2 = output_1 / output_2 better
    (1.5 or 0 = tie); ``annotator_index`` is the annotator. Rows with the same (instruction,
    output_1, output_2) are one comparison; ``group`` is the instruction.
Chatbot Arena conversations
    Hub ``lmsys/chatbot_arena_conversations`` (33k conversations; gated: accept its terms on
    the hub first). License CC-BY-4.0 for the prompts and votes (the outputs follow their
    models' terms). One user vote per conversation: ``winner`` model_a / model_b / tie /
    tie (bothbad) ("tie (bothbad)" is a tie); first turn only (the instruction is the first
    user message, the responses the two first assistant messages); ``group`` is the
    question id; the annotator is ``judge`` (an anonymised user id).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Mapping

import pyarrow as pa

from ..contracts import ContractError, validate_comparisons

HUB_SETS = {
    "mt_bench_human": ("lmsys/mt_bench_human_judgments", None, "human"),
    "alpacafarm_human": ("tatsu-lab/alpaca_eval", "alpaca_farm_human_crossannotations", "validation"),
    "chatbot_arena": ("lmsys/chatbot_arena_conversations", None, "train"),
}
ARENA_WINNERS = {"model_a": "a", "model_b": "b", "tie": "tie", "tie (bothbad)": "tie"}
ALPACA_PREFERENCES = {1: "a", 2: "b", 1.5: "tie", 0: "tie"}


def fetch(name: str, limit: int | None = None) -> list[dict]:
    """Records of hub set ``name`` (``HUB_SETS``) through the ``datasets`` package.

    Raises
    ------
    ContractError
        ``datasets`` is not installed, or the hub cannot be reached (offline, gated set not
        accepted): the message says which and what to do.
    """
    repository, configuration, split = HUB_SETS[name]
    source = f"hub:{repository}" + (f"/{configuration}" if configuration else "")
    try:
        import datasets
    except ImportError as error:
        raise ContractError(source, "the `datasets` package is not installed",
                            hint="pip install datasets, or load a local copy with the "
                                 "dataset's own loader") from error
    try:
        data = datasets.load_dataset(repository, configuration, split=split)
    except Exception as error:  # the hub client raises many kinds (connection, gating, cache)
        raise ContractError(source, f"cannot load from the Hugging Face hub: "
                            f"{type(error).__name__}: {str(error)[:200]}",
                            hint="this loader needs network access (or HF_DATASETS_OFFLINE=1 "
                                 "with a cached copy); gated sets need their terms accepted "
                                 "and HF_TOKEN set") from error
    records = data.to_list() if limit is None else data.select(range(min(limit, len(data)))).to_list()
    return records


def _turn_text(conversation, turn: int, role: str, source: str, row: int, field: str) -> str:
    messages = [m for m in conversation or [] if isinstance(m, Mapping) and m.get("role") == role]
    if len(messages) < turn or not isinstance(messages[turn - 1].get("content"), str):
        raise ContractError(source, f"no {role} message for turn {turn}", row=row, field=field)
    return messages[turn - 1]["content"]


def mt_bench_rows(records: Iterable[Mapping], source: str = "hub:lmsys/mt_bench_human_judgments"
                  ) -> list[dict]:
    """MT-Bench human votes → comparison rows (one per question, model pair and turn)."""
    grouped: dict[tuple, dict] = {}
    votes: dict[tuple, list] = defaultdict(list)
    for row, record in enumerate(records):
        for key in ("question_id", "model_a", "model_b", "winner", "judge", "conversation_a",
                    "conversation_b", "turn"):
            if key not in record:
                raise ContractError(source, "missing key", row=row, field=key)
        if record["winner"] not in ARENA_WINNERS:
            raise ContractError(source, f"winner {record['winner']!r} is not one of "
                                f"{list(ARENA_WINNERS)}", row=row, field="winner")
        turn = int(record["turn"])
        label = ARENA_WINNERS[record["winner"]]
        first, second = sorted((record["model_a"], record["model_b"]))
        swapped = first != record["model_a"]
        if swapped:
            label = {"a": "b", "b": "a", "tie": "tie"}[label]
        key = (record["question_id"], first, second, turn)
        if key not in grouped:
            conversation_a, conversation_b = record["conversation_a"], record["conversation_b"]
            if swapped:
                conversation_a, conversation_b = conversation_b, conversation_a
            context = []
            for t in range(1, turn):
                context.append("User: " + _turn_text(conversation_a, t, "user", source, row, "conversation_a"))
                context.append("Assistant: " + _turn_text(conversation_a, t, "assistant", source, row, "conversation_a"))
            question = _turn_text(conversation_a, turn, "user", source, row, "conversation_a")
            grouped[key] = {
                "id": f"mt_bench-{record['question_id']}-{first}-{second}-t{turn}",
                "instruction": "\n\n".join(context + [question]) if context else question,
                "response_a": _turn_text(conversation_a, turn, "assistant", source, row, "conversation_a"),
                "response_b": _turn_text(conversation_b, turn, "assistant", source, row, "conversation_b"),
                "group": str(record["question_id"]),
            }
        votes[key].append({"annotator": str(record["judge"]), "label": label})
    return [{**grouped[key], "human_votes": votes[key]} for key in grouped]


def alpacafarm_rows(records: Iterable[Mapping], source: str = "hub:tatsu-lab/alpaca_eval"
                    ) -> list[dict]:
    """AlpacaFarm human cross-annotations → comparison rows (one per instruction and output pair)."""
    grouped: dict[tuple, dict] = {}
    votes: dict[tuple, list] = defaultdict(list)
    for row, record in enumerate(records):
        for key in ("instruction", "output_1", "output_2", "preference"):
            if key not in record:
                raise ContractError(source, "missing key", row=row, field=key)
        preference = record["preference"]
        if preference not in ALPACA_PREFERENCES:
            raise ContractError(source, f"preference {preference!r} is not one of "
                                f"{list(ALPACA_PREFERENCES)}", row=row, field="preference")
        instruction = record["instruction"]
        if record.get("input"):
            instruction = f"{instruction}\n\n{record['input']}"
        key = (instruction, record["output_1"], record["output_2"])
        if key not in grouped:
            grouped[key] = {"id": f"alpacafarm-{len(grouped)}", "instruction": instruction,
                            "response_a": record["output_1"], "response_b": record["output_2"],
                            "group": instruction}
        votes[key].append({"annotator": str(record.get("annotator_index", row)),
                           "label": ALPACA_PREFERENCES[preference]})
    return [{**grouped[key], "human_votes": votes[key]} for key in grouped]


def arena_rows(records: Iterable[Mapping], source: str = "hub:lmsys/chatbot_arena_conversations"
               ) -> list[dict]:
    """Chatbot Arena conversations → comparison rows (first turn, one user vote each)."""
    rows = []
    for row, record in enumerate(records):
        for key in ("question_id", "winner", "conversation_a", "conversation_b"):
            if key not in record:
                raise ContractError(source, "missing key", row=row, field=key)
        if record["winner"] not in ARENA_WINNERS:
            raise ContractError(source, f"winner {record['winner']!r} is not one of "
                                f"{list(ARENA_WINNERS)}", row=row, field="winner")
        rows.append({
            "id": f"arena-{record['question_id']}",
            "instruction": _turn_text(record["conversation_a"], 1, "user", source, row, "conversation_a"),
            "response_a": _turn_text(record["conversation_a"], 1, "assistant", source, row, "conversation_a"),
            "response_b": _turn_text(record["conversation_b"], 1, "assistant", source, row, "conversation_b"),
            "human_votes": [{"annotator": str(record.get("judge")),
                             "label": ARENA_WINNERS[record["winner"]]}],
            "group": str(record["question_id"]),
        })
    return rows


def _load(name: str, mapper, limit: int | None) -> pa.Table:
    repository = HUB_SETS[name][0]
    rows = mapper(fetch(name, limit), f"hub:{repository}")
    return validate_comparisons(pa.Table.from_pylist(rows), f"hub:{repository}", require_labels=True)


def load_mt_bench_human(path=None, limit: int | None = None) -> pa.Table:
    """MT-Bench human judgments from the hub, in the comparison contract (see module docstring).

    ``path`` is accepted for a uniform loader signature and must be None (hub only).
    """
    _hub_only(path, "mt_bench_human")
    return _load("mt_bench_human", mt_bench_rows, limit)


def load_alpacafarm_human(path=None, limit: int | None = None) -> pa.Table:
    """AlpacaFarm human cross-annotations from the hub, in the comparison contract."""
    _hub_only(path, "alpacafarm_human")
    return _load("alpacafarm_human", alpacafarm_rows, limit)


def load_chatbot_arena(path=None, limit: int | None = None) -> pa.Table:
    """Chatbot Arena conversations from the hub (gated), in the comparison contract."""
    _hub_only(path, "chatbot_arena")
    return _load("chatbot_arena", arena_rows, limit)


def _hub_only(path, name: str) -> None:
    if path is not None:
        raise ValueError(f"{name} is read from the Hugging Face hub; a local path is not supported "
                         f"(export it once with `marc-ray datasets export {name} FILE` while online, "
                         f"then read that file as comparisons)")
