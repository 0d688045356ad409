"""The annotate job on Ray Data: comparisons → run rows → judge engine → annotation shards.

Steps (``annotate(config)``):

1. validate the config, read and validate the comparisons and the few-shot pool, refuse any
   pool id in the comparisons, build the simulated annotators, resolve the model and its
   tokenizer, check the label tokens: every bad input fails here, before an engine starts;
2. split the items into shards of ``shard_size`` (the unit of output and resume); shards an
   earlier identical run finished (their Parquet file and their ``_done/`` marker are there)
   are skipped;
3. one Ray Data pipeline for every pending shard: *work units* (shard, shared prefix) are
   expanded into run rows (``flat_map``), ordered shard by shard and, within a shard, by
   (annotator, subset) so that each few-shot prefix stays hot in the engine's KV cache, then
   judged by the engine (transformers: ``map_batches`` on an actor pool; vLLM: the
   ``ray.data.llm`` stage; HTTP: ``map_batches`` on an actor pool);
4. results stream back to the driver (``iter_batches``); a shard is assembled
   (``assemble.annotation_row``) and written atomically as soon as all its runs are in, then
   its marker ``_done/part-NNNNN.json`` (Parquet folder readers skip ``_`` names). Results
   of shards not finished yet are persisted as they come (``_partial/``, at least every
   ``PARTIAL_FLUSH_S``): a rerun takes them back and judges only the work units still missing
   runs, so a stop at x% of the runs keeps about x% of them, whatever the shard size.

The output is any location ``contracts.io`` takes: a local folder, a shared mount, or an object
store URI (``s3://bucket/run/annotate/judge``). On an object store a shard is uploaded to its
final key in one put (a rename there is a copy, not atomic), and the marker is what makes it
count as finished: a shard without its marker is judged again. On a cluster of several nodes a
node-local output is refused before anything runs (``storage.require_shared``).

Exactly once: engine actors are restarted (``max_restarts``) and their unfinished batches
retried (``max_task_retries``) when a worker dies; results are keyed by (id, run) on the
driver, so a batch delivered twice is counted once, and a shard is written only when every run
of every one of its items is in. A crash or interruption loses at most the runs in flight.

Node loss: when Ray Data gives up on lost actors (``ActorUnavailableError`` once a node is
gone), the driver starts a new execution over the work units still missing runs, with as many
actors as the alive nodes can host (1 to ``num_workers``) once the failed execution's actors
have freed their resources (``release_failed_actors``: else, on a cluster shrunk below the pool,
a survivor would keep the only CPU from the new actors), and repeats while that makes progress.
A cluster that shrank below the pool while an execution runs is caught too (``CapacityWatch``):
Ray's restart of a lost actor would wait forever for a CPU its siblings hold, so the execution is
stopped and started again with the pool the nodes left can host. It never waits forever: no
node able to host an actor for ``capacity_timeout_s`` (``ray.capacity_timeout_s``) raises
``InfrastructureError`` naming the missing resource (the CLI prints it on one line and exits 5);
any other stall fails after ``STALL_TIMEOUT_S``.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import json
import math
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import pyarrow as pa

from ..contracts import (ContractError, InfrastructureError, check_pool_disjoint, extra_carried,
                         read_table, table_hash, validate_comparisons, write_json_atomic, write_table_atomic)
from ..contracts.io import is_file, join, list_names, make_dirs, read_text, remove
from ..ray_cluster import CAPACITY_TIMEOUT_S, LOST_HINT, MEMORY_HINT, ensure_ray
from ..storage import cluster_nodes, require_shared
from .annotators import build_annotators, read_pool, run_layout
from ..contracts.redact import redact
from .assemble import annotation_row, annotation_table, carried_columns, judge_metadata
from .run_table import TextIndex
from .config import AnnotateConfig
from .engines import engine_spec
from .engine import RunResult, label_token_ids
from .prompts import PromptBuilder, get_template

MANIFEST = "_manifest.json"  # "_" prefix: Parquet folder readers skip it
DONE_DIR = "_done"  # one marker per finished shard (skipped by Parquet readers too)
RESULT_COLUMNS = ("id", "run", "p_first", "label_mass", "status")
ROWS_PER_CALL_FACTOR = 4  # an engine call gets 4 engine batches: amortises Ray per-call cost
RUN_ROWS_PER_BLOCK = 2048  # run rows per Ray Data block (each carries its prefix text)


@dataclass
class AnnotateSummary:
    """What a run did."""

    output: str
    n_items: int
    n_shards: int
    shards_written: list[int] = field(default_factory=list)
    shards_skipped: list[int] = field(default_factory=list)
    n_runs: int = 0
    seconds: float = 0.0


def shard_name(shard: int) -> str:
    return f"part-{shard:05d}.parquet"


def shard_path(output: str, shard: int) -> str:
    return join(output, shard_name(shard))


def marker_name(shard: int) -> str:
    """The marker written once the shard's file is complete: what resume trusts."""
    return f"{DONE_DIR}/part-{shard:05d}.json"


