"""``marc-ray report RUN_DIR``: (re)write the report of a pipeline run."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "report", help="write the HTML / Markdown / JSON report of a pipeline run",
        description="Write the transparent report of a finished `marc-ray run`: the guarantee in "
                    "plain words, every component of the certificate, diagnostics (monotonicity, "
                    "drift, calibration size), plots, and a reproducibility manifest.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  marc-ray report runs/demo            # writes runs/demo/report/report.html")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run folder of `marc-ray run`")
    parser.add_argument("--out", default=None,
                        help="folder for the report (default: RUN_DIR/report)")
    parser.set_defaults(handler=_report)


def _report(args) -> int:
    from ..contracts.outputs import check_output_dir
    from .stage import report_stage

    if args.out is not None:
        check_output_dir(args.out)  # before any work
    paths = report_stage(args.run_dir, out_dir=args.out)
    for kind, path in paths.items():
        print(f"{kind:<12} {path}")
    return 0
