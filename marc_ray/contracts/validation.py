"""Parameter checks with one error form, for every configuration of the package.

``PipelineConfig`` (``marc_ray.config``), ``AnnotateConfig``, ``FitConfig`` and the benchmark's
config all check keys, types, choices and ranges with these helpers, so every configuration
error reads the same way::

    <source>: <prefix><key> must be <what>, got <value>
    <source>: unknown key '<prefix><key>'; allowed keys in <section>: [...]

A bool is not a number here (YAML's ``yes`` would otherwise pass as 1), and a string where a
number is wanted is an error, not a silent cast.
"""

from __future__ import annotations

import math
import re
from typing import Any, Iterable

from .redact import shown


def _where(source: str) -> str:
    return f"{source}: " if source else ""


def reject_unknown(mapping: dict, allowed: Iterable[str], source: str = "", prefix: str = "") -> None:
    """Raise ``ValueError`` naming the first unknown key of ``mapping`` and the allowed ones."""
    allowed = sorted(set(allowed))
    unknown = sorted(set(mapping) - set(allowed))
    if unknown:
        raise ValueError(f"{_where(source)}unknown key '{prefix}{unknown[0]}'"
                         + (f" (and {unknown[1:]})" if len(unknown) > 1 else "")
                         + f"; allowed keys{' in ' + prefix.rstrip('.') if prefix else ''}: {allowed}")


def is_number(value: Any) -> bool:
    """An int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def fail(name: str, what: str, value: Any, source: str = "") -> None:
    """Raise the package's one configuration error: ``<source>: <name> must be <what>, got <value>``."""
    raise ValueError(f"{_where(source)}{name} must be {what}, got {shown(value)}")


def check_number(name: str, value: Any, source: str = "", *, low: float | None = None,
                 high: float | None = None, low_open: bool = False, high_open: bool = False,
                 integer: bool = False, what: str | None = None) -> None:
    """``value`` is a finite number (an integer with ``integer``) within the given bounds."""
    ok = (is_integer(value) if integer else is_number(value)) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        if what is None:
            kind = "an integer" if integer else "a number"
            bounds = []
            if low is not None:
                bounds.append(f"{'>' if low_open else '>='} {low:g}")
            if high is not None:
                bounds.append(f"{'<' if high_open else '<='} {high:g}")
            what = kind + (" " + " and ".join(bounds) if bounds else "")
        fail(name, what, value, source)


def check_choice(name: str, value: Any, allowed: Iterable, source: str = "") -> None:
    """``value`` is one of ``allowed`` (a mapping's keys or a sequence)."""
    allowed = list(allowed)
    if isinstance(value, (list, dict, set)) or value not in allowed:
        fail(name, f"one of {sorted(allowed)}", value, source)


def check_type(name: str, value: Any, kind: type | tuple, what: str, source: str = "") -> None:
    """``value`` is an instance of ``kind`` (never a bool where a number is meant)."""
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in (
            kind if isinstance(kind, tuple) else (kind,))):
        fail(name, what, value, source)


SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")  # a name that becomes a file or folder


def is_safe_name(value: Any) -> bool:
    """Letters, digits, '.', '_' and '-', not starting with '.': never a path of its own."""
    return isinstance(value, str) and len(value) <= 128 and SAFE_NAME.fullmatch(value) is not None


def check_safe_name(name: str, value: Any, source: str = "") -> None:
    """``value`` can name a file or folder under a run folder (``judge_name`` names three)."""
    if not is_safe_name(value):
        fail(name, "a name of letters, digits, '.', '_' and '-' (not starting with '.', at most "
                   "128 characters), since it names the run's annotate/, fit/ and score/ entries",
             value, source)


# the type each section field must have, from its declared type (fields that take several types,
# ``Any`` or ``X | None``, are checked by the section's own validate)
_KINDS = {"bool": (bool, "true or false"), "str": (str, "a string"), "list": (list, "a list"),
          "dict": (dict, "a mapping")}


def check_section_types(section: Any, name: str, source: str = "") -> None:
    """Every field of a dataclass section has its declared type (a bool is not a number, "0.1"
    is not a float), in the one error form of this module."""
    from dataclasses import fields

    for f in fields(section):
        value, declared = getattr(section, f.name), str(f.type)
        where = f"{name}.{f.name}"
        if declared == "float":
            check_number(where, value, source)
        elif declared == "int":
            check_number(where, value, source, integer=True)
        elif declared in _KINDS:
            kind, what = _KINDS[declared]
            if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
                fail(where, what, value, source)
