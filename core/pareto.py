"""The verdict's two side views (pandas only): the Pareto fronts of score against a cost, and "more labels or a
better backbone?" read off the measured accuracy-against-size curve. Both take :func:`transferlab.verdict.recommend`'s
configurations table; :attr:`transferlab.verdict.Recommendation.labels_or_backbone` is the second."""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import pandas as pd

from transferlab.cells import size_text
from transferlab.verdict import GROUP, NOT_SET, compare_rows, tristate_columns

__all__ = ["LABELS_COLUMNS", "PARETO_COLUMNS", "label_or_backbone", "pareto_front"]

PARETO_COLUMNS = [*GROUP, "examples_per_class", "size", "label", "metric_label", "mean", "cost", "on_front"]
LABELS_COLUMNS = [*GROUP, "examples_per_class", "size", "winner", "winner_mean", "doubled_size", "expected_mean",
                  "expected_gain", "basis", "curve_within_noise", "other_backbone", "other_mean", "other_difference",
                  "other_outcome", "answer"]


def pareto_front(table: pd.DataFrame, cost: str = "wall_seconds") -> pd.DataFrame:
    """The configurations no other beats on both score and ``cost`` (``wall_seconds`` or ``latency_ms``), per
    task, data version and size: ``on_front`` is True unless another configuration scores at least as high at
    no more cost, better on one of the two. Configurations without that cost recorded are left out.
    Sort-based: O(n log n) in configurations."""
    if table.empty or cost not in table:
        return pd.DataFrame(columns=PARETO_COLUMNS)
    frame = table.assign(cost=pd.to_numeric(table[cost], errors="coerce").astype(float))
    frame = frame[np.isfinite(frame["cost"])].copy()
    if frame.empty:
        return pd.DataFrame(columns=PARETO_COLUMNS)
    # best score at exactly each cost, then the best score among strictly cheaper configurations
    level = frame.groupby([*GROUP, "cost"], sort=True)["mean"].max().rename("level_best").reset_index()
    running = level.groupby(GROUP, sort=False)["level_best"].cummax()
    level["cheaper_best"] = running.groupby([level[c] for c in GROUP], sort=False).shift(1)
    frame = frame.merge(level, on=[*GROUP, "cost"], how="left")
    dominated = (frame["cheaper_best"] >= frame["mean"]) | (frame["level_best"] > frame["mean"])
    frame["on_front"] = ~dominated.fillna(False).astype(bool)
    frame["size"] = [size_text(s, f) for s, f in zip(frame["size_key"], frame["fraction_key"])]
    return frame[PARETO_COLUMNS].sort_values([*GROUP, "cost"]).reset_index(drop=True)



def label_or_backbone(table: pd.DataFrame, verdict: pd.DataFrame,
                      values: Mapping[tuple, tuple[np.ndarray, np.ndarray]]) -> pd.DataFrame:
    """"More labels or a better backbone?", per task, data version and size counted in examples per class.

    From the winner's measured score against size: the expected gain of doubling the labels, read off the
    line through its measured means on log2(size) (``interpolated`` between the sizes around the doubled
    one, ``measured`` when that size was run, ``extrapolated`` from the two largest sizes beyond them); the
    curve itself is never drawn past what was measured. ``curve_within_noise`` is True when the two sizes the
    estimate rests on do not differ significantly. Beside it, the measured difference of the best
    configuration with another backbone at the same size. With one measured size the data cannot tell."""
    if verdict.empty:
        return pd.DataFrame(columns=LABELS_COLUMNS)
    sized = table[(table["size_key"] != NOT_SET) & (table["fraction_key"] == NOT_SET)]
    curves = {key: rows.sort_values("size_key") for key, rows in
              sized.groupby(["task", "data_version", "config"], sort=False)}
    ordered = table.sort_values([*GROUP, "mean", "label"], ascending=[True] * len(GROUP) + [False, True])
    by_group = dict(iter(ordered.groupby(GROUP, sort=False)))
    rows = []
    for _, row in verdict[(verdict["size_key"] != NOT_SET) & (verdict["fraction_key"] == NOT_SET)].iterrows():
        group = tuple(row[c] for c in GROUP)
        curve = curves[(row["task"], row["data_version"], row["winner_config"])]
        record = dict(zip(GROUP, group), examples_per_class=row["examples_per_class"], size=row["size"],
                      winner=row["winner"], winner_mean=row["winner_mean"], doubled_size=2 * int(row["size_key"]))
        record.update(_doubling(curve, int(row["size_key"]), row["winner_mean"], values))
        record.update(_other_backbone(by_group[group], values))
        record["answer"] = _answer(record)
        rows.append(record)
    return tristate_columns(pd.DataFrame(rows).reindex(columns=LABELS_COLUMNS), ["curve_within_noise"])


