"""``marc-ray winrate RUN_DIR``: human-preference win rates and a leaderboard from a finished run."""

from __future__ import annotations

import argparse

from .estimate import SPARSE_CHOICES


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "winrate", help="human-preference win rates per model pair and a leaderboard (PPI++)",
        description="From a finished `marc-ray run` whose comparisons name their models "
                    "(model_a / model_b): per model pair, the human-preference win rate by "
                    "prediction-powered inference (the judge's probability on every item, the "
                    "human labels on items that trained nothing) with its 1 - delta interval, "
                    "beside the human-only interval and the judge-only (biased) figure; the "
                    "selective view (decided vs escalated); a Bradley-Terry leaderboard.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  marc-ray winrate runs/demo     # writes runs/demo/winrate/winrate.html")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run folder of `marc-ray run`")
    parser.add_argument("--out", default=None, help="output folder (default: RUN_DIR/winrate)")
    parser.add_argument("--delta", type=float, default=None,
                        help="miscoverage of the intervals (default: the certificate's delta)")
    parser.add_argument("--sparse", choices=SPARSE_CHOICES, default="refuse",
                        help="a pair (or model) with too few labelled items: refuse (exit 2, "
                             "the default) or list it without an interval")
    parser.set_defaults(handler=_winrate)


def _winrate(args) -> int:
    from ..contracts.outputs import check_output_dir
    from ..run_folder import RunFolder
    from .estimate import win_rates
    from .items import read_run
    from .render import write_win_rates

    if args.delta is not None and not 0.0 < args.delta < 1.0:
        raise ValueError(f"--delta must be in (0, 1), got {args.delta}")
    folder = RunFolder(args.run_dir)  # built once, passed down
    out = args.out or folder.path("winrate")
    check_output_dir(out)  # before any work
    record = win_rates(read_run(folder, args.delta), args.sparse)
    for kind, path in write_win_rates(record, out).items():
        print(f"{kind:<15} {path}")
    return 0
