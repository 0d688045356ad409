"""The built-in demo benchmark: verifiable comparisons labelled by a simulated crowd.

The offline demo must run the real pipeline with a real (tiny) model on a machine with no data
and no network. So the project writes its own benchmark, deterministically from a seed:

* **Items whose better response is verifiable** (arithmetic sums, capitals, simple facts): one
  response is right, the other wrong, in a random position. A 135M-parameter model ranks such
  pairs by likelihood (``../shared/PLATFORM.md``: SmolLM2 got 96% of them right in likelihood
  mode), so the judge is weak but not useless, which is what the machinery needs to show.
* **Ambiguous items** (one right answer in two phrasings, or two wrong sums): humans split on
  them, so they are where judge and humans disagree for reasons no judge can fix; a sound
  confidence is low on them, and they are what the certificate should escalate.
* **A population of simulated annotators** with individual error rates (drawn from a Beta
  distribution: most are careful, a few are sloppy) and an individual tendency to vote "tie".
  Each item gets 3-5 votes from randomly chosen annotators; the human label is their majority.
  With the defaults about 8-12% of the clear items end with a wrong or tied majority, close
  to the annotator disagreement reported for crowd preference data.
* **A few-shot pool** labelled by a subset of the same annotators (with their own errors), each
  with enough examples to be a simulated annotator; its ids are disjoint from the comparisons.

Everything is plain Python and numpy; the files are JSONL in the comparison and pool contracts
(``marc_ray.contracts``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from .contracts import write_text_atomic
from .contracts.io import join

# (country, capital): the wrong answer of an item is another row's capital
CAPITALS = (
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Portugal", "Lisbon"), ("Japan", "Tokyo"), ("China", "Beijing"), ("Russia", "Moscow"),
    ("Egypt", "Cairo"), ("Greece", "Athens"), ("Canada", "Ottawa"), ("Mexico", "Mexico City"),
    ("Argentina", "Buenos Aires"), ("Peru", "Lima"), ("Norway", "Oslo"), ("Sweden", "Stockholm"),
    ("Finland", "Helsinki"), ("Denmark", "Copenhagen"), ("Poland", "Warsaw"), ("Austria", "Vienna"),
    ("Ireland", "Dublin"), ("England", "London"), ("Kenya", "Nairobi"), ("India", "New Delhi"),
    ("Thailand", "Bangkok"), ("South Korea", "Seoul"), ("Turkey", "Ankara"), ("Cuba", "Havana"),
    ("Belgium", "Brussels"), ("Hungary", "Budapest"), ("Chile", "Santiago"), ("Iran", "Tehran"),
)

# (question, right answer, wrong answer)
FACTS = (
    ("How many days are there in a week?", "There are seven days in a week.",
     "There are nine days in a week."),
    ("How many legs does a spider have?", "A spider has eight legs.", "A spider has three legs."),
    ("What color is the sky on a clear day?", "The sky is blue on a clear day.",
     "The sky is green on a clear day."),
    ("What is the opposite of hot?", "The opposite of hot is cold.",
     "The opposite of hot is tall."),
    ("What do bees make?", "Bees make honey.", "Bees make milk."),
    ("How many months are there in a year?", "There are twelve months in a year.",
     "There are five months in a year."),
    ("What is frozen water called?", "Frozen water is called ice.",
     "Frozen water is called sand."),
    ("Which planet do we live on?", "We live on the planet Earth.",
     "We live on the planet Jupiter."),
    ("How many hours are there in a day?", "There are twenty-four hours in a day.",
     "There are forty hours in a day."),
    ("What animal says moo?", "A cow says moo.", "A snake says moo."),
    ("What is the first letter of the English alphabet?", "The first letter is A.",
     "The first letter is Q."),
    ("What do plants need from the sun?", "Plants need light from the sun.",
     "Plants need salt from the sun."),
    ("Where does the sun rise?", "The sun rises in the east.", "The sun rises in the north."),
    ("How many wheels does a bicycle have?", "A bicycle has two wheels.",
     "A bicycle has seven wheels."),
    ("What is the boiling point of water at sea level in Celsius?",
     "Water boils at 100 degrees Celsius at sea level.",
     "Water boils at 30 degrees Celsius at sea level."),
    ("What do you use to write on a blackboard?", "You write on a blackboard with chalk.",
     "You write on a blackboard with soup."),
)

KINDS = ("sum", "capital", "fact")


def true_win_rate(spec: "DemoSpec", first: str, second: str) -> float:
    """P(``first`` wrote the right response of a clear item it shares with ``second``)."""
    strengths = dict(spec.models)
    return float(1.0 / (1.0 + np.exp(strengths[second] - strengths[first])))


def _name_models(comparisons: list[dict], spec: "DemoSpec") -> None:
    """Give every comparison a ``model_a`` / ``model_b``: a uniformly drawn pair of ``spec.models``;
    on a clear item the right response goes to the first model with probability
    :func:`true_win_rate`; on an ambiguous item the two models take the sides at random."""
    names = [str(name) for name, _ in spec.models]
    if len(names) < 2:
        return
    rng = np.random.default_rng([spec.seed, MODEL_STREAM])
    for row in comparisons:
        i, j = rng.choice(len(names), size=2, replace=False)
        first, second = names[i], names[j]
        first_is_right = rng.random() < true_win_rate(spec, first, second)
        if row["truth"] is None:
            right_side = "a" if rng.random() < 0.5 else "b"
        else:
            right_side = row["truth"]
        wrote_a = first if (right_side == "a") == first_is_right else second
        row["model_a"], row["model_b"] = wrote_a, second if wrote_a == first else first


@dataclass(frozen=True)
class DemoSpec:
    """How the demo benchmark is drawn (every field has a default that makes a sensible demo)."""

    n_items: int = 240               # comparisons to judge (split later into train/calibration/test)
    n_annotators: int = 16           # size of the simulated human population
    votes_per_item: tuple = (3, 5)   # each item gets between these many votes (inclusive)
    ambiguous_rate: float = 0.12     # share of items where both responses are right or both wrong
    error_alpha: float = 2.0         # annotator error rate ~ Beta(error_alpha, error_beta):
    error_beta: float = 16.0         # mean 0.11, a few annotators above 0.25
    tie_rate: float = 0.03           # how often an annotator votes "tie" on a clear item
    pool_annotators: int = 5         # annotators who also label the few-shot pool
    pool_per_annotator: int = 6      # pool examples per annotator (>= the K shots annotate uses)
    seed: int = 0                    # everything is drawn from numpy.random.default_rng(seed)
    # the systems that wrote the responses, with Bradley-Terry strengths (the known truth a win
    # rate should recover): on a clear item, model X wrote the right response with probability
    # sigmoid(s_X - s_Y). Drawn from their own generator (seed, MODEL_STREAM) after everything
    # else, so the items, votes and pool are the same draws as before models were named.
    models: tuple = (("model-strong", 1.0), ("model-mid", 0.0), ("model-weak", -1.0))


MODEL_STREAM = 1  # numpy.random.default_rng([seed, MODEL_STREAM]) draws who wrote what


def _sum_item(rng: np.random.Generator) -> tuple[str, str, str, str]:
    x, y = int(rng.integers(2, 60)), int(rng.integers(2, 60))
    wrong = x + y + int(rng.choice([-11, -10, -9, 9, 10, 11, 20]))
    wrong = wrong if wrong > 0 else x + y + 10  # a negative sum would be too easy to spot
    return (f"What is {x} + {y}?", f"{x} + {y} = {x + y}.", f"{x} + {y} = {wrong}.", "sum")


def _capital_item(rng: np.random.Generator) -> tuple[str, str, str, str]:
    i, j = rng.choice(len(CAPITALS), size=2, replace=False)
    country, capital = CAPITALS[i]
    return (f"What is the capital of {country}?", f"The capital of {country} is {capital}.",
            f"The capital of {country} is {CAPITALS[j][1]}.", "capital")


def _fact_item(rng: np.random.Generator) -> tuple[str, str, str, str]:
    question, right, wrong = FACTS[int(rng.integers(len(FACTS)))]
    return question, right, wrong, "fact"


def _ambiguous_item(rng: np.random.Generator) -> tuple[str, str, str, str]:
    """No response is verifiably better: one right answer in two phrasings, or two wrong sums.

    Both phrasings are about equally likely under a language model, so a sound judge is unsure
    exactly where the humans split: ambiguity should show up as low confidence, not as errors.
    """
    draw = rng.random()
    if draw < 0.4:
        country, capital = CAPITALS[int(rng.integers(len(CAPITALS)))]
        return (f"What is the capital of {country}?", f"The capital of {country} is {capital}.",
                f"{capital} is the capital of {country}.", "capital-ambiguous")
    x, y = int(rng.integers(2, 60)), int(rng.integers(2, 60))
    if draw < 0.7:
        return (f"What is {x} + {y}?", f"{x} + {y} = {x + y}.", f"{x} plus {y} equals {x + y}.",
                "sum-ambiguous")
    first, second = (x + y + int(d) for d in rng.choice([-3, -2, 2, 3], size=2, replace=False))
    return f"What is {x} + {y}?", f"{x} + {y} = {first}.", f"{x} + {y} = {second}.", "sum-ambiguous"


def _vote(rng: np.random.Generator, truth: str | None, error_rate: float, tie_rate: float) -> str:
    """One annotator's vote: truth None marks an ambiguous item (a coin flip, ties likelier)."""
    if truth is None:
        return str(rng.choice(["a", "b", "tie"], p=[0.42, 0.42, 0.16]))
    if rng.random() < tie_rate:
        return "tie"
    if rng.random() < error_rate:
        return "b" if truth == "a" else "a"
    return truth


