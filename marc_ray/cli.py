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
import contextlib
import importlib
import os
import sys
import tempfile

from . import __version__
from .contracts import ContractError, InfrastructureError
from .contracts.errors import EXIT_INFRASTRUCTURE, EXIT_INPUT, EXIT_INTERRUPTED

# subcommand modules, in pipeline order; each defines register(subparsers)
COMMAND_MODULES = (
    "marc_ray.annotate.cli",
    "marc_ray.fit.cli",
    "marc_ray.calibrate.cli",
    "marc_ray.report.cli",
    "marc_ray.winrate.cli",
    "marc_ray.plan",
    "marc_ray.pipeline_cli",
    "marc_ray.datasets.cli",
    "marc_ray.benchmark.cli",
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
    parser.add_argument("--verbose", action="store_true",
                        help="show Ray's own log lines on the terminal (by default they go to "
                             "Ray's session logs and $TMPDIR/marc-ray-logs-UID/COMMAND-PID.log)")
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
    with quiet_ray(enabled=not args.verbose, command=args.command) as ray_log:
        code = _run_command(args)
        if code == 0 and ray_log:  # kept only when the command failed (where it can help)
            open(ray_log, "wb").close()  # emptied: removed on the way out
        return code


def _run_command(args) -> int:
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


RAY_DATA_QUIET_LOGGING = """\
# marc_ray: Ray Data logs to its session file only (marc-ray --verbose restores the console)
version: 1
disable_existing_loggers: false
formatters:
  ray: {format: "%(asctime)s\\t%(levelname)s %(filename)s:%(lineno)s -- %(message)s"}
handlers:
  file: {class: ray.data._internal.logging.SessionFileHandler, formatter: ray,
         filename: ray-data.log}
loggers:
  ray.data: {level: DEBUG, handlers: [file], propagate: false}
"""


@contextlib.contextmanager
def quiet_ray(enabled: bool, command: str):
    """Keep Ray's own messages off the terminal while a command runs; yields the log file.

    marc_ray's stage lines, its progress bar and its error line stay on the terminal. Ray Data's
    log (execution plans, "Progress bars disabled", the stack traces it prints) goes only to its
    session file (``logs/ray-data/ray-data.log``); Ray's Python logger shows errors only; what
    Ray's C++ core writes to the process's stderr (the E-level "constructor arguments in the
    object store" line) goes to ``$TMPDIR/marc-ray-logs-<uid>/<command>-<pid>.log`` (kept only
    when the command failed; the line is also in Ray's session log ``python-core-driver-*.log``). Only when this process's stderr is the real one (not when a test captures it).
    """
    if not enabled or sys.stderr is not sys.__stderr__ or sys.__stderr__ is None:
        yield None
        return
    folder = os.path.join(tempfile.gettempdir(), f"marc-ray-logs-{os.getuid()}")
    os.makedirs(folder, exist_ok=True)
    config = os.path.join(folder, "ray-data-logging.yaml")
    if not os.path.exists(config):
        with open(config + f".{os.getpid()}", "w", encoding="utf-8") as stream:
            stream.write(RAY_DATA_QUIET_LOGGING)
        os.replace(config + f".{os.getpid()}", config)
    os.environ.setdefault("RAY_DATA_LOGGING_CONFIG", config)
    os.environ.setdefault("MARC_RAY_QUIET", "1")  # ray_cluster.ensure_ray: Ray's logger at ERROR
    log = os.path.join(folder, f"{command}-{os.getpid()}.log")
    sys.stderr.flush()
    terminal = os.dup(2)
    with open(log, "ab", buffering=0) as stream:
        os.dup2(stream.fileno(), 2)  # fd 2 (Ray's C++ core writes there): the log file
    sys.stderr = open(terminal, "w", buffering=1, encoding="utf-8", errors="replace",
                      closefd=False)  # Python's stderr (ours, tqdm's): still the terminal
    try:
        yield log
    finally:
        sys.stderr.flush()
        os.dup2(terminal, 2)
        os.close(terminal)
        sys.stderr = sys.__stderr__
        if not os.path.getsize(log):
            os.remove(log)


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