def marker_path(output: str, shard: int) -> str:
    return join(output, marker_name(shard))


# ---------------------------------------------------------------------------------------------
# Preparation (no engine, no Ray): everything that can fail on bad input
# ---------------------------------------------------------------------------------------------

@dataclass
class Plan:
    """The validated inputs of a run: items (an Arrow table), shards, prompts, layout, judge name.

    Items stay in Arrow; a shard's rows become Python dicts only while that shard is expanded
    or written (:meth:`shard_items`).
    """

    config: AnnotateConfig
    comparisons: pa.Table
    builder: PromptBuilder
    judge: str
    fingerprint: dict

    @property
    def n_items(self) -> int:
        return self.comparisons.num_rows

    @property
    def items(self) -> list[dict]:
        """Every item as a dict (small inputs: tests, benchmarks; the job reads shards)."""
        return self.comparisons.to_pylist()

    @property
    def n_shards(self) -> int:
        return math.ceil(self.n_items / self.config.shard_size)

    def shard_items(self, shard: int, comparisons: pa.Table | None = None) -> list[dict]:
        size = self.config.shard_size
        return (self.comparisons if comparisons is None else comparisons).slice(shard * size, size).to_pylist()


def prepare(config: AnnotateConfig) -> Plan:
    """Validate everything (config, data, pool, model, labels) and build the prompts.

    Raises
    ------
    ContractError
        Malformed comparisons or pool, an empty pool, pool ids among the comparisons, K larger
        than an annotator's examples.
    ValueError
        A bad setting, an unknown model, a model without the label tokens (choice mode).
    """
    from .models import check_model_spec, load_tokenizer

    config.validate()
    comparisons = validate_comparisons(read_table(config.input), config.input, carry=config.carry)
    pool = read_pool(read_table(config.pool), config.pool)
    check_pool_disjoint(pool, comparisons, config.pool, config.input)
    annotators = build_annotators(pool, config.n_annotators, config.k_shots, config.seed, config.pool)
    layout = run_layout(config.n_annotators, config.k_shots, config.max_subset_size, config.orders)
    template = get_template(config.template)

    spec = engine_spec(config.engine)
    if spec.loads_model:
        check_model_spec(config.model)
    tokenizer_spec = spec.tokenizer(config)  # http: optional, for the chat template
    tokenizer = load_tokenizer(tokenizer_spec) if tokenizer_spec else None
    if config.mode == "choice" and tokenizer is not None:
        for label in config.labels:
            label_token_ids(tokenizer, label)  # raises with the fix when not a single token
    builder = PromptBuilder(template, annotators, layout, config.mode, config.labels, tokenizer,
                            config.zero_shot)
    builder.tokenizer = None  # only needed while rendering; keeps the builder light to ship
    judge = spec.rows_judge_name(config)
    fingerprint = {
        "judge": judge, "engine": config.engine, "model": config.model, "mode": config.mode,
        "labels": list(config.labels), "beta": config.beta, "template": template.to_dict(),
        "layout": layout.to_json(), "zero_shot": config.zero_shot, "seed": config.seed,
        "shard_size": config.shard_size, "annotators": [a.name for a in annotators],
        "examples": [[e["id"] for e in a.examples] for a in annotators],
        "input_hash": table_hash(comparisons, ["id", "instruction", "response_a", "response_b"]),
    }
    extra = extra_carried(config.carry)
    if extra:  # absent otherwise: a folder annotated before carry existed resumes
        fingerprint["carry"] = list(extra)
        fingerprint["carry_hash"] = table_hash(comparisons, ["id", *extra])
    return Plan(config, comparisons, builder, judge, fingerprint)


CARRY_KEYS = ("carry", "carry_hash")  # what the carried columns change: never the engine's runs


def check_output(plan: Plan) -> list[int]:
    """Shards already written by an identical earlier run (resume); refuse a different run's folder.

    An earlier run that differs only in the carried columns (``AnnotateConfig.carry``, e.g. a
    new ``calibrate.by``) is the same run: its shards are kept and their carried columns
    rewritten (:func:`recarry`)."""
    output = plan.config.output
    manifest = join(output, MANIFEST)
    changed: list[str] = []
    if is_file(manifest):
        previous = json.loads(read_text(manifest)).get("fingerprint") or {}
        changed = sorted(k for k in set(previous) | set(plan.fingerprint)
                         if previous.get(k) != plan.fingerprint.get(k))
        if changed and not set(changed) <= set(CARRY_KEYS):
            raise ContractError(output, f"the output folder holds annotations of a different run "
                                f"(differs in {changed})", hint="choose a new --output or delete "
                                "the folder to start over")
    names = set(list_names(output, recursive=True))  # one listing, also on an object store
    done = [shard for shard in range(plan.n_shards)
            if shard_name(shard) in names and marker_name(shard) in names]
    if changed:
        recarry(plan, done)  # only the carried columns differ: no run is judged again
    return done


