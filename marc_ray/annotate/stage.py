"""The pipeline's annotate stage: one judge's annotate job, and the files it depends on."""

from __future__ import annotations

from .config import AnnotateConfig
from .engines import engine_spec


def annotate_stage(judge: AnnotateConfig, ray) -> dict:
    """Run the annotate job for one judge (it resumes finished shards by itself).

    ``ray`` is the run's ``RayConfig``: joined only when the engine needs a cluster (replay
    reads verdicts and needs none). Returns the counts of the stage's progress line.
    """
    from .job import annotate

    if engine_spec(judge.engine).needs_cluster:
        ray.join()
    summary = annotate(judge, capacity_timeout_s=ray.capacity_timeout_s)
    return {"items": summary.n_items, "shards written": len(summary.shards_written),
            "shards resumed": len(summary.shards_skipped)}


def judge_input_files(judge: AnnotateConfig) -> list[str]:
    """Files a judge reads besides the data: a replay judge's run table.

    Its verdicts *are* that file, so the annotate stage must rerun when the file changes, not
    only when its path does (model folders are named by path and not hashed: they are large).
    """
    return engine_spec(judge.engine).input_files(judge)
