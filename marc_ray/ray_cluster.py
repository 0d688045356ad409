"""Joining Ray, and what a Ray failure means to a user.

The one place a stage connects to a cluster or starts a local one (:func:`ensure_ray`: one retry,
then an :class:`~marc_ray.contracts.InfrastructureError` with a hint), and the one place Ray's
exceptions are turned into the failure a user should see (:func:`user_failure`: Ray's wrappers
unwrapped to the root cause; a worker killed for memory or lost with its node mapped to an
``InfrastructureError``, exit code 5). Below the pipeline and ``apply`` (both call it), and above
nothing but Ray itself, so that a stage's adapter never has to import the orchestrator.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass

from .contracts.errors import InfrastructureError
from .contracts.redact import redact_text
from .contracts.validation import check_number, fail

RAY_START_TRIES = 2  # one retry: under load a local start can time out once and then succeed
# Ray's own failures that mean a worker, an actor or a node is gone for good (retries spent)
LOST_WORKER_ERRORS = ("RayActorError", "ActorDiedError", "ActorUnavailableError", "NodeDiedError",
                      "WorkerCrashedError", "ObjectLostError", "OwnerDiedError",
                      "ObjectReconstructionFailedError", "LocalRayletDiedError", "RaySystemError",
                      "ObjectFetchTimedOutError")
# A Ray Data UDF's exception reaches the driver as itself (an HTTP judge's InfrastructureError, a
# ValueError), not as a UserCodeException whose cause is lost on the way (read at ray.data import)
os.environ.setdefault("RAY_DATA_RAISE_ORIGINAL_MAP_EXCEPTION", "1")
MEMORY_HINT = ("lower annotate.batch_size or num_workers, or give the node more memory")
# The kernel's OOM killer SIGKILLs a worker; Ray cannot tell that from any other loss (its docs
# say so; its own memory monitor, which kills first, is the OutOfMemoryError case above), so a
# loss names memory as a likely cause with what to lower
LOST_HINT = ("check the cluster (`ray status`) and the nodes' memory (a worker the kernel's OOM "
             f"killer ends reads as lost: {MEMORY_HINT}); raise annotate.max_restarts to survive "
             "more losses")
CAPACITY_TIMEOUT_S = 300.0  # longest wait for a node able to host the work (ray.capacity_timeout_s)


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to ``address`` / $RAY_ADDRESS, or start an embedded local cluster (once).

    Parameters
    ----------
    address : str, optional
        A running cluster (``ray.address`` of the configuration); None: $RAY_ADDRESS if set,
        else a private local cluster; "local": a private local cluster.
    num_cpus : int, optional
        Local cluster only: the CPUs it may use (None: all).

    Raises
    ------
    InfrastructureError
        Ray did not start (or the cluster could not be joined) twice in a row; the message says
        what to check.
    """
    import ray

    if "ray.data" in sys.modules:  # imported before this module set the default above
        sys.modules["ray.data"].DataContext.get_current().raise_original_map_exception = True
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    for attempt in range(RAY_START_TRIES):
        try:
            _init_ray(ray, address, num_cpus)
            return
        except Exception as error:  # noqa: BLE001 - Ray raises bare Exception on a startup timeout
            if ray.is_initialized():
                ray.shutdown()
            if attempt + 1 == RAY_START_TRIES:
                raise ray_start_failure(address, error) from error


def _init_ray(ray, address: str | None, num_cpus: int | None) -> None:
    # the CLI keeps Ray's own lines off the terminal unless --verbose (cli.quiet_ray)
    level = logging.ERROR if os.environ.get("MARC_RAY_QUIET") else logging.INFO
    if address and address != "local":  # "local": Ray's word for a new embedded cluster
        ray.init(address=address, log_to_driver=False, logging_level=level)
    else:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private local cluster needs no token
        # address="local": always a new embedded cluster, never one that `ray start` left running
        # on this machine (ray.init() without an address would join the latest such cluster)
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                 logging_level=level)


