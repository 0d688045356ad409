"""`marc-ray plan`'s estimated annotate time against the measured one (target: within 20%).

    sed -e 's|^run_dir: runs/demo |run_dir: /tmp/demo100 |' -e 's|    n_items: 200 |    n_items: 100 |' \\
        configs/demo.yaml > /tmp/demo100.yaml
    PYTHONPATH=$PWD python benchmarks/bench_plan_demo.py /tmp/demo100.yaml --probe 4

1. the plan with a probe of the configured engine on the first N items (``build_plan``);
2. the annotate stage as the pipeline runs it (``prepare_data``, a local Ray cluster of its own,
   ``annotate.stage.annotate_stage``), timed with the cluster and actor start included.
Prints both and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    import ray

    from marc_ray.config import PipelineConfig
    from marc_ray.annotate.stage import annotate_stage
    from marc_ray.pipeline import prepare_data
    from marc_ray.plan import build_plan, format_plan

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--probe", type=int, default=4)
    args = parser.parse_args(argv)
    config = PipelineConfig.from_yaml(args.config)
    print(f"load average {os.getloadavg()}", flush=True)
    plan = build_plan(config, probe_items=args.probe)
    print(format_plan(plan), flush=True)
    estimate = plan["judges"][0]["estimate"]["engine_seconds_with_load"]
    prepare_data(config)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    start = time.perf_counter()
    ray.init(address="local", num_cpus=config.ray.num_cpus, include_dashboard=False, log_to_driver=False)
    annotate_stage(config.judges()[0], config.ray)
    measured = time.perf_counter() - start
    print(json.dumps({"estimate_s": estimate, "measured_s": round(measured, 1),
                      "ratio": round(estimate / measured, 3), "target": "0.8 to 1.2",
                      "load": os.getloadavg()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
