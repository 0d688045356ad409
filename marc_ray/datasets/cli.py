"""``marc-ray datasets`` (list, export, replay).

Imports stay light at module level (argparse only): the loaders and pyarrow are imported by
the handlers.
"""

from __future__ import annotations

import json


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "datasets", help="list, export or replay public human-preference datasets",
        description="Public human-preference datasets in the comparison contract. Local copies are "
                    "read from --path (default: the shared folder, or $MARC_RAY_SHARED_DATA/<name>); "
                    "hub datasets need network access and the `datasets` package.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    listing = actions.add_parser("list", help="the registered datasets")
    listing.set_defaults(handler=list_datasets)

    export = actions.add_parser("export", help="write a dataset's comparisons (or verdicts) to a file")
    export.add_argument("name", help="a registered dataset (see `marc-ray datasets list`)")
    export.add_argument("output", help="output file: .jsonl or .parquet")
    export.add_argument("--path", default=None, help="the dataset's local folder")
    export.add_argument("--verdicts", action="store_true",
                        help="export the judge verdict table instead of the comparisons")
    export.add_argument("--limit", type=int, default=None, help="hub datasets: read only N records")
    export.set_defaults(handler=export_dataset)

    replay = actions.add_parser("replay", help="replay a dataset's judge verdicts as an annotation file "
                                "(a judge panel as simulated annotators)")
    replay.add_argument("name")
    replay.add_argument("output", help="annotation Parquet file")
    replay.add_argument("--target", required=True, help="the judge whose verdicts are annotated")
    replay.add_argument("--panel", nargs="+", default=None, help="panel judges (default: all)")
    replay.add_argument("--variants", nargs="+", default=None, help="prompt variants (default: all)")
    replay.add_argument("--path", default=None, help="the dataset's local folder")
    replay.set_defaults(handler=replay_dataset)
    parser.set_defaults(handler=lambda args: (parser.print_help(), 2)[1])


def list_datasets(args) -> int:
    from . import DATASETS

    for name, dataset in DATASETS.items():
        extras = ["verdicts" if dataset.load_verdicts else None, "hub" if dataset.hub else "local"]
        print(f"{name:18s} {dataset.description} [{', '.join(e for e in extras if e)}]")
    return 0


def _write(table, output: str) -> None:
    from ..contracts import write_table_atomic, write_text_atomic

    # the extension was checked before any work (check_output_file in export_dataset)
    if output.lower().endswith(".parquet"):
        write_table_atomic(table, output)
    else:
        write_text_atomic("".join(json.dumps(row, ensure_ascii=False) + "\n"
                                  for row in table.to_pylist()), output)


def export_dataset(args) -> int:
    from ..contracts.outputs import check_output_file
    from . import get_dataset, load_verdicts

    check_output_file(args.output, {".jsonl": "JSON lines", ".ndjson": "JSON lines",
                                    ".parquet": "Parquet"}, flag="OUTPUT")
    dataset = get_dataset(args.name)
    if args.verdicts:
        table = load_verdicts(args.name, args.path)
    elif dataset.hub:
        table = dataset.load(args.path, limit=args.limit)
    else:
        table = dataset.load(args.path)
    _write(table, args.output)
    print(f"wrote {table.num_rows} rows of {args.name} to {args.output}")
    return 0


def replay_dataset(args) -> int:
    from ..annotate.replay import panel_annotations, replay_metadata
    from ..contracts import write_table_atomic
    from ..contracts.outputs import check_output_file
    from . import load_dataset, load_verdicts

    # annotations are Parquet (list columns, the run layout in the file's metadata)
    check_output_file(args.output, {".parquet": "Parquet"}, flag="OUTPUT")
    comparisons = load_dataset(args.name, args.path)
    verdicts = load_verdicts(args.name, args.path)
    table = panel_annotations(verdicts, args.target, comparisons=comparisons, panel=args.panel,
                              variants=args.variants, source=args.name)
    write_table_atomic(table, args.output)
    members = replay_metadata(table)["annotators"]
    print(f"wrote {table.num_rows} annotations of {args.target} with a panel of {len(members)} "
          f"(judge/prompt) annotators to {args.output}")
    return 0
