"""``marc-ray run``, ``marc-ray apply`` and ``marc-ray demo-data``: the whole job from the shell."""

from __future__ import annotations

import argparse
import shlex
import sys


def register(subparsers) -> None:
    run = subparsers.add_parser(
        "run", help="run the whole pipeline from one YAML config (resumable)",
        description="Run annotate -> fit (or tune) -> score -> calibrate -> report from one YAML "
                    "configuration, validated before anything starts. Every stage writes under "
                    "the run folder; rerunning the same command resumes where it stopped.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  marc-ray run configs/demo.yaml                 # local Ray, offline SmolLM2 judge\n"
               "  marc-ray run configs/demo.yaml --out runs/try2\n"
               "  marc-ray run configs/example_gpu.yaml --address auto   # an existing cluster\n"
               "On a cluster: ray job submit --working-dir . -- python jobs/pipeline.py CONFIG")
    run.add_argument("config", metavar="CONFIG", help="pipeline YAML (see docs/pipeline.md)")
    run.add_argument("--out", default=None, help="run folder (overrides run_dir in the config)")
    run.add_argument("--address", default=None,
                     help="Ray cluster to use ('auto', 'ray://host:10001'); default: $RAY_ADDRESS, "
                          "else an embedded local cluster")
    run.add_argument("--plan", action="store_true",
                     help="print the plan (runs, tokens, engine time, labels: `marc-ray plan`) and exit")
    run.add_argument("--no-plan", action="store_true",
                     help="start without printing the plan first (it takes a few seconds: sampled "
                          "tokens and the prior's time; `marc-ray plan` probes the engine)")
    run.set_defaults(handler=_run)

    apply = subparsers.add_parser(
        "apply", help="apply a certified judge to new items: verdict or escalate",
        description="Apply a certified judge to new items: each gets the verdict of the first "
                    "judge whose confidence reaches its certified threshold, or 'escalate'. Also "
                    "checks the new confidences against the calibration set's (drift).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  marc-ray apply runs/demo new_comparisons.jsonl --out runs/demo/applied\n"
               "      a run folder and raw comparisons (id, instruction, response_a, response_b):\n"
               "      the run's judges annotate them with its simulated annotators, its fitted\n"
               "      model scores them, and its certificate routes them (what it certifies)\n"
               "  marc-ray apply runs/demo/calibrate/certificate.json scored.parquet --out applied\n"
               "      a certificate and items already annotated and scored (marc-ray score); for a\n"
               "      cascade, one row per (item, judge), e.g. a run's whole score/ folder")
    apply.add_argument("certified", metavar="RUN_OR_CERTIFICATE",
                       help="a pipeline run folder, or a certificate.json")
    apply.add_argument("data", metavar="DATA",
                       help="with a run folder: raw comparisons; with a certificate: scored items "
                            "(.parquet / .jsonl)")
    apply.add_argument("--out", required=True,
                       help="folder for decisions.parquet and apply_summary.json (and, with a run "
                            "folder, the new items' annotations and scores; rerun to resume)")
    apply.set_defaults(handler=_apply)

    demo = subparsers.add_parser(
        "demo-data", help="write the built-in demo benchmark (comparisons + few-shot pool)",
        description="Write the built-in benchmark of verifiable comparisons labelled by simulated "
                    "annotators (marc_ray.demo) as comparisons.jsonl and pool.jsonl.")
    demo.add_argument("--out", required=True, help="folder to write into")
    from .demo import DemoSpec  # light: numpy only

    demo.add_argument("--n-items", type=int, default=DemoSpec.n_items,
                      help=f"comparisons (default {DemoSpec.n_items})")
    demo.add_argument("--seed", type=int, default=DemoSpec.seed,
                      help=f"random seed (default {DemoSpec.seed})")
    demo.set_defaults(handler=_demo)


def _run(args) -> int:
    import signal

    from .config import PipelineConfig
    from .pipeline import run_pipeline

    config = PipelineConfig.from_yaml(args.config)
    changes = {}
    if args.out:
        changes["run_dir"] = args.out
    if args.address:
        changes["ray"] = dict(config.to_dict()["ray"], address=args.address)
    if changes:
        config = config.replace(**changes)
    from .pipeline import check_inputs
    from .plan import print_run_plan

    check_inputs(config)  # a FIFO as data would block the plan forever
    planned = True if args.no_plan and not args.plan else print_run_plan(config)
    if args.plan:
        return 0 if planned else 2

    def on_term(signum, frame):  # SIGTERM (a scheduler, `kill`) ends like Ctrl-C: cleanly, resumable
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    command = "marc-ray run " + " ".join(shlex.quote(a) for a in sys.argv[2:]) \
        if len(sys.argv) > 2 and sys.argv[1] == "run" else f"marc-ray run {args.config}"
    result = run_pipeline(config, command=command)
    print(f"report:      {result['report']}")
    print(f"certificate: {result['certificate']}")
    print(f"wall time:   {result['wall_s']} s")
    return 0


def _apply(args) -> int:
    from .apply import apply_file, apply_run

    from .contracts.io import is_dir

    if is_dir(args.certified):
        summary = apply_run(args.certified, args.data, args.out)
    else:
        summary = apply_file(args.certified, args.data, args.out)
    print(f"{summary['n']} items: decided {summary['coverage']:.1%}, escalated {summary['escalated']}")
    print(f"  certificate provenance: {summary['certificate_provenance']}")
    for name, count in summary["by_stage"].items():
        print(f"  decided by {name}: {count}")
    for name, result in summary["drift"].items():
        print(f"  drift ({name}): {result['message']}")
    observed = summary.get("agreement_on_decided")
    if observed and observed["agreement"] is not None:
        print(f"  agreement with the new items' human labels on decided items: "
              f"{observed['agreement']:.1%} of {observed['n']}")
    print(f"written: {args.out}/decisions.parquet, {args.out}/apply_summary.json")
    return 0


def _demo(args) -> int:
    from .demo import DemoSpec, write_demo

    paths = write_demo(args.out, DemoSpec(n_items=args.n_items, seed=args.seed))
    print("\n".join(paths))
    return 0
