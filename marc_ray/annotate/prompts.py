"""Prompt templates (as data) and the run rows built from them.

A run's prompt is split in two (see :mod:`marc_ray.annotate.engine`):

``prefix``
    everything that depends only on the (annotator, shot subset): the chat template's opening,
    the judge instructions and the annotator's examples. Every item of that (annotator, subset)
    shares it, so engines prefill it once (KV reuse, vLLM prefix caching).
``suffix``
    the item: the query and the answer cue. In *choice* mode it ends exactly at the answer
    position, so the next token is the label ("A" / "B") and its probability is read from the
    logits there, never from generated text (a response may itself contain "[[A]]"). In
    *likelihood* mode it ends where the response starts, and the two responses are the
    continuations whose mean per-token log-likelihood is compared.

The default layout is: the annotator's examples, then the query, then the answer cue. When the
tokenizer has a chat template it is applied (system message, one user turn, the assistant
turn opened); the split point is found by rendering the conversation with a sentinel where the
query goes, so the prefix is byte-identical for every item.

Choice examples show each example's response_a first with its human label; likelihood examples
show each example's instruction and the response its annotator preferred (the annotator's
taste is conveyed by what a good answer looks like).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from typing import Any, Sequence

from ..contracts import RunLayout
from .annotators import SimulatedAnnotator
from .config import AnnotateConfig
from .engine import ZERO_SHOT_RUNS

_SENTINEL = "\x00MARC_RAY_QUERY\x00"  # cannot occur in text that went through a JSON validator


@dataclass(frozen=True)
class PromptTemplate:
    """The text of every prompt, as data. Fields are ``str.format`` templates.

    Choice fields use ``{instruction}``, ``{first}``, ``{second}`` (the responses as shown) and
    ``{label}`` / ``{label_first}`` / ``{label_second}``; likelihood fields ``{instruction}`` and
    ``{response}``. ``answer_cue`` is written after the opened assistant turn; its end is the
    answer position.
    """

    name: str = "default"
    choice_system: str = ("You are a careful judge of AI assistant responses. Given an instruction "
                          "and two responses, decide which response is better. Answer with "
                          "[[{label_first}]] if Response {label_first} is better, or "
                          "[[{label_second}]] if Response {label_second} is better.")
    choice_example: str = ("### Example\nInstruction: {instruction}\n\nResponse {label_first}: "
                           "{first}\n\nResponse {label_second}: {second}\n\n"
                           "Better response: [[{label}]]\n\n")
    choice_query: str = ("### Your turn\nInstruction: {instruction}\n\nResponse {label_first}: "
                         "{first}\n\nResponse {label_second}: {second}\n\n"
                         "Which response is better?")
    answer_cue: str = "Better response: [["
    likelihood_system: str = "You are a helpful assistant who writes the best possible answers."
    likelihood_example_user: str = "{instruction}"
    likelihood_example_assistant: str = "{response}"
    likelihood_query: str = "{instruction}"
    plain_separator: str = "\n\n"  # between system text and the rest when there is no chat template

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<template>") -> "PromptTemplate":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{source}: unknown template field(s) {unknown}; known: {sorted(names)}")
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)


TEMPLATES: dict[str, PromptTemplate] = {"default": PromptTemplate()}


def get_template(spec: str | PromptTemplate) -> PromptTemplate:
    """A template by name (``TEMPLATES``) or from a ``.json`` / ``.yaml`` file of its fields."""
    if isinstance(spec, PromptTemplate):
        return spec
    if spec in TEMPLATES:
        return TEMPLATES[spec]
    if str(spec).endswith((".json", ".yaml", ".yml")) and os.path.isfile(spec):
        with open(spec, encoding="utf-8") as stream:
            text = stream.read()
        if spec.endswith(".json"):
            data = json.loads(text)
        else:
            from ..contracts.yaml_file import load_yaml

            data = load_yaml(text, spec)
        return PromptTemplate.from_dict(dict(data, name=data.get("name", os.path.basename(spec))),
                                        spec)
    raise ValueError(f"unknown template {spec!r}: use one of {sorted(TEMPLATES)} or a .json/.yaml "
                     f"file with PromptTemplate fields")


class PromptBuilder:
    """Builds the run rows of every item: prefixes once per (annotator, subset), suffixes per item.

    Parameters
    ----------
    template : PromptTemplate
    annotators : list of SimulatedAnnotator, length N
    layout : RunLayout
    mode : {"choice", "likelihood"}
    labels : (str, str)
        Labels of the first- and second-shown response (choice mode).
    tokenizer : transformers tokenizer or None
        Its chat template is applied when it has one; None gives plain-text prompts.
    zero_shot : bool
        Add the two zero-shot runs (-1: order ab, -2: order ba).

    Attributes
    ----------
    groups : list of (group_key, prefix, [(run, order), ...])
        One entry per shared prefix: ("zero_shot",) then (j, s) for every annotator and subset.
    """

    def __init__(self, template: PromptTemplate, annotators: Sequence[SimulatedAnnotator],
                 layout: RunLayout, mode: str, labels: tuple[str, str] = AnnotateConfig.labels,
                 tokenizer=None, zero_shot: bool = AnnotateConfig.zero_shot):
        if len(annotators) != layout.n_annotators:
            raise ValueError(f"{len(annotators)} annotators for a layout of {layout.n_annotators}")
        self.template, self.annotators, self.layout = template, list(annotators), layout
        self.mode, self.labels, self.tokenizer = mode, tuple(labels), tokenizer
        self.zero_shot = zero_shot
        self.has_chat_template = bool(tokenizer is not None and getattr(tokenizer, "chat_template", None))
        self._tail = self._render([], _SENTINEL)[1]  # what follows the query (turn end, cue)
        self.groups: list[tuple[tuple, str, list[tuple[int, int]]]] = []
        n_orders = len(layout.orders)
        if zero_shot:
            self.groups.append((("zero_shot",), self._render([], _SENTINEL)[0],
                                [(ZERO_SHOT_RUNS[o], o) for o in range(n_orders)]))
        for j, annotator in enumerate(self.annotators):
            for s, subset in enumerate(layout.subsets):
                examples = [annotator.examples[i] for i in subset]
                prefix = self._render(examples, _SENTINEL)[0]
                self.groups.append(((j, s), prefix,
                                    [(layout.run_index(j, s, o), o) for o in range(n_orders)]))

    # ---- text ------------------------------------------------------------------------------
    def _fmt(self, text: str, **values) -> str:
        return text.format(label_first=self.labels[0], label_second=self.labels[1], **values)

    def _render(self, examples: Sequence[dict], query: str) -> tuple[str, str]:
        """(text before ``query``, text after it) of the full prompt."""
        t = self.template
        if self.mode == "choice":
            shots = "".join(self._fmt(t.choice_example, instruction=e["instruction"],
                                      first=e["response_a"], second=e["response_b"],
                                      label=self.labels[0 if e["human_label"] == "a" else 1])
                            for e in examples)
            system = self._fmt(t.choice_system)
            turns = [("user", shots + query)]
            cue = t.answer_cue
        else:
            system = t.likelihood_system
            turns = []
            for e in examples:
                preferred = e["response_a"] if e["human_label"] == "a" else e["response_b"]
                turns.append(("user", t.likelihood_example_user.format(instruction=e["instruction"])))
                turns.append(("assistant", t.likelihood_example_assistant.format(response=preferred)))
            turns.append(("user", query))
            cue = ""
        if self.has_chat_template:
            messages = [{"role": "system", "content": system}] + [
                {"role": role, "content": content} for role, content in turns]
            text = self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                      add_generation_prompt=True)
            text += cue
        elif self.mode == "choice":
            text = system + t.plain_separator + turns[0][1] + "\n\n" + cue
        else:
            # no chat template: a plain question/answer transcript; the response continues it
            text = system + t.plain_separator + "".join(
                (f"Question: {content}\n" if role == "user" else f"Answer: {content}\n\n")
                for role, content in turns[:-1]) + f"Question: {turns[-1][1]}\nAnswer:"
        if text.count(query) != 1:
            raise ValueError("the chat template altered the query marker; use a template that "
                             "renders message content verbatim, or a tokenizer without one")
        before, after = text.split(query)
        return before, after

    def item_parts(self, item: dict) -> list[dict]:
        """Suffix and continuations of ``item`` for each order (index 0: ab, 1: ba)."""
        t = self.template
        parts = []
        for order in self.layout.orders:
            first, second = ((item["response_a"], item["response_b"]) if order == "ab"
                             else (item["response_b"], item["response_a"]))
            if self.mode == "choice":
                query = self._fmt(t.choice_query, instruction=item["instruction"],
                                  first=first, second=second)
                parts.append({"suffix": query + self._tail, "continuation_first": "",
                              "continuation_second": "", "label_first": self.labels[0],
                              "label_second": self.labels[1]})
            else:
                query = t.likelihood_query.format(instruction=item["instruction"])
                # plain prompts put a space before the response so it tokenises as running text
                lead = "" if self.has_chat_template else " "
                parts.append({"suffix": query + self._tail, "continuation_first": lead + first,
                              "continuation_second": lead + second, "label_first": "",
                              "label_second": ""})
        return parts

    # ---- run rows ----------------------------------------------------------------------------
    def runs_for_group(self, items: Sequence[dict], group: int,
                       parts: dict[str, list[dict]] | None = None) -> list[dict]:
        """Run rows of ``items`` for ``self.groups[group]``, ordered by item then order.

        An item's orders sit side by side so that an engine sees both in one batch (in
        likelihood mode they score the same two sequences, which the engine runs once).
        """
        _, prefix, runs = self.groups[group]
        rows = []
        for item in items:
            item_parts = parts[item["id"]] if parts is not None else self.item_parts(item)
            for run, order in runs:
                rows.append({"id": item["id"], "run": run, "mode": self.mode, "prefix": prefix,
                             **item_parts[order]})
        return rows

    def runs(self, items: Sequence[dict]) -> list[dict]:
        """Every run row of ``items``, grouped so each shared prefix is contiguous."""
        parts = {item["id"]: self.item_parts(item) for item in items}
        return [row for group in range(len(self.groups))
                for row in self.runs_for_group(items, group, parts)]

    @property
    def runs_per_item(self) -> int:
        return sum(len(runs) for _, _, runs in self.groups)
