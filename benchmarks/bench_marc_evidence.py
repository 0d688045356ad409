"""The MARC evidence table (issue 13): every measure, held out, over seeded splits, one command.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_marc_evidence.py [--seeds 5] [--epochs 30]
        [--datasets llmbar,pandalm,llmfao,trap] [--out FILE]
        [--annotations demo=runs/demo/annotate/SmolLM2-135M-Instruct]

Data: annotation files given with ``--annotations`` (a demo run's), the LLMBar, PandaLM and
LLMFAO judge panels replayed from the verdicts shipped with each
dataset (``marc_ray.annotate.replay.panel_annotations``: the target judge's own verdicts are the
zero-shot runs, every (judge, prompt variant) is a simulated annotator, as
``marc_ray.benchmark`` builds them), and generated non-monotone data
(``marc_ray.fit.synthetic.trap_annotations``, 1,500 items, 5 annotators x 31 shot subsets).

Per dataset and seed the items (whole groups where a dataset has shared prompts) are split
40% fit / 30% calibration / 30% test. On the fit part: vanilla, MARC on human labels, MARC on
simulated labels (leave out the annotator with the most verdicts, ``FitConfig(label_mode="simulated")``), the
agreement map, and the automatic choice (``calibrate.select.choose_confidence_table`` on the
MARC model's validation ids, α = 0.15). Reported on held-out items only: AUROC against *human*
agreement (calibration + test parts) with a 95% interval over seeds (t), certified coverage of
fixed-sequence testing on the calibration part at α = 0.1 / 0.15 / 0.2 (δ = 0.1, fixed grid of
200), and γ̂ (final, min-max over seeds, and whether any epoch's γ̂ hit the range's edge).

Transfer: simulated vs human disagreement on the held-out items, binned by the panel's
conf_simulated deciles: a weighted mean absolute difference of the per-bin disagreement rates,
and a two-sample KS test (``scipy.stats.ks_2samp``) between the conf_simulated values of the
items humans disagree with and those the held-out annotator disagrees with.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings

import numpy as np
import pyarrow as pa
from scipy import stats

from marc_ray.annotate.replay import panel_annotations
from marc_ray.calibrate import SelectiveCalibrator, auroc
from marc_ray.calibrate.select import choose_confidence_table, validity_study_auto
from marc_ray.contracts import agreement
from marc_ray.datasets import get_dataset
from marc_ray.fit import FitConfig, MarcConfidence
from marc_ray.contracts import layout_of
from marc_ray.fit.labels import simulated_view
from marc_ray.fit.synthetic import trap_annotations

ALPHAS = (0.1, 0.15, 0.2)
DELTA = 0.1
AUTO_ALPHA = 0.15
PANELS = {"llmbar": ("GPT-4", "item"), "pandalm": ("gpt-3.5-turbo", "group"),
          "llmfao": ("gpt-4", "group")}
MEASURES = ("predictive", "simulated", "vanilla", "marc", "marc_sim", "auto")


EXTRA: dict[str, str] = {}  # --annotations NAME=PATH: annotation files (e.g. a demo run's)


def load(name: str) -> pa.Table:
    """An annotation table with usable rows only (a verdict and at least one run)."""
    if name == "trap":
        return trap_annotations(1500, seed=0)
    if name in EXTRA:
        from marc_ray.contracts import read_table

        table = read_table(EXTRA[name])
        keep = [p is not None for p in table.column("pred").to_pylist()]
        return table.filter(pa.array(keep))
    target, _ = PANELS[name]
    dataset = get_dataset(name)
    table = panel_annotations(dataset.load_verdicts(None), target, comparisons=dataset.load(None),
                              source=name)
    pred = table.column("pred").to_pylist()
    probs = table.column("probs").to_pylist()
    keep = [p is not None and any(v is not None and math.isfinite(v) for v in row)
            for p, row in zip(pred, probs)]
    return table.filter(pa.array(keep))


def split(table: pa.Table, by: str, seed: int) -> pa.Table:
    """split = train (40%) / calibration (30%) / test (30%), by item or by group."""
    ids = table.column("id").to_pylist()
    groups = table.column("group").to_pylist() if by == "group" else ids
    keys = np.array([str(g) if g is not None else f"id:{i}" for g, i in zip(groups, ids)])
    unique = np.random.default_rng([seed, 13]).permutation(np.unique(keys))
    rank = {k: r / len(unique) for r, k in enumerate(unique)}
    names = ["train" if rank[k] < 0.4 else "calibration" if rank[k] < 0.7 else "test" for k in keys]
    return table.set_column(table.column_names.index("split"), "split", pa.array(names, pa.string()))


def column(table: pa.Table, name: str) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in table.column(name).to_pylist()], float)


def pseudo_human(table: pa.Table) -> tuple[int, pa.Table]:
    """The simulated annotator with the most full-shot verdicts (panels have uneven coverage),
    and the table without the rows on which no other annotator has a run (the simulated-label
    model could not score them; every measure is compared on the same rows)."""
    from marc_ray.fit.labels import annotator_runs

    layout = layout_of(table, "<panel>")
    full = layout.full_subset_index
    probs = np.array([[np.nan if v is None else v for v in row]
                      for row in table.column("probs").to_pylist()], dtype=float)
    counts = [np.isfinite(probs[:, [layout.run_index(j, full, o) for o in range(len(layout.orders))]]
                          ).any(axis=1).sum() for j in range(layout.n_annotators)]
    annotator = int(np.argmax(counts))
    others = np.ones(layout.n_runs, dtype=bool)
    others[annotator_runs(layout, annotator)] = False
    keep = np.isfinite(probs[:, others]).any(axis=1)
    return annotator, table.filter(pa.array(keep))


def transfer(held: pa.Table, source: str, annotator: int) -> dict:
    """Simulated (``annotator`` held out) vs human disagreement on the held-out items."""
    pred = np.asarray(held.column("pred").to_pylist(), dtype=object)
    human_agree, human_kept = agreement(pred, np.asarray(held.column("human_label").to_pylist(),
                                                         dtype=object), "drop")
    sim = simulated_view(held, annotator, source)
    sim_pred = np.asarray(sim.column("pred").to_pylist(), dtype=object)
    sim_labels = np.asarray(sim.column("human_label").to_pylist(), dtype=object)
    both = human_kept & np.isin(sim_labels, ["a", "b"]) & (sim_pred != None)  # noqa: E711
    conf = column(held, "conf_simulated")[both]
    human_dis = pred[both] != np.asarray(held.column("human_label").to_pylist(), dtype=object)[both]
    sim_dis = sim_pred[both] != sim_labels[both]
    edges = np.unique(np.quantile(conf, np.linspace(0, 1, 11)))
    bins = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, len(edges) - 2)
    gap = sum(abs(human_dis[bins == b].mean() - sim_dis[bins == b].mean()) * (bins == b).mean()
              for b in np.unique(bins))
    ks = stats.ks_2samp(conf[human_dis], conf[sim_dis]) if human_dis.any() and sim_dis.any() else None
    return {"n": int(both.sum()), "human_rate": float(human_dis.mean()),
            "sim_rate": float(sim_dis.mean()), "bin_gap": float(gap),
            "ks": float(ks.statistic) if ks else math.nan, "ks_p": float(ks.pvalue) if ks else math.nan}


def run_seed(table: pa.Table, by: str, seed: int, epochs: int, name: str, annotator: int) -> dict:
    table = split(table, by, seed)
    splits = np.asarray(table.column("split").to_pylist())
    held = table.filter(pa.array(splits != "train"))
    calib = table.filter(pa.array(splits == "calibration"))
    base = dict(epochs=epochs, random_state=seed, train_splits=("train",))
    models = {"vanilla": MarcConfidence(FitConfig(variant="vanilla", **base)),
              "marc": MarcConfidence(FitConfig(**base)),
              "marc_sim": MarcConfidence(FitConfig(label_mode="simulated", held_out_annotator=annotator, **base))}
    for m in models.values():
        m.fit(table, source=name)
    scored = {}
    for part, rows in (("held", held), ("calib", calib), ("train", table)):
        conf = {"predictive": column(rows, "conf_predictive"),
                "simulated": column(rows, "conf_simulated")}
        conf["predictive"] = np.where(np.isfinite(conf["predictive"]), conf["predictive"], 0.5)
        for key, m in models.items():
            conf[key] = m.score(rows, source=name)
        scored[part] = conf
    # auto: chosen on the human-label MARC model's validation ids (training rows only)
    train_rows = table
    for key in ("vanilla", "marc", "marc_sim"):
        train_rows = _with(train_rows, f"conf_{key}", scored["train"][key])
    train_rows = _with(train_rows, "conf_predictive", scored["train"]["predictive"])
    n_cal = calib.num_rows
    choice = choose_confidence_table(
        train_rows, AUTO_ALPHA, DELTA, n_cal, validation_ids=models["marc"].valid_ids_,
        training_splits=("train",),
        candidates=["conf_predictive", "conf_simulated", "conf_vanilla", "conf_marc", "conf_marc_sim"],
        learned=["conf_vanilla", "conf_marc", "conf_marc_sim"])  # trained ones lose ties
    chosen = choice["choice"][len("conf_"):]
    for part in ("held", "calib"):
        scored[part]["auto"] = scored[part][chosen]
    out = {"choice": chosen, "gamma": {}, "edge": {}}
    h_pred = np.asarray(held.column("pred").to_pylist(), dtype=object)
    h_agree, h_kept = agreement(h_pred, np.asarray(held.column("human_label").to_pylist(),
                                                   dtype=object), "drop")
    c_pred = calib.column("pred").to_pylist()
    c_human = calib.column("human_label").to_pylist()
    for measure in MEASURES:
        out[measure] = {"auroc": auroc(scored["held"][measure][h_kept], h_agree)}
        cal = SelectiveCalibrator(alpha=list(ALPHAS), delta=DELTA).calibrate(
            scored["calib"][measure], c_pred, c_human)
        out[measure]["coverage"] = [float(c) for c in np.atleast_1d(cal.coverage_)]
    for key in ("marc", "marc_sim"):
        out["gamma"][key] = models[key].gamma_
        out["edge"][key] = any(h["gamma_at_edge"] for h in models[key].history_)
    # the collapse guard: the epoch kept, and the validation AUROC there and at the last epoch
    out["kept"] = {key: (m.best_epoch_, m.history_[m.best_epoch_]["valid_auroc"],
                         m.history_[-1]["valid_auroc"]) for key, m in models.items()}
    out["transfer"] = transfer(held, name, annotator)
    # the guarantee with the choice re-run in every repetition (population design: the held-out
    # items are the population; validation sets as large as the model's, calibration as here)
    study, _ = validity_study_auto(
        {m: np.where(np.isfinite(scored["held"][m][h_kept]), scored["held"][m][h_kept], -np.inf)
         for m in ("predictive", "simulated", "vanilla", "marc", "marc_sim")}, h_agree,
        AUTO_ALPHA, DELTA, n_repetitions=1000, validation_size=max(20, len(models["marc"].valid_ids_)),
        calibration_size=n_cal, design="population", random_state=seed,
        learned=("vanilla", "marc", "marc_sim"))
    out["auto_validity"] = (study.success_rate, study.mean_coverage)
    return out


def _with(table, name, values):
    array = pa.array(np.asarray(values, dtype=float))
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, array)
    return table.append_column(name, array)


def _ci(values) -> str:
    values = np.asarray([v for v in values if np.isfinite(v)])
    if len(values) < 2:
        return f"{values.mean():.3f}" if len(values) else "n/a"
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return f"{values.mean():.3f} ± {half:.3f}"


def render(results: dict, seeds: int, epochs: int, seconds: float, command: str) -> str:
    lines = [f"Command: `{command}` ({seeds} seeds, {epochs} epochs, {seconds:.0f} s).", "",
             "| data | measure | held-out AUROC (95% CI over seeds) | certified coverage α=0.1 / 0.15 / 0.2 | γ̂ (min–max) | kept epoch per seed (validation AUROC kept / last, mean) |",
             "|---|---|---|---|---|---|"]
    for name, runs in results.items():
        for measure in MEASURES:
            cov = np.array([r[measure]["coverage"] for r in runs])
            gamma = ""
            if measure in ("marc", "marc_sim"):
                g = [r["gamma"][measure] for r in runs]
                edge = sum(r["edge"][measure] for r in runs)
                gamma = f"{min(g):.3f}–{max(g):.3f}" + (f" (edge in {edge} runs)" if edge else "")
            kept = ""
            if measure in ("vanilla", "marc", "marc_sim"):
                k = [r["kept"][measure] for r in runs]
                kept = (", ".join(str(e + 1) for e, _, _ in k) + f" ({np.nanmean([a for _, a, _ in k]):.3f}"
                        f" / {np.nanmean([b for _, _, b in k]):.3f})")
            label = measure if measure != "auto" else \
                "auto (" + ", ".join(f"{c}×{n}" for c, n in
                                     zip(*np.unique([r["choice"] for r in runs], return_counts=True))) + ")"
            lines.append(f"| {name} | {label} | {_ci([r[measure]['auroc'] for r in runs])} | "
                         + " / ".join(f"{v:.3f}" for v in cov.mean(axis=0)) + f" | {gamma} | {kept} |")
    lines += ["", "Transfer (held-out items; simulated labels = the annotator with the most verdicts left out):", "",
              "| data | MARC human labels AUROC | MARC simulated labels AUROC | human / simulated disagreement rate | per-bin gap (weighted L1) | KS statistic (p) |",
              "|---|---|---|---|---|---|"]
    for name, runs in results.items():
        t = [r["transfer"] for r in runs]
        lines.append(f"| {name} | {_ci([r['marc']['auroc'] for r in runs])} | "
                     f"{_ci([r['marc_sim']['auroc'] for r in runs])} | "
                     f"{np.mean([x['human_rate'] for x in t]):.3f} / {np.mean([x['sim_rate'] for x in t]):.3f} | "
                     f"{np.mean([x['bin_gap'] for x in t]):.3f} | "
                     f"{np.mean([x['ks'] for x in t]):.3f} (median p {np.median([x['ks_p'] for x in t]):.2g}) |")
    lines += ["", f"`auto` inside every repetition (population design, 1,000 repetitions per seed, "
              f"α = {AUTO_ALPHA}, δ = {DELTA}; success = agreement on accepted items ≥ 1 − α):", "",
              "| data | success rate (mean over seeds, min) | mean coverage |", "|---|---|---|"]
    for name, runs in results.items():
        rates = [r["auto_validity"][0] for r in runs]
        lines.append(f"| {name} | {np.mean(rates):.3f} (min {min(rates):.3f}) | "
                     f"{np.mean([r['auto_validity'][1] for r in runs]):.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--datasets", default="llmbar,pandalm,llmfao,trap")
    parser.add_argument("--out", default=None, help="also write the table to this file")
    parser.add_argument("--annotations", action="append", default=[], metavar="NAME=PATH",
                        help="an annotation file or folder to add as data set NAME (e.g. "
                             "demo=runs/demo/annotate/SmolLM2-135M-Instruct); repeatable")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=UserWarning)
    started = time.perf_counter()
    results = {}
    names = [n.split("=", 1)[0] for n in args.annotations]
    EXTRA.update(dict(n.split("=", 1) for n in args.annotations))
    for name in names + args.datasets.split(","):
        t0 = time.perf_counter()
        annotator, table = pseudo_human(load(name))
        by = PANELS[name][1] if name in PANELS else "group" if name in EXTRA else "item"
        results[name] = [run_seed(table, by, seed, args.epochs, name, annotator)
                         for seed in range(args.seeds)]
        print(f"{name}: {table.num_rows} items, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    command = "PYTHONPATH=. python benchmarks/bench_marc_evidence.py " + " ".join(argv or sys.argv[1:])
    text = render(results, args.seeds, args.epochs, time.perf_counter() - started, command.strip())
    print(text)
    if args.out:
        from marc_ray.contracts import write_text_atomic
        write_text_atomic(text, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
