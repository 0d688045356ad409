"""The ``marc-ray`` command line.

Each stage owns its subcommands in a ``cli`` module exposing ``register(subparsers)``; this file
only wires them together, importing nothing heavy, so ``marc-ray --help`` is instant.
A subcommand returns an exit code (``contracts.errors.EXIT_CODES``). Bad input — a
:class:`~marc_ray.contracts.ContractError`, a ``ValueError`` from parameter validation, a file
that cannot be read or written, a request too large for memory — exits with status 2 and one
line naming the file, row and field. A failure of the cluster or the judge engine — Ray not
starting, a worker killed for memory or lost with its node beyond the retries, an HTTP judge
answering 4xx/5xx or unreachable (an :class:`~marc_ray.contracts.InfrastructureError`, or Ray's
own exception, unwrapped from Ray's wrappers by ``ray_cluster.user_failure``) — exits with
status 5 and one line that says "rerun to resume" where that is true. An interrupt exits with
130. Never a traceback: ``marc-ray --debug COMMAND`` shows it as well.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .contracts import ContractError, InfrastructureError
from .contracts.errors import EXIT_INFRASTRUCTURE, EXIT_INPUT, EXIT_INTERRUPTED

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
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error (for bug reports)")
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
    except KeyboardInterrupt:
        print(f"marc-ray {args.command}: interrupted; finished outputs are kept, rerun to resume",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as raised:  # noqa: BLE001 - classified below; anything else re-raised
        if args.debug:
            raise
        error = _user_failure(raised)
        if isinstance(error, InfrastructureError):
            print(f"marc-ray {args.command}: failed: {describe_error(error)}", file=sys.stderr)
            return EXIT_INFRASTRUCTURE
        if isinstance(error, (ContractError, ValueError, OSError, MemoryError)):
            print(f"marc-ray {args.command}: error: {describe_error(error)}", file=sys.stderr)
            return EXIT_INPUT
        raise


def _user_failure(error: BaseException) -> BaseException:
    """``error`` with Ray's wrappers taken off (``ray_cluster.user_failure``), when Ray ran."""
    if "ray" not in sys.modules:  # nothing wrapped it; no need to import Ray for an input error
        return error
    from .ray_cluster import user_failure

    return user_failure(error)


def describe_error(error: BaseException) -> str:
    """One line for a user: the file (and row and field) at fault and what to do."""
    from .contracts.redact import redact_text

    if isinstance(error, ContractError):
        text = str(error)
    elif isinstance(error, UnicodeDecodeError):
        text = f"not UTF-8 text (byte {error.start}): {error.reason}"
    elif isinstance(error, OSError):
        where = error.filename or ""
        if error.filename2:
            where += f" -> {error.filename2}"
        reason = error.strerror or str(error)
        text = f"{where}: {reason}" if where else reason
    elif isinstance(error, MemoryError):
        text = "not enough memory for this request (a grid or input this large does not fit); " \
               "ask for less"
    else:
        text = str(error)
    return redact_text(" ".join(text.split()))

if __name__ == "__main__":
    sys.exit(main())
