"""``marc-ray plan CONFIG``: what a run will cost, before anything runs.

For each judge of a pipeline configuration:

* **items**, **runs per item** and **total runs**: read off the annotate job's own preparation
  (:func:`marc_ray.annotate.job.prepare`: the run layout, the prompt builder's groups), so they
  are exactly the runs the job will make;
* **prompt tokens** with the judge's own tokenizer, tokenised part by part as the engines do
  (:func:`marc_ray.annotate.engine.encode_parts`): exact up to ``sample`` items, otherwise a
  seeded sample of items with a 95% confidence interval on the total (normal approximation with
  the finite-population correction; the shared prefixes are always counted exactly);
* **prefill tokens** without reuse (every run prefills its whole prompt) and with shared-prefix
  reuse (each (annotator, subset) prefix once per shard, and in likelihood mode the two orders of
  an item share their two sequences, as the transformers engine runs them);
* **engine time** and worker- / GPU-hours, from a throughput given per engine worker (tokens/s
  of prefill with reuse, or runs/s), or measured by a short probe of the configured engine on a
  few items in this process;
* the **human labels** the calibration split needs for the chosen alpha and delta
  (:func:`marc_ray.calibrate.diagnostics.calibration_size`: the Clopper–Pearson bound).
"""

from __future__ import annotations

import json
import math
import tempfile
import time

import numpy as np

from .contracts.validation import check_number

Z95 = 1.959963984540054  # standard normal 97.5% quantile


