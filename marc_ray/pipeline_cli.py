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
    run.set_defaults(handler=_run)

    apply = subparsers.add_parser(
        "apply", help="apply a certificate to new scored items: verdict or escalate",
        description="Apply a certificate to new items: each gets the verdict of the first judge "
                    "whose confidence reaches its certified threshold, or 'escalate'. Also checks "
                    "the new confidences against the calibration set's (drift).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  marc-ray apply runs/demo/report/certificate.json "
               "runs/demo/score/SmolLM2-135M-Instruct.parquet --out runs/demo/applied\n"
               "DATA is a scored (or annotation) file holding the certificate's confidence column.")
    apply.add_argument("certificate", metavar="CERTIFICATE", help="certificate.json")
    apply.add_argument("data", metavar="DATA", help="scored items (.parquet / .jsonl)")
    apply.add_argument("--out", required=True, help="folder for decisions.parquet and apply_summary.json")
    apply.set_defaults(handler=_apply)

    demo = subparsers.add_parser(
        "demo-data", help="write the built-in demo benchmark (comparisons + few-shot pool)",
        description="Write the built-in benchmark of verifiable comparisons labelled by simulated "
                    "annotators (marc_ray.demo) as comparisons.jsonl and pool.jsonl.")
    demo.add_argument("--out", required=True, help="folder to write into")
    demo.add_argument("--n-items", type=int, default=240, help="comparisons (default 240)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
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
    from .apply import apply_file

    summary = apply_file(args.certificate, args.data, args.out)
    print(f"{summary['n']} items: decided {summary['coverage']:.1%}, escalated {summary['escalated']}")
    for name, count in summary["by_stage"].items():
        print(f"  decided by {name}: {count}")
    for name, result in summary["drift"].items():
        print(f"  drift ({name}): {result['message']}")
    print(f"written: {args.out}/decisions.parquet, {args.out}/apply_summary.json")
    return 0


def _demo(args) -> int:
    from .demo import DemoSpec, write_demo

    paths = write_demo(args.out, DemoSpec(n_items=args.n_items, seed=args.seed))
    print("\n".join(paths))
    return 0
