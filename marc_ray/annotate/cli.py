"""``marc-ray annotate``: run the simulated-annotator judge over a comparison file.

Flags map one-to-one onto :class:`marc_ray.annotate.config.AnnotateConfig` fields; ``--config``
reads a YAML/JSON file first and flags override it. Imports stay light (no ray/torch at import).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import MISSING, fields

from .config import ENGINES, MODES, AnnotateConfig
from .engines import engine_spec

_TUPLES = ("labels", "orders", "carry")
_CHOICES = {"engine": ENGINES, "mode": MODES}  # flags whose help lists the valid values


def _field_help(name: str) -> str:
    """The comment beside each field in config.py, as the flag's help."""
    import inspect

    from . import config

    for line in inspect.getsource(config.AnnotateConfig).splitlines():
        stripped = line.strip()
        if stripped.startswith(f"{name}:") and "#" in stripped:
            return stripped.split("#", 1)[1].strip()
    return ""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "annotate", help="judge every comparison with N simulated annotators (Ray Data)",
        description="Judge every comparison with N simulated annotators x every shot subset x "
                    "both orders, write annotation Parquet shards (resumable). Engines: "
                    + "; ".join(f"{k}: {v}" for k, v in ENGINES.items()) + ". Modes: "
                    + "; ".join(f"{k}: {v}" for k, v in MODES.items()) + ".")
    parser.add_argument("--config", help="YAML/JSON file of settings (an 'annotate:' section is "
                                         "used when present); flags override it")
    for spec in fields(AnnotateConfig):
        flag = "--" + spec.name.replace("_", "-")
        default = spec.default if spec.default is not MISSING else spec.default_factory()
        kwargs = {"dest": spec.name, "default": None, "help": f"{_field_help(spec.name)} "
                                                              f"(default: {default!r})"}
        if spec.name in _CHOICES:
            choices = _CHOICES[spec.name]
            kwargs.update(type=str, choices=list(choices),
                          help=f"one of {', '.join(choices)} (default: {default!r})")
        elif isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif spec.name in _TUPLES:
            kwargs["type"] = str
            kwargs["metavar"] = "X,Y"
        elif spec.name == "engine_options":
            kwargs["type"] = json.loads
            kwargs["metavar"] = "JSON"
        else:
            kwargs["type"] = type(default)
        parser.add_argument(flag, **kwargs)
    parser.set_defaults(handler=run)


def config_from_args(args: argparse.Namespace) -> AnnotateConfig:
    data = AnnotateConfig.from_file(args.config).to_dict() if args.config else {}
    for spec in fields(AnnotateConfig):
        value = getattr(args, spec.name, None)
        if value is not None:
            data[spec.name] = value
    return AnnotateConfig.from_dict(data).validate()


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    preflight = engine_spec(config.engine).preflight
    if preflight is not None:  # e.g. http: its settings (base_url, the key's variable) before Ray
        preflight(config)
    from .job import annotate  # heavy imports only when the command runs

    summary = annotate(config)
    print(f"annotate: {summary.n_items} items in {summary.n_shards} shards at {summary.output} "
          f"({len(summary.shards_written)} written, {len(summary.shards_skipped)} already done, "
          f"{summary.seconds:.1f} s)")
    return 0
