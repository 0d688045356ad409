"""Win rates on real human labels: PandaLM (5 models, 10 pairs) and LLMFAO (59 models).

Every human label of a data set is the population: its human win rate per pair (ties dropped,
as ``tie_policy: drop``) is the truth. A labelling budget is simulated: a random share of the
items keeps its label, the rest are unlabelled; the judge's recorded verdict (1 = a, 0 = b,
0.5 = tie or unusable) is its probability on every item. Over ``--draws`` random budgets:
PPI++ and human-only coverage of the truth and mean widths, and the judge-only bias, per pair
(vectorised over the draws). LLMFAO's pairs have at most 13 items, so it gets only the Bradley–Terry
leaderboard (the truth: the Bradley–Terry fit on every human label), with tie policy
``disagree`` (a tie is half a win: 39% of its votes are ties, and dropping them leaves a median of
29 items per model, too few for the per-model minimum).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_winrate_real.py --draws 1000 --share 0.25 \
        --llmfao-share 0.7 --bt-draws 100 --figure docs/winrate_llmfao_leaderboard.png
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from marc_ray.datasets import load_dataset, load_verdicts
from marc_ray.winrate import ppi
from marc_ray.winrate.render import _png, plot_leaderboard

JUDGES = {"pandalm": "gpt-3.5-turbo", "llmfao": "gpt-4"}
DELTA = 0.1


TIE_POLICY = {"pandalm": "drop", "llmfao": "disagree"}  # LLMFAO: 39% of votes are ties


def items(name: str):
    """(model_a, model_b, judge P(a better), human outcome for a, ties dropped) of a data set;
    tie policy ``drop`` leaves tied items out, ``disagree`` counts a tie as half a win."""
    comparisons = load_dataset(name)
    verdicts = load_verdicts(name).to_pylist()
    verdict = {r["id"]: r["verdict"] for r in verdicts if r["judge"] == JUDGES[name]}
    ids = comparisons.column("id").to_pylist()
    p_a = np.array([{"a": 1.0, "b": 0.0}.get(verdict.get(i), 0.5) for i in ids])
    labels = np.array(comparisons.column("human_label").to_pylist(), dtype=object)
    keep = labels != "tie" if TIE_POLICY[name] == "drop" else np.ones(len(labels), dtype=bool)
    y_a = np.where(labels == "tie", 0.5, (labels == "a").astype(float))
    return (np.array(comparisons.column("model_a").to_pylist(), dtype=object)[keep],
            np.array(comparisons.column("model_b").to_pylist(), dtype=object)[keep],
            p_a[keep], y_a[keep], int((~keep).sum()))


def pair_study(name: str, draws: int, share: float, seed: int) -> list[str]:
    model_a, model_b, p_a, y_a, n_ties = items(name)
    rng = np.random.default_rng(seed)
    rows = []
    for first, second in sorted({tuple(sorted(p)) for p in zip(model_a, model_b)}):
        in_pair = ((model_a == first) & (model_b == second)) | ((model_a == second) & (model_b == first))
        x_is_a = model_a[in_pair] == first
        f = np.where(x_is_a, p_a[in_pair], 1 - p_a[in_pair])
        y = np.where(x_is_a, y_a[in_pair], 1 - y_a[in_pair])
        n_items, truth = len(y), float(y.mean())
        n = int(round(share * n_items))
        order = np.argsort(rng.random((draws, n_items)), axis=1)  # a random labelled set per draw
        labelled, unlabelled = order[:, :n], order[:, n:]
        tuned = ppi.ppi_mean(y[labelled], f[labelled], f[unlabelled], DELTA)
        human = ppi.ppi_mean(y[labelled], f[labelled], f[unlabelled], DELTA, lam=0.0)
        cover = lambda e: np.mean((e.low <= truth) & (truth <= e.high))  # noqa: E731
        rows.append(f"| {first} vs {second} | {n_items} | {n} | {truth:.3f} | {f.mean():.3f} "
                    f"({f.mean() - truth:+.3f}) | {np.mean(tuned.estimate):.3f} | "
                    f"{cover(tuned):.3f} | {cover(human):.3f} | {np.mean(tuned.width):.3f} | "
                    f"{np.mean(human.width):.3f} | {np.mean(tuned.lam):.2f} |")
    header = [f"**{name}** (judge {JUDGES[name]}; tie policy {TIE_POLICY[name]}: {n_ties} human ties dropped; {share:.0%} of each "
              f"pair's items labelled, {draws} random labelled sets; δ = {DELTA})", "",
              "| pair (X vs Y) | items | labelled | true win rate of X (all labels) | judge-only "
              "(bias) | PPI++ mean estimate | PPI++ coverage | human-only coverage | PPI++ width | "
              "human-only width | mean λ |", "|" + "---|" * 11]
    return header + rows


def _enough(first, second, labelled, n_models: int) -> np.ndarray:
    """Models with at least MIN_LABELLED_PER_MODEL labelled items, items of others removed
    (repeated until stable, as ``winrate.estimate.leaderboard`` with ``--sparse skip``)."""
    keep_model = np.ones(n_models, dtype=bool)
    while True:
        items_kept = keep_model[first] & keep_model[second]
        counts = np.bincount(first[labelled & items_kept], minlength=n_models) + \
            np.bincount(second[labelled & items_kept], minlength=n_models)
        short = keep_model & (counts < ppi.MIN_LABELLED_PER_MODEL)
        if not short.any():
            return keep_model
        keep_model &= ~short


def _fits(first, second, y_a, p_a, labelled, n_models):
    args = (first[labelled], second[labelled], y_a[labelled], p_a[labelled],
            first[~labelled], second[~labelled], p_a[~labelled], n_models, DELTA)
    return ppi.bradley_terry(*args), ppi.bradley_terry(*args, lam=0.0)


def leaderboard_study(name: str, share: float, seed: int, draws: int, figure: str | None) -> list[str]:
    model_a, model_b, p_a, y_a, n_ties = items(name)
    all_models = sorted(set(model_a) | set(model_b))
    index = {m: k for k, m in enumerate(all_models)}
    first = np.array([index[m] for m in model_a])
    second = np.array([index[m] for m in model_b])
    rng = np.random.default_rng(seed)
    none = first[:0]
    covered, covered_h, widths, widths_h, kept_counts = [], [], [], [], []
    for draw in range(draws):
        labelled = rng.random(len(y_a)) < share
        keep_model = _enough(first, second, labelled, len(all_models))
        models = [m for m, k in zip(all_models, keep_model) if k]
        if len(models) < 2:
            return [f"**{name}**: at {share:.0%} labelled, fewer than 2 models keep "
                    f"{ppi.MIN_LABELLED_PER_MODEL} labelled items: no leaderboard."]
        remap = -np.ones(len(all_models), dtype=int)
        remap[keep_model] = np.arange(keep_model.sum())
        rows = keep_model[first] & keep_model[second]
        f1, s1 = remap[first[rows]], remap[second[rows]]
        truth = ppi.bradley_terry(f1, s1, y_a[rows], p_a[rows], none, none, p_a[:0], len(models),
                                  DELTA, lam=0.0)
        tuned, human = _fits(f1, s1, y_a[rows], p_a[rows], labelled[rows], len(models))
        covered.append(np.mean((tuned.low <= truth.strength) & (truth.strength <= tuned.high)))
        covered_h.append(np.mean((human.low <= truth.strength) & (truth.strength <= human.high)))
        widths.append(np.mean(tuned.high - tuned.low))
        widths_h.append(np.mean(human.high - human.low))
        kept_counts.append(len(models))
    judge = ppi.bradley_terry(f1, s1, p_a[rows], p_a[rows], none, none, p_a[:0], len(models), DELTA,
                              lam=0.0)
    order = np.argsort(-tuned.strength)
    lines = [f"**{name}** Bradley–Terry leaderboard (judge {JUDGES[name]}; {len(all_models)} models, "
             f"{len(y_a)} items, tie policy {TIE_POLICY[name]} ({n_ties} dropped); {share:.0%} labelled per draw, "
             f"{draws} draws; models with fewer than {ppi.MIN_LABELLED_PER_MODEL} labelled items "
             f"left out: {np.mean(kept_counts):.1f} models kept on average; δ = {DELTA}). "
             f"Truth: the fit on every human label of the kept models' items.", "",
             f"- share of (model, draw) whose interval holds the all-label strength: PPI++ "
             f"{np.mean(covered):.3f}, human-only {np.mean(covered_h):.3f}",
             f"- mean interval width: PPI++ {np.mean(widths):.2f}, human-only {np.mean(widths_h):.2f}",
             f"- last draw (λ = {tuned.lam:.2f}): mean absolute error to the truth: judge-only "
             f"{np.mean(np.abs(judge.strength - truth.strength)):.2f}, PPI++ "
             f"{np.mean(np.abs(tuned.strength - truth.strength)):.2f}, human-only "
             f"{np.mean(np.abs(human.strength - truth.strength)):.2f}; Spearman rank correlation "
             f"with the truth: judge-only {_spearman(judge.strength, truth.strength):.3f}, PPI++ "
             f"{_spearman(tuned.strength, truth.strength):.3f}, human-only "
             f"{_spearman(human.strength, truth.strength):.3f}", "",
             "Last draw, top of the board:", "",
             "| rank | model | PPI++ strength [90% interval] | human-only [interval] | judge-only | all-label truth |",
             "|---|---|---|---|---|---|"]
    for rank, k in enumerate(order[:8], start=1):
        lines.append(f"| {rank} | {models[k]} | {tuned.strength[k]:+.2f} [{tuned.low[k]:+.2f}, "
                     f"{tuned.high[k]:+.2f}] | {human.strength[k]:+.2f} [{human.low[k]:+.2f}, "
                     f"{human.high[k]:+.2f}] | {judge.strength[k]:+.2f} | {truth.strength[k]:+.2f} |")
    if len(models) > 8:
        lines.append(f"| … | ({len(models) - 8} more) | | | | |")
    if figure:
        top = order[:15]
        record = {"delta": DELTA, "leaderboard": {"models": [
            {"model": models[k], "strength": tuned.strength[k], "low": tuned.low[k],
             "high": tuned.high[k], "human_only_low": human.low[k], "human_only_high": human.high[k],
             "judge_only": judge.strength[k]} for k in top]}}
        with open(figure, "wb") as out:
            out.write(_png(plot_leaderboard(record)))
    return lines


def _spearman(a, b) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--share", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--llmfao-share", type=float, default=0.7,
                        help="LLMFAO's labelled share (a median of 39 items per model)")
    parser.add_argument("--bt-draws", type=int, default=100, help="draws of the leaderboard study")
    parser.add_argument("--figure", default=None, help="PNG of LLMFAO's top-15 leaderboard")
    args = parser.parse_args()
    started = time.perf_counter()
    lines = pair_study("pandalm", args.draws, args.share, args.seed) + [""]
    lines += leaderboard_study("pandalm", args.share, args.seed, args.bt_draws, None) + [""]
    lines += leaderboard_study("llmfao", args.llmfao_share, args.seed, args.bt_draws, args.figure)
    print("\n".join(lines))
    print(f"\n({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
