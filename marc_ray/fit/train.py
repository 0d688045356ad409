"""Training C_θ: one loop, run locally or on every Ray Train worker.

The loop alternates, each epoch, (θ) ``steps_per_epoch`` AdamW steps on freshly sampled
(agree, disagree) pairs and (γ) a line search over the margin grid minimising the same
objective, MARC's training objective L(θ, γ) = mean softplus surrogate at γ + β·sqrt(Σ‖W‖_F²)/γ,
on the epoch's evaluation pairs (MARC). The bound (:mod:`marc_ray.fit.bound`) is computed at
the chosen γ as a diagnostic only: its O(·) constants are unknown, so it is not minimised as if
they were 1. The "vanilla" variant keeps γ fixed and has no complexity penalty. Every epoch
yields its metrics (loss, γ, every bound term, validation ranking risk) and a checkpoint state
(safetensors weights and optimizer state, JSON state: no pickle), from which a restarted run
resumes; Ray Train reports and keeps one every ``checkpoint_every`` epochs and at the last.

The fitted model is not the last epoch's θ but the epoch :func:`kept_iterate_key` ranks best
(the collapse guard). Without it, two collapses were seen: on a trap seed of ``fit.synthetic``
the training pairs were separated (objective 0.006) when C_θ fell to chance at epoch 24
(validation AUROC 0.89 → 0.49); on a 57-item judge with an [8, 4] net at lr 0.01 the output
was flat from the start and the penalty alone shrank the weights to a constant C_θ
(‖W‖ 1.9 → 0.01; docs/benchmarks_fit.md, section 3b). The kept weights travel in every checkpoint (``best_model.safetensors``),
so a run resumed on Ray Train keeps the guard's choice, and both backends share this loop.

Ray Train specifics sit in :func:`train_loop_per_worker` and :func:`fit_ray`, marked [1]-[4]
like Ray's own examples: [1] the worker's data shard, [2] the DDP model, [3] a report with a
checkpoint every ``checkpoint_every`` epochs, [4] ``TorchTrainer.fit`` with a
``FailureConfig``. Pair sampling is seeded by (random_state, epoch, rank), so a run resumed
from a checkpoint continues exactly as an uninterrupted one would. The workers' rows come as
Ray Data datasets when the features are large (``RAY_DATA_MIN_BYTES``), as two objects in the
object store otherwise; either way each rank gets the same rows (:func:`shard_rows`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .bound import bound_at, margin_grid
from .config import FitConfig
from .data import Arrays
from ..metrics import ranking_risk
from .loss import (complexity_penalty, line_search_margin, pair_surrogate, sample_pairs,
                   surrogate_by_margin, weight_norm)
from .model import ConfidenceMLP

Report = Callable[[dict, dict], None]  # (metrics, checkpoint state) → None


# ---------------------------------------------------------------------------------------------
# Checkpoints: model.safetensors, best_model.safetensors, optimizer.safetensors, state.json
# ---------------------------------------------------------------------------------------------

KEPT_WEIGHTS = "kept_weights"  # state key: the guard's kept iterate (best_model.safetensors)
KEPT_FILE = "best_model.safetensors"


def save_checkpoint(folder: str, model: ConfidenceMLP, optimizer: torch.optim.Optimizer,
                    state: dict) -> None:
    """Write weights, the guard's kept weights (``state[KEPT_WEIGHTS]``), optimizer state
    (flattened to safetensors) and the rest of ``state`` as JSON to ``folder``."""
    os.makedirs(folder, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
              os.path.join(folder, "model.safetensors"))
    state = dict(state)
    kept = state.pop(KEPT_WEIGHTS, None)
    if kept is not None:
        save_file({k: v.contiguous() for k, v in kept.items()}, os.path.join(folder, KEPT_FILE))
    opt = optimizer.state_dict()
    tensors = {f"{index}.{key}": torch.as_tensor(value).detach().cpu().contiguous()
               for index, entry in opt["state"].items() for key, value in entry.items()}
    save_file(tensors or {"empty": torch.zeros(1)}, os.path.join(folder, "optimizer.safetensors"))
    with open(os.path.join(folder, "state.json"), "w", encoding="utf-8") as stream:
        json.dump({**state, "param_groups": opt["param_groups"]}, stream)


def load_checkpoint(folder: str, model: ConfidenceMLP, optimizer: torch.optim.Optimizer | None
                    ) -> dict:
    """Restore weights (and optimizer state) from ``folder``; return its JSON state, with the
    guard's kept weights under ``KEPT_WEIGHTS`` (CPU tensors) when the checkpoint has them."""
    device = next(model.parameters()).device
    model.load_state_dict(load_file(os.path.join(folder, "model.safetensors"), device=str(device)))
    with open(os.path.join(folder, "state.json"), encoding="utf-8") as stream:
        state = json.load(stream)
    if os.path.exists(os.path.join(folder, KEPT_FILE)):
        state[KEPT_WEIGHTS] = load_file(os.path.join(folder, KEPT_FILE))
    if optimizer is not None:
        tensors = load_file(os.path.join(folder, "optimizer.safetensors"))
        entries: dict[int, dict] = {}
        for name, value in tensors.items():
            if name == "empty":
                continue
            index, key = name.split(".", 1)
            entries.setdefault(int(index), {})[key] = value
        optimizer.load_state_dict({"state": entries, "param_groups": state["param_groups"]})
    return state


