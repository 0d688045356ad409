"""``marc-ray calibrate`` and ``marc-ray validity``: the calibration stage on the command line.

(``marc-ray audit`` is registered here too; it lives in ``audit_cli`` and ``audit``.)

Both read a *scores* file (JSONL, JSON or Parquet) with one row per human-labelled item:
``id``, a confidence column, ``pred`` (the judge's verdict, "a" or "b") and ``human_label``
("a", "b" or "tie"); optional ``split`` and ``group`` columns. Every input is validated before
anything is written: a bad file, column, row or parameter exits with status 2 and a message
naming it, and leaves no output behind. Outputs are written atomically.

Only numpy / scipy / pyarrow are imported here, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from ..contracts.options import add_flags, check_by_building, settings_from_args
from ..contracts.outputs import check_output_dir
from .config import CalibrateConfig
from .validity import DESIGNS, ValidityOptions
from .wording import calibrated_on_line, result_sentence, share_phrase
from ..contracts import (TIE_POLICIES, ContractError, metadata_binding, read_table, table_hash,
                         validate_scores, write_json_atomic)
from ..contracts.provenance import provenance_from_metadata

CALIBRATE_EXAMPLE = """\
example:
  marc-ray calibrate scores.parquet --confidence-column conf_simulated \\
      --alpha 0.1 --alpha 0.2 --delta 0.1 --out runs/calibration

what you get: the highest-coverage confidence threshold such that, with probability
at least 1 - delta (over the draw of the labelled items), the judge agrees with the
human label on at least 1 - alpha of the items it accepts. Items below the threshold
are escalated. If no threshold can be certified, nothing is accepted (threshold inf).

the scores file needs columns: id, <confidence column> (a number in [0, 1]),
pred ("a" or "b"), human_label ("a", "b" or "tie"). If it has a split column, only
rows whose split is "calibration" are used when any exist (or the value given with
--calibration-split); otherwise every row is a calibration item.

outputs in --out: certificate.json (the first --alpha), certificate_alpha-<A>.json for
each alpha when several are given, summary.json (every alpha, in plain words too).
"""

VALIDITY_EXAMPLE = """\
example:
  marc-ray validity scores.parquet --confidence-column conf_simulated \\
      --alpha 0.1 --delta 0.1 --design population --repetitions 1000 --out runs/validity

it recalibrates on many redrawn calibration sets and counts how often the promise held
(agreement on accepted items >= 1 - alpha; accepting nothing counts as a success).
  split:       random calibration/test splits (whole groups when a group column exists);
               judged on the test part, as a user with one test set would see it
  population:  the file is the population; calibration sets are drawn from it with
               replacement and judged on the whole file: the test of the guarantee itself
