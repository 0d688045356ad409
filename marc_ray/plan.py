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
* **engine time** and worker- / GPU-hours, from (in this order of preference) a throughput given
  per engine worker (tokens/s of prefill with reuse, or runs/s), a short probe of the configured
  engine on a few items in this process (automatic for the transformers and HTTP engines; vLLM on
  request, since its engine takes 20-60 s to start), or the documented prior
  :data:`EFFECTIVE_PREFILL_FLOPS` per device and the model's size; GPU-hours count every GPU of a
  replica (``tensor_parallel_size × pipeline_parallel_size`` for vLLM);
* the **state of the run folder**: which stages a previous run finished, and how many annotate
  shards each judge already has (a rerun resumes from there);
* the **human labels** the calibration split needs for the chosen alpha and delta
  (:func:`marc_ray.calibrate.diagnostics.calibration_size`: the Clopper–Pearson bound);
* the **expected cost per item** at deployment, per judge and for the cascade: the judge's cost
  (``calibrate.costs``; 1 per judge without them: judge calls per item) times the predicted
  share of items reaching it (:func:`expected_costs`).
"""

from __future__ import annotations

import json
import math
import tempfile
import time

import numpy as np

from .annotate.engines import engine_spec
from .contracts.validation import check_number

Z95 = 1.959963984540054  # standard normal 97.5% quantile
TOKEN_SAMPLE = 200  # items whose prompts are tokenised by default (a seeded sample; --exact-tokens: all)
PROBE_ITEMS = 2     # items the automatic probe judges (transformers, http): a few seconds
PROBE_SECONDS = 3.0  # the automatic probe stops after this much engine time (plan answers in ~10 s)

# The prior used when no probe can run: the effective prefill throughput of one device, in
# FLOP/s. Prefill costs about 2 FLOP per parameter per token (Kaplan et al., "Scaling laws for
# neural language models", 2020, section 2.1), so tokens/s = FLOP/s / (2 x parameters). GPUs:
# 40% of the dense bf16 peak of the vendor's data sheet (L4 121, A100 312, H100/H200 989 TFLOP/s),
# a typical utilisation of long-prompt prefill in vLLM. cpu: one transformers engine worker (one
# thread) on the 2-core development machine, measured: SmolLM2-135M prefilled 263 tokens/s
# (docs/benchmarks_scale.md), i.e. 2 x 135e6 x 263 = 7.1e10 FLOP/s. A prior is rough (within a
# factor of 2 at best): `marc-ray plan --probe N` measures the configured engine instead.
EFFECTIVE_PREFILL_FLOPS = {"cpu": 2 * 135e6 * 263, "L4": 0.4 * 121e12, "A100": 0.4 * 312e12,
                           "H100": 0.4 * 989e12, "H200": 0.4 * 989e12}
DEFAULT_GPU = "H100"  # the prior's device for a judge that runs on GPUs, unless --gpu names one


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


def token_counts(job_plan, tokenizer, sample: int | None = TOKEN_SAMPLE, seed: int = 0) -> dict:
    """Prompt and prefill tokens of every run of ``job_plan`` (an ``annotate.job.Plan``): exact
    when ``sample`` is None or covers every item, else from a seeded sample of ``sample`` items
    with a 95% interval on each total."""
    builder = job_plan.builder
    count = _token_counter(tokenizer)
    prefix_tokens = [count(prefix, first=True) for _, prefix, _ in builder.groups]
    runs_per_group = [len(runs) for _, _, runs in builder.groups]
    likelihood = builder.mode == "likelihood"
    n_items = job_plan.n_items
    exact = sample is None or n_items <= sample
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


def probe(job_plan, n_items: int, max_seconds: float | None = None) -> dict:
    """Time the configured engine on the runs of the first ``n_items`` items, in this process.

    With ``max_seconds`` (the automatic probe), the first engine call is a warm-up, left out of
    the rate (a model's first forward pass costs several later ones: a 3-second probe that
    counted it came out 23% slow on the demo), and the probe stops after the first call that
    ends past ``max_seconds``: the rate is measured on the runs done, which is all a rate needs.
    """
    from .annotate import job

    config = job_plan.config
    try:  # the probe's model load is ours, not the user's: no "Loading weights" bar
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    start = time.perf_counter()
    engine = engine_spec(config.engine).factory(config)  # the engine the stage runs
    load_s = time.perf_counter() - start
    items = job_plan.comparisons.slice(0, n_items).to_pylist()
    batch = config.batch_size * job.ROWS_PER_CALL_FACTOR  # what one engine call gets in the job
    calls = [rows[lo:lo + batch] for group in range(len(job_plan.builder.groups))
             for rows in [job_plan.builder.runs_for_group(items, group)]
             for lo in range(0, len(rows), batch)]
    warmup_s, prefill_before = 0.0, 0
    if max_seconds is not None and len(calls) > 1:
        started = time.perf_counter()
        engine.judge(calls.pop(0))
        warmup_s = time.perf_counter() - started
        prefill_before = getattr(engine, "n_prefill_tokens_", None) or 0
    n_runs = 0
    start = time.perf_counter()
    for rows in calls:
        engine.judge(rows)
        n_runs += len(rows)
        if max_seconds is not None and time.perf_counter() - start >= max_seconds:
            break
    seconds = time.perf_counter() - start
    out = {"items": len(items), "runs": n_runs, "seconds": round(seconds, 2),
           "load_seconds": round(load_s, 2), "warmup_seconds": round(warmup_s, 2),
           "runs_per_s": n_runs / seconds}
    prefill = getattr(engine, "n_prefill_tokens_", None)
    if prefill:
        out["prefill_tokens"] = int(prefill) - prefill_before
        out["tokens_per_s"] = out["prefill_tokens"] / seconds
    return out


def _count_rows(path: str | None) -> int | None:
    """Rows of a replay run table (Parquet from its metadata; JSON lines by counting lines)."""
    from .contracts.io import is_parquet, read_bytes

    if not path:
        return None
    try:
        if is_parquet(path):
            import pyarrow.dataset as pa_dataset

            return pa_dataset.dataset(path).count_rows()
        return sum(1 for line in read_bytes(path).splitlines() if line.strip())
    except (OSError, ValueError):
        return None


def model_parameters(spec: str | None) -> float | None:
    """The judge's parameter count, from its ``config.json`` (no weights are loaded), or from a
    size in its name ("...-70B-..."); None when neither tells.

    Per layer: attention 2·h² + 2·h·(kv heads · head size), a gated MLP 3·h·intermediate; plus
    the embedding (twice when the output layer is not tied to it).
    """
    import re

    if not spec:
        return None
    try:
        from .annotate.models import materialize_model

        config = json.loads(open(f"{materialize_model(spec)}/config.json").read())
        h, layers = config["hidden_size"], config["num_hidden_layers"]
        heads = config.get("num_attention_heads", 1)
        kv_dim = config.get("num_key_value_heads", heads) * config.get("head_dim", h // heads)
        per_layer = 2 * h * h + 2 * h * kv_dim + 3 * h * config.get("intermediate_size", 4 * h)
        embedding = config.get("vocab_size", 0) * h * (1 if config.get("tie_word_embeddings", True) else 2)
        return float(layers * per_layer + embedding)
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
        pass
    match = re.search(r"(\d+(?:\.\d+)?)\s*([bm])(?![a-z])", str(spec).lower())
    if match:
        return float(match.group(1)) * (1e9 if match.group(2) == "b" else 1e6)
    return None


def gpus_per_replica(config) -> int:
    """GPUs one engine replica holds: tensor_parallel_size × pipeline_parallel_size for vLLM on
    GPUs, ``num_gpus_per_worker`` (at least 1) for transformers on CUDA; 0 on CPU and for HTTP
    (a server's GPUs are its own)."""
    return engine_spec(config.engine).gpus_per_replica(config)


def _judge_plan(judge, sample: int, seed: int) -> dict:
    from .annotate.job import prepare
    from .annotate.models import load_tokenizer

    if not engine_spec(judge.engine).judges_items:  # replay
        runs = judge.engine_options.get("runs")
        return {"judge": judge.judge_name or "replay", "engine": "replay", "runs_table": runs,
                "total_runs": _count_rows(runs), "note": "replay: no engine runs, no tokens"}
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
    tokenizer_spec = engine_spec(judge.engine).tokenizer(judge)
    if tokenizer_spec:
        out["tokens"] = token_counts(job_plan, load_tokenizer(tokenizer_spec), sample, seed)
    out["_job_plan"] = job_plan
    return out


def _estimate(judge_plan: dict, throughput: float | None, unit: str, probe_items: int | None,
              gpu: str | None) -> None:
    """Add the engine time (and worker- / GPU-hours) to one judge's plan, in place.

    The rate comes from ``throughput`` if given, else from a probe (``probe_items`` items;
    None: automatic, i.e. :data:`PROBE_ITEMS` for transformers and http, none for vLLM), else
    from the prior :data:`EFFECTIVE_PREFILL_FLOPS` and the model's size.
    """
    import sys

    job_plan = judge_plan.pop("_job_plan", None)
    if job_plan is None:
        return
    config = job_plan.config
    replica_gpus = gpus_per_replica(config)
    device = (gpu or DEFAULT_GPU) if replica_gpus else "cpu"
    automatic = probe_items is None
    if automatic:
        probe_items = PROBE_ITEMS if engine_spec(config.engine).probed_by_plan and not throughput else 0
    rate, source = None, None
    if throughput:
        rate, source = float(throughput), "given"
    elif probe_items:
        try:
            measured = probe(job_plan, probe_items, PROBE_SECONDS if automatic else None)
        except Exception as error:  # noqa: BLE001 - an automatic probe only informs the plan
            if not automatic:
                raise
            from .contracts.redact import redact_text

            judge_plan["probe_failed"] = redact_text(" ".join(f"{type(error).__name__}: {error}".split()))[:300]
            print(f"plan: the probe of {judge_plan['judge']} failed ({judge_plan['probe_failed']}); "
                  "estimating from the prior", file=sys.stderr)
        else:
            judge_plan["probe"] = measured
            if "tokens_per_s" in measured and "tokens" in judge_plan:
                rate, unit, source = measured["tokens_per_s"], "tokens", f"probe of {probe_items} items"
            else:
                rate, unit, source = measured["runs_per_s"], "runs", f"probe of {probe_items} items"
    if rate is None and engine_spec(config.engine).loads_model and "tokens" in judge_plan:
        parameters = model_parameters(config.model)
        if parameters:
            rate = EFFECTIVE_PREFILL_FLOPS[device] * max(replica_gpus, 1) / (2 * parameters)
            unit = "tokens"
            source = (f"prior: {device}, {parameters / 1e9:.3g}B parameters"
                      + (f", {replica_gpus} GPU(s) per replica" if replica_gpus else "")
                      + "; rough, --probe N measures")
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
    judge_plan["estimate"] = {
        "throughput_per_worker": rate, "unit": f"{unit}/s", "source": source, "workers": workers,
        "gpus_per_replica": replica_gpus, "device": device,
        "engine_seconds": round(seconds, 1),
        "engine_seconds_with_load": round(seconds + judge_plan.get("probe", {}).get("load_seconds", 0), 1),
        "worker_hours": round(seconds * workers / 3600, 4),
        "gpu_hours": round(seconds * workers * replica_gpus / 3600, 4)}


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


def build_plan(config, *, sample: int | None = TOKEN_SAMPLE, seed: int = 0,
               throughput: float | None = None, throughput_unit: str = "tokens",
               probe_items: int | None = None, gpu: str | None = None,
               expected_risk: float | None = None, expected_coverage: float = 0.5) -> dict:
    """The plan of a :class:`~marc_ray.config.PipelineConfig` (module docstring); nothing runs.

    The data are prepared as ``marc-ray run`` prepares them (demo generated, splits drawn) but
    into a temporary folder, so the run folder is left untouched. ``sample``: items whose
    prompts are tokenised (None: every item, exact). ``probe_items``: None probes automatically
    where it is cheap (transformers, http), 0 never (the plan inside ``marc-ray run``).
    """
    from .pipeline import prepare_data  # the plan prepares the data as the run does

    if gpu is not None and gpu not in EFFECTIVE_PREFILL_FLOPS:
        raise ValueError(f"--gpu must be one of {sorted(set(EFFECTIVE_PREFILL_FLOPS) - {'cpu'})}, got {gpu!r}")
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
            _estimate(judge_plan, throughput, throughput_unit, probe_items, gpu)
    calibrate = config.calibrate
    return {"config": config.source, "run_dir": config.run_dir, "items": counts["comparisons"],
            "state": run_folder_state(config, judges),
            "splits": {s: counts[s] for s in ("train", "calibration", "test")},
            "judges": judges,
            "calibration": labels_needed(float(calibrate.alpha), float(calibrate.delta),
                                         expected_risk, expected_coverage, counts["calibration"]),
            "expected_cost": expected_costs(config, counts["calibration"])}


WORST_CASE = ("worst case: every item reaches every judge (no scored training items in the run "
              "folder yet to predict from; after a run, `marc-ray plan` predicts from them)")


def expected_costs(config, n_calibration: int) -> dict:
    """Expected cost per item at deployment, per judge and for the cascade.

    Judge ``l`` runs only on the items no earlier judge decided, so its expected cost per item
    is ``cost_l`` × the share of items reaching it, and the cascade's is the sum
    (``calibrate.cost_coverage.expected_cost``). The shares are predicted by the test design
    (``calibrate.design.design_stages``, with the run's ``calibrate.design`` options) on the
    scored training items a previous run left in the run folder; without them, the worst case
    (every item reaches every judge) is stated. Without ``calibrate.costs`` every judge counts
    1 (the cost is then judge calls per item).
    """
    from .annotate.config import judge_name
    from .calibrate.cost_coverage import DEFAULT_COST, expected_cost

    cal = config.calibrate
    names = [judge_name(j) for j in config.judges()]
    costs = [float(c) for c in cal.costs] if cal.costs is not None else [DEFAULT_COST] * len(names)
    reach, source = _predicted_reach(config, names, n_calibration)
    return {"costs_given": cal.costs is not None,
            "unit": "cost per item" if cal.costs is not None else "judge calls per item",
            "source": source,
            "judges": [{"judge": name, "cost": cost, "reach": share, "expected_cost": cost * share}
                       for name, cost, share in zip(names, costs, reach)],
            "cascade": expected_cost(costs, reach)}


def _predicted_reach(config, names: list[str], n_calibration: int) -> tuple[list[float], str]:
    """Per judge, the share of items predicted to reach it, and where the prediction comes from."""
    from .calibrate.design import MIN_TRAINING_ROWS, design_stages
    from .calibrate.stage import design_options, design_rows
    from .contracts import ContractError
    from .contracts.align import aligned_sets
    from .contracts.io import exists

    cal = config.calibrate
    worst = [1.0] * len(names)
    if len(names) == 1:
        return worst, "one judge: it sees every item"
    folder = config.folder
    paths = [folder.scores(name) for name in names]
    measure = cal.confidence
    if not all(exists(path) for path in paths):
        return worst, WORST_CASE
    if measure == "auto":  # the measure is chosen in the calibrate stage; predict on the choice
        from .contracts import Certificate

        if not exists(folder.certificate):
            return worst, WORST_CASE
        measure = Certificate.read(folder.certificate).stages[0]["confidence"]
    try:
        train = aligned_sets(paths, names, measure, cal.by or "group").get("train")
    except (ContractError, OSError, KeyError) as error:
        return worst, f"worst case: every item reaches every judge (the scored files: {error})"
    if train is None or len(train.ids) < MIN_TRAINING_ROWS:
        return worst, (f"worst case: every item reaches every judge (fewer than "
                       f"{MIN_TRAINING_ROWS} scored training items to predict from)")
    design, _ = design_stages(design_rows(train), max(n_calibration, 1), float(cal.alpha),
                              float(cal.delta), n_grid=cal.n_grid, tie_policy=cal.tie_policy,
                              **design_options(cal, len(names)))
    reach = [1.0] * len(names)
    for position, judge in enumerate(design.order):
        reach[judge] = design.predicted_reach[position]
    return reach, (f"predicted by calibrate.design on the {len(train.ids):,} scored training items "
                   f"of {measure} in {folder.path('score')}")


def run_folder_state(config, judges: list[dict]) -> dict:
    """What a previous run left in the run folder: the stages whose manifest is there, and each
    judge's finished annotate shards (a rerun resumes from them; it reruns a stage whose
    settings or inputs changed)."""
    from .annotate.job import DONE_DIR
    from .contracts.io import exists, join, list_names

    folder = config.folder
    if not exists(folder.path()):
        return {"exists": False, "stages": [], "shards": {}}
    try:
        stages = sorted(name[:-len(".json")] for name in list_names(folder.manifests_dir)
                        if name.endswith(".json"))
    except (OSError, FileNotFoundError):
        stages = []
    shards = {}
    for judge_config, judge_plan in zip(config.judges(), judges):
        markers = join(judge_config.output if judge_config.output else "", DONE_DIR)
        try:
            done = sum(1 for name in list_names(markers) if name.endswith(".json"))
        except (OSError, FileNotFoundError):
            done = 0
        shards[judge_plan["judge"]] = {"done": done, "planned": judge_plan.get("shards")}
    return {"exists": True, "stages": stages, "shards": shards}


def _state_text(plan: dict) -> str:
    state = plan.get("state") or {}
    where = f"plan of {plan['config']} (run folder {plan['run_dir']})"
    if not state.get("exists"):
        return f"{where}: the folder does not exist yet; nothing has run"
    finished = ", ".join(state["stages"]) or "none"
    shards = "; ".join(f"{judge} {entry['done']}" + (f" of {entry['planned']}" if entry["planned"] else "")
                       + " annotate shards finished" for judge, entry in state["shards"].items())
    return (f"{where}: stages with a manifest: {finished}" + (f"; {shards}" if shards else "")
            + " (a rerun resumes from these)")


def _tokens_text(entry: dict) -> str:
    if entry["exact"]:
        return f"{entry['total']:,} (exact)"
    low, high = entry["ci95"]
    return f"{entry['total']:,} (95% CI {low:,} to {high:,})"


def format_plan(plan: dict) -> str:
    lines = [_state_text(plan),
             f"items: {plan['items']:,} (train {plan['splits']['train']:,}, calibration "
             f"{plan['splits']['calibration']:,}, test {plan['splits']['test']:,})"]
    for judge in plan["judges"]:
        lines.append(f"judge {judge['judge']} ({judge['engine']}):")
        if not engine_spec(judge["engine"]).judges_items:
            lines.append(f"  {judge['note']}; run table {judge['runs_table']} "
                         f"({'unknown number of' if judge['total_runs'] is None else format(judge['total_runs'], ',')} rows)")
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
                         f"{estimate['worker_hours']:.3g} worker-hours, {estimate['gpu_hours']:.3g} GPU-hours"
                         + (f" ({estimate['gpus_per_replica']} GPUs per replica)"
                            if estimate["gpus_per_replica"] > 1 else ""))
        else:
            lines.append("  engine time: unknown (no probe could run and the model's size is "
                         "unknown); give --throughput (per worker) or --probe N")
    cal = plan["calibration"]
    needed = cal["labels_needed"]
    lines.append(f"calibration (alpha {cal['alpha']:g}, delta {cal['delta']:g}): at least "
                 f"{cal['accepted_min_zero_errors']} accepted items even with no disagreement; at "
                 f"an expected disagreement of {cal['expected_risk']:.1%} among accepted items, "
                 f"{cal['accepted_needed_at_expected_risk']:.0f} accepted, so about "
                 + (f"{needed:,} human-labelled calibration items at {cal['expected_coverage']:.0%} "
                    f"coverage" if not math.isinf(needed) else "no finite number of labels")
                 + f" (configured: {cal['calibration_items_configured']:,})")
    lines += _cost_lines(plan.get("expected_cost"))
    return "\n".join(lines)