def _token_counter(tokenizer):
    from .annotate.engine import encode_parts

    memo: dict[str, int] = {}

    def count(text: str, first: bool = False) -> int:
        if first:
            return len(encode_parts(tokenizer, [text])[0])
        if text not in memo:
            memo[text] = len(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0
        return memo[text]

    return count


def token_counts(job_plan, tokenizer, sample: int = 500, seed: int = 0) -> dict:
    """Prompt and prefill tokens of every run of ``job_plan`` (an ``annotate.job.Plan``)."""
    builder = job_plan.builder
    count = _token_counter(tokenizer)
    prefix_tokens = [count(prefix, first=True) for _, prefix, _ in builder.groups]
    runs_per_group = [len(runs) for _, _, runs in builder.groups]
    likelihood = builder.mode == "likelihood"
    n_items = job_plan.n_items
    exact = n_items <= sample
    chosen = (np.arange(n_items) if exact else
              np.sort(np.random.default_rng(seed).choice(n_items, size=sample, replace=False)))
    no_reuse, item_reuse = [], []
    for item in job_plan.comparisons.take(chosen).to_pylist():
        parts = builder.item_parts(item)
        per_order = [count(p["suffix"]) * (2 if likelihood else 1)
                     + count(p["continuation_first"]) + count(p["continuation_second"]) for p in parts]
        full = 0
        reused = 0
        for (_, _, runs), p_tokens in zip(builder.groups, prefix_tokens):
            orders = [order for _, order in runs]
            full += sum((2 if likelihood else 1) * p_tokens + per_order[o] for o in orders)
            # likelihood: ab and ba score the same two sequences, which the engine runs once
            reused += per_order[orders[0]] if likelihood else sum(per_order[o] for o in orders)
        no_reuse.append(full)
        item_reuse.append(reused)
    no_reuse, item_reuse = np.array(no_reuse, float), np.array(item_reuse, float)
    prefix_once = float(sum(prefix_tokens)) * job_plan.n_shards  # each prefix once per shard

    def total(values: np.ndarray, constant: float = 0.0) -> dict:
        estimate = n_items * values.mean() + constant
        if exact:
            return {"total": int(round(estimate)), "exact": True}
        fpc = math.sqrt((n_items - len(values)) / max(n_items - 1, 1))
        half = Z95 * n_items * values.std(ddof=1) / math.sqrt(len(values)) * fpc
        return {"total": int(round(estimate)), "exact": False, "ci95": [int(estimate - half),
                                                                         int(math.ceil(estimate + half))]}

    return {"mode": builder.mode, "sampled_items": int(len(chosen)), "exact": exact,
            "prefix_tokens_per_group": prefix_tokens, "runs_per_group": runs_per_group,
            "prompt_tokens": total(no_reuse),
            "prefill_without_reuse": total(no_reuse),
            "prefill_with_reuse": total(item_reuse, prefix_once),
            "mean_prompt_tokens_per_run": float(no_reuse.mean() / max(sum(runs_per_group), 1))}


def probe(job_plan, n_items: int) -> dict:
    """Time the configured engine on the runs of the first ``n_items`` items, in this process."""
    from .annotate import job

    config = job_plan.config
    if config.engine == "vllm":
        raise ValueError("plan --probe runs the engine in this process, which the vLLM stage does "
                         "not; give --throughput (tokens/s or runs/s of one vLLM worker) instead")
    start = time.perf_counter()
    engine = (job.transformers_factory if config.engine == "transformers" else job.http_factory)(config)
    load_s = time.perf_counter() - start
    items = job_plan.comparisons.slice(0, n_items).to_pylist()
    batch = config.batch_size * job.ROWS_PER_CALL_FACTOR  # what one engine call gets in the job
    n_runs = 0
    start = time.perf_counter()
    for group in range(len(job_plan.builder.groups)):
        rows = job_plan.builder.runs_for_group(items, group)
        for lo in range(0, len(rows), batch):
            engine.judge(rows[lo:lo + batch])
        n_runs += len(rows)
    seconds = time.perf_counter() - start
    out = {"items": len(items), "runs": n_runs, "seconds": round(seconds, 2),
           "load_seconds": round(load_s, 2), "runs_per_s": n_runs / seconds}
    prefill = getattr(engine, "n_prefill_tokens_", None)
    if prefill:
        out["prefill_tokens"] = int(prefill)
        out["tokens_per_s"] = prefill / seconds
    return out


def _judge_plan(judge, sample: int, seed: int) -> dict:
    from .annotate.job import prepare
    from .annotate.models import load_tokenizer

    if judge.engine == "replay":
        import pyarrow.dataset as pa_dataset

        runs = judge.engine_options.get("runs")
        return {"judge": judge.judge_name or "replay", "engine": "replay", "runs_table": runs,
                "total_runs": pa_dataset.dataset(runs).count_rows() if runs and runs.endswith(
                    ".parquet") else None, "note": "replay: no engine runs, no tokens"}
    job_plan = prepare(judge)
    layout = job_plan.builder.layout
    n_items = job_plan.n_items
    runs_per_item = job_plan.builder.runs_per_item
    out = {"judge": job_plan.judge, "engine": judge.engine, "model": judge.model, "mode": judge.mode,
           "items": n_items, "shards": job_plan.n_shards,
           "annotators": layout.n_annotators, "subsets": layout.n_subsets,
           "orders": len(layout.orders), "zero_shot_runs": runs_per_item - layout.n_runs,
           "runs_per_item": runs_per_item, "total_runs": n_items * runs_per_item,
           "num_workers": judge.num_workers}
    tokenizer_spec = (judge.model if judge.engine != "http"
                      else judge.engine_options.get("tokenizer"))
    if tokenizer_spec:
        out["tokens"] = token_counts(job_plan, load_tokenizer(tokenizer_spec), sample, seed)
    out["_job_plan"] = job_plan
    return out


def _estimate(judge_plan: dict, throughput: float | None, unit: str, probe_items: int) -> None:
    """Add the engine time (and worker- / GPU-hours) to one judge's plan, in place."""
    job_plan = judge_plan.pop("_job_plan", None)
    if job_plan is None:
        return
    config = job_plan.config
    rate, source = None, None
    if probe_items:
        measured = probe(job_plan, probe_items)
        judge_plan["probe"] = measured
        if "tokens_per_s" in measured and "tokens" in judge_plan:
            rate, unit, source = measured["tokens_per_s"], "tokens", "probe"
        else:
            rate, unit, source = measured["runs_per_s"], "runs", "probe"
    elif throughput:
        rate, source = float(throughput), "given"
    if rate is None:
        return
    if unit == "tokens":
        if "tokens" not in judge_plan:
            raise ValueError("--throughput-unit tokens needs the judge's tokenizer (for http, "
                             "engine_options.tokenizer); use --throughput-unit runs")
        work = judge_plan["tokens"]["prefill_with_reuse"]["total"]
    else:
        work = judge_plan["total_runs"]
    workers = max(1, int(config.num_workers))
    seconds = work / (rate * workers)
    gpus = config.num_gpus_per_worker or (1.0 if config.engine == "vllm"
                                          or str(config.device).startswith("cuda") else 0.0)
    judge_plan["estimate"] = {
        "throughput_per_worker": rate, "unit": f"{unit}/s", "source": source, "workers": workers,
        "engine_seconds": round(seconds, 1),
        "engine_seconds_with_load": round(seconds + judge_plan.get("probe", {}).get("load_seconds", 0), 1),
        "worker_hours": round(seconds * workers / 3600, 4),
        "gpu_hours": round(seconds * workers * gpus / 3600, 4)}


def labels_needed(alpha: float, delta: float, expected_risk: float | None,
                  expected_coverage: float, n_calibration: int | None) -> dict:
    """The calibration labels (alpha, delta) need, from the report's calibration-size rule."""
    from .calibrate.diagnostics import calibration_size

    risk = alpha / 2 if expected_risk is None else expected_risk
    size = calibration_size(n_calibration or 0, alpha, delta, observed_risk=risk)
    accepted = size["n_needed_at_observed_risk"]
    labels = (math.inf if math.isinf(accepted) else
              int(math.ceil(accepted / expected_coverage)))
    return {"alpha": alpha, "delta": delta, "accepted_min_zero_errors": size["n_min_zero_errors"],
            "expected_risk": risk, "expected_coverage": expected_coverage,
            "accepted_needed_at_expected_risk": accepted,
            "labels_needed": labels, "calibration_items_configured": n_calibration}


def build_plan(config, *, sample: int = 500, seed: int = 0, throughput: float | None = None,
               throughput_unit: str = "tokens", probe_items: int = 0,
               expected_risk: float | None = None, expected_coverage: float = 0.5) -> dict:
    """The plan of a :class:`~marc_ray.config.PipelineConfig` (module docstring); nothing runs.

    The data are prepared as ``marc-ray run`` prepares them (demo generated, splits drawn) but
    into a temporary folder, so the run folder is left untouched.
    """
    from .pipeline import prepare_data  # the plan prepares the data as the run does

    if throughput is not None:  # a rate: -5 would print negative hours, nan would print nan
        check_number("--throughput", throughput, low=0, low_open=True,
                     what=f"a positive, finite number ({throughput_unit}/s of one engine worker)")
    if throughput_unit not in ("tokens", "runs"):
        raise ValueError(f"--throughput-unit must be 'tokens' or 'runs', got {throughput_unit!r}")
    if not 0 < expected_coverage <= 1:
        raise ValueError(f"--expected-coverage must lie in (0, 1], got {expected_coverage}")
    config = config.validate()
    with tempfile.TemporaryDirectory(prefix="marc_ray_plan_") as folder:
        scratch = config.replace(run_dir=folder)
        counts = prepare_data(scratch)
        judges = [_judge_plan(judge, sample, seed) for judge in scratch.judges()]
        for judge_plan in judges:
            _estimate(judge_plan, throughput, throughput_unit, probe_items)
    calibrate = config.calibrate
    return {"config": config.source, "run_dir": config.run_dir, "items": counts["comparisons"],
            "splits": {s: counts[s] for s in ("train", "calibration", "test")},
            "judges": judges,
            "calibration": labels_needed(float(calibrate.alpha), float(calibrate.delta),
                                         expected_risk, expected_coverage, counts["calibration"])}


def _tokens_text(entry: dict) -> str:
    if entry["exact"]:
        return f"{entry['total']:,} (exact)"
    low, high = entry["ci95"]
    return f"{entry['total']:,} (95% CI {low:,} to {high:,})"


def format_plan(plan: dict) -> str:
    lines = [f"plan of {plan['config']} (run folder {plan['run_dir']}): nothing has run yet",
             f"items: {plan['items']:,} (train {plan['splits']['train']:,}, calibration "
             f"{plan['splits']['calibration']:,}, test {plan['splits']['test']:,})"]
    for judge in plan["judges"]:
        lines.append(f"judge {judge['judge']} ({judge['engine']}):")
        if judge["engine"] == "replay":
            lines.append(f"  {judge['note']}; run table {judge['runs_table']} "
                         f"({judge['total_runs']} rows)")
            continue
        lines.append(f"  runs per item: {judge['annotators']} annotators x {judge['subsets']} "
                     f"subsets x {judge['orders']} orders + {judge['zero_shot_runs']} zero-shot "
                     f"= {judge['runs_per_item']}")
        lines.append(f"  total runs: {judge['total_runs']:,} in {judge['shards']} shards")
        tokens = judge.get("tokens")
        if tokens:
            how = ("every item" if tokens["exact"] else
                   f"a seeded sample of {tokens['sampled_items']} items")
            lines.append(f"  prompt tokens ({judge['model']} tokenizer, {how}): "
                         f"{_tokens_text(tokens['prompt_tokens'])}")
            lines.append(f"  prefill tokens: without prefix reuse {_tokens_text(tokens['prefill_without_reuse'])}; "
                         f"with reuse {_tokens_text(tokens['prefill_with_reuse'])}")
        probe_result = judge.get("probe")
        if probe_result:
            rate = (f"{probe_result['tokens_per_s']:,.0f} tokens/s, " if "tokens_per_s" in probe_result else "")
            lines.append(f"  probe: {probe_result['runs']} runs of {probe_result['items']} items in "
                         f"{probe_result['seconds']} s ({rate}{probe_result['runs_per_s']:.1f} runs/s "
                         f"per worker; model load {probe_result['load_seconds']} s)")
        estimate = judge.get("estimate")
        if estimate:
            lines.append(f"  estimated engine time: {estimate['engine_seconds']:,.0f} s on "
                         f"{estimate['workers']} worker(s) at {estimate['throughput_per_worker']:,.1f} "
                         f"{estimate['unit']} each ({estimate['source']}); "
                         f"{estimate['worker_hours']:.3g} worker-hours, {estimate['gpu_hours']:.3g} GPU-hours")
        else:
            lines.append("  engine time: give --throughput (per worker) or --probe N to estimate it")
    cal = plan["calibration"]
    needed = cal["labels_needed"]
    lines.append(f"calibration (alpha {cal['alpha']:g}, delta {cal['delta']:g}): at least "
                 f"{cal['accepted_min_zero_errors']} accepted items even with no disagreement; at "
                 f"an expected disagreement of {cal['expected_risk']:.1%} among accepted items, "
                 f"{cal['accepted_needed_at_expected_risk']:.0f} accepted, so about "
                 + (f"{needed:,} human-labelled calibration items at {cal['expected_coverage']:.0%} "
                    f"coverage" if not math.isinf(needed) else "no finite number of labels")
                 + f" (configured: {cal['calibration_items_configured']:,})")
    return "\n".join(lines)


def print_run_plan(config) -> bool:
    """``marc-ray run``: print the plan before the run starts; False when it cannot be made
    (the run's own validation then reports the problem)."""
    import sys

    try:
        print(format_plan(build_plan(config)), flush=True)
        return True
    except Exception as error:  # noqa: BLE001 - the plan is informative; the run validates itself
        print(f"plan: not available ({type(error).__name__}: {error})", file=sys.stderr, flush=True)
        return False


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "plan", help="print what a run will cost (runs, tokens, engine time, labels) before it runs",
        description=__doc__.split("\n\n")[1] if __doc__ else None)
    parser.add_argument("config", metavar="CONFIG", help="pipeline YAML (as for `marc-ray run`)")
    add_plan_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.set_defaults(handler=_plan)