def _doubling(curve: pd.DataFrame, size: int, mean_now: float,
              values: Mapping[tuple, tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    sizes = curve["size_key"].to_numpy(dtype=float)
    means = curve["mean"].to_numpy(dtype=float)
    if len(sizes) < 2:
        return dict(basis="cannot tell: the winner was measured at this size only", expected_mean=np.nan,
                    expected_gain=np.nan, curve_within_noise=None)
    target, logs = math.log2(2 * size), np.log2(sizes)
    if 2 * size <= sizes[-1]:
        expected = float(np.interp(target, logs, means))
        upper = int(np.searchsorted(sizes, 2 * size))
        pair = (upper - 1, upper) if sizes[upper] != 2 * size else (int(np.searchsorted(sizes, size)), upper)
        basis = (f"measured at {2 * size} per class" if sizes[upper] == 2 * size
                 else f"interpolated between {int(sizes[pair[0]])} and {int(sizes[pair[1]])} per class")
    else:
        pair = (len(sizes) - 2, len(sizes) - 1)
        slope = (means[-1] - means[-2]) / (logs[-1] - logs[-2])
        expected = float(means[-1] + slope * (target - logs[-1]))
        basis = f"extrapolated from {int(sizes[-2])} and {int(sizes[-1])} per class"
    expected = min(max(expected, 0.0), 1.0)  # a score stays within [0, 1]
    low, high = curve.iloc[pair[0]], curve.iloc[pair[1]]
    step = compare_rows(values, high, low)
    noise = None if not step.tested else not step.significant
    return dict(basis=basis, expected_mean=expected, expected_gain=expected - mean_now, curve_within_noise=noise)


def _other_backbone(candidates: pd.DataFrame, values: Mapping[tuple, tuple[np.ndarray, np.ndarray]]
                    ) -> dict[str, Any]:
    winner = candidates.iloc[0]
    others = candidates[candidates["backbone"] != winner["backbone"]]
    if others.empty:
        return dict(other_backbone=None, other_outcome="no other backbone measured at this size")
    best = others.iloc[0]
    result = compare_rows(values, best, winner)
    outcome = ("worse" if result.significant else "tie") if result.tested else result.evidence()
    return dict(other_backbone=best["label"], other_mean=best["mean"], other_difference=result.difference,
                other_outcome=outcome)


def _answer(record: Mapping[str, Any]) -> str:
    parts = []
    if np.isfinite(record.get("expected_gain", np.nan)):
        noise = {True: " (the measured curve is flat within noise there)", False: "",
                 None: " (the step it rests on is not tested: one seed)"}[record["curve_within_noise"]]
        parts.append(f"doubling to {record['doubled_size']} per class: {record['expected_gain']:+.3f} expected, "
                     f"{record['basis']}{noise}")
    else:
        parts.append(f"more labels: the data cannot tell ({record['basis'].removeprefix('cannot tell: ')})")
    if record.get("other_backbone"):
        parts.append(f"best other backbone {record['other_backbone']}: {record['other_difference']:+.3f} measured "
                     f"({record['other_outcome']})")
    else:
        parts.append(record["other_outcome"])
    return "; ".join(parts) + "."