def _cost_lines(cost: dict | None) -> list[str]:
    if not cost or (len(cost["judges"]) == 1 and not cost["costs_given"]):
        return []  # one judge without a price: nothing to say beyond "1 call per item"
    unit = cost["unit"]
    head = (f"expected {unit} at deployment ({cost['source']}"
            + ("" if cost["costs_given"] else "; no calibrate.costs given: every judge counts 1")
            + "):")
    lines = [head]
    for judge in cost["judges"]:
        lines.append(f"  {judge['judge']}: cost {judge['cost']:g} x {judge['reach']:.1%} of items "
                     f"reaching it = {judge['expected_cost']:.3g}")
    if len(cost["judges"]) > 1:
        lines.append(f"  cascade: {cost['cascade']:.3g} per item (each judge alone: its own cost)")
    return lines


def print_run_plan(config) -> bool:
    """``marc-ray run``: print the plan before the run starts; False when it cannot be made
    (the run's own validation then reports the problem)."""
    import sys

    try:  # a few seconds: sampled tokens, the prior's time, no probe (`marc-ray plan` probes)
        print(format_plan(build_plan(config, probe_items=0)), flush=True)
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
    parser.add_argument("--probe", type=_non_negative_int, default=None, metavar="N",
                        help=f"measure the throughput on the first N items with the configured "
                             f"engine (default: {PROBE_ITEMS} for transformers and http, none for "
                             f"vllm, whose engine takes 20-60 s to start; 0: no probe)")
    parser.add_argument("--gpu", choices=sorted(set(EFFECTIVE_PREFILL_FLOPS) - {"cpu"}), default=None,
                        help=f"the GPU type of the prior used when no probe runs (default {DEFAULT_GPU})")
    parser.add_argument("--sample", type=_non_negative_int, default=TOKEN_SAMPLE,
                        help=f"tokenise the prompts of a seeded sample of this many items "
                             f"(default {TOKEN_SAMPLE}); the totals get a 95%% interval")
    parser.add_argument("--exact-tokens", action="store_true",
                        help="tokenise every item's prompts (exact totals; slow on long items)")
    parser.add_argument("--expected-risk", type=float, default=None,
                        help="expected disagreement among accepted items (default alpha / 2)")
    parser.add_argument("--expected-coverage", type=float, default=0.5,
                        help="expected share of calibration items accepted (default 0.5)")


def _non_negative_int(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"an integer >= 0, got {value}")
    return value


def plan_from_args(config, args) -> dict:
    return build_plan(config, sample=None if args.exact_tokens else max(args.sample, 1),
                      throughput=args.throughput, throughput_unit=args.throughput_unit,
                      probe_items=args.probe, gpu=args.gpu,
                      expected_risk=args.expected_risk, expected_coverage=args.expected_coverage)


def _plan(args) -> int:
    from .config import PipelineConfig
    from .contracts.io import json_safe  # strict JSON: inf / NaN as null plus a status

    plan = plan_from_args(PipelineConfig.from_yaml(args.config), args)
    print(json.dumps(json_safe(plan), indent=1, default=str) if args.json else format_plan(plan))
    return 0