def ray_start_failure(address: str | None, error: BaseException) -> InfrastructureError:
    """The one-line failure of a Ray start (or join) that failed twice."""
    join = address and address != "local"
    what = f"could not join the Ray cluster at {address!r}" if join else \
        "Ray could not start a local cluster"
    hint = ("check that a cluster runs there (`ray status --address ...`), or leave ray.address "
            "and $RAY_ADDRESS unset for a local cluster") if join else \
        ("the machine may be overloaded or short of memory or /tmp space: free some, lower "
         "ray.num_cpus, or point RAY_TMPDIR at a writable folder with room")
    return InfrastructureError(f"{what} after {RAY_START_TRIES} tries "
                               f"({_first_line(error)})", hint=hint)


def _first_line(error: BaseException, limit: int = 200) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return redact_text(text)[:limit]


def _ray_wrapped_cause(error: BaseException) -> BaseException | None:
    """The exception Ray wrapped in ``error`` (a task's or a Ray Data UDF's), or None."""
    ray_exceptions = sys.modules.get("ray.exceptions")
    if ray_exceptions is None:
        return None
    if isinstance(error, ray_exceptions.RayTaskError):
        return getattr(error, "cause", None) or error.__cause__
    if isinstance(error, ray_exceptions.UserCodeException):
        return error.__cause__ or error.__context__
    return None


def user_failure(error: BaseException) -> BaseException:
    """The failure to show a user for ``error`` raised while a job ran on Ray.

    Ray wraps what a worker raised (``RayTaskError``, Ray Data's ``UserCodeException``); the
    root cause is what the user must see: a ``ValueError`` / ``ContractError`` stays bad input
    (exit 2), an ``InfrastructureError`` (an HTTP judge's 401 or a server that is down) stays
    one. Ray's own failures become an ``InfrastructureError`` (exit 5): a worker killed for
    memory (``OutOfMemoryError``), a worker or node lost beyond the retries (``ActorDiedError``,
    ``ActorUnavailableError``, ``NodeDiedError``, ...). Anything else is returned unchanged.
    """
    seen = set()
    current = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        cause = _ray_wrapped_cause(current)  # first: a wrapper is also an instance of its cause
        if cause is None:
            return _ray_failure(current) or current
        current = cause
    return error


def _ray_failure(error: BaseException) -> InfrastructureError | None:
    """An ``InfrastructureError`` for Ray's own failures, None for anything else."""
    if isinstance(error, InfrastructureError):
        return error
    if "ray.exceptions" not in sys.modules:
        return None
    names = {cls.__name__ for cls in type(error).__mro__}
    # Ray's memory monitor says so; a SIGKILL from the kernel's OOM killer reads like any loss
    if "OutOfMemoryError" in names or "running low on memory" in str(error):
        return InfrastructureError(f"a Ray worker was killed for running out of memory "
                                   f"({_first_line(error, 160)})", hint=MEMORY_HINT)
    if names & set(LOST_WORKER_ERRORS):
        return InfrastructureError(f"a Ray worker or node was lost beyond the retries "
                                   f"({_first_line(error, 160)})", hint=LOST_HINT)
    return None


@dataclass
class RayConfig:
    """Where a job runs (the pipeline's ``ray:`` section)."""

    address: str | None = None  # None: $RAY_ADDRESS if set, else an embedded local cluster
    num_cpus: int | None = None  # local cluster only: CPUs it may use (None: all)
    capacity_timeout_s: float = CAPACITY_TIMEOUT_S  # no node can host the work (lost nodes,
                               # too small a cluster) or nothing moves this long: exit 5, not a hang

    def validate(self, source: str = "") -> "RayConfig":
        if self.address is not None and not isinstance(self.address, str):
            fail("ray.address", "a string such as 'auto' or 'ray://host:10001'", self.address, source)
        if self.num_cpus is not None:
            check_number("ray.num_cpus", self.num_cpus, source, low=1, integer=True,
                         what="an integer >= 1 (or leave it out for all CPUs)")
        check_number("ray.capacity_timeout_s", self.capacity_timeout_s, source, low=1,
                     what="a number of seconds >= 1")
        return self

    def join(self) -> None:
        """``ensure_ray`` with this section's address and CPUs."""
        ensure_ray(self.address, self.num_cpus)
