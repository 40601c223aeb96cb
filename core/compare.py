"""Comparison tables for the dashboard (pandas): learning curves over seeds, crossovers, negative transfer,
and the intervals drawn around them.

Every function takes frames from the run store (``Store.runs_frame``, ``Store.epochs_frame``) or the
table of :func:`transferlab.analysis.summarize`, and returns a new frame. On empty input, or when nothing
qualifies, the result is an empty frame with the documented columns, so pages and charts never need to
special-case a store that is still filling up.

Every interval a chart draws comes from :func:`bounded_interval` (a t-interval clipped to the range the quantity
can take) or :func:`wilson_interval` (one run's test accuracy, a proportion of its test examples), chosen in
:func:`score_intervals`, so no band or error bar claims a score below 0 or above 1.
"""
from __future__ import annotations

import json
import math
from typing import Any, Iterable

import numpy as np
import pandas as pd

from transferlab.analysis import config_keys, config_label, metric_label, run_labels, summarize, t_ci95_many
from transferlab.errors import UserError

__all__ = ["bounded_interval", "config_label", "crossovers", "curve_groups", "curves", "freeze_checks", "gain_correlations",
           "gain_per_run", "negative_transfer", "parameter_table", "score_intervals", "wilson_interval"]

CURVE_COLUMNS = ["group", "task", "label", "examples_per_class", "epoch", "split", "mean", "low", "high", "n_seeds"]
CROSSOVER_COLUMNS = ["task", "leader_before", "leader_after", "between_low", "between_high", "x", "y"]
NEGATIVE_COLUMNS = ["task", "starting_point", "examples_per_class", "n", "gain", "gain_ci95",
                    "significant_negative", "significant_positive"]
GAIN_COLUMNS = ["run_id", "task", "label", "examples_per_class", "seed", "score", "gain", "transferability"]
GAIN_CORRELATION_COLUMNS = ["task", "examples_per_class", "n", "spearman", "spearman_p"]
FREEZE_COLUMNS = ["run_id", "label", "phase", "trainable_params", "frozen_params", "changed_params", "verified"]
PARAMETER_COLUMNS = ["backbone", "strategy", "trainable_params", "total_params", "n_runs", "published_params"]

CURVE_STATUSES = ("succeeded", "running")
#: learning-curve groups the Compare page draws at once: more is unreadable, and only those on screen load epochs
GROUPS_PER_PAGE = 20

#: Every score a task head stores is a fraction (accuracy, mAP, F1), so an interval around one stays in [0, 1].
SCORE_RANGE = (0.0, 1.0)
#: A gain is the difference of two such scores.
GAIN_RANGE = (-1.0, 1.0)
#: Losses (cross-entropy, the detection head's) are never negative.
LOSS_RANGE = (0.0, math.inf)
#: The one metric whose test score is a proportion of test examples, so one run has a binomial (Wilson) interval.
PROPORTION_METRIC = "accuracy"
_Z95 = 1.959963984540054  # the standard normal's 97.5 % quantile
_SIZE_NONE = -1  # stands for "all examples" (NaN) where pandas needs a comparable key


def _succeeded_train(runs: pd.DataFrame) -> pd.DataFrame:
    if runs.empty:
        return runs.iloc[0:0]
    return runs[(runs["status"] == "succeeded") & (runs["kind"] == "train")]


def _size_key(sizes: pd.Series) -> pd.Series:
    return pd.to_numeric(sizes, errors="coerce").fillna(_SIZE_NONE).astype(int)


def _size_value(key: int) -> float:
    return float("nan") if key == _SIZE_NONE else float(key)


def _size_text(size: float) -> str:
    return "all" if not np.isfinite(size) else f"{int(size)}"


# ---------------------------------------------------------------------------------------- intervals

