"""Settings declared once: a dataclass field carries its default and its help, and every CLI's
flags are generated from it.

A settings dataclass (``CalibrateConfig``, ``FitConfig``, ``TuneOptions``, ...) declares each
field with :func:`option`: its default and one line of help, kept in the field's metadata (no
source is read at run time). :func:`add_flags` turns fields into ``argparse`` flags (``n_grid``
→ ``--n-grid``), whose help ends with the default read from the field, so it cannot go stale;
:func:`flag_values` reads back what the user gave. A flag only converts text to the field's
type; the value's one check is the dataclass's own (``check``: a flag's value is checked by
building the dataclass with it, so a bad value gets the same message from a flag, a config file
or the Python API).
"""

from __future__ import annotations

import argparse
import copy
import json
import types
import typing
from dataclasses import MISSING, Field, field, fields
from typing import Any, Callable, Iterable

HELP = "help"    # metadata key: the field's one line of help
PARSE = "parse"  # metadata key: how a flag reads the field from text (default: from its type)


def option(default: Any, help: str, *, parse: Callable[[str], Any] | None = None) -> Any:
    """A dataclass field with its default and its help (and, where its type does not say, how a
    flag reads it from text). Mutable defaults are copied for each instance."""
    metadata = {HELP: " ".join(help.split())}
    if parse is not None:
        metadata[PARSE] = parse
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def default_of(spec: Field) -> Any:
    """A field's default value (a fresh one for a factory; ``MISSING`` when it has none)."""
    if spec.default is not MISSING:
        return spec.default
    if spec.default_factory is not MISSING:
        return spec.default_factory()
    return MISSING


def defaults(cls) -> dict[str, Any]:
    """Field name → default of a settings dataclass."""
    return {spec.name: default_of(spec) for spec in fields(cls)}


def help_of(cls, name: str) -> str:
    """The help an :func:`option` field declares ("" when it declares none)."""
    return next(spec.metadata.get(HELP, "") for spec in fields(cls) if spec.name == name)


# -- reading a flag's text ------------------------------------------------------------------------

def comma_list(item: Callable[[str], Any] = str, name: str = "A,B,...") -> Callable[[str], list]:
    """Text ``"a,b,c"`` → a list of ``item(...)`` (argparse names ``name`` when one fails)."""
    def parse(text: str) -> list:
        return [item(part.strip()) for part in text.split(",") if part.strip()]

    parse.__name__ = name
    return parse


def word_or(word: str, other: Callable[[str], Any], name: str) -> Callable[[str], Any]:
    """Text ``word`` stays the word; any other text goes through ``other`` (``"auto"`` or an int)."""
    def parse(text: str) -> Any:
        return word if text == word else other(text)

    parse.__name__ = name
    return parse


def _unwrap_optional(kind: Any) -> Any:
    """``X | None`` → ``X`` (a flag left out is the None)."""
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    optional = typing.get_origin(kind) in (typing.Union, types.UnionType)
    return args[0] if optional and len(args) == 1 else kind


def _reader(kind: Any, default: Any) -> tuple[Callable[[str], Any] | None, str | None]:
    """(type for argparse, metavar) of a field declared ``kind``; (None, None) for a bool."""
    kind = _unwrap_optional(kind)
    origin = typing.get_origin(kind)
    if kind is bool:
        return None, None
    if origin in (tuple, list) or kind in (tuple, list):
        items = [a for a in typing.get_args(kind) if a is not Ellipsis]
        item = items[0] if items and items[0] in (int, float, str) else (
            type(default[0]) if default else str)
        parse = comma_list(item)
        return (lambda text: tuple(parse(text))) if tuple in (origin, kind) else parse, "A,B,..."
    if kind is dict or origin is dict:
        return json.loads, "JSON"
    if kind in (int, float, str):
        return kind, None
    return str, None


# -- flags ----------------------------------------------------------------------------------------

