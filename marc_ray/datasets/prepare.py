"""The prepare stage: the run's comparisons and pool, validated, split and written as Parquet.

``DataConfig`` is the pipeline's ``data:`` section: where the comparisons come from (files, or
the built-in demo of ``marc_ray.demo``) and how they are split into train / calibration / test.
``prepare`` reads them once, checks them against the comparison contract, keeps a complete
``split`` column or draws one by group, and writes the two files every later stage reads.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..contracts import (ContractError, check_pool_disjoint, check_present,
                         validate_comparisons, write_table_atomic)
from ..contracts.io import parent
from ..contracts.validation import check_number, check_section_types, fail, reject_unknown
from .user_data import check_maps, named_as_in_the_file, read_user_table

SPLITS = ("train", "calibration", "test")


@dataclass
class DataConfig:
    """Where the comparisons come from and how they are split."""

    comparisons: str = ""      # comparisons (JSONL/JSON/CSV/Parquet, local path or pyarrow URI); "" with demo
    pool: str = ""             # few-shot pool, annotator ids optional (never calibrated or tested on);
                               # "" = pool_size items drawn from the train split (replay needs none)
    columns: dict = field(default_factory=dict)  # contract field -> the files' column, e.g.
                               # {instruction: query, human_label: human} (datasets.user_data)
    labels: dict = field(default_factory=dict)   # the files' human_label values -> a / b / tie,
                               # e.g. {model1: a, model2: b, TIE: tie}; {} = already a / b / tie
    pool_size: int = 0         # items drawn from the train split when pool is "": set at load to
                               # the judges' need (n_annotators * k_shots non-tie items; 0: replay)
    demo: dict | None = None   # generate the built-in benchmark instead: marc_ray.demo.DemoSpec fields
                               # ({} = defaults); writes run_dir/data/{comparisons,pool}.jsonl
    train_fraction: float = 0.4        # used when the comparisons have no `split` column: share of
    calibration_fraction: float = 0.4  # groups (or items) for fitting C_theta, for calibration,
    test_fraction: float = 0.2         # and held out for evaluation and the drift check; sum to 1
    split_seed: int = 0        # seeds the split (the same seed gives the same split); in a
                               # pipeline config, the run's `seed` unless set (config.derive_seeds)
    max_items: int = 0         # 0 = all; else the first max_items comparisons (quick trials)

    def validate(self, source: str = "") -> "DataConfig":
        """Check every field; raise ``ValueError`` in the package's one error form."""
        check_section_types(self, "data", source)
        if self.demo is not None:
            from ..demo import DemoSpec

            if not isinstance(self.demo, dict):
                fail("data.demo", "a mapping of DemoSpec fields ({} for the defaults)", self.demo,
                     source)
            reject_unknown(self.demo, [f.name for f in fields(DemoSpec)], source, "data.demo.")
            if self.comparisons or self.pool:
                raise ValueError(f"{source}: give either data.demo or data.comparisons/data.pool, "
                                 f"not both")
        else:
            if not self.comparisons:
                raise ValueError(f"{source}: data.comparisons is required (a file path or URI), or "
                                 f"set data.demo: {{}} to generate the built-in benchmark")
            for name in ("comparisons", "pool"):
                value = getattr(self, name)
                if value and "://" not in value and not os.path.lexists(value):  # a loop: named later
                    raise ValueError(f"{source}: data.{name}: no such file {value!r}")
        check_maps(self.columns, self.labels, source)
        check_number("data.pool_size", self.pool_size, source, low=0, integer=True,
                     what="an integer >= 0")
        fractions = (self.train_fraction, self.calibration_fraction, self.test_fraction)
        if any(f < 0 for f in fractions) or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6) \
                or self.calibration_fraction <= 0:
            fail("data.train_fraction, calibration_fraction and test_fraction",
                 ">= 0 and sum to 1, with calibration_fraction > 0", fractions, source)
        check_number("data.max_items", self.max_items, source, low=0, integer=True,
                     what="an integer >= 0")
        return self


def assign_splits(table: pa.Table, data: DataConfig, source: str,
                  extra_splits: tuple[str, ...] = ()) -> pa.Table:
    """Keep a complete ``split`` column, else draw train/calibration/test by group (or item).

    ``extra_splits`` are other values a given split column may hold (the fit stage's
    validation split names)."""
    splits = table.column("split").to_pylist()
    if all(s is not None for s in splits):
        allowed = set(SPLITS) | set(extra_splits)
        for row, value in enumerate(splits):
            if value not in allowed:
                raise ContractError(source, f"split {value!r} is not one of {sorted(allowed)}",
                                    row=row, field="split", hint="or remove the column to let "
                                    "the pipeline draw the split from data.*_fraction")
        if "calibration" not in splits:
            raise ContractError(source, "no row is in the 'calibration' split", field="split")
        return table
    ids = table.column("id").to_pylist()
    groups = table.column("group").to_pylist()
    keys = [f"group:{g}" if g is not None else f"id:{i}" for g, i in zip(groups, ids)]
    unique = sorted(set(keys))
    order = np.random.default_rng(data.split_seed).permutation(len(unique))
    n_train = int(round(data.train_fraction * len(unique)))
    n_cal = int(round(data.calibration_fraction * len(unique)))
    names = {}
    for rank, position in enumerate(order):
        names[unique[position]] = ("train" if rank < n_train else
                                   "calibration" if rank < n_train + n_cal else "test")
    column = pa.array([names[k] for k in keys], pa.string())
    return table.set_column(table.column_names.index("split"), "split", column)