def bounded_interval(centre: Any, half_width: Any, bounds: tuple[float, float] = SCORE_RANGE
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``centre ± half_width`` clipped to ``bounds``: the arrays ``(low, high)``.

    A Student-t interval of a mean of scores can reach past what a score can be (0.97 ± 0.05 over three seeds);
    the true mean cannot, so the interval is cut at the bound. Where the half-width is NaN (one seed: no
    interval) both ends are NaN, so a chart draws no bar rather than a bar of zero width.
    """
    centre = np.asarray(centre, dtype=float)
    half = np.asarray(half_width, dtype=float)
    low, high = np.clip(centre - half, *bounds), np.clip(centre + half, *bounds)
    return low, high


def wilson_interval(proportion: Any, n: Any) -> tuple[np.ndarray, np.ndarray]:
    """Wilson's 95 % score interval of a proportion measured on ``n`` examples: the arrays ``(low, high)``,
    always inside [0, 1] (unlike the normal approximation, and also at 0 or 1 correct). NaN where ``n`` is
    unknown or not positive."""
    p = np.asarray(proportion, dtype=float)
    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        n = np.where(n > 0, n, np.nan)
        z2 = _Z95 ** 2
        centre = (p + z2 / (2 * n)) / (1 + z2 / n)
        half = _Z95 / (1 + z2 / n) * np.sqrt(p * (1 - p) / n + z2 / (4 * n ** 2))
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def _n_test(value: Any) -> float:
    """The number of test examples recorded in a run's manifest (JSON text or dict), NaN when absent."""
    if isinstance(value, str) and value:
        try:
            value = json.loads(value)
        except ValueError:
            return float("nan")
    n = value.get("n_test") if isinstance(value, dict) else None
    return float(n) if isinstance(n, (int, float)) and not isinstance(n, bool) else float("nan")


def score_intervals(summary: pd.DataFrame, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """The summary with the 95 % interval of each mean score: ``low``, ``high`` and ``interval`` saying which.

    With two or more seeds it is the Student-t interval over seeds (``ci95``) clipped to the score's range
    [0, 1] (``interval`` = ``t``). A configuration with a single seed has no spread over seeds; where its score
    is test accuracy and ``runs`` (the store's runs frame) records how many test examples it was measured on,
    it gets the Wilson interval of that proportion (``wilson``), which says how precisely the test set
    measured that one run (not how much another seed would differ). Otherwise no interval (NaN, ``interval``
    empty). This is the one place the choice is made; charts draw what it returns.
    """
    table = summary.copy()
    if table.empty:
        return table.assign(low=pd.Series(dtype=float), high=pd.Series(dtype=float),
                            interval=pd.Series(dtype=object))
    low, high = bounded_interval(table["mean"], table["ci95"], SCORE_RANGE)
    table["low"], table["high"] = low, high
    table["interval"] = np.where(np.isfinite(low), "t", "")
    if runs is None or runs.empty or "manifest_json" not in runs or "config" not in table:
        return table
    ok = _succeeded_train(runs)
    tested = pd.DataFrame({"task": ok["task"], "config": config_keys(ok),
                           "size_key": _size_key(ok["examples_per_class"]),
                           "n_test": [_n_test(m) for m in ok["manifest_json"]]})
    # one n_test per configuration and size (all its seeds share the split's test set)
    n_test = tested.groupby(["task", "config", "size_key"])["n_test"].max()
    keys = zip(table["task"], table["config"], _size_key(table["examples_per_class"]))
    table["n_test"] = [n_test.get(key, float("nan")) for key in keys]
    single = ((pd.to_numeric(table["n"], errors="coerce") == 1) & (table["metric"] == PROPORTION_METRIC)
              & np.isfinite(table["n_test"].astype(float))).to_numpy()
    if single.any():
        wilson_low, wilson_high = wilson_interval(table["mean"], table["n_test"])
        table.loc[single, "low"], table.loc[single, "high"] = wilson_low[single], wilson_high[single]
        table.loc[single, "interval"] = "wilson"
    return table


# ---------------------------------------------------------------------------------------- learning curves

def curves(epochs: pd.DataFrame, runs: pd.DataFrame, metric: str = "score", band: str = "minmax",
           smoothing: float = 0.0, statuses: tuple[str, ...] = CURVE_STATUSES,
           labels: pd.Series | None = None) -> pd.DataFrame:
    """Learning curves aggregated over seeds: per group, epoch and split the mean and a band.

    Runs that differ only by seed form a group (same task, label and examples per class; pretrain runs form
    groups of their own). ``metric`` is ``score`` (the task head's metric) or ``loss``; ``band`` is ``minmax`` (lowest..highest
    seed) or ``ci95`` (mean ± Student-t 95 % CI, clipped to what the metric can be: [0, 1] for a score, at
    least 0 for a loss). With one seed the band collapses onto the mean.
    ``smoothing`` in [0, 1) is the weight of the past in an exponential moving average applied to each run
    before aggregating (0 = raw, 0.9 = heavy). Only runs whose status is in ``statuses`` count: running runs
    by default, so curves fill in live, but not failed or NaN runs, whose partial curves would drag the mean.
    The frame's ``attrs`` record ``metric`` (the task head's name for the score, or ``loss``) and ``band``.
    ``labels`` (indexed like ``runs``): the runs' labels as :func:`~transferlab.analysis.run_labels` gave them over
    a larger selection, so a page that draws some of its groups (:func:`curve_groups`) keeps their names.
    """
    if metric not in ("score", "loss"):
        raise UserError(f"metric must be 'score' or 'loss'. Received: metric={metric!r}")
    if band not in ("minmax", "ci95"):
        raise UserError(f"band must be 'minmax' or 'ci95'. Received: band={band!r}")
    if not 0.0 <= smoothing < 1.0:
        raise UserError(f"smoothing must be in [0, 1) (0 = none, 0.9 = heavy). Received: smoothing={smoothing!r}")
    empty = pd.DataFrame(columns=CURVE_COLUMNS)
    empty.attrs.update(metric=metric, band=band)
    if epochs.empty or runs.empty:
        return empty
    chosen = runs[runs["status"].isin(statuses)]
    if chosen.empty:
        return empty
    # the y axis says what the score is ("accuracy", "mAP@0.5"), as the task head names it
    named = metric_label(chosen).removeprefix("test ") if metric == "score" else metric
    meta = _curve_meta(chosen, None if labels is None else labels.loc[chosen.index])
    columns = {"train": f"train_{metric}", "val": f"val_{metric}"}
    position = pd.Index(meta["run_id"]).get_indexer(epochs["run_id"])
    mine = epochs[position >= 0]
    if mine.empty:
        return empty
    # one integer per (group, task, label, size), numbered in that sorted order, so the result comes out sorted
    keys = ["group", "task", "label", "size_key"]
    code = meta.groupby(keys, sort=True).ngroup().to_numpy()[position[position >= 0]]
    bounds = SCORE_RANGE if metric == "score" else LOSS_RANGE
    parts = []
    for split, column in columns.items():
        values = pd.DataFrame({"code": code, "run_id": mine["run_id"].to_numpy(), "epoch": mine["epoch"].to_numpy(),
                               "value": pd.to_numeric(mine[column], errors="coerce").astype(float).to_numpy()})
        if smoothing > 0:
            values = values.sort_values(["run_id", "epoch"])
            values["value"] = (values.groupby("run_id", sort=False)["value"]
                               .transform(lambda v: v.ewm(alpha=1.0 - smoothing, ignore_na=True).mean()))
        values = values[np.isfinite(values["value"])]
        stats = (values.groupby(["code", "epoch"], sort=True)["value"]
                 .agg(mean="mean", low="min", high="max", n_seeds="size", std="std").reset_index())
        parts.append(stats.assign(split=split))
    stats = pd.concat(parts, ignore_index=True).sort_values(["code", "epoch", "split"], kind="stable")
    if stats.empty:
        return empty
    if band == "ci95":
        half = t_ci95_many(stats["std"].to_numpy(dtype=float), stats["n_seeds"].to_numpy(dtype=float))
        stats["low"], stats["high"] = bounded_interval(stats["mean"], np.where(np.isfinite(half), half, 0.0), bounds)
    named_groups = meta.drop_duplicates(keys).sort_values(keys).reset_index(drop=True)
    for key in keys:
        stats[key] = named_groups[key].to_numpy()[stats["code"].to_numpy()]
    stats["examples_per_class"] = [_size_value(key) for key in stats["size_key"]]
    stats["epoch"] = stats["epoch"].astype(int)
    stats["n_seeds"] = stats["n_seeds"].astype(int)
    stats["mean"] = stats["mean"].astype(float)
    result = stats[CURVE_COLUMNS].reset_index(drop=True)
    result.attrs.update(metric=named, band=band)  # so a chart can name its axis without being told again
    return result


def curve_groups(runs: pd.DataFrame, labels: pd.Series | None = None) -> pd.Series:
    """The learning-curve group of each run (``task · label · size/class``, pretrain runs prefixed), as
    :func:`curves` draws them (``labels`` as there): a page can show some groups and load only their runs'
    epochs."""
    if runs.empty:
        return pd.Series([], index=runs.index, dtype=object)
    return pd.Series(_curve_meta(runs, labels)["group"].to_numpy(), index=runs.index, dtype=object)


def _curve_meta(runs: pd.DataFrame, labels: pd.Series | None = None) -> pd.DataFrame:
    meta = pd.DataFrame({
        "run_id": runs["run_id"],
        "task": runs["task"].astype(str),
        "label": run_labels(runs) if labels is None else labels,
        "kind": runs["kind"],
        "size_key": _size_key(runs["examples_per_class"]),
    })
    meta["group"] = [
        ("pretrain · " if kind == "pretrain" else "") + f"{task} · {label} · {_size_text(_size_value(size))}/class"
        for task, label, kind, size in zip(meta["task"], meta["label"], meta["kind"], meta["size_key"])
    ]
    return meta


# ---------------------------------------------------------------------------------------- crossovers

#: a task with at most this many configurations has every pair's flips reported (there are at most 3 pairs)
ALL_PAIRS_UP_TO = 3


def crossovers(summary: pd.DataFrame) -> pd.DataFrame:
    """Where two configurations swap places: for each task, consecutive sizes between which the order of two
    labels' mean scores flips.

    Which flips are reported: in a task of at most :data:`ALL_PAIRS_UP_TO` labels, every pair's. With more, only
    flips between labels that are neighbours in the ranking (by mean score, ties by label) of all the task's
    labels measured at one of the two sizes of the flip: the overtaking a reader sees on the chart, and a count
    that grows linearly in labels × sizes rather than with every pair. A flip of two labels that have a third
    between them at both sizes (A > B > C at one size, C > B > A at the next: A and C) is not reported; B's
    flips with each are.

    "Consecutive sizes" are consecutive among the sizes both labels were measured at. ``x`` is where the two
    lines cross when interpolated linearly in log(size), which is what a log-x chart draws (it is the
    geometric mean of the two sizes when the gaps on either side are equal); ``y`` is their value there.
    "All examples" (NaN size) has no place on the axis and is skipped. A tie at a size is not a flip.
    """
    empty = pd.DataFrame(columns=CROSSOVER_COLUMNS)
    if summary.empty:
        return empty
    table = summary[pd.to_numeric(summary["examples_per_class"], errors="coerce") > 0]
    rows = []
    for task, per_task in table.groupby("task", sort=True):
        means = per_task.pivot_table(index="examples_per_class", columns="label", values="mean", aggfunc="mean")
        means = means.sort_index()[sorted(means.columns)]
        labels = list(means.columns)
        values = means.to_numpy(dtype=float)
        places = _places(values)
        sizes = means.index.to_numpy(dtype=float)
        measured = np.isfinite(values)
        for first, second in _candidate_pairs(values, places):
            both = measured[:, first] & measured[:, second]
            pair = (sizes[both], values[both, first], values[both, second])
            # sizes at which the two are adjacent in the ranking; None: every flip counts
            neighbours = (None if len(labels) <= ALL_PAIRS_UP_TO else
                          set(sizes[(places[:, first] >= 0) & (places[:, second] >= 0)
                                    & (np.abs(places[:, first] - places[:, second]) == 1)]))
            rows += _pair_crossovers(task, labels[first], labels[second], pair, neighbours)
    return pd.DataFrame(rows, columns=CROSSOVER_COLUMNS) if rows else empty


def _places(means: np.ndarray) -> np.ndarray:
    """Per size (row) and label (column), the label's place in that size's ranking (0 = best mean; ties keep
    label order), -1 where it was not measured."""
    places = np.full(means.shape, -1, dtype=int)
    for k, row in enumerate(means):
        measured = np.flatnonzero(np.isfinite(row))
        places[k, measured[np.argsort(-row[measured], kind="stable")]] = np.arange(len(measured))
    return places


def _candidate_pairs(means: np.ndarray, places: np.ndarray) -> list[tuple[int, int]]:
    """Column pairs (first < second) whose flips :func:`crossovers` may report: every pair for a few columns,
    else the pairs adjacent in the ranking at some size (at most columns - 1 per size)."""
    n_labels = means.shape[1]
    if n_labels <= ALL_PAIRS_UP_TO:
        return [(i, j) for i in range(n_labels) for j in range(i + 1, n_labels)]
    pairs: set[tuple[int, int]] = set()
    for row in places:
        ranked = np.argsort(np.where(row >= 0, row, n_labels), kind="stable")[:int((row >= 0).sum())]
        pairs.update((int(min(a, b)), int(max(a, b))) for a, b in zip(ranked, ranked[1:]))
    return sorted(pairs)


def _pair_crossovers(task: Any, first: str, second: str, pair: tuple[np.ndarray, np.ndarray, np.ndarray],
                     neighbours: set[float] | None = None) -> list[dict[str, Any]]:
    """The flips of one pair of labels (``pair``: the sizes both were measured at, ascending, and their means);
    with ``neighbours``, only those at whose either end the two are adjacent in the ranking."""
    rows = []
    sizes, a, b = pair
    diff = a - b
    for k in range(len(sizes) - 1):
        if diff[k] * diff[k + 1] >= 0:
            continue
        if neighbours is not None and sizes[k] not in neighbours and sizes[k + 1] not in neighbours:
            continue
        fraction = diff[k] / (diff[k] - diff[k + 1])
        log_low, log_high = math.log(sizes[k]), math.log(sizes[k + 1])
        x = math.exp(log_low + fraction * (log_high - log_low))
        y_first = a[k] + fraction * (a[k + 1] - a[k])
        y_second = b[k] + fraction * (b[k + 1] - b[k])
        before, after = (first, second) if diff[k] > 0 else (second, first)
        rows.append(dict(task=task, leader_before=before, leader_after=after, between_low=float(sizes[k]),
                         between_high=float(sizes[k + 1]), x=x, y=(y_first + y_second) / 2))
    return rows


# ---------------------------------------------------------------------------------------- gains

def negative_transfer(summary: pd.DataFrame) -> pd.DataFrame:
    """Gain over the random-init baseline per task, starting point (label) and size, with significance flags.

    ``significant_negative`` is ``gain + gain_ci95 < 0``: the whole 95 % CI of the gain lies below zero,
    so the starting point hurt. It needs at least two seeds on both sides (otherwise there is no CI and
    the flag is False); ``significant_positive`` is the mirror. Baseline rows, and rows with no baseline
    reference at their size, are left out.
    """
    empty = pd.DataFrame(columns=NEGATIVE_COLUMNS)
    if summary.empty:
        return empty
    table = summary[~summary["is_baseline"].astype(bool)].copy()
    table["n_baseline"] = pd.to_numeric(table["baseline_n"], errors="coerce")
    table = table[np.isfinite(table["gain_vs_baseline"].astype(float)) & table["n_baseline"].notna()]
    if table.empty:
        return empty
    gain = table["gain_vs_baseline"].astype(float)
    ci = table["gain_ci95"].astype(float)
    enough = (table["n"] >= 2) & (table["n_baseline"] >= 2) & np.isfinite(ci)
    result = pd.DataFrame({
        "task": table["task"], "starting_point": table["label"], "examples_per_class": table["examples_per_class"],
        "n": table["n"].astype(int), "gain": gain, "gain_ci95": ci,
        "significant_negative": enough & (gain + ci < 0), "significant_positive": enough & (gain - ci > 0),
    })
    return result.sort_values(["task", "starting_point", "examples_per_class"]).reset_index(drop=True)


def gain_per_run(runs: pd.DataFrame, baselines: Iterable[str] | None = None) -> pd.DataFrame:
    """Each succeeded, non-baseline training run's score minus the baseline mean at its task and size.

    The baseline reference is the one :func:`~transferlab.analysis.summarize` uses (``baselines`` as
    there), so the mean of these gains over a configuration's seeds equals its ``gain_vs_baseline``.
    Runs with no baseline reference are
    left out. ``transferability`` is the run's LogME score of its starting features (NaN when missing).
    """
    empty = pd.DataFrame(columns=GAIN_COLUMNS)
    ok = _succeeded_train(runs)
    if ok.empty:
        return empty
    summary = summarize(ok, baselines=baselines)
    baseline_names = set(summary.loc[summary["is_baseline"].astype(bool), "strategy"])
    summary = summary[summary["gain_vs_baseline"].notna() & ~summary["is_baseline"].astype(bool)]
    if summary.empty:
        return empty
    # the baseline mean each configuration was compared with, per task, label and size
    summary = summary.assign(baseline_mean=summary["mean"] - summary["gain_vs_baseline"],
                             size_key=_size_key(summary["examples_per_class"]))
    chosen = ok[~ok["strategy"].isin(baseline_names)]
    if chosen.empty:
        return empty
    frame = pd.DataFrame({
        "run_id": chosen["run_id"], "task": chosen["task"], "label": run_labels(ok).loc[chosen.index],
        "examples_per_class": pd.to_numeric(chosen["examples_per_class"], errors="coerce").astype(float),
        "seed": chosen["seed"], "score": pd.to_numeric(chosen["score"], errors="coerce"),
        "transferability": pd.to_numeric(chosen["transferability"], errors="coerce").astype(float),
        "size_key": _size_key(chosen["examples_per_class"]),
    })
    frame = frame.merge(summary[["task", "label", "size_key", "baseline_mean"]], on=["task", "label", "size_key"],
                        how="inner").rename(columns={"baseline_mean": "mean"})
    if frame.empty:
        return empty
    frame["gain"] = frame["score"] - frame["mean"]
    return frame[GAIN_COLUMNS].reset_index(drop=True)


MIN_RUNS_FOR_CORRELATION = 3


def gain_correlations(gains: pd.DataFrame) -> pd.DataFrame:
    """Spearman's rho between transferability (LogME) and gain per task and training-set size, never pooled
    over sizes: the gain and LogME both move with the size, so a pooled correlation measures the size.

    One row per task and size in ``gains`` (:func:`gain_per_run`) with ``n``, the runs that have both numbers;
    ``spearman`` and ``spearman_p`` (exact for a handful of runs, as for the backbone study) are NaN with fewer
    than :data:`MIN_RUNS_FOR_CORRELATION` runs or no spread. ``examples_per_class`` is NaN for all examples.
    """
    from transferlab.backbone_study import spearman  # one Spearman with exact small-sample p-values

    empty = pd.DataFrame(columns=GAIN_CORRELATION_COLUMNS)
    if gains.empty or not {"task", "examples_per_class", "gain", "transferability"} <= set(gains):
        return empty
    frame = gains.assign(size_key=_size_key(gains["examples_per_class"]),
                         gain=pd.to_numeric(gains["gain"], errors="coerce").astype(float),
                         transferability=pd.to_numeric(gains["transferability"], errors="coerce").astype(float))
    frame = frame[np.isfinite(frame["gain"]) & np.isfinite(frame["transferability"])]
    rows = []
    for (task, size_key), group in frame.groupby(["task", "size_key"], sort=True):
        x, y = group["transferability"].to_numpy(), group["gain"].to_numpy()
        rho = p = float("nan")
        if len(group) >= MIN_RUNS_FOR_CORRELATION and np.ptp(x) > 0 and np.ptp(y) > 0:
            rho, p = spearman(x, y)
        rows.append(dict(task=task, examples_per_class=_size_value(size_key), n=len(group), spearman=rho,
                         spearman_p=p))
    return pd.DataFrame(rows, columns=GAIN_CORRELATION_COLUMNS) if rows else empty


# ---------------------------------------------------------------------------------------- model facts

def _phases(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, list):
        return [p for p in value if isinstance(p, dict)]
    if not isinstance(value, str) or not value:
        return []
    try:
        parsed = json.loads(value)
    except ValueError:
        return []
    return [p for p in parsed if isinstance(p, dict)] if isinstance(parsed, list) else []


def freeze_checks(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run and training phase from ``phases_json``: trainable and frozen parameter counts, and
    the scalars in weights that actually changed (for scratch this includes BatchNorm statistics), and
    whether the runner verified after the phase that frozen weights stayed put and trainable ones moved.

    Runs without phases (queued, failed early) or with unreadable JSON are left out.
    """
    rows = []
    if not runs.empty and "phases_json" in runs:
        for _, run in runs.iterrows():
            for phase in _phases(run["phases_json"]):
                rows.append(dict(run_id=run["run_id"], label=config_label(run), phase=phase.get("phase"),
                                 trainable_params=phase.get("trainable_params"),
                                 frozen_params=phase.get("frozen_params"), changed_params=phase.get("changed_params"),
                                 verified=bool(phase.get("verified", False))))
    return pd.DataFrame(rows, columns=FREEZE_COLUMNS)


def parameter_table(runs: pd.DataFrame, published: dict[str, int | None] | None = None) -> pd.DataFrame:
    """Trainable and total parameters per backbone and strategy, as measured in succeeded runs (median).

    The head depends on the number of classes, so the median is over every succeeded run, training and
    pretraining alike. ``published`` maps a backbone name to the parameter count its paper or model card
    gives (None when unknown); the column is NaN where none was given.
    """
    empty = pd.DataFrame(columns=PARAMETER_COLUMNS)
    if runs.empty:
        return empty
    ok = runs[runs["status"] == "succeeded"].copy()
    for column in ("trainable_params", "total_params"):
        ok[column] = pd.to_numeric(ok[column], errors="coerce")
    ok = ok.dropna(subset=["trainable_params", "total_params"], how="all")
    if ok.empty:
        return empty
    table = (ok.groupby(["backbone", "strategy"], sort=True)
             .agg(trainable_params=("trainable_params", "median"), total_params=("total_params", "median"),
                  n_runs=("run_id", "size"))
             .reset_index())
    published = published or {}
    table["published_params"] = [
        float(published[b]) if published.get(b) is not None else float("nan") for b in table["backbone"]
    ]
    return table[PARAMETER_COLUMNS]
