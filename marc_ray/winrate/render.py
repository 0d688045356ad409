"""Write a run's win rates: ``winrate.json`` (every number), ``winrate.md`` (the tables, in
plain words), ``winrate.html`` (the same, one self-contained page) and
``figures/winrate_leaderboard.png`` (the leaderboard with its intervals, judge-only apart).
Everything is rendered before the first file is written, each file atomically."""

from __future__ import annotations

import base64
import html
import io

import matplotlib

matplotlib.use("Agg")  # headless: rendered on clusters and in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..contracts import write_json_atomic, write_text_atomic  # noqa: E402
from ..contracts.io import join, write_bytes_atomic  # noqa: E402

FIGURE = "figures/winrate_leaderboard.png"
PPI_COLOR, HUMAN_COLOR, JUDGE_COLOR = "#1f4e79", "#9e9e9e", "#c0392b"


def _num(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def pair_table(record: dict) -> tuple[list[str], list[list[str]]]:
    headers = ["pair (X vs Y)", "labelled / unlabelled", "PPI++ win rate of X [interval]",
               "human-only [interval]", "judge-only (biased)", "lambda", "decided / escalated",
               "judge's win rate on decided", "more labels to halve the width (lambda re-tuned)"]
    rows = []
    for pair in record["pairs"]:
        selective = pair["selective"]
        common = [f"{pair['first']} vs {pair['second']}", f"{pair['n_labelled']} / {pair['n_unlabelled']}"]
        if "skipped" in pair:
            rows.append(common + [f"no interval: {pair['skipped']}", "", _num(pair["judge_only"]), "",
                                  f"{selective['n_decided']} / {selective['n_escalated']}",
                                  _num(selective["judge_win_rate_decided"]), ""])
            continue
        p, h = pair["ppi"], pair["human_only"]
        halve = pair["labels_to_halve"]
        warning = f" (warning: {pair['warning']})" if pair.get("warning") else ""
        rows.append(common + [
            f"{p['estimate']:.3f} [{p['low']:.3f}, {p['high']:.3f}]{warning}",
            f"{h['estimate']:.3f} [{h['low']:.3f}, {h['high']:.3f}]",
            _num(pair["judge_only"]), f"{p['lambda']:.2f}",
            f"{selective['n_decided']} / {selective['n_escalated']}",
            _num(selective["judge_win_rate_decided"]),
            str(halve)])
    return headers, rows


def leaderboard_table(record: dict) -> tuple[list[str], list[list[str]]]:
    headers = ["rank", "model", "PPI++ strength [interval]", "human-only [interval]",
               "judge-only (biased)", "labelled items"]
    rows = [[str(rank), m["model"], f"{m['strength']:+.3f} [{m['low']:+.3f}, {m['high']:+.3f}]",
             f"{m['human_only']:+.3f} [{m['human_only_low']:+.3f}, {m['human_only_high']:+.3f}]",
             "n/a" if m["judge_only"] is None else f"{m['judge_only']:+.3f}", str(m["n_labelled"])]
            for rank, m in enumerate(record["leaderboard"]["models"], start=1)]
    return headers, rows


def paragraphs(record: dict) -> list[str]:
    """The plain-language preamble: what is estimated, from what, under which rules."""
    board = record["leaderboard"]
    text = [
        f"Human-preference win rates at confidence {1 - record['delta']:.0%} (delta = "
        f"{record['delta']:g}), estimated by prediction-powered inference (PPI++, power-tuned "
        f"lambda): the judge '{record['judge']}' ({record['probability_column']}) on every item, "
        f"corrected by the human labels on the labelled items. The human-only interval uses the "
        f"labels alone (lambda = 0); the judge-only figure is the judge's mean and is biased (no "
        f"valid interval).",
        f"Tie policy '{record['tie_policy']}': {record['tie_rule']}.",
        f"Labelled items are those with a human label that trained nothing: "
        f"{record['n_training_excluded']} labelled item(s) that trained or selected the "
        f"confidence model are not used as labels. A pair needs at least "
        f"{record['min_labelled']} labelled items for an interval.",
        "Selective view: 'decided' items are those the certificate lets the judge decide "
        f"(agreement with humans >= {1 - record['alpha']:.0%} on them, with probability "
        f"{1 - record['delta']:.0%}); the judge's win rate on them is its verdicts' share for X.",
    ]
    if board.get("models"):
        text.append(f"Leaderboard: Bradley-Terry strengths (log-odds, summing to 0; "
                    f"P(i beats j) = sigmoid(s_i - s_j)) by PPI++ logistic regression "
                    f"(lambda = {board['lambda']:.2f}) on {board['n_labelled']} labelled and "
                    f"{board['n_unlabelled']} unlabelled items.")
    if board.get("skipped_models"):
        text.append(f"Left out of the leaderboard (fewer than {record['min_labelled_per_model']} "
                    f"labelled items each): {', '.join(board['skipped_models'])}.")
    if record["n_without_probability"]:
        text.append(f"{record['n_without_probability']} item(s) had no judge probability: "
                    "they count with probability 0.5 (any fixed prediction keeps PPI valid).")
    return text


def plot_leaderboard(record: dict):
    """Strengths with their PPI++ and human-only intervals; judge-only points marked apart."""
    models = record["leaderboard"]["models"]
    figure, axis = plt.subplots(figsize=(7.0, 0.55 * max(len(models), 2) + 1.6))
    positions = np.arange(len(models))[::-1]
    for y, m in zip(positions, models):
        axis.plot([m["human_only_low"], m["human_only_high"]], [y - 0.18] * 2, color=HUMAN_COLOR,
                  linewidth=5, alpha=0.7, solid_capstyle="butt")
        axis.plot([m["low"], m["high"]], [y + 0.0] * 2, color=PPI_COLOR, linewidth=2.2)
        axis.plot([m["strength"]], [y], "o", color=PPI_COLOR)
        if m["judge_only"] is not None:
            axis.plot([m["judge_only"]], [y + 0.22], "x", color=JUDGE_COLOR, markersize=8,
                      markeredgewidth=2)
    axis.plot([], [], color=PPI_COLOR, linewidth=2.2, marker="o",
              label=f"PPI++ estimate, {1 - record['delta']:.0%} interval")
    axis.plot([], [], color=HUMAN_COLOR, linewidth=5, alpha=0.7, label="human labels only")
    axis.plot([], [], "x", color=JUDGE_COLOR, markeredgewidth=2, label="judge only (biased)")
    axis.axvline(0.0, color="#555", linewidth=0.8, linestyle=":")
    axis.set_yticks(positions, [m["model"] for m in models])
    axis.set_xlabel("Bradley-Terry strength (log-odds vs the average model)")
    axis.set_title("Leaderboard from human preferences")
    axis.grid(axis="x", alpha=0.3)
    axis.legend(loc="lower right", fontsize=8)
    return figure


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _md_table(headers, rows) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _html_table(headers, rows) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def markdown(record: dict, figure: str | None) -> str:
    lines = ["## Win rates", ""] + [p + "\n" for p in paragraphs(record)]
    if record["leaderboard"].get("models"):
        lines += ["### Leaderboard", "", _md_table(*leaderboard_table(record)), ""]
        if figure:
            lines += [f"![leaderboard]({figure})", ""]
    lines += ["### Model pairs", "", _md_table(*pair_table(record)), ""]
    return "\n".join(lines)


def html_page(record: dict, png: bytes | None) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Win rates</title>"
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
             "table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:4px 8px}"
             "</style></head><body><h2 id='win-rates'>Win rates</h2>"]
    parts += [f"<p>{e(p)}</p>" for p in paragraphs(record)]
    if record["leaderboard"].get("models"):
        parts += ["<h3>Leaderboard</h3>", _html_table(*leaderboard_table(record))]
        if png:
            parts.append(f"<img alt='leaderboard' src='data:image/png;base64,"
                         f"{base64.b64encode(png).decode('ascii')}'>")
    parts += ["<h3>Model pairs</h3>", _html_table(*pair_table(record)), "</body></html>"]
    return "\n".join(parts)


def write_win_rates(record: dict, out_dir: str) -> dict[str, str]:
    """Write the four files under ``out_dir``; return their paths by kind."""
    has_board = bool(record["leaderboard"].get("models"))
    png = _png(plot_leaderboard(record)) if has_board else None
    paths = {"winrate_json": join(out_dir, "winrate.json"), "winrate_md": join(out_dir, "winrate.md"),
             "winrate_html": join(out_dir, "winrate.html")}
    md_text, html_text = markdown(record, FIGURE if png else None), html_page(record, png)
    if png:
        paths["winrate_figure"] = join(out_dir, *FIGURE.split("/"))
        write_bytes_atomic(png, paths["winrate_figure"])
    write_json_atomic(record, paths["winrate_json"])
    write_text_atomic(md_text, paths["winrate_md"])
    write_text_atomic(html_text, paths["winrate_html"])
    return paths