def recarry(plan: Plan, shards: list[int]) -> None:
    """Rewrite finished shards with the carried columns ``plan`` asks for (each atomically).

    Their runs and heuristics are kept as they are; the extra carried columns come from the
    plan's comparisons, matched by id. Interrupted, it is simply done again on the next run
    (a shard whose rewrite was cut short has lost its marker: it is judged again)."""
    from ..contracts import ANNOTATION_SCHEMA

    item_index = TextIndex(plan.comparisons.column("id"))  # hashed once, not once per shard
    for shard in shards:
        table = read_table(shard_path(plan.config.output, shard))
        metadata = table.schema.metadata
        table = table.select(ANNOTATION_SCHEMA.names)  # the contract's columns, carried ones too
        rows = pa.array(item_index(table.column("id")))
        for name in extra_carried(plan.config.carry):
            table = table.append_column(name, plan.comparisons.column(name).take(rows))
        write_finished_shard(plan, shard, table.replace_schema_metadata(metadata))


def write_finished_shard(plan: Plan, shard: int, table: pa.Table) -> None:
    """Write a shard, then its marker: only then does it count as finished.

    The old marker goes first: on an object store an interrupted upload may still complete
    (``contracts.io.write_atomic``), and a cut-short shard must not keep a marker.
    """
    output = plan.config.output
    remove(marker_path(output, shard))
    write_table_atomic(table, shard_path(output, shard))
    write_json_atomic({"shard": shard, "rows": table.num_rows}, marker_path(output, shard))


# ---------------------------------------------------------------------------------------------
# Ray Data stages
# ---------------------------------------------------------------------------------------------

_COMPARISONS: dict[str, pa.Table] = {}  # per worker process: the object-store table, read once


def expand_units(batch: dict, plan: Plan, comparisons) -> list[dict]:
    """Work units (shard, group) → their run rows (one Ray Data ``flat_map`` row at a time).

    ``plan`` is shipped without its items; ``comparisons`` is an object-store reference to the
    Arrow table (shared memory, zero-copy), of which a unit reads its shard only.
    """
    import ray

    key = comparisons.hex()
    if key not in _COMPARISONS:
        _COMPARISONS.clear()
        _COMPARISONS[key] = ray.get(comparisons)
    items = plan.shard_items(int(batch["shard"]), _COMPARISONS[key])
    rows = plan.builder.runs_for_group(items, int(batch["group"]))
    done = {tuple(key) for key in json.loads(batch.get("done") or "[]")}
    return [row for row in rows if (row["id"], row["run"]) not in done] if done else rows


class EngineBatches:
    """Ray Data actor UDF: a batch of run rows → the same runs with their results."""

    def __init__(self, factory: Callable[[], Any]):
        self.engine = factory()

    def __call__(self, batch: dict) -> dict:
        names = list(batch)
        runs = [dict(zip(names, values)) for values in zip(*(batch[n] for n in names))]
        results = self.engine.judge(runs)
        return {"id": batch["id"], "run": batch["run"],
                "p_first": [r.p_first for r in results],
                "label_mass": [r.label_mass for r in results],
                "status": [r.status for r in results]}


def actor_demand(config: AnnotateConfig) -> dict[str, float]:
    """The resources one engine actor needs on a single node (what capacity is measured in)."""
    return engine_spec(config.engine).actor_demand(config)


def engine_stage(ds, config: AnnotateConfig, initial_actors: int | None = None):
    """Attach the configured engine to a dataset of run rows.

    The actor pool has ``initial_actors`` actors (what the cluster can host when the execution
    starts, between 1 and ``num_workers``): a cluster smaller than ``num_workers`` still makes
    progress. It is fixed for one execution: Ray Data's own autoscaling (``min_size`` <
    ``max_size``) shrinks a pool to its share of the cluster's CPUs and would halve the demo's
    speed; the job re-sizes it instead when it starts an execution again after losing actors.
    """
    import ray

    initial = max(1, min(config.num_workers, initial_actors or config.num_workers))
    spec = engine_spec(config.engine)
    if spec.ray_stage is not None:  # vllm: ray.data.llm; its replicas too as many as the
        # cluster can host now
        return spec.ray_stage(ds, dataclasses.replace(config, num_workers=initial))
    factory = functools.partial(spec.factory, config)
    num_gpus = spec.actor_gpus(config)
    with warnings.catch_warnings():
        # Ray 2.60 flags max_restarts / max_task_retries (remote args) as deprecated but has no
        # named replacement yet; without them Ray Data restarts a dying actor forever.
        warnings.simplefilter("ignore", DeprecationWarning)
        return ds.map_batches(
            EngineBatches, fn_constructor_kwargs={"factory": factory},
            compute=ray.data.ActorPoolStrategy(size=initial),
            batch_size=config.batch_size * ROWS_PER_CALL_FACTOR,
            num_cpus=1 if not num_gpus else 0, num_gpus=num_gpus or None,
            max_restarts=config.max_restarts, max_task_retries=config.max_task_retries)


