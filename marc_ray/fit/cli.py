"""``marc-ray fit``, ``marc-ray tune``, ``marc-ray score``.

Every FitConfig field is a flag of ``fit`` and ``tune`` (``--margin-init 0.2``,
``--hidden-sizes 64,32,16``, ``--use-gpu``); ``--config FILE.json`` reads a FitConfig mapping
first and the flags override it. Imports nothing heavy until a command runs.
"""

from __future__ import annotations

import argparse
import json
import os

from ..contracts.options import add_flags, check_by_building, flag_values, settings_from_args
from ..contracts.outputs import check_output_dir, check_output_file


ADDRESS_HELP = ("a running Ray cluster's address; left out: $RAY_ADDRESS if set, else a private "
                "local cluster (as `marc-ray run` does)")


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    from .config import BACKENDS, LABEL_MODES, VARIANTS, FitConfig

    from ..contracts import TIE_POLICIES

    group = parser.add_argument_group("FitConfig fields (defaults: MARC's published settings)")
    add_flags(group, FitConfig, choices={"variant": VARIANTS, "label_mode": LABEL_MODES,
                                         "tie_policy": TIE_POLICIES, "backend": BACKENDS})
    parser.add_argument("--config", dest="config_file", help="a JSON file of FitConfig fields")


def config_from_args(args: argparse.Namespace):
    """FitConfig from ``--config`` then the per-field flags (unknown JSON keys are an error)."""
    from .config import FitConfig

    from ..contracts import ContractError

    data: dict = {}
    if getattr(args, "config_file", None):
        path = args.config_file
        try:
            with open(path, encoding="utf-8") as stream:
                data = json.load(stream)
        except FileNotFoundError as error:
            raise ContractError(path, "no such file", field="--config") from error
        except IsADirectoryError as error:
            raise ContractError(path, "is a folder; a JSON file of FitConfig fields is wanted",
                                field="--config") from error
        except UnicodeDecodeError as error:
            raise ContractError(path, f"not UTF-8 text (byte {error.start})", field="--config") from error
        except json.JSONDecodeError as error:
            raise ContractError(path, f"malformed JSON: {error.msg} (line {error.lineno})",
                                field="--config") from error
        if not isinstance(data, dict):
            raise ContractError(path, "must be a JSON object of FitConfig fields", field="--config")
    data.update(flag_values(args, FitConfig))
    try:
        return FitConfig.from_dict(data)
    except (TypeError, ValueError) as error:
        source = getattr(args, "config_file", None) or "the fit options"
        raise ContractError(source, " ".join(str(error).split()), field="--config"
                            if getattr(args, "config_file", None) else None) from error


def _summary(model) -> str:
    kept = model.history_[model.best_epoch_] if model.history_ else {}
    from .bound import bound_reading, bound_sentence

    return (f"{model.config.variant}: gamma={model.gamma_:.3g}, "
            f"{bound_sentence(bound_reading(model.bound_))} "
            f"(empirical margin risk {model.bound_['empirical_margin_risk']:.3f}, slack "
            f"{model.bound_['slack']:.4g}), valid ranking risk="
            f"{kept.get('valid_ranking_risk', float('nan')):.3f} at epoch {model.best_epoch_ + 1} of "
            f"{len(model.history_)} (kept by the collapse guard), {model.n_train_} training items")


def _fit(args: argparse.Namespace) -> int:
    from .estimator import MarcConfidence

    check_output_dir(args.out)
    config = config_from_args(args)
    if config.backend == "ray":
        from ..ray_cluster import ensure_ray

        ensure_ray(args.address)  # one retry, then one line; quiet unless --verbose
    splits, note = _drawn_split(args.annotations, config)
    model = MarcConfidence(config).fit(args.annotations, splits=splits)
    model.save(args.out)
    if splits is not None:
        _write_split(args.annotations, splits, args.out)
    print(f"{_summary(model)}; saved to {args.out}")
    for name, (read, had) in model.rows_sampled_.items():
        print(f"the {name} set has {had} rows: a seeded sample of {read} was read "
              f"(max_rows_per_set; rows left out shape nothing)")
    if note:
        print(note)
    return 0


def _drawn_split(annotations: str, config):
    """The split to fit with when the file declares none (``fit.split``), and a line saying so;
    (None, "") when it declares one."""
    from ..contracts import read_columns
    from .split import HELD_OUT, HELD_OUT_FRACTION, SPLIT_FILE, declares_split, draw_split

    table = read_columns(annotations, ["id", "split", "group"])
    declared = table.column("split").to_pylist() if "split" in table.column_names else None
    if declares_split(declared):
        return None, ""
    groups = table.column("group").to_pylist() if "group" in table.column_names else None
    splits = draw_split(table.column("id").to_pylist(), groups, config.random_state)
    held = int((splits == HELD_OUT).sum())
    return splits, (f"the file declares no split: drew one (seed {config.random_state}, "
                    f"{HELD_OUT_FRACTION:.0%} of the {'groups' if groups else 'items'} held out): "
                    f"{len(splits) - held} rows to fit on, {held} held out as {HELD_OUT!r} "
                    f"(never read by the fit); written to {SPLIT_FILE} beside the model, and "
                    f"`marc-ray score` writes it into the scored file's split column")