def add_flags(parser, cls, names: Iterable[str] | None = None, *, exclude: Iterable[str] = (),
              flags: dict[str, list[str]] | None = None, repeat: Iterable[str] = (),
              check: Callable[[str, Any], None] | None = None, choices: dict | None = None,
              help_suffix: dict[str, str] | None = None, dest_prefix: str = "") -> None:
    """Add one flag per field of ``cls`` (``names``, in that order, else every field).

    Each flag's ``dest`` is the field's name and its default None (so :func:`flag_values` sees
    only what the user gave); the help is the field's, then its default. ``flags`` renames
    (``{"n_grid": ["--n-grid", "--grid-size"]}``), ``repeat`` makes a flag repeatable (a list),
    ``choices`` lists a field's allowed values in its help (``check`` still refuses the others,
    with the dataclass's message), ``help_suffix`` adds a sentence. ``check(name, value)`` raises
    ``ValueError`` for a bad value: argparse reports it as ``argument --flag: <message>``.
    ``dest_prefix`` keeps two dataclasses' same-named fields apart on one parser.
    """
    hints = typing.get_type_hints(cls)
    specs = {spec.name: spec for spec in fields(cls)}
    wanted = list(names) if names is not None else list(specs)
    flags, choices, help_suffix = flags or {}, choices or {}, help_suffix or {}
    for name in wanted:
        if name in exclude:
            continue
        spec = specs[name]
        default = default_of(spec)
        parse, metavar = _reader(hints[name], default)
        parse = spec.metadata.get(PARSE, parse)
        if PARSE in spec.metadata:
            metavar = getattr(parse, "__name__", None)
        elif metavar is None and parse is not None:
            metavar = name.upper()  # not the dest, which may carry a prefix
        text = spec.metadata.get(HELP, "")
        if name in choices:
            allowed = choices[name]
            text += f" ({'; '.join(f'{k}: {v}' for k, v in allowed.items())})" \
                if isinstance(allowed, dict) else f" (one of {', '.join(allowed)})"
        if name in help_suffix:
            text += "; " + help_suffix[name]
        kwargs: dict[str, Any] = {"dest": dest_prefix + name, "default": None,
                                  "help": f"{text} (default: {_shown(default)})".replace("%", "%%")}
        if parse is None:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = _checked(parse, name, check) if check else parse
            if metavar:
                kwargs["metavar"] = metavar
            if name in repeat:
                kwargs["action"] = "append"
        parser.add_argument(*flags.get(name, ["--" + name.replace("_", "-")]), **kwargs)


def _checked(parse: Callable[[str], Any], name: str, check: Callable[[str, Any], None]):
    def read(text: str) -> Any:
        value = parse(text)
        try:
            check(name, value)
        except ValueError as error:
            raise argparse.ArgumentTypeError(" ".join(str(error).split())) from error
        return value

    read.__name__ = getattr(parse, "__name__", name)
    return read


def _shown(default: Any) -> str:
    if isinstance(default, (tuple, list)):
        return ",".join(map(str, default)) or "none"
    return "none" if default is None or default == "" else str(default)


def flag_values(args: argparse.Namespace, cls, names: Iterable[str] | None = None,
                dest_prefix: str = "") -> dict[str, Any]:
    """The fields of ``cls`` the user gave as flags (those left at None are absent)."""
    names = set(names) if names is not None else {spec.name for spec in fields(cls)}
    return {name: getattr(args, dest_prefix + name) for name in names
            if getattr(args, dest_prefix + name, None) is not None}


def check_by_building(cls, validate: Callable[[Any], Any] | None = None
                      ) -> Callable[[str, Any], None]:
    """A ``check`` for :func:`add_flags`: build ``cls`` with the one value (the other fields at
    their defaults) and run ``validate`` on it (``cls.validate`` when it has one; a frozen
    dataclass that checks in ``__post_init__`` needs none)."""
    def check(name: str, value: Any) -> None:
        built = cls(**{name: value})
        if validate is not None:
            validate(built)
        elif hasattr(built, "validate"):
            built.validate()

    return check


def settings_from_args(args: argparse.Namespace, cls, names: Iterable[str] | None = None,
                       dest_prefix: str = "", **given: Any) -> Any:
    """``cls`` built from the flags the user gave and ``given`` (the other fields at their
    defaults). The flags left out are set on ``args`` to those defaults, so a command reads one
    resolved value per setting whichever way it looks."""
    names = list(names) if names is not None else [spec.name for spec in fields(cls)]
    built = cls(**{**flag_values(args, cls, names, dest_prefix), **given})
    for name in names:
        setattr(args, dest_prefix + name, getattr(built, name))
    return built
