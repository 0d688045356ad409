"""``marc-ray annotate``: run the simulated-annotator judge over a comparison file.

Flags map one-to-one onto :class:`marc_ray.annotate.config.AnnotateConfig` fields; ``--config``
reads a YAML/JSON file first and flags override it. Imports stay light (no ray/torch at import).
"""

from __future__ import annotations

import argparse

from ..contracts.options import add_flags, flag_values
from .config import ENGINES, MODES, AnnotateConfig
from .engines import engine_spec


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "annotate", help="judge every comparison with N simulated annotators (Ray Data)",
        description="Judge every comparison with N simulated annotators x every shot subset x "
                    "both orders, write annotation Parquet shards (resumable). Engines: "
                    + "; ".join(f"{k}: {v}" for k, v in ENGINES.items()) + ". Modes: "
                    + "; ".join(f"{k}: {v}" for k, v in MODES.items()) + ".")
    parser.add_argument("--config", help="YAML/JSON file of settings (an 'annotate:' section is "
                                         "used when present); flags override it")
    # every field a flag, its help from the field's metadata; the values are checked once,
    # together, by AnnotateConfig.validate (input, pool and output may come from --config)
    add_flags(parser, AnnotateConfig, choices={"engine": list(ENGINES), "mode": list(MODES)})
    parser.set_defaults(handler=run)


def config_from_args(args: argparse.Namespace) -> AnnotateConfig:
    data = AnnotateConfig.from_file(args.config).to_dict() if args.config else {}
    data.update(flag_values(args, AnnotateConfig))
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