def keep_best(model: ConfidenceMLP, state: dict) -> dict:
    """Load the guard's kept weights into ``model``; return ``state`` without the tensors."""
    state = dict(state)
    kept = state.pop(KEPT_WEIGHTS, None)
    if kept is not None:
        model.load_state_dict(kept)
    return state


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------

def _all_reduce_sum(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Sum over DDP ranks (a no-op when training alone); the result is on the CPU.

    The reduction runs on the model's device: NCCL (GPU workers) reduces only CUDA tensors.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        tensor = tensor.to(device)
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
    return tensor.cpu()


def _generator(config: FitConfig, epoch: int, rank: int, stream: int) -> torch.Generator:
    # One seed per (run, epoch, rank, purpose): a resumed run samples the same pairs.
    return torch.Generator().manual_seed(
        ((config.random_state * 1_000_003 + epoch) * 1009 + rank) * 7 + stream)


def kept_iterate_key(valid_risk: float, train_pair_risk: float, objective: float
                     ) -> tuple[float, float, float]:
    """What the collapse guard minimises over epochs (lexicographically; ties: the earlier epoch).

    First the validation ranking risk 1 − AUROC, on the validation part of the training split:
    it is what the certificate's coverage depends on and what ``FitConfig.valid_splits`` is
    for (model selection), and it is the only signal that sees both collapses met: on 57
    training items MARC's objective *fell* all the way into the constant (at a tiny γ̂ a
    constant C costs log 2 + γ/2τ, less than a weak ranker's surrogate), so the lowest-objective
    iterate was the collapsed one; on the trap seed the validation AUROC also fell before the
    collapse (over-fitting), which the training objective cannot see. The cost: the
    validation items pick 1 of ``epochs`` iterates, so their AUROC (and the agreement map and
    ``calibrate.confidence: auto``, fitted on them too) reads slightly optimistic; the
    calibration items stay untouched, so the guarantee does not move.
    Then, to break the ties a small validation part makes frequent (8 items: 16 pairs), the
    ranking risk of the epoch's training evaluation pairs (ties count 1/2, so a C_θ flattening
    to a constant loses); then, once both rank perfectly (a separable judge), the training
    objective L(θ, γ̂), which keeps the better-separated later iterate. Without a validation
    part with both kinds (risk NaN) the other keys decide. Deterministic: each is an exact
    function of seeded pairs and fixed items, all-reduced, so every DDP rank keeps the same
    epoch (remaining ties: the earlier epoch).
    """
    return (0.0 if math.isnan(valid_risk) else float(valid_risk), float(train_pair_risk),
            float(objective))


@dataclass
class PairSums:
    """The evaluation pairs' sums, over every rank: what the margin line search and the bound read.

    Summed across DDP ranks in one collective (:meth:`all_reduce` packs them into one float64
    vector and unpacks the sum)."""

    surrogate: np.ndarray     # (n_margins,) weighted surrogate loss at each candidate margin
    below_margin: np.ndarray  # (n_margins,) pairs whose difference is below each margin
    misranked: float          # pairs ranked the wrong way (a tie counts half)
    weight: float             # total pair weight (the number of pairs without soft targets)
    pairs: float              # number of pairs

    @classmethod
    def of(cls, differences: np.ndarray, margins: np.ndarray, temperature: float,
           weights: np.ndarray | None) -> "PairSums":
        return cls(surrogate_by_margin(differences, margins, temperature, weights),
                   (differences[:, None] < margins[None, :]).sum(0),
                   (differences < 0).sum() + 0.5 * (differences == 0).sum(),
                   len(differences) if weights is None else weights.sum(), len(differences))

    def all_reduce(self, device: torch.device) -> "PairSums":
        packed = np.concatenate([self.surrogate, self.below_margin,
                                 [self.misranked, self.weight, self.pairs]])
        total = _all_reduce_sum(torch.as_tensor(packed, dtype=torch.float64), device).numpy()
        n = len(self.surrogate)
        return PairSums(total[:n], total[n:2 * n], total[2 * n], total[2 * n + 1], total[2 * n + 2])


def _train_steps(config: FitConfig, model: torch.nn.Module, base: ConfidenceMLP,
                 optimizer: torch.optim.Optimizer, train: dict, pairs: tuple, gamma: float,
                 beta: float, generator: torch.Generator, device: torch.device) -> float:
    """(θ) One epoch's SGD on freshly sampled pairs, margin held at γ; the mean loss over ranks."""
    agree_index, disagree_index, step_pairs = pairs
    model.train()
    loss_sum = torch.zeros(2, dtype=torch.float64)  # (sum of step losses, steps)
    for _ in range(config.steps_per_epoch):
        i, j = sample_pairs(agree_index, disagree_index, step_pairs, generator)
        rows = torch.cat([i, j]).to(train["features"].device)
        confidence = torch.sigmoid(model(train["features"][rows]))  # (2 * pairs,)
        c_i, c_j = confidence[: len(i)], confidence[len(i):]
        weights = None
        if config.soft_targets:
            weights = (train["soft"][i.to(rows.device)] - train["soft"][j.to(rows.device)]
                       ).clamp_min(0.0) + 1e-3
        loss = pair_surrogate(c_i, c_j, gamma, config.temperature, weights)
        if beta > 0:
            loss = loss + complexity_penalty(base.weight_matrices(), beta, gamma)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += torch.tensor([float(loss.detach()), 1.0], dtype=torch.float64)
    total, steps = _all_reduce_sum(loss_sum, device)
    return float(total / steps)


def _evaluation_sums(config: FitConfig, base: ConfidenceMLP, train: dict, pairs: tuple,
                     margins: np.ndarray, generator: torch.Generator,
                     device: torch.device) -> PairSums:
    """(γ) The sums of the line search's objective L(θ, γ) over the epoch's evaluation pairs."""
    agree_index, disagree_index, eval_pairs = pairs
    scores = base.confidence(train["features"]).cpu()
    i, j = sample_pairs(agree_index, disagree_index, eval_pairs, generator)
    differences = (scores[i] - scores[j]).double().numpy()
    pair_weights = None
    if config.soft_targets:
        soft = train["soft"].cpu().double()
        pair_weights = ((soft[i] - soft[j]).clamp_min(0.0) + 1e-3).numpy()
    return PairSums.of(differences, margins, config.temperature, pair_weights).all_reduce(device)


KEPT_REASON = {True: "lowest validation ranking risk (ties: the training pairs' ranking risk, "
                     "then the training objective)",
               False: "no validation part with both kinds: lowest ranking risk on the training "
                      "evaluation pairs (ties: the training objective)"}  # by: has a validation risk


def run_epochs(config: FitConfig, model: torch.nn.Module, base: ConfidenceMLP,
               optimizer: torch.optim.Optimizer, train: dict, valid: dict, report: Report, *,
               state: dict | None = None, rank: int = 0, world_size: int = 1,
               fail_hook: Callable[[int], None] | None = None) -> dict:
    """Train from ``state`` (a checkpoint's JSON state, or None) to ``config.epochs``.

    Parameters
    ----------
    model : the module trained (``base`` itself, or its DDP wrapper)
    base : the unwrapped ConfidenceMLP (for weights, confidences and Φ)
    train, valid : dict of tensors ``features`` (n, n_features), ``agree`` (n,), ``soft`` (n,),
        on the model's device; ``train`` is this rank's shard, ``valid`` the whole set
    report : called once per epoch with (metrics, checkpoint state)
    fail_hook : called with the epoch number at the start of each epoch (fault injection)

    Returns
    -------
    dict : the final state (epoch, gamma, bound terms, history), and the collapse guard's
        choice: ``best_epoch``, ``best`` (that epoch's γ, bound, key and why it was kept) and
        ``KEPT_WEIGHTS`` (its weights, CPU tensors; :func:`keep_best` loads them)
    """
    state = dict(state or {"epoch": -1, "gamma": config.margin_init, "history": []})
    best, kept = state.get("best"), state.get(KEPT_WEIGHTS)
    resumed_from = state["epoch"] if state["epoch"] >= 0 else None
    agree_index = torch.nonzero(train["agree"] >= 0.5).squeeze(1).cpu()
    disagree_index = torch.nonzero(train["agree"] < 0.5).squeeze(1).cpu()
    if len(agree_index) == 0 or len(disagree_index) == 0:
        raise RuntimeError(f"rank {rank}'s shard has {len(agree_index)} agreement and "
                           f"{len(disagree_index)} disagreement cases: too few to form pairs; "
                           "use fewer workers or more data")
    device = train["features"].device
    grid = margin_grid(config.margin_min, config.margin_max, config.margin_grid_size)
    step_pairs = (agree_index, disagree_index, max(1, math.ceil(config.pairs_per_step / world_size)))
    eval_pairs = (agree_index, disagree_index, max(1, math.ceil(config.n_pairs / world_size)))
    is_marc = config.variant == "marc"
    beta = config.complexity_weight if is_marc else 0.0
    for epoch in range(state["epoch"] + 1, config.epochs):
        if fail_hook is not None:
            fail_hook(epoch)
        gamma = float(state["gamma"])
        train_loss = _train_steps(config, model, base, optimizer, train, step_pairs, gamma, beta,
                                  _generator(config, epoch, rank, 0), device)
        model.eval()
        with torch.no_grad():
            margins = grid if is_marc else np.array([gamma])
            sums = _evaluation_sums(config, base, train, eval_pairs, margins,
                                    _generator(config, epoch, rank, 1), device)
            mean_surrogate, n_eval = sums.surrogate / sums.weight, int(sums.pairs)
            norm = weight_norm(base.weight_matrices())
            pick, objective = line_search_margin(mean_surrogate, margins, beta, norm)
            weights = [w.detach().cpu().numpy() for w in base.weight_matrices()]
            terms = bound_at(sums.below_margin[pick] / n_eval, weights, float(margins[pick]),
                             n_eval, config.delta_prime)
            valid_scores = base.confidence(valid["features"]).cpu().numpy()
        valid_risk = ranking_risk(valid_scores, valid["agree"].cpu().numpy() >= 0.5) \
            if len(valid_scores) else math.nan
        train_pair_risk = float(sums.misranked / n_eval)
        key = kept_iterate_key(valid_risk, train_pair_risk, float(objective[pick]))
        if best is None or key < tuple(best["key"]):  # strict: ties keep the earlier epoch
            best = {"epoch": epoch, "gamma": terms.gamma if is_marc else gamma,
                    "bound": terms.to_dict(), "key": list(key), "valid_ranking_risk": valid_risk,
                    "reason": KEPT_REASON[not math.isnan(valid_risk)]}
            kept = {k: v.detach().cpu().clone() for k, v in base.state_dict().items()}
        metrics = {"epoch": epoch, "train_loss": train_loss,
                   "gamma_trained": gamma, "gamma": terms.gamma,
                   "gamma_at_edge": bool(is_marc and pick in (0, len(margins) - 1)),
                   "objective": float(objective[pick]),
                   "objective_surrogate": float(mean_surrogate[pick]),
                   "objective_penalty": float(beta * norm / margins[pick]),
                   "weight_norm": norm,
                   "valid_ranking_risk": valid_risk, "valid_auroc": 1.0 - valid_risk,
                   "train_pair_ranking_risk": train_pair_risk, "best_epoch": best["epoch"],
                   "kept_valid_ranking_risk": best["valid_ranking_risk"],  # what Tune selects by
                   "resumed_from": -1 if resumed_from is None else resumed_from,
                   **{f"bound_{k}": v for k, v in terms.to_dict().items()}}
        state = {"epoch": epoch, "gamma": terms.gamma if is_marc else gamma,
                 "bound": terms.to_dict(), "history": state["history"] + [metrics],
                 "best_epoch": best["epoch"], "best": best, KEPT_WEIGHTS: kept}
        report(metrics, state)
    return state


def tensors(arrays: Arrays | dict, device: torch.device | str = "cpu") -> dict:
    """Arrays (or a dict of numpy columns) → float32 tensors on ``device``."""
    get = (lambda k: getattr(arrays, k)) if isinstance(arrays, Arrays) else arrays.__getitem__
    return {k: torch.as_tensor(np.asarray(get(k), dtype=np.float32), device=device)
            for k in ("features", "agree", "soft")}


def new_model(config: FitConfig, n_features: int) -> tuple[ConfidenceMLP, torch.optim.Optimizer]:
    torch.manual_seed(config.random_state)  # identical initial weights on every rank and run
    model = ConfidenceMLP(n_features, config.hidden_sizes)
    return model, _optimizer(config, model)


def _optimizer(config: FitConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=config.learning_rate,
                             weight_decay=config.weight_decay)


def fit_local(config: FitConfig, train: Arrays, valid: Arrays, *, checkpoint_dir: str | None = None,
              resume: bool = False, report: Callable[[dict], None] | None = None
              ) -> tuple[ConfidenceMLP, dict]:
    """Run the loop in this process.

    Parameters
    ----------
    checkpoint_dir : str, optional
        Where each epoch's checkpoint is written (overwritten in place, atomically per file).
    resume : bool
        Start from the checkpoint in ``checkpoint_dir`` when there is one.
    report : callable, optional
        Called with each epoch's metrics (e.g. ``ray.tune.report`` in a Tune trial).

    Returns
    -------
    model : ConfidenceMLP (the collapse guard's kept iterate, on CPU, eval mode)
    state : dict (epoch, gamma, bound, history, best_epoch, best)
    """
    torch.set_num_threads(config.torch_threads)
    if config.use_gpu and not torch.cuda.is_available():
        raise ValueError("use_gpu=True but torch sees no CUDA device; set use_gpu=False")
    device = torch.device("cuda" if config.use_gpu else "cpu")
    model, optimizer = new_model(config, train.features.shape[1])
    model.to(device)  # in place: the optimizer keeps the same parameters
    state = None
    if resume and checkpoint_dir and os.path.exists(os.path.join(checkpoint_dir, "state.json")):
        state = load_checkpoint(checkpoint_dir, model, optimizer)

    def on_epoch(metrics: dict, epoch_state: dict) -> None:
        if checkpoint_dir:
            with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(checkpoint_dir))) as tmp:
                save_checkpoint(tmp, model, optimizer, epoch_state)
                os.makedirs(checkpoint_dir, exist_ok=True)
                for name in os.listdir(tmp):
                    os.replace(os.path.join(tmp, name), os.path.join(checkpoint_dir, name))
        if report is not None:
            report(metrics)

    state = run_epochs(config, model, model, optimizer, tensors(train, device),
                       tensors(valid, device), on_epoch, state=state)
    state = keep_best(model, state)  # the guard's iterate, not the last epoch's
    return model.cpu().eval(), state