def draw_pool(comparisons: pa.Table, size: int, seed: int, source: str) -> tuple[pa.Table, pa.Table]:
    """``size`` non-tie items of the train split, seeded: (the comparisons without them, the pool).

    The pool's items leave the comparisons altogether: they are never annotated, trained on,
    calibrated or tested (their labels are in every prompt). Calibration and test rows are never
    drawn. The pool has no annotator ids: the simulated annotators are seeded partitions of it
    (``annotate.annotators.build_annotators``).

    Raises
    ------
    ContractError
        The train split holds fewer than ``size`` items labelled "a" or "b".
    """
    columns = [name for name in ("id", "instruction", "response_a", "response_b", "human_label")
               if name in comparisons.column_names]
    if size == 0:
        return comparisons, comparisons.select(columns).slice(0, 0)
    split = comparisons.column("split").to_numpy(zero_copy_only=False)
    label = comparisons.column("human_label").to_numpy(zero_copy_only=False)
    eligible = np.flatnonzero((split == "train") & np.isin(label, ["a", "b"]))
    if eligible.size < size:
        raise ContractError(source, f"data.pool is not given, and the train split has "
                            f"{eligible.size} items labelled 'a' or 'b' to draw a few-shot pool "
                            f"of {size} from", field="data.pool",
                            hint="give a pool file, raise data.train_fraction, or lower "
                                 "annotate.n_annotators / k_shots")
    drawn = np.sort(np.random.default_rng(seed).choice(eligible, size=size, replace=False))
    keep = np.ones(comparisons.num_rows, dtype=bool)
    keep[drawn] = False
    return (comparisons.filter(pa.array(keep)),
            comparisons.select(columns).take(pa.array(drawn)))


def prepare(data: DataConfig, *, seed: int, comparisons_out: str, pool_out: str,
            extra_splits: tuple[str, ...] = (), group_column: str | None = None) -> dict:
    """Validate the comparisons and the pool (or generate the demo), assign splits, write Parquet.

    Parameters
    ----------
    data : DataConfig
    seed : the run's seed (the demo is drawn from it unless ``data.demo`` sets its own)
    comparisons_out, pool_out : where the validated tables go (the run folder's data/ files)
    extra_splits : split values a given ``split`` column may also hold (fit's validation names)
    group_column : the column a threshold is certified per (``calibrate.by``): kept in the
        written comparisons (as text) and required, non-empty, on every calibration row; a
        train or test row without a value is kept (apply escalates such an item)

    Returns
    -------
    dict : row counts (comparisons, pool, and per split), for the progress line
    """
    if data.demo is not None:
        from ..demo import DemoSpec, write_demo

        spec = dict(data.demo)
        spec.setdefault("seed", seed)
        if "votes_per_item" in spec:
            spec["votes_per_item"] = tuple(spec["votes_per_item"])
        comparisons_path, pool_path = write_demo(parent(comparisons_out), DemoSpec(**spec))
    else:
        comparisons_path, pool_path = data.comparisons, data.pool
    comparisons = read_user_table(comparisons_path, data.columns, data.labels)
    if data.max_items:
        comparisons = comparisons.slice(0, data.max_items)
    with named_as_in_the_file(data.columns):
        comparisons = validate_comparisons(comparisons, comparisons_path, require_labels=True,
                                           carry=(group_column,) if group_column else ())
        comparisons = assign_splits(comparisons, data, comparisons_path, extra_splits)
    if pool_path:
        pool = read_user_table(pool_path, data.columns, data.labels)
        if pool.num_rows:  # annotator ids optional: without them, annotators are partitions
            with named_as_in_the_file(data.columns):
                pool = validate_comparisons(pool, pool_path, require_labels=True,
                                            pool="annotator" in pool.column_names)
        check_pool_disjoint(pool, comparisons, pool_path, comparisons_path)
    else:
        comparisons, pool = draw_pool(comparisons, data.pool_size, data.split_seed, comparisons_path)
    if group_column:
        calibration = pc.equal(comparisons.column("split"), "calibration").to_numpy(
            zero_copy_only=False)
        check_present(comparisons, group_column, comparisons_path, rows=calibration,
                      why="calibration")
    write_table_atomic(comparisons, comparisons_out)
    write_table_atomic(pool, pool_out)
    splits = comparisons.column("split").to_pylist()
    return {"comparisons": comparisons.num_rows, "pool": pool.num_rows,
            **{s: splits.count(s) for s in SPLITS}}