# ---------------------------------------------------------------------------------------------
# The job
# ---------------------------------------------------------------------------------------------

def annotate(config: AnnotateConfig, capacity_timeout_s: float = CAPACITY_TIMEOUT_S) -> AnnotateSummary:
    """Run the annotate stage (module docstring); resumes when ``config.output`` has shards.

    ``capacity_timeout_s`` (the pipeline's ``ray.capacity_timeout_s``): how long the job waits
    for a node able to host an engine actor before it fails with an ``InfrastructureError``
    naming the missing resource.

    Returns
    -------
    AnnotateSummary
    """
    start = time.perf_counter()
    if not engine_spec(config.validate().engine).judges_items:  # replay: verdicts from a file
        require_shared({"annotate output": config.output}, cluster_nodes())
        return _replay(config, start)
    plan = prepare(config)
    ensure_ray()  # joined now: its node count decides whether the output must be shared
    require_shared({"annotate output": config.output}, cluster_nodes())
    done = check_output(plan)
    summary = AnnotateSummary(config.output, plan.n_items, plan.n_shards, shards_skipped=done)
    pending = [shard for shard in range(plan.n_shards) if shard not in done]
    make_dirs(config.output)
    write_json_atomic({"fingerprint": plan.fingerprint, "config": redact(config.to_dict()),
                       "n_items": plan.n_items, "n_shards": plan.n_shards,
                       "complete": not pending}, join(config.output, MANIFEST))
    if pending:
        summary.n_runs = _run_pending(plan, pending, summary, capacity_timeout_s)
    write_json_atomic({"fingerprint": plan.fingerprint, "config": redact(config.to_dict()),
                       "n_items": plan.n_items, "n_shards": plan.n_shards, "complete": True,
                       "seconds_last_run": time.perf_counter() - start},
                      join(config.output, MANIFEST))
    summary.seconds = time.perf_counter() - start
    return summary


RESULT_BLOCK_BYTES = 8 * 1024  # engine results reach the driver in small blocks (resume)
PARTIAL_DIR = "_partial"  # results of shards not finished yet ("_": Parquet readers skip it)
PARTIAL_FLUSH_S = 2.0  # results are persisted at least this often: a stop loses at most this
CAPACITY_POLL_S = 1.0  # how often the driver looks for a node that can host an engine actor
STALL_TIMEOUT_S = 1800.0  # an execution with capacity but no block moving fails after this
SHRINK_GRACE_S = 10.0  # the nodes left host fewer actors than the pool this long: start smaller
RELEASE_TIMEOUT_S = 120.0  # longest wait for a failed execution's actors to free their resources


def _run_pending(plan: Plan, pending: list[int], summary: AnnotateSummary,
                 capacity_timeout_s: float = CAPACITY_TIMEOUT_S) -> int:
    """Judge every run of the pending shards; returns the runs the engine judged in this call.

    Results already persisted by an interrupted run (``_partial/``) are taken back first, so
    only the work units still missing runs are judged. When engine actors are lost (a node
    dies), the units still missing runs are judged again, in the same call, by a new actor
    pool sized to what the cluster has left; that is repeated while it makes progress (and at
    most ``max_restarts`` times in a row without), and never waits for capacity longer than
    ``capacity_timeout_s``.
    """
    from tqdm.auto import tqdm

    config = plan.config
    collector = ResultCollector(plan, pending)
    partial = PartialResults(config.output)
    summary.shards_written.extend(collector.take(partial.read()))
    bar = tqdm(total=collector.total, initial=collector.total - collector.missing_runs(),
               unit="run", desc="annotate", disable=not config.progress)
    demand, lost_in_a_row, failed = actor_demand(config), 0, False
    try:
        while units := collector.missing_units():
            hostable = wait_for_capacity(demand, capacity_timeout_s)
            if failed:  # the engine actors of the failed execution may still hold resources
                hostable = release_failed_actors(demand, hostable)
            before, pool = collector.received, max(1, min(config.num_workers, hostable))
            watch = CapacityWatch(demand, capacity_timeout_s, pool)
            try:
                with watch:
                    _judge_units(plan, units, pool, collector, partial, bar, summary,
                                 capacity_timeout_s)
            except KeyboardInterrupt:
                if watch.expired:  # the watch stopped it: no node can host an actor any more
                    raise _capacity_error(demand, capacity_timeout_s) from None
                if watch.out_of_memory:  # an engine actor died of OOM, its restarts spent
                    raise InfrastructureError(
                        f"a Ray worker was killed for running out of memory (OutOfMemoryError: "
                        f"an engine actor: {_first_line(watch.out_of_memory)})",
                        hint=MEMORY_HINT) from None
                if not watch.shrunk:
                    raise
                lost_in_a_row = 0 if collector.received > before else lost_in_a_row + 1
                if lost_in_a_row > config.max_restarts:
                    raise _capacity_error(demand, capacity_timeout_s) from None
                failed = True
                print(f"annotate: engine actors lost (the nodes left can host fewer than the "
                      f"{pool} of the pool); judging the {len(collector.missing_units())} "
                      f"unfinished work units again on the nodes left", file=sys.stderr, flush=True)
            except Exception as error:  # noqa: BLE001  (sorted out just below)
                cause = _infrastructure_cause(error)
                if cause is None:
                    raise
                lost_in_a_row = 0 if collector.received > before else lost_in_a_row + 1
                if _is_stall(cause) and hostable_actors(demand) == 0:
                    raise _capacity_error(demand, capacity_timeout_s) from error
                if lost_in_a_row > config.max_restarts:
                    raise InfrastructureError(
                        f"annotate lost its engine actors {lost_in_a_row} times in a row without "
                        f"progress, beyond the retries: {_first_line(cause)}",
                        hint=LOST_HINT) from error
                failed = True
                print(f"annotate: engine actors lost ({type(cause).__name__}); judging the "
                      f"{len(collector.missing_units())} unfinished work units again on the "
                      f"nodes left", file=sys.stderr, flush=True)
            finally:
                partial.flush(collector)
    finally:
        bar.close()
    collector.check_complete()
    partial.clear()
    return collector.received


