"""Submit the annotate stage as a Ray job.

    ray job submit --working-dir . --runtime-env jobs/annotate.runtime_env.yaml -- \
        python jobs/annotate.py --config configs/annotate.yaml
    python jobs/annotate.py --smoke-test      # a tiny local run with the offline judge

Flags are those of ``marc-ray annotate`` (one per AnnotateConfig field). ``--smoke-test`` writes
12 trivial comparisons and a 6-item pool to a temporary folder and judges them with
N = 2 annotators x K = 2 shots (SmolLM2, likelihood mode). Exit status 0 on success.
"""

import argparse
import json
import os
import sys
import tempfile

import ray

from marc_ray.annotate import cli
from marc_ray.annotate.job import annotate
from marc_ray.contracts import read_table, validate_annotations


def smoke_data(folder: str) -> dict:
    """Arithmetic items a 135M model ranks well; the pool is disjoint from them by id."""
    def rows(prefix, start, n):
        for i in range(start, start + n):
            right, wrong = str(i + 7), str(i + 9)
            yield {"id": f"{prefix}{i}", "instruction": f"What is {i} + 7?",
                   "response_a": right if i % 2 else wrong, "response_b": wrong if i % 2 else right,
                   "human_label": "a" if i % 2 else "b"}
    paths = {"input": os.path.join(folder, "items.jsonl"), "pool": os.path.join(folder, "pool.jsonl")}
    for key, source in (("input", rows("item-", 0, 12)), ("pool", rows("pool-", 100, 6))):
        with open(paths[key], "w", encoding="utf-8") as stream:
            stream.writelines(json.dumps(row) + "\n" for row in source)
    return dict(paths, output=os.path.join(folder, "annotations"), n_annotators=2, k_shots=2,
                shard_size=4, mode="likelihood")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke-test", action="store_true", help="tiny local run (see above)")
    cli.register(parser.add_subparsers(dest="command"))
    args, rest = parser.parse_known_args(argv)
    namespace = parser.parse_args(["annotate"] + rest)
    with tempfile.TemporaryDirectory() as folder:
        if args.smoke_test:
            for key, value in smoke_data(folder).items():
                if getattr(namespace, key) is None:
                    setattr(namespace, key, value)
        config = cli.config_from_args(namespace)
        ray.init()  # connects to the cluster under `ray job submit`, else starts a local one
        summary = annotate(config)
        table, layout = validate_annotations(read_table(config.output), config.output)
        print(f"annotate: {table.num_rows} items, layout {layout.shape}, "
              f"{len(summary.shards_written)} shards written, {summary.seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
