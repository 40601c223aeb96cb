"""How well a ranking made before training predicted the runs that followed.

A ranking (:mod:`transferlab.ranking`) orders (backbone, weights) pairs by a score of their frozen features.
Once the store holds succeeded runs of the same task and data version, each pair has a realised score: its
best mean test score over strategies (and other settings; mean over seeds), per training-set size. The
agreement is scipy's weighted Kendall τ (``scipy.stats.weightedtau``: hyperbolic weights, so swapping the
top pairs costs more than swapping the bottom ones; +1 is the same order, −1 the reverse), for each of
the ranking's scores beside two naive rankings that need no features at all: the published ImageNet
top-1 (over the ImageNet-pretrained pairs only, which are all that have one, so the probe's τ over those same
pairs is given beside it: ``tau_probe_mean_top1_pairs``) and the parameter count (a
2026 study found ordering models by size alone often beats published transferability scores).

With fewer than :data:`MIN_PAIRS_FOR_TAU` pairs a τ means nothing and none is given; with a handful it is
weak evidence either way, and the reading says how many pairs it rests on.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from transferlab.cells import records, size_text

MIN_PAIRS_FOR_TAU = 3
#: rank-score column -> what it is called; the last two are the naive baselines
PREDICTORS = {"probe_mean": "probe accuracy", "logme": "LogME", "knn_mean": "k-NN accuracy",
              "imagenet_top1": "ImageNet top-1", "params": "parameter count"}
_POINT_COLUMNS = ["pair", "backbone", "weights", "size", "examples_per_class", *PREDICTORS, "realised", "realised_ci95",
                  "realised_n", "best_strategy", "metric_label"]
_TAU_COLUMNS = ["size", "examples_per_class", "largest", "pairs", *(f"tau_{k}" for k in PREDICTORS),
                *(f"n_{k}" for k in PREDICTORS), "tau_probe_mean_top1_pairs", "reading"]


def realised_scores(runs: pd.DataFrame, task: str, data_version: str | None, baselines: Any = ()) -> pd.DataFrame:
    """Per (backbone, weights, examples per class): the best mean test score over the configurations run
    from that starting point (succeeded training runs of ``task`` at ``data_version``, transfers from a
    pretrained source left out: their starting point is another run), with its CI, seeds and strategy."""
    from transferlab.analysis import summarize

    columns = ["backbone", "weights", "examples_per_class", "realised", "realised_ci95", "realised_n",
               "best_strategy", "metric_label"]
    if runs is None or runs.empty:
        return pd.DataFrame(columns=columns)
    mine = runs[runs["task"] == task]
    if "data_version" in mine:
        versions = mine["data_version"]
        mine = mine[versions.isna()] if data_version is None else mine[versions == data_version]
    if "source" in mine:
        mine = mine[mine["source"].isna() | (mine["source"] == "")]
    summary = summarize(mine, baselines=baselines)
    if summary.empty:
        return pd.DataFrame(columns=columns)
    best = (summary.sort_values("mean", ascending=False)
            .drop_duplicates(["backbone", "weights", "examples_per_class"]))
    best = best.rename(columns={"mean": "realised", "ci95": "realised_ci95", "n": "realised_n",
                                "strategy": "best_strategy"})
    return best[columns].reset_index(drop=True)


def _tau(x: np.ndarray, y: np.ndarray) -> float:
    from scipy import stats

    return float(stats.weightedtau(x, y).statistic)


def rank_vs_realised(ranking: pd.DataFrame, realised: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(points, taus). ``points``: one row per ranked pair and size with a realised score (its rank scores,
    ImageNet top-1, parameters, realised score). ``taus``: per size, weighted τ between each predictor and
    the realised score over the pairs where the predictor is known (``n_<predictor>`` says how many), NaN
    with fewer than :data:`MIN_PAIRS_FOR_TAU`, and a one-line reading; ``largest`` marks the largest size."""
    if ranking is None or ranking.empty or realised is None or realised.empty:
        return pd.DataFrame(columns=_POINT_COLUMNS), pd.DataFrame(columns=_TAU_COLUMNS)
    ranked = ranking[["pair", "backbone", "weights", *[c for c in PREDICTORS if c in ranking]]].copy()
    for column in PREDICTORS:
        if column not in ranked:
            ranked[column] = np.nan
    points = ranked.merge(realised, on=["backbone", "weights"], how="inner")
    if points.empty:
        return pd.DataFrame(columns=_POINT_COLUMNS), pd.DataFrame(columns=_TAU_COLUMNS)
    points["size"] = [size_text(s) for s in points["examples_per_class"]]
    sizes = points["examples_per_class"].dropna()
    largest = sizes.max() if len(sizes) else np.nan
    rows = []
    for size, group in points.groupby("examples_per_class", dropna=False, sort=True):
        y = group["realised"].to_numpy(dtype=float)
        row = dict(size=size_text(size), examples_per_class=size, pairs=len(group),
                   largest=bool(size == largest) or (pd.isna(largest) and pd.isna(size)))
        for column in PREDICTORS:
            x = pd.to_numeric(group[column], errors="coerce").to_numpy(dtype=float)
            known = np.isfinite(x) & np.isfinite(y)
            row[f"n_{column}"] = int(known.sum())
            enough = known.sum() >= MIN_PAIRS_FOR_TAU and np.ptp(x[known]) > 0 and np.ptp(y[known]) > 0
            row[f"tau_{column}"] = _tau(x[known], y[known]) if enough else np.nan
        # ImageNet top-1 is known for ImageNet pairs only: the probe's τ over those same pairs is the fair match
        top1 = np.isfinite(pd.to_numeric(group["imagenet_top1"], errors="coerce").to_numpy(dtype=float))
        x = pd.to_numeric(group["probe_mean"], errors="coerce").to_numpy(dtype=float)
        same = top1 & np.isfinite(x) & np.isfinite(y)
        enough = same.sum() >= MIN_PAIRS_FOR_TAU and np.ptp(x[same]) > 0 and np.ptp(y[same]) > 0
        row["tau_probe_mean_top1_pairs"] = _tau(x[same], y[same]) if enough else np.nan
        row["reading"] = _reading(row)
        rows.append(row)
    return points[_POINT_COLUMNS].reset_index(drop=True), pd.DataFrame(rows, columns=_TAU_COLUMNS)