def _write_split(annotations: str, splits, folder: str) -> None:
    import pyarrow as pa

    from ..contracts import read_columns, write_table_atomic
    from ..contracts.io import join
    from .split import SPLIT_FILE

    ids = read_columns(annotations, ["id"]).column("id")
    write_table_atomic(pa.table({"id": ids, "split": pa.array(list(splits), pa.string())}),
                       join(folder, SPLIT_FILE))


def _tune(args: argparse.Namespace) -> int:
    from ..ray_cluster import ensure_ray

    from ..contracts import write_json_atomic
    from .tune import tune_margin

    check_output_dir(args.out)
    config = config_from_args(args)
    if _drawn_split(args.annotations, config)[0] is not None:
        from ..contracts import ContractError

        # a sweep reads every training row of every trial: without a split that is every row
        raise ContractError(args.annotations, "declares no split, so tune would train on every "
                            "row and leave none to certify on", field="split",
                            hint="give the file a split column (train, valid, calibration), or "
                                 "use `marc-ray fit`, which draws one and writes it out")
    from .config import TuneOptions

    options = settings_from_args(args, TuneOptions, dest_prefix=_TUNE)
    if options.storage_path:
        options = TuneOptions.from_dict({**options.to_dict(),
                                         "storage_path": os.path.abspath(options.storage_path)})
    ensure_ray(args.address)
    outcome = tune_margin(args.annotations, config, **options.to_dict())
    outcome.model.save(args.out)
    write_json_atomic({"best_config": outcome.best_config.to_dict(),
                       "best_metrics": outcome.best_metrics, "select": options.select,
                       "trials": outcome.trials}, os.path.join(args.out, "tune.json"))
    print(f"best of {len(outcome.trials)} trials by {options.select}: {_summary(outcome.model)}; "
          f"saved to {args.out}")
    return 0


_TUNE = "tune_"  # TuneOptions and FitConfig both have storage_path: kept apart on the parser


def _score(args: argparse.Namespace) -> int:
    from .score import score_annotations

    check_output_file(args.out, {".parquet": "Parquet"})
    table = score_annotations(args.model, args.annotations, args.out)
    added = [c for c in ("conf_marc", "conf_vanilla") if c in table.column_names]
    print(f"scored {table.num_rows} rows ({', '.join(added)}) -> {args.out}")
    return 0


def register(subparsers) -> None:
    fit = subparsers.add_parser("fit", help="train the MARC confidence model on an annotation file",
                                description="Train C_θ on the rows of the training split(s); "
                                "writes model.safetensors + config.json into --out. A file that "
                                "declares no split (no split column, or only nulls) is split "
                                "here, seeded by --random-state: half of its groups are held out "
                                "as 'calibration' and never read (written to split.parquet; "
                                "`marc-ray score` carries it into the scored file).")
    fit.add_argument("annotations", help="annotation file (Parquet from `marc-ray annotate`)")
    fit.add_argument("--out", required=True, help="folder for the model")
    fit.add_argument("--address", default=None, help=ADDRESS_HELP + " (backend ray)")
    _add_config_flags(fit)
    fit.set_defaults(handler=_fit)

    tune = subparsers.add_parser("tune", help="sweep margin, lr, width, temperature on Ray Tune",
                                 description="ASHA sweep; refits the best configuration into --out.")
    tune.add_argument("annotations")
    tune.add_argument("--out", required=True, help="folder for the best model and tune.json")
    tune.add_argument("--address", default=None, help=ADDRESS_HELP)
    from .config import TUNE_SELECTIONS, TuneOptions

    add_flags(tune.add_argument_group("TuneOptions fields (the pipeline's fit.tune_options)"),
              TuneOptions, dest_prefix=_TUNE, flags={"storage_path": ["--storage"]},
              choices={"select": TUNE_SELECTIONS}, check=check_by_building(TuneOptions))
    _add_config_flags(tune)
    tune.set_defaults(handler=_tune)

    score = subparsers.add_parser("score", help="add conf_marc / conf_vanilla to an annotation file")
    score.add_argument("annotations")
    score.add_argument("--model", action="append", required=True,
                       help="a folder written by `marc-ray fit` (repeat for several)")
    score.add_argument("--out", required=True, help="the scored Parquet file (written atomically)")
    score.set_defaults(handler=_score)