def _judge_units(plan: Plan, units: list[dict], hostable: int, collector: "ResultCollector",
                 partial: "PartialResults", bar, summary: AnnotateSummary,
                 capacity_timeout_s: float) -> None:
    """One Ray Data execution over ``units``: results stream into the collector."""
    import ray

    config = plan.config
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # one bar, ours, counting finished runs
    # Ray Data packs map outputs into blocks of up to 128 MiB, so the tiny result rows of a whole
    # run would reach the driver in one piece and every shard would be written at the very end:
    # an interruption would lose them all. Small blocks stream results back batch by batch, so
    # each shard is written as soon as its runs are in (what resume relies on).
    context.target_max_block_size = RESULT_BLOCK_BYTES
    # Never wait forever. No node able to host an actor is caught by CapacityWatch after the
    # capacity timeout; any other stall by Ray Data's guard, after at least its default 30 min
    # (a large model may load for many minutes without a block moving). Actors are started
    # without waiting for all of them (wait_for_min_actors_s stays off): a node just lost may
    # still count as alive for a few seconds, and the actors that can start work meanwhile.
    context.execution_no_progress_timeout_s = max(float(capacity_timeout_s), STALL_TIMEOUT_S)
    runs_per_unit = config.shard_size * len(config.orders)
    units_per_block = max(1, RUN_ROWS_PER_BLOCK // runs_per_unit)
    ds = ray.data.from_items(units, override_num_blocks=max(1, math.ceil(len(units) / units_per_block)))
    # num_cpus=0: building prompts is light string work, and engine actors may hold every CPU
    # (num_workers = cores); a 1-CPU task would then never be scheduled and the job would stall
    # workers get the prompts and an object-store reference to the items, never the dicts
    light = dataclasses.replace(plan, comparisons=plan.comparisons.slice(0, 0))
    ds = ds.flat_map(expand_units, fn_kwargs={"plan": light, "comparisons": ray.put(plan.comparisons)},
                     num_cpus=0)
    ds = engine_stage(ds, config, initial_actors=hostable)
    for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        new, written = collector.add(batch)
        partial.record(batch)
        bar.update(new)
        summary.shards_written.extend(written)
        if written:
            bar.set_postfix(shards=f"{len(summary.shards_written)}/{len(collector.expected)}")
        partial.flush(collector, every_s=PARTIAL_FLUSH_S)


# ---------------------------------------------------------------------------------------------
# Losing nodes: what counts as an infrastructure failure, and waiting for capacity
# ---------------------------------------------------------------------------------------------

def _infrastructure_cause(error: BaseException) -> BaseException | None:
    """The Ray failure of a node, an actor, a worker or the scheduler behind ``error``, if any.

    Engine errors (bad answers, HTTP errors, a bug in a UDF) are not: judging them again would
    fail the same way.
    """
    import ray.exceptions as rex
    from ray.data.exceptions import ExecutionTimeoutError

    kinds = (rex.RayActorError, rex.NodeDiedError, rex.ObjectLostError, rex.WorkerCrashedError,
             rex.RaySystemError, rex.GetTimeoutError, ExecutionTimeoutError)
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, kinds):
            return error
        error = getattr(error, "cause", None) or error.__cause__ or error.__context__
    return None


def _is_stall(error: BaseException) -> bool:
    """An execution that could not move or an actor pool that could not start in time."""
    import ray.exceptions as rex
    from ray.data.exceptions import ExecutionTimeoutError

    return isinstance(error, (ExecutionTimeoutError, rex.GetTimeoutError))


def _first_line(error: BaseException) -> str:
    from ..contracts.redact import redact_text

    text = str(error).strip().splitlines()
    return redact_text(text[0] if text else type(error).__name__)


