"""The report's win-rate section: when the run's comparisons name their models, the report
folder also holds ``winrate.html`` / ``winrate.md`` / ``winrate.json`` and
``figures/winrate_leaderboard.png`` (``marc_ray.winrate``; what ``marc-ray winrate`` writes).

A report never fails for its win rates: pairs with too few labels are listed without an interval
(``--sparse skip``), and a run whose labels cannot support any interval gets a one-paragraph
``winrate.md`` saying why.
"""

from __future__ import annotations

from ..contracts import ContractError, write_text_atomic
from ..contracts.io import join, read_columns
from ..run_folder import RunFolder


def names_models(run_dir: "str | RunFolder") -> bool:
    """Whether any comparison of the run names its models (False for a run folder without the
    prepared comparisons, e.g. one assembled from stage outputs: the report is made without)."""
    from ..contracts.io import exists

    path = RunFolder.of(run_dir).comparisons
    if not exists(path):
        return False
    table = read_columns(path, ["id", "model_a"])
    return "model_a" in table.column_names and table.column("model_a").null_count < table.num_rows


def write_winrate_section(run_dir: "str | RunFolder", out_dir: str) -> dict[str, str]:
    """Write the win-rate files under ``out_dir``; return their paths ({} without model names)."""
    from ..winrate.estimate import win_rates
    from ..winrate.items import read_run
    from ..winrate.render import write_win_rates

    folder = RunFolder.of(run_dir)
    if not names_models(folder):
        return {}
    try:
        record = win_rates(read_run(folder), sparse="skip")
    except ContractError as error:
        path = join(out_dir, "winrate.md")
        write_text_atomic(f"## Win rates\n\nNo win rates for this run: {error}\n", path)
        return {"winrate_md": path}
    return write_win_rates(record, out_dir)
