"""The ``marc-ray`` command line.

Each stage owns its subcommands in a ``cli`` module exposing ``register(subparsers)``; this file
only wires them together, importing nothing heavy, so ``marc-ray --help`` is instant.
A subcommand returns an exit code; a :class:`~marc_ray.contracts.ContractError` (bad input) or a
``ValueError`` from parameter validation exits with status 2 and a one-line message.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .contracts import ContractError

# subcommand modules, in pipeline order; each defines register(subparsers)
COMMAND_MODULES = (
    "marc_ray.annotate.cli",
    "marc_ray.fit.cli",
    "marc_ray.calibrate.cli",
    "marc_ray.report.cli",
    "marc_ray.plan",
    "marc_ray.pipeline_cli",
    "marc_ray.datasets.cli",
)


class UsageError(ValueError):
    """A bad command-line or configuration value (exit status 2)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="marc-ray",
        description="Certified selective LLM judges: when the judge is confident it agrees with "
                    "humans at least 1 - alpha of the time, with probability 1 - delta; "
                    "everything else is escalated.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Pipeline: annotate -> fit (or tune) -> score -> calibrate -> report / apply.\n"
               "`marc-ray run CONFIG` runs them all. `marc-ray COMMAND --help` for details.",
    )
    parser.add_argument("--version", action="version", version=f"marc_ray {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except ContractError as error:
        print(f"marc-ray {args.command}: error: {error}", file=sys.stderr)
        return 2
    except (UsageError, ValueError) as error:
        print(f"marc-ray {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"marc-ray {args.command}: interrupted; finished outputs are kept, rerun to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