# ---------------------------------------------------------------------------------------------
# Ray Train
# ---------------------------------------------------------------------------------------------

COLUMNS = ("features", "agree", "soft")
# Train's controller polls its workers this often (Ray's default: 2 s). A report waits for the
# poll, and so does the end of the run: polling faster cut a tiny fit's tail by seconds.
HEALTH_CHECK_INTERVAL_S = "0.5"


def _columns(arrays: Arrays) -> dict:
    """The numpy columns a worker needs (as objects or as Ray Data blocks)."""
    return {k: np.ascontiguousarray(getattr(arrays, k), dtype=np.float32) for k in COLUMNS}


def shard_rows(agree: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """Rank ``rank``'s row numbers, ascending: agreements and disagreements each dealt
    round-robin over the ranks.

    Deterministic (the same rows per rank after a restart, so a resumed run samples the same
    pairs) and balanced (each rank gets ~1/world_size of the disagreements it needs for pairs).
    """
    order = np.argsort(np.asarray(agree) < 0.5, kind="stable")  # agreements first, order kept
    return np.sort(order[rank::world_size])


def worker_shard(columns: dict, rank: int, world_size: int) -> dict:
    """Rank ``rank``'s rows (:func:`shard_rows`) of every column."""
    rows = shard_rows(columns["agree"], rank, world_size)
    return {k: np.array(v[rows]) for k, v in columns.items()}


# Features of at least this many bytes (training + validation, float32) reach the workers
# through Ray Data; smaller ones as two objects in the object store. Ray Data costs a fit a
# fixed time whatever its size (Train starts a DatasetManager actor; each worker's first
# iteration ~1 s): side by side on the loaded 2-core machine, medians of 38.7 s against 20.2 s
# at 100 items and 53.7 s against 42.1 s at 1M (benchmarks/bench_fit_data.py,
# docs/benchmarks_scale.md), which the demo's fit (<= 30 s of Ray Train overhead) cannot pay
# for ~50 items. From ~32 MB (~13k rows of MARC's 632 features) that cost is small against the
# fit, and each worker receives only its own rows, fetched block by block, instead of fetching
# one object holding every item.
RAY_DATA_MIN_BYTES = 32 << 20
RAY_DATA_BLOCK_ROWS = 1 << 14  # rows per Ray Data block (~40 MB at 632 float32 features)


def features_bytes(*sets: Arrays) -> int:
    return sum(int(np.asarray(a.features).size) * 4 for a in sets)  # float32, as shipped


def _rows_dataset(columns: dict, rows: np.ndarray):
    """A Ray Data dataset of ``rows`` of ``columns`` (plus their row number, ``row``), put in
    the object store block by block: the driver holds one block's copy at a time."""
    import pyarrow as pa
    import ray
    import ray.data
    from ray.data.extensions import ArrowTensorArray

    refs = []
    for start in range(0, max(len(rows), 1), RAY_DATA_BLOCK_ROWS):
        block = rows[start:start + RAY_DATA_BLOCK_ROWS]
        refs.append(ray.put(pa.table({
            "row": pa.array(block, pa.int64()),
            "features": ArrowTensorArray.from_numpy(np.ascontiguousarray(columns["features"][block])),
            **{k: pa.array(columns[k][block]) for k in COLUMNS if k != "features"}})))
    return ray.data.from_arrow_refs(refs)


def ray_datasets(train: Arrays, valid: Arrays, world_size: int) -> dict:
    """The Ray Data datasets of a fit: ``train_<rank>`` holds rank's :func:`shard_rows`, so a
    worker receives exactly its shard (and after a restart, the same one); ``valid`` holds every
    validation item (each worker reads all of them). None is split by Ray Train."""
    train_columns, valid_columns = _columns(train), _columns(valid)
    datasets = {f"train_{rank}": _rows_dataset(train_columns,
                                               shard_rows(train_columns["agree"], rank, world_size))
                for rank in range(world_size)}
    datasets["valid"] = _rows_dataset(valid_columns, np.arange(len(valid)))
    return datasets


def dataset_columns(iterator, n_features: int) -> dict:
    """A dataset's (or a Train worker's dataset shard's) rows as numpy columns, in row order
    (Ray Data may hand blocks over in any order)."""
    parts = list(iterator.iter_batches(batch_size=None, batch_format="numpy"))
    rows = np.concatenate([p["row"] for p in parts]) if parts else np.zeros(0, np.int64)
    order = None if np.all(rows[1:] > rows[:-1]) else np.argsort(rows, kind="stable")
    columns = {}
    for key in COLUMNS:
        values = (np.concatenate([p[key] for p in parts]) if parts
                  else np.zeros((0, n_features) if key == "features" else 0, np.float32))
        columns[key] = values if order is None else values[order]
    return columns


def is_checkpoint_epoch(config: FitConfig, epoch: int) -> bool:
    """Ray Train checkpoints (and reports) after every ``checkpoint_every``-th epoch and the last."""
    return (epoch + 1) % config.checkpoint_every == 0 or epoch == config.epochs - 1


def train_loop_per_worker(loop_config: dict) -> None:
    """The Ray Train loop: ``loop_config`` holds ``fit`` (a FitConfig dict) and ``n_features``.

    Optional ``fail_at_epoch`` and ``fail_marker`` inject one worker crash (``os._exit``) at the
    start of that epoch on rank 0, unless the marker file exists (it is written first): the
    resume-after-failure test uses them.
    """
    import ray.train
    import ray.train.torch

    config = FitConfig.from_dict(loop_config["fit"])
    torch.set_num_threads(config.torch_threads)  # 2 threads collapse when the other core is busy
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()

    # [1] data: this worker's shard of the training items; every worker sees all validation items.
    # Large features come through Ray Data (``train_<rank>``: this rank's rows only, fetched
    # block by block), small ones as two objects (below RAY_DATA_MIN_BYTES, see trainer_for).
    n_features = int(loop_config["n_features"])
    if loop_config.get("ray_data"):
        shard = ray.train.get_dataset_shard
        train = tensors(dataset_columns(shard(f"train_{rank}"), n_features), device)
        valid = tensors(dataset_columns(shard("valid"), n_features), device)
    else:
        train = tensors(worker_shard(ray.get(loop_config["train"]), rank, world_size), device)
        valid = tensors(worker_shard(ray.get(loop_config["valid"]), 0, 1), device)

    # [2] the model, wrapped in DDP (moved to the worker's device)
    base, _ = new_model(config, n_features)
    model = ray.train.torch.prepare_model(base)
    base = model.module if hasattr(model, "module") else model
    optimizer = _optimizer(config, model)
    state = None
    checkpoint = ray.train.get_checkpoint()  # set after a restart: resume from the last epoch
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state = load_checkpoint(folder, base, optimizer)

    def fail_hook(epoch: int) -> None:
        marker = loop_config.get("fail_marker")
        if rank == 0 and epoch == loop_config.get("fail_at_epoch") and marker \
                and not os.path.exists(marker):
            # wait until Train has registered the reports so far (they are processed
            # asynchronously), so the restart deterministically finds the last checkpoint
            ray.train.get_all_reported_checkpoints(timeout_s=60)
            with open(marker, "w", encoding="utf-8") as stream:
                stream.write(f"worker crashed at epoch {epoch}\n")
            os._exit(1)  # a hard crash: no exception handling, the process is gone

    # [3] every `checkpoint_every` epochs and at the last: report the metrics with a checkpoint
    # written by rank 0. Each report waits for Train's controller to take it (it polls every
    # ~2 s), so reporting every epoch cost the demo's 30-epoch fit ~60 s; the epochs between
    # checkpoints are in the checkpoint's history, and a restart repeats at most those.
    def on_epoch(metrics: dict, epoch_state: dict) -> None:
        if not is_checkpoint_epoch(config, int(metrics["epoch"])):
            return
        with tempfile.TemporaryDirectory() as folder:
            checkpoint_out = None
            if rank == 0:
                save_checkpoint(folder, base, optimizer, epoch_state)
                checkpoint_out = ray.train.Checkpoint.from_directory(folder)
            ray.train.report(metrics, checkpoint=checkpoint_out)

    run_epochs(config, model, base, optimizer, train, valid, on_epoch, state=state, rank=rank,
               world_size=world_size, fail_hook=fail_hook)


def trainer_for(config: FitConfig, train: Arrays, valid: Arrays, *, name: str | None = None,
                callbacks: list | None = None, extra_loop_config: dict | None = None,
                ray_data_min_bytes: int = RAY_DATA_MIN_BYTES):
    """The TorchTrainer running :func:`train_loop_per_worker` on ``train`` / ``valid``.

    Features of ``ray_data_min_bytes`` or more go to the workers as Ray Data datasets
    (:func:`ray_datasets`), smaller ones as two objects in the object store; both give every
    worker the same rows in the same order, so the fitted model is the same
    (tests/fit/test_train_ray_data.py).
    """
    import ray
    import ray.train
    from ray.train.torch import TorchTrainer

    use_ray_data = features_bytes(train, valid) >= ray_data_min_bytes
    loop_config = {"fit": config.to_dict(), "n_features": int(train.features.shape[1]),
                   "ray_data": use_ray_data, **(extra_loop_config or {})}
    data = {}
    if use_ray_data:
        data = {"datasets": ray_datasets(train, valid, config.num_workers),
                "dataset_config": ray.train.DataConfig(datasets_to_split=[])}
    else:
        loop_config.update(train=ray.put(_columns(train)), valid=ray.put(_columns(valid)))
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        **data,
        scaling_config=ray.train.ScalingConfig(
            num_workers=config.num_workers, use_gpu=config.use_gpu,
            resources_per_worker={"CPU": config.cpus_per_worker}),
        run_config=ray.train.RunConfig(
            name=name, storage_path=config.storage_path, callbacks=callbacks,
            failure_config=ray.train.FailureConfig(max_failures=config.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2)),
    )