def hostable_actors(demand: dict[str, float]) -> int:
    """How many engine actors the alive nodes can host in all (each on one node)."""
    import ray

    total = 0
    for node in ray.nodes():
        if node.get("Alive"):
            resources = node.get("Resources", {})
            total += min(int(resources.get(name, 0.0) // amount) for name, amount in demand.items())
    return total


def _describe(demand: dict[str, float]) -> str:
    return " and ".join(f"{amount:g} {name}" for name, amount in demand.items())


def _capacity_error(demand: dict[str, float], timeout_s: float) -> InfrastructureError:
    import ray

    alive = [node for node in ray.nodes() if node.get("Alive")]
    have = {name: sum(node.get("Resources", {}).get(name, 0.0) for node in alive)
            for name in demand}
    return InfrastructureError(
        f"no capacity: no node of the cluster has {_describe(demand)} for an engine actor "
        f"(alive nodes: {len(alive)}, with {_describe(have) if have else 'nothing'} in all) "
        f"for {timeout_s:g} s", hint=f"add a node with {_describe(demand)}, or raise "
        "ray.capacity_timeout_s")


class CapacityWatch:
    """While an execution runs, stop it (``KeyboardInterrupt`` in the main thread) rather than
    let Ray wait for resources forever:

    - ``expired``: no alive node could host an engine actor for ``timeout_s`` in a row (the
      nodes were lost and none came back): the job fails with the capacity line;
    - ``shrunk``: the alive nodes can host fewer actors than the execution's ``pool`` for
      ``SHRINK_GRACE_S``. Ray restarts a lost actor where there is room, and there is none: the
      restart waits for a CPU its surviving siblings hold, and so do the lost actor's batches,
      retried on it (a deadlock, ray-project/ray#26991). The job starts again with the pool the
      nodes left can host.
    - ``out_of_memory``: Ray's memory monitor killed an engine actor and its restarts are spent
      (the monitor's message). Ray Data learns of a dead actor only when a call to it fails,
      and while the node stays short of memory the monitor also keeps killing Ray Data's own
      helper actor, which the driver waits on: the execution could wait for minutes.
    """

    def __init__(self, demand: dict[str, float], timeout_s: float, pool: int = 1):
        import threading

        self.demand, self.timeout_s, self.pool = demand, timeout_s, pool
        self.expired = self.shrunk = False
        self.out_of_memory: str | None = None
        self._lock, self._active = threading.Lock(), False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="capacity-watch", daemon=True)

    def __enter__(self) -> "CapacityWatch":
        import signal
        import threading

        # The watch stops the execution with a SIGINT, which a process started with SIGINT
        # ignored (a background job of a script: `marc-ray run ... &`, or a pytest-xdist
        # worker's child) would drop: the run would then wait forever. While the watch is
        # active, SIGINT raises KeyboardInterrupt, as it does in a terminal.
        self._previous_handler = None
        if threading.current_thread() is threading.main_thread() \
                and signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL, None):
            self._previous_handler = signal.signal(signal.SIGINT, signal.default_int_handler)
        self._active = True
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        import signal

        with self._lock:
            self._active = False
        self._stop.set()
        self._thread.join()
        if self._previous_handler is not None:
            signal.signal(signal.SIGINT, self._previous_handler)

    def _watch(self) -> None:
        import signal
        import threading

        since = smaller_since = None
        while not self._stop.wait(CAPACITY_POLL_S):
            try:
                hostable = hostable_actors(self.demand)
                out_of_memory = _engine_actor_out_of_memory()
            except Exception:  # noqa: BLE001  (the GCS is busy: ask again next time)
                continue
            now = time.monotonic()
            since = None if hostable else (since or now)
            smaller_since = (smaller_since or now) if 0 < hostable < self.pool else None
            expired = since is not None and now - since >= self.timeout_s
            shrunk = smaller_since is not None and now - smaller_since >= SHRINK_GRACE_S
            if expired or shrunk or out_of_memory:
                with self._lock:
                    if self._active:
                        self.expired, self.shrunk = expired, shrunk
                        self.out_of_memory = out_of_memory
                        # a real SIGINT: it also wakes a main thread blocked in a system call
                        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
                return