def _reading(row: dict[str, Any]) -> str:
    if row["pairs"] < MIN_PAIRS_FOR_TAU:
        return (f"too few pairs ({row['pairs']}) with runs at {row['size']}: τ needs at least {MIN_PAIRS_FOR_TAU} "
                "to mean anything")
    taus = {PREDICTORS[k]: row[f"tau_{k}"] for k in PREDICTORS if np.isfinite(row[f"tau_{k}"])}
    if not taus:
        return "no spread in the scores or in the realised results: no τ"
    best = max(taus.values())
    leaders = [name for name, tau in taus.items() if abs(tau - best) < 1e-9]
    lead = (f"{leaders[0]} ordered the runs best" if len(leaders) == 1
            else f"{', '.join(leaders[:-1])} and {leaders[-1]} tie for the best order")
    missing = [PREDICTORS[k] for k in PREDICTORS if not np.isfinite(row[f"tau_{k}"])]
    same = row.get("tau_probe_mean_top1_pairs", np.nan)
    fair = (f"; on the {row['n_imagenet_top1']} pairs with a published top-1, probe τ {same:+.2f} against top-1 "
            f"τ {row['tau_imagenet_top1']:+.2f}" if np.isfinite(same) and row["n_imagenet_top1"] < row["pairs"]
            and np.isfinite(row["tau_imagenet_top1"]) else "")
    return (f"{lead} (τ {best:+.2f}) over {row['pairs']} pairs; a handful of pairs is weak evidence" + fair
            + (f"; no τ for {', '.join(missing)} (fewer than {MIN_PAIRS_FOR_TAU} pairs have it, or no spread)"
               if missing else ""))


def check_against_store(registry: Any, result: dict[str, Any]) -> dict[str, Any] | None:
    """The ranking ``result`` against the store's runs of its task and data version, as JSON-ready data
    (``points`` and ``taus`` records), or None when the store has none (or cannot be read: the ranking
    stands without it)."""
    from transferlab.errors import StoreError
    from transferlab.ranking import ranking_frame
    from transferlab.store import Store

    try:  # read only: ranking never creates a store
        runs = Store(read_only=True).runs_frame()
    except StoreError:
        return None
    realised = realised_scores(runs, result["task"], result.get("data_version"), registry.baseline_strategies())
    points, taus = rank_vs_realised(ranking_frame(result), realised)
    if points.empty:
        return None
    return dict(points=records(points), taus=records(taus))


def format_check(check: dict[str, Any]) -> str:
    """The check as the command prints it: one line per size with each τ and the reading."""
    from transferlab.cli import table

    def tau(value, n):
        return "—" if value is None else f"{value:+.2f} ({n})"

    rows = [dict(size=t["size"] + (" (largest)" if t["largest"] else ""), pairs=t["pairs"],
                 **{PREDICTORS[k]: tau(t[f"tau_{k}"], t[f"n_{k}"]) for k in PREDICTORS}, reading=t["reading"])
            for t in check["taus"]]
    return ("How the ranking predicted the runs in the store (weighted Kendall τ against each pair's best mean "
            "test score over strategies; in brackets: pairs it rests on):\n"
            + table(rows, ["size", "pairs", *PREDICTORS.values(), "reading"]))