@contextlib.contextmanager
def _fast_polling():
    """Train's controller reads its poll interval from the driver's environment at start."""
    key = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
    previous = os.environ.get(key)
    os.environ.setdefault(key, HEALTH_CHECK_INTERVAL_S)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(key, None)


def fit_ray(config: FitConfig, train: Arrays, valid: Arrays, *, name: str | None = None,
            extra_loop_config: dict | None = None, ray_data_min_bytes: int = RAY_DATA_MIN_BYTES
            ) -> tuple[ConfidenceMLP, dict]:
    """Train on Ray Train and load the final checkpoint's kept iterate (same returns as
    :func:`fit_local`); ``ray_data_min_bytes``: see :func:`trainer_for`."""
    from ..storage import cluster_nodes, require_shared

    # checkpoints every node (and a restarted worker elsewhere) can read: refused up front
    require_shared({"fit.storage_path": config.storage_path or "~/ray_results"}, cluster_nodes())
    # [4] fit: restarts the worker group from the last checkpoint up to max_failures times
    with _fast_polling():
        result = trainer_for(config, train, valid, name=name, extra_loop_config=extra_loop_config,
                             ray_data_min_bytes=ray_data_min_bytes).fit()
    if result.checkpoint is None:
        raise RuntimeError(f"Ray Train finished without a checkpoint: {result.error}")
    model = ConfidenceMLP(int(train.features.shape[1]), config.hidden_sizes)
    with result.checkpoint.as_directory() as folder:
        state = keep_best(model, load_checkpoint(folder, model, None))
    return model.eval(), state
