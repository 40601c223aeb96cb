"""Backbones measured rather than published: frozen-feature accuracy in the store, and Kornblith et al.'s
question "do better ImageNet models transfer better?" asked of the runs that really happened.

Both work on :func:`transferlab.analysis.summarize` tables (one row per configuration and size, mean and
95 % CI over seeds), so they count only succeeded training runs and never mix sizes.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from scipy import stats

MIN_BACKBONES_FOR_CORRELATION = 3
_FROZEN_COLUMNS = ["task", "examples_per_class", "backbone", "weights", "starting_point", "strategy", "mean", "ci95",
                   "n", "label", "metric_label"]


def frozen_accuracy(summary: pd.DataFrame, frozen_strategies: Iterable[str]) -> pd.DataFrame:
    """The rows of ``summary`` whose strategy keeps the whole base frozen (its features, a trained head):
    what each backbone and weight source's features are worth on each task and size."""
    names = set(frozen_strategies)
    if summary.empty or not names:
        return pd.DataFrame(columns=_FROZEN_COLUMNS)
    rows = summary[summary["strategy"].isin(names)].copy()
    source = rows["source"].fillna("") if "source" in rows else pd.Series("", index=rows.index)
    rows["starting_point"] = [f"pretrained on {s}" if s else ("random init" if w == "none" else w)
                              for s, w in zip(source, rows["weights"])]
    return rows[_FROZEN_COLUMNS].sort_values(["task", "examples_per_class", "mean"],
                                             ascending=[True, True, False]).reset_index(drop=True)


def frozen_accuracy_table(frozen: pd.DataFrame) -> pd.DataFrame:
    """:func:`frozen_accuracy` as one row per backbone and starting point and one column per task and size, each cell
    ``mean ± CI (n seeds)``; ``—`` where nothing was measured."""
    if frozen.empty:
        return pd.DataFrame(columns=["backbone", "starting_point"])
    frozen = frozen.copy()
    frozen["column"] = [f"{t} @ {int(n)}/class" if pd.notna(n) else f"{t} @ all" for t, n in
                        zip(frozen["task"], frozen["examples_per_class"])]
    frozen["cell"] = [f"{m:.3f} ± {c:.3f} ({n})" if n > 1 else f"{m:.3f} (1 seed)" for m, c, n in
                      zip(frozen["mean"], frozen["ci95"].fillna(0.0), frozen["n"])]
    # Several frozen strategies on one backbone: the best of them stands for the features.
    best = frozen.sort_values("mean", ascending=False).drop_duplicates(["backbone", "starting_point", "column"])
    table = best.pivot(index=["backbone", "starting_point"], columns="column", values="cell")
    columns = sorted(table.columns, key=lambda c: (c.split(" @ ")[0], _size_order(c)))
    return table[columns].fillna("—").reset_index()


def _size_order(column: str) -> float:
    text = column.split(" @ ")[1]
    return float("inf") if text == "all" else float(text.split("/")[0])


def imagenet_vs_transfer(summary: pd.DataFrame, imagenet_top1: Mapping[tuple[str, str], float]) -> pd.DataFrame:
    """Transfer results of ImageNet-pretrained configurations beside their published ImageNet top-1.

    ``imagenet_top1`` maps ``(backbone, weight source)`` to the published top-1 of that checkpoint; only
    configurations in it (i.e. pretrained on ImageNet) appear, each with its task, size, strategy, mean,
    CI and seeds. Random-init and other-domain rows are left out: they have no ImageNet top-1.
    """
    columns = ["task", "examples_per_class", "strategy", "backbone", "weights", "imagenet_top1", "mean", "ci95",
               "n", "metric_label"]
    if summary.empty:
        return pd.DataFrame(columns=columns)
    keys = list(zip(summary["backbone"], summary["weights"]))
    keep = [k in imagenet_top1 for k in keys]
    rows = summary[keep].copy()
    rows["imagenet_top1"] = [imagenet_top1[k] for k, kept in zip(keys, keep) if kept]
    return rows[columns].sort_values(["task", "examples_per_class", "strategy", "imagenet_top1"]).reset_index(drop=True)


EXACT_UP_TO = 8


def spearman(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Spearman's rho with a two-sided p-value; exact (every permutation) for up to :data:`EXACT_UP_TO`
    points, where the t approximation scipy uses calls a perfect ordering of 4 points p = 0 (the exact
    answer is 1/12: a ladder of four backbones cannot be significant on its own)."""
    rho = float(stats.spearmanr(x, y).statistic)
    if len(x) > EXACT_UP_TO:
        return rho, float(stats.spearmanr(x, y).pvalue)
    from itertools import permutations

    rx = stats.rankdata(x) - (len(x) + 1) / 2
    ry = stats.rankdata(y) - (len(y) + 1) / 2
    shuffled = ry[np.array(list(permutations(range(len(y)))))]  # every ordering of y's ranks at once
    rhos = shuffled @ rx / np.sqrt((rx @ rx) * (ry @ ry))
    return rho, float(np.mean(np.abs(rhos) >= abs(rho) - 1e-12))


def transfer_correlations(points: pd.DataFrame) -> pd.DataFrame:
    """Per task, size and strategy: how many ImageNet backbones were measured, and the Spearman and Pearson
    correlation between ImageNet top-1 and transfer score with their p-values.

    With fewer than :data:`MIN_BACKBONES_FOR_CORRELATION` backbones no correlation is computed (the row
    says why); with few backbones a p-value is large and the row says the data cannot tell."""
    columns = ["task", "examples_per_class", "strategy", "backbones", "spearman", "spearman_p", "pearson",
               "pearson_p", "reading"]
    if points.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for (task, size, strategy), group in points.groupby(["task", "examples_per_class", "strategy"], dropna=False):
        x = group["imagenet_top1"].to_numpy(dtype=float)
        y = group["mean"].to_numpy(dtype=float)
        row = dict(task=task, examples_per_class=size, strategy=strategy, backbones=len(group), spearman=np.nan,
                   spearman_p=np.nan, pearson=np.nan, pearson_p=np.nan)
        if len(group) < MIN_BACKBONES_FOR_CORRELATION:
            row["reading"] = f"too few backbones ({len(group)}) for a correlation"
        elif np.ptp(x) == 0 or np.ptp(y) == 0:
            row["reading"] = "no spread in top-1 or in score: no correlation"
        else:
            rho, rho_p = spearman(x, y)
            r, r_p = stats.pearsonr(x, y)
            row.update(spearman=float(rho), spearman_p=float(rho_p), pearson=float(r), pearson_p=float(r_p))
            direction = "better ImageNet models transferred better" if rho > 0 else (
                "better ImageNet models transferred worse" if rho < 0 else "no ordering")
            row["reading"] = (f"{direction} (Spearman {rho:+.2f}, p={rho_p:.2f})" if rho_p < 0.05 else
                              f"no significant relation (Spearman {rho:+.2f}, p={rho_p:.2f}, "
                              f"{len(group)} backbones)")
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)