def add_plan_arguments(parser) -> None:
    parser.add_argument("--throughput", type=float, default=None,
                        help="throughput of ONE engine worker (see --throughput-unit)")
    parser.add_argument("--throughput-unit", choices=("tokens", "runs"), default="tokens",
                        help="tokens: prefill tokens/s with prefix reuse; runs: runs/s (default tokens)")
    parser.add_argument("--probe", type=int, default=0, metavar="N",
                        help="measure the throughput on the first N items with the configured engine")
    parser.add_argument("--sample", type=int, default=500,
                        help="count tokens exactly up to this many items, else on a seeded sample")
    parser.add_argument("--expected-risk", type=float, default=None,
                        help="expected disagreement among accepted items (default alpha / 2)")
    parser.add_argument("--expected-coverage", type=float, default=0.5,
                        help="expected share of calibration items accepted (default 0.5)")


def plan_from_args(config, args) -> dict:
    return build_plan(config, sample=args.sample, throughput=args.throughput,
                      throughput_unit=args.throughput_unit, probe_items=args.probe,
                      expected_risk=args.expected_risk, expected_coverage=args.expected_coverage)


def _plan(args) -> int:
    from .config import PipelineConfig

    plan = plan_from_args(PipelineConfig.from_yaml(args.config), args)
    print(json.dumps(plan, indent=1, default=str) if args.json else format_plan(plan))
    return 0

