"""The data contracts: every table and record that crosses a stage boundary.

One module owns the schemas, their validators and the readers/writers, and every other
module imports from here (``../shared/DESIGN.md``, "Data contracts"). Nothing here imports
ray, torch or vllm.

Tables
------
comparison   one pairwise comparison: ``id``, ``instruction``, ``response_a``, ``response_b``,
             optional ``human_votes`` (list of {annotator, label}) or ``human_label``,
             optional ``split`` and ``group``, optional ``model_a`` / ``model_b`` (both or neither).
pool         the few-shot pool: comparisons with an ``annotator`` id and a ``human_label``;
             used only to build simulated annotators, never calibrated or tested on.
annotation   one row per comparison and judge: the flat run vector ``probs`` (the tensor
             ``probs[annotator, shot_subset, order]`` in C order, see :class:`RunLayout`),
             the raw label mass and status of every run, the zero-shot runs, and the derived
             heuristics (``pred``, ``conf_predictive``, ``conf_simulated``). Human labels,
             ``split`` and ``group`` are carried forward so the file is self-contained, and
             any other comparison column a run names (``carry``, e.g. ``calibrate.by``).
scores       what calibration reads: ``id``, a confidence column, ``pred`` and ``human_label``.

Every validation error is a :class:`ContractError`, which names the file, the row and the field.

The package is split by concern, and every name is re-exported here so that callers import
from ``marc_ray.contracts`` alone:

``schemas``      the tables' schemas, the run layout, human-label rules and the validators;
``io``           reading (JSONL, Parquet; local or any pyarrow filesystem), atomic writes, hashes;
``certificate``  the calibrated judge's certificate and the assumptions it rests on;
``align``        items × judges: each judge's rows lined up by id (:func:`align_items`);
``errors``       :class:`ContractError`.
"""

from .align import Aligned, ItemSet, align_items, aligned_sets
from .certificate import (ASSUMPTIONS, BINDING_KEYS, CONFIDENCE_MODELS_METADATA_KEY,
                          JUDGE_METADATA_KEY, Certificate, check_binding, content_digest,
                          metadata_binding, with_binding)
from .errors import ContractError, InfrastructureError
from .io import (file_hash, read_columns, read_table, rows_to_table, table_hash, write_json_atomic,
                 write_table_atomic, write_text_atomic)
from .schemas import (ANNOTATION_REQUIRED, ANNOTATION_SCHEMA, CARRIED_COLUMNS, COMPARISON_REQUIRED,
                      COMPARISON_SCHEMA, LABELS, LAYOUT_METADATA_KEY, ORDERS, POOL_REQUIRED,
                      POOL_SCHEMA, PREDICTIONS, RUN_STATUS_OK, SCORES_REQUIRED, TIE_POLICIES,
                      VOTE_TYPE, RunLayout, TiePolicy, agreement, annotation_schema,
                      carried_column, carried_names, carry_problem, check_present,
                      check_pool_disjoint, extra_carried, layout_of, majority_label,
                      validate_annotations, validate_comparisons, validate_scores)

__all__ = [
    "Aligned", "ItemSet", "align_items", "aligned_sets",
    "ANNOTATION_REQUIRED", "ANNOTATION_SCHEMA", "ASSUMPTIONS", "CARRIED_COLUMNS",
    "COMPARISON_REQUIRED", "COMPARISON_SCHEMA", "Certificate", "ContractError", "InfrastructureError",
    "LABELS",
    "LAYOUT_METADATA_KEY", "ORDERS", "POOL_REQUIRED", "POOL_SCHEMA", "PREDICTIONS",
    "RUN_STATUS_OK", "RunLayout", "SCORES_REQUIRED", "TIE_POLICIES", "TiePolicy", "VOTE_TYPE",
    "agreement", "annotation_schema", "carried_column", "carried_names", "carry_problem",
    "check_present", "check_pool_disjoint", "extra_carried", "file_hash", "layout_of",
    "majority_label", "read_columns", "read_table", "rows_to_table", "table_hash", "BINDING_KEYS", "check_binding",
    "content_digest", "CONFIDENCE_MODELS_METADATA_KEY", "JUDGE_METADATA_KEY", "metadata_binding",
    "with_binding",
    "validate_annotations", "validate_comparisons", "validate_scores", "write_json_atomic",
    "write_table_atomic", "write_text_atomic",
]
