"""Render evaluation results: terminal tables, Markdown, JSON and PNG plots.

Results arrive grouped by ``(split, mode)``, each group a list of :class:`MethodResult` (one row
per method). The terminal table keeps the paper's shape (rows = methods, column groups = the nine
settings plus ``overall``, each with RMSE / F2-M / F2-A) in two panels so that it fits 120 columns.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from auditor_lite.data.schema import MASK_TYPES
from auditor_lite.eval.protocol import SETTING_TITLES, SETTINGS, MethodResult

Groups = Mapping[tuple[str, str], Sequence[MethodResult]]
COLUMN_GROUPS = SETTINGS + ("overall",)
NAME_WIDTH = 14
CELL_WIDTH = 5
GROUPS_PER_PANEL = 5
TERMINAL_WIDTH = 120

CAPTION = ("RMSE: IoU RMSE (lower is better; video-level in video mode). F2-M / F2-A: macro "
           "F2 in % over mask types / actions (higher is better). '-': undefined (no samples).")


def fmt_rmse(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def fmt_pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def fmt_corr(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _group(metrics: dict, name: str) -> dict:
    return metrics["overall"] if name == "overall" else metrics["settings"][name]


def _cells(metrics: dict, name: str) -> list[str]:
    block = _group(metrics, name)
    return [fmt_rmse(block["rmse"]), fmt_pct(block["f2_m"]["macro_f"]),
            fmt_pct(block["f2_a"]["macro_f"])]


def _short(name: str, width: int = NAME_WIDTH) -> str:
    return name if len(name) <= width else name[: width - 1] + "~"


def format_main_table(results: Sequence[MethodResult], title: str) -> str:
    """The paper-shaped table for one (split, mode), as two stacked panels of column groups."""
    group_width = 3 * CELL_WIDTH + 2
    lines = [title]
    for start in range(0, len(COLUMN_GROUPS), GROUPS_PER_PANEL):
        panel = COLUMN_GROUPS[start:start + GROUPS_PER_PANEL]
        head = " | ".join(SETTING_TITLES[g].center(group_width) for g in panel)
        sub = " | ".join(" ".join(c.rjust(CELL_WIDTH) for c in ("RMSE", "F2-M", "F2-A"))
                         for _ in panel)
        lines += ["", f"{'':<{NAME_WIDTH}} | {head}", f"{'method':<{NAME_WIDTH}} | {sub}",
                  "-" * (NAME_WIDTH + 3 + len(sub))]
        for result in results:
            row = " | ".join(" ".join(c.rjust(CELL_WIDTH) for c in _cells(result.metrics, g))
                             for g in panel)
            lines.append(f"{_short(result.method):<{NAME_WIDTH}} | {row}")
    lines += ["", textwrap.fill(CAPTION, TERMINAL_WIDTH)]
    return "\n".join(lines)


EXTRA_COLUMNS = ("n", "miss", "MAE", "PLCC", "SRCC", "KRCC", "Acc-M", "Acc-A", "AUROC",
                 "Pick", "Oracle", "Random")
EXTRAS_CAPTION = ("miss: candidates without a prediction. MAE/PLCC/SRCC/KRCC: predicted vs true "
                  "IoU over samples. Acc in %. AUROC: flagging true IoU < 0.5 by low predicted "
                  "IoU. Pick/Oracle/Random: mean true IoU of the candidate ranked first per "
                  "expression frame, of the best one, of a random one.")


def _extra_cells(metrics: dict) -> list[str]:
    o = metrics["overall"]
    best = o["best_of_candidates"]
    return [str(o["n"]), str(o["n_missing"]), fmt_rmse(o["mae"]), fmt_corr(o["correlation"]["plcc"]),
            fmt_corr(o["correlation"]["srcc"]), fmt_corr(o["correlation"]["krcc"]),
            fmt_pct(o["accuracy_m"]), fmt_pct(o["accuracy_a"]), fmt_corr(o["failure_auroc"]),
            fmt_rmse(best["pick"]), fmt_rmse(best["oracle"]), fmt_rmse(best["random"])]


def format_extras_table(results: Sequence[MethodResult], title: str) -> str:
    width = max(6, *(len(c) for c in EXTRA_COLUMNS))
    rows = [[_short(r.method)] + _extra_cells(r.metrics) for r in results]
    width = max([width] + [len(c) for row in rows for c in row[1:]])
    head = " ".join(c.rjust(width) for c in EXTRA_COLUMNS)
    lines = [title, f"{'method':<{NAME_WIDTH}} {head}", "-" * (NAME_WIDTH + 1 + len(head))]
    lines += [f"{row[0]:<{NAME_WIDTH}} " + " ".join(c.rjust(width) for c in row[1:]) for row in rows]
    lines.append(textwrap.fill(EXTRAS_CAPTION, TERMINAL_WIDTH))
    return "\n".join(lines)


def format_tables(groups: Groups) -> str:
    parts = []
    for (split, mode), results in groups.items():
        parts.append(format_main_table(results, f"== {split} / {mode} =="))
        parts.append(format_extras_table(results, f"-- {split} / {mode}: beyond the paper --"))
    return "\n\n".join(parts)


def markdown_report(groups: Groups) -> str:
    lines = ["# Evaluation results", "",
             "Cells of the main tables: RMSE / F2-M / F2-A. " + CAPTION, ""]
    for (split, mode), results in groups.items():
        lines += [f"## {split} / {mode}", "",
                  "| Method | " + " | ".join(SETTING_TITLES[g] for g in COLUMN_GROUPS) + " |",
                  "|---|" + "---|" * len(COLUMN_GROUPS)]
        for r in results:
            cells = [" / ".join(_cells(r.metrics, g)) for g in COLUMN_GROUPS]
            lines.append(f"| {r.method} | " + " | ".join(cells) + " |")
        lines += ["", "| Method | " + " | ".join(EXTRA_COLUMNS) + " |",
                  "|---|" + "---|" * len(EXTRA_COLUMNS)]
        for r in results:
            lines.append(f"| {r.method} | " + " | ".join(_extra_cells(r.metrics)) + " |")
        lines += ["", EXTRAS_CAPTION, ""]
    return "\n".join(lines)


def results_json(groups: Groups) -> dict:
    return {
        "settings": list(SETTINGS),
        "headline": "macro F2 (beta=2) per setting; micro averages under f2_m / f2_a",
        "results": [{"method": r.method, **r.metrics}
                    for results in groups.values() for r in results],
    }


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "method"


def _scatter(ax, result: MethodResult) -> None:
    gt, pred = result.gt, result.aligned
    colours = dict(zip(MASK_TYPES, ("tab:green", "tab:blue", "tab:orange", "tab:purple",
                                    "tab:brown", "tab:red", "tab:gray")))
    for mask_type in MASK_TYPES:
        rows = gt.mask_type == mask_type
        if rows.any():
            ax.scatter(gt.iou[rows], pred.iou[rows], s=8, alpha=0.5, color=colours[mask_type],
                       label=f"{mask_type} ({int(rows.sum())})")
    ax.plot([0, 1], [0, 1], color="black", linewidth=0.8, linestyle="--")
    ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), xlabel="true IoU", ylabel="predicted IoU")
    ax.legend(fontsize=7, loc="upper left")


def _confusion(ax, confusion: dict, title: str) -> None:
    matrix = np.asarray(confusion["matrix"], dtype=float)
    if matrix.size == 0:
        ax.set_title(f"{title}: no samples")
        ax.axis("off")
        return
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(confusion["columns"])), confusion["columns"], rotation=45,
                  ha="right", fontsize=7)
    ax.set_yticks(range(len(confusion["rows"])), confusion["rows"], fontsize=7)
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, int(count), ha="center", va="center", fontsize=7,
                color="white" if shares[i, j] > 0.5 else "black")  # readable on dark cells
    ax.set(xlabel="predicted", ylabel="true", title=title)


def write_plots(groups: Groups, out_dir: Path) -> list[Path]:
    """Per method x split x mode: a predicted-vs-true IoU scatter and the two confusion matrices."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    written = []
    for (split, mode), results in groups.items():
        for r in results:
            stem = f"{safe_name(r.method)}_{split}_{mode}"
            fig, ax = plt.subplots(figsize=(5, 5))
            _scatter(ax, r)
            ax.set_title(f"{r.method}: {split} / {mode}", fontsize=9)
            written.append(out_dir / f"scatter_{stem}.png")
            fig.savefig(written[-1], dpi=100, bbox_inches="tight")
            plt.close(fig)
            fig, axes = plt.subplots(1, 2, figsize=(11, 4.8), layout="constrained")
            _confusion(axes[0], r.metrics["overall"]["confusion_m"], "mask type")
            _confusion(axes[1], r.metrics["overall"]["confusion_a"], "action")
            fig.suptitle(f"{r.method}: {split} / {mode} (colour: row-normalised)", fontsize=9)
            written.append(out_dir / f"confusion_{stem}.png")
            fig.savefig(written[-1], dpi=100, bbox_inches="tight")
            plt.close(fig)
    return written


def write_report(groups: Groups, out_dir, plots: bool = True) -> list[Path]:
    """Write results.json, results.md and (optionally) the PNGs; returns the written paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "results.json", out_dir / "results.md"
    json_path.write_text(json.dumps(results_json(groups), indent=1, default=_json_default))
    md_path.write_text(markdown_report(groups))
    written = [json_path, md_path]
    if plots:
        written += write_plots(groups, out_dir)
    return written