def free_actors(demand: dict[str, float]) -> int:
    """How many engine actors the cluster's free resources could host now (summed over nodes)."""
    import ray

    free = ray.available_resources()
    return min(int(free.get(name, 0.0) // amount) for name, amount in demand.items())


def release_failed_actors(demand: dict[str, float], hostable: int,
                          within_s: float = RELEASE_TIMEOUT_S) -> int:
    """Free the engine actors of a failed execution; the pool size for the next one (>= 1).

    Ray Data releases a failed execution's actors by dropping its handles (it kills none), and
    handles live on (in the exception's traceback, a reference cycle, and inside Ray Data). On a
    cluster that shrank below the pool, a surviving actor would keep the only free CPU while the
    next execution's actors waited for it forever (a hang). So collect, kill what is left
    (``_kill_engine_actors``), then wait (at most ``within_s``, a cluster event) until the
    resources of as many actors as the alive nodes can host (``hostable`` at most: a node just
    lost may still count as alive) are free; the next pool is no larger than what is free.
    """
    gc.collect()
    _kill_engine_actors()
    deadline = time.monotonic() + within_s
    while (free := free_actors(demand)) < (hostable := min(hostable, hostable_actors(demand))) \
            and time.monotonic() < deadline:
        time.sleep(CAPACITY_POLL_S)
        gc.collect()
    return max(1, min(hostable, free))


def _engine_actors() -> dict:
    """This job's engine actors in Ray's actor table (``ray._private.state``: the GCS actor
    table; Ray has no public way to list actors without the dashboard). Empty when the GCS
    cannot answer now."""
    import ray
    from ray._private import state

    try:
        job = ray.JobID.from_hex(ray.get_runtime_context().get_job_id())
        actors = state.actors(job_id=job)
    except Exception:  # noqa: BLE001  (the GCS is busy: the callers ask again or wait, bounded)
        return {}
    return {actor_id: info for actor_id, info in actors.items()
            if "EngineBatches" in str(info.get("ActorClassName"))}


def _engine_actor_out_of_memory() -> str | None:
    """The memory monitor's message when an engine actor of this job died of OOM, else None."""
    for info in _engine_actors().values():
        cause = info.get("DeathCause")
        if info.get("State") == "DEAD" and cause is not None and cause.HasField("oom_context"):
            return cause.oom_context.error_message or "killed by Ray's memory monitor"
    return None


def _kill_engine_actors() -> None:
    """Kill the engine actors of this job still alive between two executions (none should be).

    Ray Data drops its handles to a failed execution's actors and kills none, and references
    kept inside Ray Data outlive the garbage collection (seen: the survivor on a shrunk cluster
    alive for minutes after its execution failed). Ray has no public way to kill an actor
    without its handle, so this kills through the core worker (as ``ray.kill`` does). Best
    effort: what cannot be killed is left to the bounded wait.
    """
    import ray
    from ray._private import worker

    for actor_id, info in _engine_actors().items():
        if info.get("State") != "DEAD":
            try:
                worker.global_worker.core_worker.kill_actor(ray.ActorID.from_hex(actor_id), True)
            except Exception:  # noqa: BLE001  (no handle left here: it dies with its references)
                continue


def wait_for_capacity(demand: dict[str, float], timeout_s: float) -> int:
    """Wait (at most ``timeout_s``) until a node can host an engine actor; how many it can host.

    Raises
    ------
    InfrastructureError
        No alive node has the resources of one actor after ``timeout_s``: names the resource.
    """
    deadline = time.monotonic() + timeout_s
    while (hostable := hostable_actors(demand)) == 0:
        if time.monotonic() >= deadline:
            raise _capacity_error(demand, timeout_s)
        time.sleep(CAPACITY_POLL_S)
    return hostable


class PartialResults:
    """Results of shards not finished yet, persisted as they come (``_partial/``): a stop keeps
    them, so a rerun judges only the work units still missing runs, not whole shards again.

    Each flush writes one small Parquet file atomically; the folder is removed once every shard
    is written. Files are named by a per-run token, so a rerun never overwrites one.
    """

    def __init__(self, output: str):
        import uuid

        self.folder = join(output, PARTIAL_DIR)
        self.token = uuid.uuid4().hex[:12]
        self.buffer: list[pa.Table] = []
        self.sequence = 0
        self.last_flush = time.monotonic()

    def read(self) -> list[pa.Table]:
        tables = []
        for name in list_names(self.folder):
            if not name.startswith("results-"):
                continue  # a temporary file a killed run left behind
            try:
                tables.append(read_table(join(self.folder, name)).select(list(RESULT_COLUMNS)))
            except (ContractError, KeyError, pa.ArrowInvalid):
                continue  # cached work only: an unreadable file is judged again
        return tables

    def record(self, batch: pa.Table) -> None:
        self.buffer.append(batch.select(list(RESULT_COLUMNS)))

    def flush(self, collector: "ResultCollector", every_s: float = 0.0) -> None:
        """Persist the buffered results of shards still unfinished (at most every ``every_s``)."""
        if not self.buffer or time.monotonic() - self.last_flush < every_s:
            return
        table = pa.concat_tables(self.buffer, promote_options="permissive")
        self.buffer, self.last_flush = [], time.monotonic()
        keep = [collector.shard_of.get(item) in collector.results
                for item in table.column("id").to_pylist()]
        table = table.filter(pa.array(keep, pa.bool_()))
        if table.num_rows:
            write_table_atomic(table, join(self.folder, f"results-{self.token}-{self.sequence:06d}.parquet"))
            self.sequence += 1

    def clear(self) -> None:
        for name in list_names(self.folder):
            remove(join(self.folder, name))


class ResultCollector:
    """The driver's bookkeeping: results keyed by (id, run), so a batch delivered twice counts
    once; a shard is written (atomically) as soon as every run of every one of its items is in.

    Driver cost per result: one dict insert, and the shard's assembly when it completes
    (``benchmarks/bench_driver.py`` measures it).
    """

    def __init__(self, plan: Plan, pending: list[int], write: Callable | None = None):
        self.plan, self.write = plan, write or _write_shard
        size = plan.config.shard_size
        self.ids = ids = plan.comparisons.column("id").to_pylist()
        self.shard_of = {ids[index]: shard for shard in pending
                         for index in range(shard * size, min((shard + 1) * size, len(ids)))}
        self.expected = {shard: min(size, len(ids) - shard * size) * plan.builder.runs_per_item
                         for shard in pending}
        self.results: dict[int, dict[tuple[str, int], RunResult]] = {shard: {} for shard in pending}
        self.total = sum(self.expected.values())
        self.received = 0

    def add(self, batch: pa.Table) -> tuple[int, list[int]]:
        """Take one batch of engine results; (new results, shards written)."""
        columns = [batch.column(name).to_pylist() for name in RESULT_COLUMNS]
        new, written = 0, []
        for item_id, run, p_first, mass, status in zip(*columns):
            shard = self.shard_of[item_id]
            bucket = self.results.get(shard)
            if bucket is None:
                continue  # a late duplicate of a shard already written
            key = (item_id, int(run))
            if key not in bucket:
                new += 1
            bucket[key] = RunResult(math.nan if p_first is None else float(p_first),
                                    math.nan if mass is None else float(mass), status)
            if len(bucket) == self.expected[shard]:
                self.write(self.plan, shard, self.results.pop(shard))
                written.append(shard)
        self.received += new
        return new, written

    def take(self, tables: list[pa.Table]) -> list[int]:
        """Results persisted by an earlier, interrupted run (not counted as judged now);
        returns the shards they complete (written at once)."""
        received, written = self.received, []
        for table in tables:
            keep = [self.shard_of.get(item) in self.results for item in table.column("id").to_pylist()]
            written += self.add(table.filter(pa.array(keep, pa.bool_())))[1]
        self.received = received
        return written

    def missing_runs(self) -> int:
        return sum(self.expected[shard] - len(bucket) for shard, bucket in self.results.items())

    def missing_units(self) -> list[dict]:
        """The work units (shard, prefix group) with a run not in yet, in shard order; a unit
        partly judged lists its runs already in (``done``, JSON), which are not judged again."""
        size, ids = self.plan.config.shard_size, self.ids
        units = []
        for shard, bucket in sorted(self.results.items()):
            items = ids[shard * size:(shard + 1) * size]
            for group, (_, _, runs) in enumerate(self.plan.builder.groups):
                keys = [(item, run) for item in items for run, _ in runs]
                done = [key for key in keys if key in bucket]
                if len(done) < len(keys):
                    units.append({"shard": shard, "group": group, "done": json.dumps(done)})
        return units

    def check_complete(self) -> None:
        if self.results:
            missing = {shard: self.expected[shard] - len(bucket) for shard, bucket in self.results.items()}
            raise RuntimeError(f"the engine returned no result for some runs {missing} (shard: runs "
                               f"missing); finished shards are kept, rerun the same command to resume")


def _write_shard(plan: Plan, shard: int, results: dict[tuple[str, int], RunResult]) -> None:
    by_item: dict[str, dict[int, RunResult]] = {}
    for (item_id, run), result in results.items():
        by_item.setdefault(item_id, {})[run] = result
    rows = [annotation_row(item["id"], plan.judge, plan.builder.layout, by_item[item["id"]],
                           carried_columns(item, plan.config.carry))
            for item in plan.shard_items(shard)]
    write_finished_shard(plan, shard, annotation_table(rows, plan.builder.layout, plan.config,
                                                       plan.judge))


def _replay(config: AnnotateConfig, start: float) -> AnnotateSummary:
    """engine="replay": judge outputs computed elsewhere (``engine_options['runs']``)."""
    from .replay import write_replay

    options = dict(config.engine_options)
    if "runs" not in options:
        raise ValueError("annotate config: engine 'replay' needs engine_options.runs, the run "
                         "table to replay (see marc_ray.annotate.replay)")
    comparisons = validate_comparisons(read_table(config.input), config.input, carry=config.carry)
    runs_path = options.pop("runs")
    make_dirs(config.output)
    # streamed batch by batch from the run table's file into the shard (bounded memory)
    n_rows = write_replay(runs_path, config.judge_name or "replay", shard_path(config.output, 0),
                          comparisons=comparisons, source=runs_path, carry=config.carry,
                          labels=config.labels,
                          metadata=judge_metadata(config, config.judge_name or "replay"), **options)
    return AnnotateSummary(config.output, n_rows, 1, shards_written=[0],
                           seconds=time.perf_counter() - start)


def read_annotations(output: str) -> pa.Table:
    """Every shard of an annotate output folder as one table (layout metadata kept)."""
    return read_table(output)