def _draw_item(rng: np.random.Generator, spec: DemoSpec) -> dict:
    ambiguous = rng.random() < spec.ambiguous_rate
    if ambiguous:
        question, first, second, kind = _ambiguous_item(rng)
        truth = None
    else:
        question, first, second, kind = [_sum_item, _capital_item, _fact_item][int(rng.integers(3))](rng)
        truth = "a"
    if rng.random() < 0.5:  # put the better response second half of the time
        first, second = second, first
        truth = None if truth is None else "b"
    return {"instruction": question, "response_a": first, "response_b": second,
            "kind": kind, "truth": truth}


def generate_demo(spec: DemoSpec = DemoSpec()) -> tuple[list[dict], list[dict]]:
    """Draw the demo comparisons and the few-shot pool.

    Parameters
    ----------
    spec : DemoSpec

    Returns
    -------
    comparisons : list of dict, length ``spec.n_items``
        Comparison rows: ``id``, ``instruction``, ``response_a``, ``response_b``, ``human_votes``
        (3-5 ``{annotator, label}``), ``kind`` and ``truth`` (the verifiable answer, None when
        ambiguous; extra columns the contracts ignore, kept so results can be inspected),
        ``model_a`` / ``model_b`` (which of ``spec.models`` wrote each response).
    pool : list of dict, length ``spec.pool_annotators * spec.pool_per_annotator``
        Pool rows with an ``annotator`` id and that annotator's ``human_label`` (a or b).

    Examples
    --------
    >>> comparisons, pool = generate_demo(DemoSpec(n_items=10, seed=1))
    >>> len(comparisons), len(pool), comparisons[0]["id"]
    (10, 30, 'demo-0000')
    """
    if spec.n_items < 1 or spec.n_annotators < 3:
        raise ValueError(f"the demo needs n_items >= 1 and n_annotators >= 3, got "
                         f"{spec.n_items} and {spec.n_annotators}")
    low, high = spec.votes_per_item
    if not 1 <= low <= high <= spec.n_annotators:
        raise ValueError(f"votes_per_item must be (low, high) with 1 <= low <= high <= "
                         f"n_annotators, got {spec.votes_per_item}")
    if spec.pool_annotators > spec.n_annotators:
        raise ValueError("pool_annotators cannot exceed n_annotators")
    rng = np.random.default_rng(spec.seed)
    error_rates = np.clip(rng.beta(spec.error_alpha, spec.error_beta, spec.n_annotators), 0.01, 0.45)
    annotators = [f"annotator-{index:02d}" for index in range(spec.n_annotators)]

    comparisons = []
    for index in range(spec.n_items):
        item = _draw_item(rng, spec)
        n_votes = int(rng.integers(low, high + 1))
        voters = rng.choice(spec.n_annotators, size=n_votes, replace=False)
        votes = [{"annotator": annotators[v],
                  "label": _vote(rng, item["truth"], float(error_rates[v]), spec.tie_rate)}
                 for v in sorted(voters)]
        comparisons.append({"id": f"demo-{index:04d}", "instruction": item["instruction"],
                            "response_a": item["response_a"], "response_b": item["response_b"],
                            "human_votes": votes, "kind": item["kind"], "truth": item["truth"]})

    pool = []
    for j in range(spec.pool_annotators):
        for index in range(spec.pool_per_annotator):
            item = _draw_item(rng, spec)
            while item["truth"] is None:  # pool examples are clear cases
                item = _draw_item(rng, spec)
            label = item["truth"]
            if rng.random() < error_rates[j]:  # the annotator's own mistakes are part of their style
                label = "b" if label == "a" else "a"
            pool.append({"id": f"pool-{j:02d}-{index:02d}", "annotator": annotators[j],
                         "instruction": item["instruction"], "response_a": item["response_a"],
                         "response_b": item["response_b"], "human_label": label})
    _name_models(comparisons, spec)
    return comparisons, pool


def write_demo(out_dir: str | os.PathLike, spec: DemoSpec = DemoSpec()) -> tuple[str, str]:
    """Write ``comparisons.jsonl`` and ``pool.jsonl`` under ``out_dir`` (atomically).

    Returns
    -------
    comparisons_path, pool_path : str
    """
    comparisons, pool = generate_demo(spec)
    paths = []
    for name, rows in (("comparisons.jsonl", comparisons), ("pool.jsonl", pool)):
        path = join(out_dir, name)  # a local folder or a URI
        write_text_atomic("".join(json.dumps(row) + "\n" for row in rows), path)
        paths.append(path)
    return paths[0], paths[1]