Every row of the file is used (the split column is ignored).
outputs in --out: validity.json (summary, interval, and per-repetition results).
"""


# CalibrateConfig fields both commands take as flags (the guarantee, the grid, the test)
GUARANTEE_FLAGS = ("alpha", "delta", "procedure", "n_grid", "grid_low", "grid_high", "min_n",
                   "tie_policy")
# and those only ``calibrate`` takes (groups, cascades, provenance, the design)
CALIBRATE_FLAGS = GUARANTEE_FLAGS + ("by", "delta_split", "exclude_seen", "design", "costs")
_FLAG_NAMES = {"n_grid": ["--n-grid", "--grid-size"], "exclude_seen": ["--exclude-seen-rows"]}
_CHECKED_WITH_THE_JUDGES = ("delta_split", "costs")  # their length is the number of judges


def _check_setting(name: str, value) -> None:
    """A flag's value gets ``CalibrateConfig.validate``'s check and message (those whose check
    needs the number of judges are checked with the whole configuration)."""
    if name not in _CHECKED_WITH_THE_JUDGES:
        CalibrateConfig(**{name: value}).validate()


def _settings(args, names, n_judges: int = 1) -> CalibrateConfig:
    """The CalibrateConfig the flags give, validated (``args`` carries the resolved values)."""
    given = {"alpha": args.alpha[0]} if isinstance(args.alpha, list) else {}
    return settings_from_args(args, CalibrateConfig, [n for n in names if n not in given],
                              **given).validate(n_judges=n_judges)


def _common(parser: argparse.ArgumentParser, names, several: bool = False, **flag_options) -> None:
    from .testing import PROCEDURES

    if several:
        parser.add_argument("scores", metavar="SCORES", nargs="+",
                            help="scores file (.jsonl, .json or .parquet): id, confidence, pred, "
                                 "human_label; several with --cascade, cheapest judge first")
    else:
        parser.add_argument("scores", metavar="SCORES",
                            help="scores file (.jsonl, .json or .parquet): id, confidence, pred, "
                                 "human_label")
    parser.add_argument("--confidence-column", default="confidence", metavar="NAME",
                        help="column holding the confidence in [0, 1] (default: confidence; "
                             "annotation files have conf_simulated and conf_predictive)")
    suffix = {"n_grid": "--grid-size is the deprecated spelling",
              **flag_options.pop("help_suffix", {})}
    add_flags(parser, CalibrateConfig, names, flags=_FLAG_NAMES, check=_check_setting,
              choices={"procedure": PROCEDURES, "tie_policy": TIE_POLICIES},
              help_suffix=suffix, **flag_options)
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created if needed)")


def register(subparsers) -> None:
    """Add the ``calibrate`` and ``validity`` subcommands."""
    calibrate = subparsers.add_parser(
        "calibrate", help="certify a confidence threshold on human-labelled scores",
        description="Find the confidence threshold above which the judge's verdicts can be trusted: "
                    "agreement with humans >= 1 - alpha, with probability >= 1 - delta.",
        epilog=CALIBRATE_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(calibrate, CALIBRATE_FLAGS, several=True, repeat=("alpha",), help_suffix={
        "alpha": "repeat for several",
        "by": "items of groups absent here are escalated at apply time",
        "exclude_seen": "the scored file's provenance says which; refused rows exit 2",
        "design": "the scores files need train rows (split column)",
    })
    calibrate.add_argument("--split-column", default="split", metavar="NAME",
                           help="column naming each row's split (default: split)")
    calibrate.add_argument("--calibration-split", default=None, metavar="VALUE",
                           help="use only rows whose split column equals VALUE (default: 'calibration' "
                                "when such rows exist, else every row)")
    calibrate.add_argument("--judge-name", default=None,
                           help="judge name for the certificate (default: the file's judge column, or 'judge')")
    calibrate.add_argument("--model-hash", default=None,
                           help="hash of the confidence model, recorded in the certificate")
    calibrate.add_argument("--cascade", action="store_true",
                           help="certify the scores files as a cascade of judges, cheapest first: "
                                "each judge decides what the earlier ones escalated, delta split "
                                "across them (--delta-split)")
    calibrate.set_defaults(handler=run_calibrate)

    validity = subparsers.add_parser(
        "validity", help="check the guarantee by recalibrating on >= 1000 redrawn calibration sets",
        description="Validity study: how often does the certified threshold keep its promise?",
        epilog=VALIDITY_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(validity, GUARANTEE_FLAGS + ("by",), help_suffix={
        "by": "validity: the population design checks every group's guarantee and the joint "
              "one, next to a single threshold"})
    add_flags(validity, ValidityOptions, check=check_by_building(ValidityOptions),
              choices={"design": DESIGNS}, flags={"random_state": ["--seed"]})
    validity.set_defaults(handler=run_validity)

    from .audit_cli import register as register_audit  # marc-ray audit (calibrate/audit.py)

    register_audit(subparsers)


# ---------------------------------------------------------------------------------------------

def _load(args, for_validity: bool, source=None):
    """Read and validate the scores; return (table of the rows used, source, note)."""
    source = os.fspath(source if source is not None else args.scores)
    check_output_dir(args.out)  # before any work: a bad --out must not cost the computation
    extra = [args.confidence_column, getattr(args, "split_column", None),
             getattr(args, "group_column", None), getattr(args, "by", None)]
    table = validate_scores(_read_scores(source, extra), args.confidence_column, source)
    note = "every row of the file"
    if for_validity:
        return table, source, note
    wanted = args.calibration_split
    if args.split_column in table.column_names:
        splits = np.asarray(table.column(args.split_column).to_pylist(), dtype=object)
        if wanted is None and np.any(splits == "calibration"):
            wanted = "calibration"
        if wanted is not None:
            keep = splits == wanted
            if not keep.any():
                present = sorted({str(s) for s in splits})
                raise ContractError(source, f"no row has {args.split_column} == {wanted!r}",
                                    field=args.split_column, hint=f"values present: {present}")
            table = table.filter(keep)
            note = f"rows with {args.split_column} == {wanted!r}"
    elif wanted is not None:
        raise ContractError(source, f"--calibration-split {wanted!r} was given but the file has no "
                            "such column", field=args.split_column,
                            hint="drop --calibration-split or name the column with --split-column")
    return table, source, note


def scores_binding(source: str, args, judge: str | None) -> dict:
    """What the certificate binds to, from the scores file's metadata (``contracts.with_binding``).

    A Parquet file written by ``marc-ray annotate`` / ``score`` carries the judge, the run layout
    and each confidence column's model hash; ``--model-hash`` overrides the latter. Other files
    bind only what they show (the judge's name, when known), so ``apply`` checks only that.
    """
    import pyarrow.dataset as pa_dataset

    metadata = None
    if source.lower().rstrip("/").endswith(".parquet") or os.path.isdir(source):
        try:
            metadata = pa_dataset.dataset(source, format="parquet").schema.metadata
        except (OSError, ValueError):
            metadata = None
    binding = metadata_binding(metadata, args.confidence_column, judge=judge)
    if args.model_hash:
        binding["confidence_model_hash"] = args.model_hash
    return binding


def scores_provenance(source: str, confidence: str) -> dict:
    """The provenance a Parquet scores file carries for ``confidence`` (``fit.score``: the rows
    its model was trained and validated on); empty for other files and heuristic columns."""
    import pyarrow.dataset as pa_dataset

    if not (source.lower().rstrip("/").endswith(".parquet") or os.path.isdir(source)):
        return {}
    try:
        metadata = pa_dataset.dataset(source, format="parquet").schema.metadata
    except (OSError, ValueError):
        return {}
    return provenance_from_metadata(metadata, confidence)


def _read_scores(source: str, extra: list):
    """The scores, only the columns calibration reads (a scored file also holds every run's
    probabilities and statuses, hundreds of values per item, which calibration never needs)."""
    import pyarrow.dataset as pa_dataset

    if not source.lower().rstrip("/").endswith(".parquet") and not os.path.isdir(source):
        return read_table(source)
    try:
        names = pa_dataset.dataset(source, format="parquet").schema.names
    except (OSError, ValueError):
        return read_table(source)  # its errors name the file
    wanted = [n for n in dict.fromkeys(["id", "pred", "human_label", "judge", *extra]) if n in names]
    return (pa_dataset.dataset(source, format="parquet").to_table(columns=wanted) if wanted
            else read_table(source))


def _arrays(table, column: str):
    confidence = table.column(column).to_numpy(zero_copy_only=False).astype(float)
    pred = np.asarray(table.column("pred").to_pylist(), dtype=object)
    human = np.asarray(table.column("human_label").to_pylist(), dtype=object)
    return confidence, pred, human


def _check_enough(n_used: int, alphas, args, source: str, what: str) -> None:
    from .bounds import min_n_to_pass
    from .testing import procedure_level

    needed = min(min_n_to_pass(alpha, procedure_level(args.procedure, args.delta, args.n_grid))
                 for alpha in alphas)
    if n_used < needed:
        raise ContractError(source, f"{what} has {n_used} usable items (after tie policy "
                            f"{args.tie_policy!r}); at least {needed} are needed before any threshold "
                            f"can be certified at alpha={max(alphas)}, delta={args.delta} "
                            f"({args.procedure})", field="human_label",
                            hint="label more items, or raise --alpha / --delta")


def run_calibrate(args) -> int:
    """``marc-ray calibrate``: one judge, ``--by`` groups, or ``--cascade`` over several scored
    files; every certificate is made by ``calibrate.certify`` (provenance, grid, binding)."""
    from ..contracts import agreement
    from .certify import certify

    settings = _settings(args, CALIBRATE_FLAGS, n_judges=len(args.scores))
    alphas = args.alpha if isinstance(args.alpha, list) else [args.alpha]
    if len(set(alphas)) != len(alphas):
        raise ValueError(f"--alpha values repeat: {alphas}")
    if len(args.scores) > 1 and not args.cascade:
        raise ContractError(args.scores[1], "several scores files were given without --cascade",
                            hint="add --cascade to certify them as a cascade, cheapest first")
    if args.cascade and len(args.scores) < 2:
        raise ContractError(args.scores[0], "--cascade needs two or more scores files, cheapest "
                            "first", hint="drop --cascade to certify one judge")
    if args.cascade and args.by is not None:
        raise ValueError("--cascade with --by is not offered on the command line; use the "
                         "pipeline's cascade with calibrate.by")
    if settings.design and len(alphas) > 1:
        raise ValueError(f"--design certifies one alpha at a time, got {alphas}")
    loaded = [_load(args, for_validity=False, source=path) for path in args.scores]
    table, source, note = loaded[0]
    stages = _stages(args, loaded)
    design = _design(args, settings, [s.name for s in stages]) if settings.design else None
    human = np.asarray(table.column("human_label").to_pylist(), dtype=object)
    _, kept = agreement(stages[0].pred, human, args.tie_policy)
    _check_enough(int(kept.sum()), alphas, args, source, f"the calibration set ({note})")
    groups = None
    if args.by is not None:
        groups = _groups(table, args.by, source)
    data_hash_columns = ["id", args.confidence_column, "pred", "human_label"]
    extra = {"scores_file": source if not args.cascade else list(args.scores),
             "calibration_rows": note}
    certified = certify(stages, human, table.column("id").to_pylist(),
                        alpha=alphas if len(alphas) > 1 else alphas[0],
                        delta=args.delta, grid=_grid(args), procedure=args.procedure,
                        min_n=args.min_n, tie_policy=args.tie_policy,
                        delta_split=args.delta_split, groups=groups, by=args.by,
                        exclude_seen=args.exclude_seen,
                        exclude_flag="--exclude-seen-rows",
                        hashed=None if args.cascade else table,
                        hash_columns=data_hash_columns, model_hash=args.model_hash, extra=extra,
                        source=source, design=design)
    if certified.n_excluded:
        print(f"left out {certified.n_excluded} calibration rows that trained the confidence "
              f"model, chose the measure or built the grid (--exclude-seen-rows)")
    certificates = certified.certificates
    files = ["certificate.json"] + ([f"certificate_alpha-{a:g}.json" for a in alphas]
                                    if len(alphas) > 1 else [])
    common = {"scores_file": extra["scores_file"], "calibration_rows": note,
              "confidence": args.confidence_column, "delta": args.delta,
              "procedure": args.procedure, "tie_policy": args.tie_policy,
              "data_hash": certificates[alphas[0]].data_hash,
              "n_excluded_seen": certified.n_excluded, "n_calibration": certified.n_calibration,
              "n_ties_dropped": certified.n_ties_dropped, "n_used": certified.n_used,
              "provenance_digest": certificates[alphas[0]].provenance["digest"], "files": files}
    if design is not None:  # what the train rows chose (the summary's grid is then not used)
        common["design"] = certificates[alphas[0]].extra["design"]
    if args.by is not None:
        summary, lines = _grouped_summary(args, certified, alphas)
    elif args.cascade:
        summary, lines = _cascade_summary(certified, alphas)
    else:
        summary, lines = _single_summary(args, certified, alphas, stages[0].name)
    # everything is computed: only now touch the output folder
    certificates[alphas[0]].write(os.path.join(args.out, "certificate.json"))
    if len(alphas) > 1:
        for alpha, certificate in certificates.items():
            certificate.write(os.path.join(args.out, f"certificate_alpha-{alpha:g}.json"))
    write_json_atomic({**common, **summary}, os.path.join(args.out, "summary.json"))
    for line in lines:
        print(line)
    print(calibrated_on_line(certified.n_calibration, certified.n_ties_dropped, args.tie_policy,
                             f"{note}; provenance digest {common['provenance_digest'][:12]}",
                             args.out))
    return 0


def _design(args, settings: CalibrateConfig, names: list[str]) -> dict:
    """``certify``'s ``design`` from the scores files' train rows (``--design``): the grid, its
    start and a cascade's order and delta split are chosen on them, never on calibration rows."""
    from ..contracts.align import align_items

    tables = []
    for path in args.scores:
        scores = validate_scores(_read_scores(path, [args.confidence_column, args.split_column]),
                                 args.confidence_column, path)
        if args.split_column not in scores.column_names:
            raise ContractError(path, "--design needs train rows, but the file has no split "
                                "column", field=args.split_column,
                                hint="give the rows a split (train, calibration), or drop --design")
        splits = np.asarray(scores.column(args.split_column).to_pylist(), dtype=object)
        if not (splits == "train").any():
            raise ContractError(path, f"--design needs train rows: no row has "
                                f"{args.split_column} == 'train'", field=args.split_column,
                                hint="give some rows the train split, or drop --design")
        tables.append(scores.filter(splits == "train"))
    aligned = align_items(tables, [args.confidence_column] * len(tables), carry=("human_label",))
    return {"train": {"confidence": aligned.confidence, "pred": aligned.pred,
                      "human_label": aligned.extra["human_label"],
                      "ids": np.asarray(aligned.ids, dtype=object)},
            "costs": settings.costs,
            # as the pipeline's stage: every judge stays a stage, cheapest first as given; a judge
            # the train rows say certifies little gets a small share of delta instead
            "drop": False, "delta_split": "optimised" if len(names) > 1 else "equal"}


def _stages(args, loaded) -> list:
    """One ``certify.Stage`` per scores file, lined up on the first file's calibration items
    (an item a later judge lacks has no verdict from it: that judge never decides it)."""
    from ..contracts.align import align_items
    from .certify import Stage

    first = loaded[0][0]
    tables = [first] + [t.filter(pc_is_in(t, first)) for t, _, _ in loaded[1:]]
    for (table, path, _), kept in zip(loaded[1:], tables[1:]):
        _check_same_labels(first, kept, path)
    aligned = align_items(tables, [args.confidence_column] * len(tables), carry=())
    stages = []
    for l, (table, path, _) in enumerate(loaded):
        judge = _judge_name(args, table) if l == 0 or not args.cascade else _judge_name(None, table)
        judge = judge or (os.path.splitext(os.path.basename(path.rstrip("/")))[0]
                          if args.cascade else "judge")
        binding = scores_binding(path, args, judge)
        stages.append(Stage(judge, args.confidence_column, aligned.confidence[:, l],
                            aligned.pred[:, l], binding,
                            scores_provenance(path, args.confidence_column)))
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ContractError(loaded[-1][1], f"two scores files name the same judge {names}",
                            field="judge", hint="a cascade's judges must differ")
    return stages


def pc_is_in(table, first):
    import pyarrow.compute as pc

    return pc.is_in(table.column("id").cast("string"),
                    value_set=first.column("id").cast("string").combine_chunks())


def _check_same_labels(first, other, path: str) -> None:
    """A cascade's files must agree on the human label of every item they share."""
    labels = dict(zip(first.column("id").to_pylist(), first.column("human_label").to_pylist()))
    for row, (item, label) in enumerate(zip(other.column("id").to_pylist(),
                                            other.column("human_label").to_pylist())):
        if labels.get(item) != label:
            raise ContractError(path, f"item {item!r} has human_label {label!r} here but "
                                f"{labels.get(item)!r} in the first scores file", row=row,
                                field="human_label", hint="a cascade's files score the same items")


def _judge_name(args, table) -> str | None:
    if args is not None and args.judge_name is not None:
        return args.judge_name
    if "judge" in table.column_names:
        judges = {j for j in table.column("judge").to_pylist() if j is not None}
        return judges.pop() if len(judges) == 1 else None
    return None


def _groups(table, column: str, source: str) -> np.ndarray:
    if column not in table.column_names:
        raise ContractError(source, "missing column", field=column,
                            hint="name an existing column with --by")
    groups = np.asarray(table.column(column).to_pylist(), dtype=object)
    missing = np.flatnonzero(np.equal(groups, None))
    if missing.size:
        raise ContractError(source, "missing group", row=int(missing[0]), field=column,
                            hint="every calibration item needs a group")
    return groups


def _single_summary(args, certified, alphas, judge: str):
    calibrator = certified.calibrators[alphas[0]]

    def sentence(result) -> str:  # every count named, shares of the items as given
        return result_sentence(result, certified.n_calibration, certified.n_ties_dropped,
                               calibrator.tie_policy)

    summary = {"judge": judge,
               "grid": {"kind": "fixed", "n_points": args.n_grid, "low": args.grid_low,
                        "high": args.grid_high},
               "results": [{"alpha": r.alpha, "threshold": r.threshold, "n": r.n, "k": r.k,
                            "upper_bound": r.upper_bound, "coverage": r.coverage,
                            "agreement": None if r.abstains else r.agreement, "min_n": r.min_n,
                            "abstains": r.abstains, "sentence": sentence(r)}
                           for r in calibrator.results_]}
    return summary, [sentence(r) for r in calibrator.results_]


def _cascade_summary(certified, alphas):
    results, lines = [], []
    for alpha in alphas:
        certificate = certified.certificates[alpha]
        results.append({"alpha": alpha, "coverage": certificate.coverage,
                        "agreement": certificate.agreement_on_accepted,
                        "delta_split": certificate.delta_split, "stages": certificate.stages})
        parts = [f"{s['name']}: threshold {float(s['threshold']):.4g} (delta {s['delta']:.3g}, "
                 f"decides {s.get('n_decided', 0)})" for s in certificate.stages]
        decided = int(round(certificate.coverage * certificate.n_calibration))
        lines.append(f"alpha={alpha:g} cascade, cheapest first: " + "; ".join(parts)
                     + f"; decides {share_phrase(decided, certificate.n_calibration, 'calibration items', 'the ')}"
                       f" (delta split: {certificate.delta_split})")
    return {"judges": [s["name"] for s in certified.certificates[alphas[0]].stages],
            "results": results}, lines


def _grouped_summary(args, certified, alphas):
    results, lines = [], []
    for alpha in alphas:
        certificate = certified.certificates[alpha]
        results.append({"alpha": alpha, "coverage": certified.calibrators[alpha].coverage_,
                        "groups": certificate.groups})
        for name, entry in certificate.groups["values"].items():
            stage = entry["stages"][0]
            if entry["abstains"]:
                need = (entry["labels_needed"] or {}).get("n_labelled")
                what = ("no threshold certified; at its observed disagreement rate it would need "
                        + (f"about {int(need)} labelled items" if need and np.isfinite(need)
                           else "a better judge (the rate is not below alpha)"))
            else:
                decided = int(round(entry["coverage"] * entry["n_calibration"]))
                what = (f"threshold {float(stage['threshold']):.3f}, decides "
                        f"{share_phrase(decided, entry['n_calibration'], article='the ')}, "
                        f"agreement {entry['agreement']:.1%}")
            lines.append(f"alpha={alpha:g} {args.by}={name!r} ({entry['n_calibration']} items, "
                         f"delta {entry['delta']:.3g}): {what}")
    lines.append(f"(one threshold per {args.by!r}; delta split: "
                 f"{results[0]['groups']['delta_split']})")
    return {"judge": certified.certificates[alphas[0]].stages[0]["name"], "by": args.by,
            "results": results}, lines


def run_validity(args) -> int:
    from .validity import validity_study

    _settings(args, GUARANTEE_FLAGS + ("by",))
    settings_from_args(args, ValidityOptions).validate()
    table, source, note = _load(args, for_validity=True)
    confidence, pred, human = _arrays(table, args.confidence_column)
    if args.by is not None:
        return _run_group_validity(args, table, source, confidence, pred, human)
    groups = None
    if args.group_column in table.column_names and args.design == "split":
        groups = np.asarray(table.column(args.group_column).to_pylist(), dtype=object)
        missing = np.flatnonzero(np.equal(groups, None))
        if missing.size:
            raise ContractError(source, "missing group", row=int(missing[0]), field=args.group_column,
                                hint="fill every group or name another column with --group-column")
    elif args.group_column != "group" and args.group_column not in table.column_names:
        raise ContractError(source, "missing column", field=args.group_column,
                            hint="name an existing column with --group-column")
    from ..contracts import agreement

    _, kept = agreement(pred, human, args.tie_policy)
    size = args.calibration_size
    n_cal = int(round(size * kept.sum())) if isinstance(size, float) else size
    _check_enough(n_cal, [args.alpha], args, source, f"each calibration set ({n_cal} of {int(kept.sum())})")
    if args.design == "split" and n_cal >= kept.sum():
        raise ContractError(source, f"--calibration-size {size} leaves no test items out of "
                            f"{int(kept.sum())}", hint="use a fraction such as 0.5")
    result = validity_study(confidence, pred, human, alpha=args.alpha, delta=args.delta,
                            n_repetitions=args.repetitions, design=args.design,
                            calibration_size=size, groups=groups, procedure=args.procedure,
                            grid=_grid(args), min_n=args.min_n, tie_policy=args.tie_policy,
                            random_state=args.random_state)
    report = result.to_dict(repetitions=True)
    report.update(scores_file=source, confidence=args.confidence_column, seed=args.random_state,
                  tie_policy=args.tie_policy, grouped=groups is not None,
                  data_hash=table_hash(table, ["id", args.confidence_column, "pred", "human_label"]))
    write_json_atomic(report, os.path.join(args.out, "validity.json"))
    print(result.sentence())
    print(f"(written to {os.path.join(args.out, 'validity.json')})")
    return 0


def _run_group_validity(args, table, source, confidence, pred, human) -> int:
    """``validity --by COLUMN``: ``group_validity.group_validity_study`` on the file."""
    from ..contracts import agreement
    from .calibrator import verdict_mask
    from .group_validity import group_validity_study

    if args.by not in table.column_names:
        raise ContractError(source, "missing column", field=args.by, hint="name an existing column with --by")
    groups = np.asarray(table.column(args.by).to_pylist(), dtype=object)
    missing = np.flatnonzero(np.equal(groups, None))
    if missing.size:
        raise ContractError(source, "missing group", row=int(missing[0]), field=args.by)
    if args.design != "population" or not isinstance(args.calibration_size, float):
        raise ValueError("--by runs the population design with --calibration-size a fraction in (0, 1)")
    agree, kept = agreement(pred, human, args.tie_policy)
    # items without a verdict are never accepted: confidence -inf, as in calibration
    confidence = np.where(verdict_mask(pred), confidence, -np.inf)[kept]
    result = group_validity_study(confidence, agree, groups[kept], alpha=args.alpha, delta=args.delta,
                                  n_repetitions=args.repetitions, calibration_size=args.calibration_size,
                                  procedure=args.procedure, grid=_grid(args), min_n=args.min_n,
                                  random_state=args.random_state)
    report = result.to_dict()
    report.update(scores_file=source, confidence=args.confidence_column, seed=args.random_state, by=args.by,
                  tie_policy=args.tie_policy, design="population",
                  data_hash=table_hash(table, ["id", args.confidence_column, "pred", "human_label"]))
    write_json_atomic(report, os.path.join(args.out, "validity.json"))
    print(result.sentence())
    print(f"(written to {os.path.join(args.out, 'validity.json')})")
    return 0


def _grid(args):
    from .grid import fixed_grid

    return fixed_grid(args.n_grid, args.grid_low, args.grid_high)
