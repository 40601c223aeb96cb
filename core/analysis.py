"""From stored runs to comparison tables (pandas): mean and 95 % CI over seeds, gain over the random-init baseline."""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import pandas as pd

GROUP = ["task", "backbone", "weights", "strategy", "source", "examples_per_class"]


def t_ci95(values: np.ndarray) -> float:
    """Half-width of the 95 % confidence interval of the mean (Student t); NaN for fewer than 2 values."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return float("nan")
    return float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values)))


def welch_ci95(a: np.ndarray, b: np.ndarray) -> float:
    """Half-width of the 95 % confidence interval of ``mean(a) - mean(b)`` by Welch's t (unequal variances);
    NaN with fewer than 2 values on either side, 0 when neither side varies."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return float("nan")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return 0.0
    dof = (va + vb) ** 2 / ((va**2 / (len(a) - 1)) + (vb**2 / (len(b) - 1)))
    return float(stats.t.ppf(0.975, dof) * se)


def _weights_label(row: pd.Series) -> str:
    if isinstance(row.get("source"), str) and row["source"]:
        return f"pretrained on {row['source']}"
    weights = row["weights"]
    return "random init" if weights == "none" else weights


#: spec fields that do not tell configurations apart; ``data`` is where the data was found, not what it is
#: (its content is ``data_version``, which does)
_NOT_CONFIG = ("seed", "depends_on", "weights_sha256", "examples_per_class", "data")


def config_keys(runs: pd.DataFrame) -> pd.Series:
    """A key per run that is equal exactly for runs differing only by seed (and training-set size).

    Built from each run's spec without its seed and size; a transfer run's per-seed pretrain weights
    (``run:<id>``) count as its source.
    """
    import hashlib
    import json

    def key(spec: dict) -> str:
        for name in _NOT_CONFIG:
            spec.pop(name, None)
        if spec.get("source"):
            spec.pop("weights", None)
        return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:12]

    if "spec_json" in runs:
        specs = [json.loads(s) if isinstance(s, str) else {} for s in runs["spec_json"]]
    else:  # frames built without specs (hand-made tables): the identifying columns stand in
        present = [c for c in ("task", "backbone", "weights", "strategy", "source", "fraction", "input_size", "kind")
                   if c in runs]
        specs = [{c: (None if pd.isna(v) else v) for c, v in zip(present, row)} for row in runs[present].itertuples(
            index=False)]
    return pd.Series([key(spec) for spec in specs], index=runs.index, dtype=object)


def config_label(row_or_frame: pd.Series | pd.DataFrame) -> str | pd.Series:
    """The configuration label of a run row, or a Series of labels for a runs frame:
    ``backbone · starting point · strategy``, where the starting point is ``pretrained on <source>`` for a
    transfer run, ``random init`` for ``weights='none'``, else the weights name."""
    if isinstance(row_or_frame, pd.DataFrame):
        frame = row_or_frame
        if frame.empty:
            return pd.Series([], index=frame.index, dtype=object)
        column = lambda name: frame[name] if name in frame else pd.Series(None, index=frame.index)  # noqa: E731
        rows = zip(column("backbone"), column("source"), column("weights"), column("strategy"))
        return pd.Series([f"{b} · {_weights_label({'source': s, 'weights': w})} · {t}" for b, s, w, t in rows],
                         index=frame.index, dtype=object)
    row = row_or_frame
    return f"{row.get('backbone')} · {_weights_label(row)} · {row.get('strategy')}"


def run_labels(runs: pd.DataFrame, keys: pd.Series | None = None) -> pd.Series:
    """``backbone · starting point · strategy`` per run; where runs of one task with that label differ in
    other settings, the settings that tell them apart are appended (e.g. ``· epochs=20``), and where a task was
    run on several data versions every label of it ends in ``· data <version>``. Runs of different
    tasks are never compared on one axis, so their settings (a task's own defaults) do not lengthen labels.
    ``keys``: the runs' :func:`config_keys` when the caller has them already."""
    import json

    if runs.empty:
        return pd.Series([], index=runs.index, dtype=object)
    base = config_label(runs)
    keys = config_keys(runs) if keys is None else keys
    labels = base.copy()
    task = runs["task"].astype(str) if "task" in runs else pd.Series("", index=runs.index)
    versions = data_versions(runs)
    # runs of one configuration share every setting a label could name: one spec per configuration is read
    texts = runs["spec_json"].to_numpy() if "spec_json" in runs else np.full(len(runs), None)
    first_of: dict[tuple, int] = {}
    for position, config in enumerate(zip(base, task, keys)):
        first_of.setdefault(config, position)
    per_label: dict[tuple, list[tuple]] = {}
    for config in first_of:
        per_label.setdefault(config[:2], []).append(config)
    suffix: dict[tuple, str] = {}
    for (text, _), configs in per_label.items():
        if len(configs) <= 1:
            continue
        specs = {c: json.loads(texts[first_of[c]]) if isinstance(texts[first_of[c]], str) else {} for c in configs}
        fields = sorted({f for spec in specs.values() for f in spec}
                        - set(_NOT_CONFIG) - {"weights", "depends_on", "data_version"})
        differing = [f for f in fields if len({json.dumps(spec.get(f)) for spec in specs.values()}) > 1]
        if differing:
            suffix.update({c: " · " + ", ".join(f"{f}={specs[c].get(f)}" for f in differing) for c in configs})
    if suffix:
        labels = pd.Series([text + suffix.get((text, t, k), "") for text, t, k in zip(base, task, keys)],
                           index=runs.index, dtype=object)
    # a task run on several versions of its data: every label says which, or two series would share a name
    for task_name in task[versions != ""].unique():
        mine = task == task_name
        if versions[mine].nunique() > 1:
            labels[mine] = labels[mine] + " · data " + versions[mine].replace("", "unversioned")
    return labels


def data_versions(runs: pd.DataFrame) -> pd.Series:
    """Each run's data version (``data_version`` column, else its spec's), ``""`` where it has none."""
    import json

    if "data_version" in runs:
        values = runs["data_version"]
    elif "spec_json" in runs:
        values = pd.Series([json.loads(s).get("data_version") if isinstance(s, str) else None
                            for s in runs["spec_json"]], index=runs.index, dtype=object)
    else:
        return pd.Series("", index=runs.index, dtype=object)
    return values.map(lambda v: v if isinstance(v, str) and v else "").astype(object)


def summarize(runs: pd.DataFrame, metric: str = "score", baselines: Iterable[str] | None = None) -> pd.DataFrame:
    """Mean, 95 % CI and seed count per configuration and size, with the gain over the baseline.

    Only succeeded training runs count (pretrain jobs are inputs, not results); runs are grouped only
    when they differ by seed alone. The baseline is a strategy that declares random init
    (``baselines``: their names; by default the loaded registry's). The gain compares a configuration
    with the baseline runs of the same task and size: those of the same backbone when there are, else
    the only baseline configuration there is, always on the same data version; with several and none matching,
    the gain is left empty rather than guessed. Its CI is Welch's; ``baseline_label`` and ``baseline_n`` name the reference used.
    The work is one grouped pass over the runs and one look-up per configuration and size (linear in both).
    """
    columns = ["task", "backbone", "weights", "strategy", "source", "examples_per_class", "n", "mean", "ci95",
               "gain_vs_baseline", "gain_ci95", "label", "baseline_label", "baseline_n", "config", "metric",
               "metric_label", "is_baseline", "data_version"]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    ok = runs[(runs["status"] == "succeeded") & (runs["kind"] == "train")].copy()
    if ok.empty:
        return pd.DataFrame(columns=columns)
    baseline_names = set(baselines) if baselines is not None else _registry_baselines()
    ok["config"] = config_keys(ok)
    ok["label"] = run_labels(ok, keys=ok["config"])
    ok["source"] = ok["source"].fillna("")
    # Transfer runs start from a per-seed pretrain run (weights "run:<id>"); they group by their source.
    ok.loc[ok["source"] != "", "weights"] = "pretrained"
    ok["examples_per_class"] = ok["examples_per_class"].fillna(-1).astype(int)
    ok["data_version"] = data_versions(ok)
    keys = [*GROUP, "data_version", "config"]
    ok["_value"] = pd.to_numeric(ok[metric], errors="coerce").astype(float)
    ok["_finite"] = np.isfinite(ok["_value"])
    for column in ("metric", "metric_label"):
        if column not in ok:
            ok[column] = None
    ok["_test_metric"] = ok["metric"].map(lambda m: None if pd.isna(m) else f"test {m}")
    grouped = ok.groupby(keys, dropna=False, sort=True)
    table = grouped.agg(n=("_value", "size"), n_finite=("_finite", "sum"), mean=("_value", "mean"),
                        var=("_value", "var"), label=("label", "first"), metric=("metric", "first"),
                        _labels=("metric_label", "nunique"), _label=("metric_label", "first"),
                        _metrics=("_test_metric", "nunique"), _metric=("_test_metric", "first")).reset_index()
    # a NaN score makes the configuration's mean NaN (as numpy's mean would), and its CI is over finite scores
    finite_var = table["var"].to_numpy(dtype=float)
    whole = (table["n"] == table["n_finite"]).to_numpy()
    table["mean"] = np.where(whole, table["mean"], np.nan)
    table["ci95"] = t_ci95_many(np.sqrt(finite_var), table["n_finite"].to_numpy(dtype=float))
    table["_var"] = np.where(whole, finite_var, np.nan)  # the variance of all scores, NaN when one is NaN
    table["metric"] = table["metric"].map(lambda m: "score" if pd.isna(m) else str(m))
    table["metric_label"] = np.where(table["_labels"] == 1, table["_label"],
                                     np.where((table["_labels"] == 0) & (table["_metrics"] == 1), table["_metric"],
                                              "test score"))
    table["is_baseline"] = table["strategy"].isin(baseline_names)
    reference = _baseline_references(table)
    has_ref = (reference >= 0) & ~table["is_baseline"].to_numpy()
    ref = np.where(has_ref, reference, 0)
    mean, var, n = (table[c].to_numpy(dtype=float) for c in ("mean", "_var", "n"))
    table["gain_vs_baseline"] = np.where(has_ref, mean - mean[ref],
                                         np.where(table["is_baseline"], 0.0, np.nan))
    table["gain_ci95"] = np.where(has_ref, _welch_half_width(var, n, var[ref], n[ref]), np.nan)
    table["baseline_label"] = np.where(has_ref, table["label"].to_numpy(dtype=object)[ref], None)
    table["baseline_n"] = np.where(has_ref, n[ref], np.nan)
    table["n"] = table["n"].astype(int)
    table["examples_per_class"] = table["examples_per_class"].replace(-1, np.nan)
    table["data_version"] = table["data_version"].replace("", None)
    return table[columns]


def t_ci95_many(std: np.ndarray, n: np.ndarray) -> np.ndarray:
    """:func:`t_ci95` for many samples at once, from their standard deviations (ddof 1) and sizes: NaN where a
    sample has fewer than 2 values."""
    from scipy import stats

    with np.errstate(invalid="ignore", divide="ignore"):
        half = stats.t.ppf(0.975, np.where(n >= 2, n - 1, np.nan)) * std / np.sqrt(n)
    return np.where(n >= 2, half, np.nan)


def _welch_half_width(var_a: np.ndarray, n_a: np.ndarray, var_b: np.ndarray, n_b: np.ndarray) -> np.ndarray:
    """:func:`welch_ci95` for many pairs at once, from each side's variance (ddof 1) and size."""
    from scipy import stats

    with np.errstate(invalid="ignore", divide="ignore"):
        va, vb = var_a / n_a, var_b / n_b
        se = np.sqrt(va + vb)
        dof = (va + vb) ** 2 / ((va ** 2 / (n_a - 1)) + (vb ** 2 / (n_b - 1)))
        half = np.where(se == 0, 0.0, stats.t.ppf(0.975, dof) * se)
    return np.where((n_a >= 2) & (n_b >= 2), half, np.nan)


def _baseline_references(table: pd.DataFrame) -> np.ndarray:
    """Per summary row, the position of the baseline row its gain is measured against, -1 for none.

    Baseline rows of the same task, size and data version (a gain on the same data, never across): the one of
    the same backbone when there is exactly one, else the only one there is; several and none clearly the
    baseline: no gain rather than a wrong one."""
    by_place: dict[tuple, list[int]] = {}
    by_backbone: dict[tuple, list[int]] = {}
    places = list(zip(table["task"], table["examples_per_class"], table["data_version"]))
    backbones = list(table["backbone"])
    for position in np.flatnonzero(table["is_baseline"].to_numpy()):
        by_place.setdefault(places[position], []).append(position)
        by_backbone.setdefault((*places[position], backbones[position]), []).append(position)
    reference = np.full(len(table), -1, dtype=int)
    for position, place in enumerate(places):
        same_backbone = by_backbone.get((*place, backbones[position]), [])
        candidates = by_place.get(place, [])
        if len(same_backbone) == 1:
            reference[position] = same_backbone[0]
        elif len(candidates) == 1:
            reference[position] = candidates[0]
    return reference


def metric_label(runs: pd.DataFrame) -> str:
    """How the task head calls the score of these runs (``test accuracy``, ``test mAP@0.5``): the stored label,
    else ``test <metric>`` for runs stored before labels were; ``test score`` when the runs disagree."""
    labels = set(runs["metric_label"].dropna().astype(str)) if "metric_label" in runs else set()
    if not labels and "metric" in runs:
        labels = {f"test {m}" for m in runs["metric"].dropna().astype(str)}
    return labels.pop() if len(labels) == 1 else "test score"


def _registry_baselines() -> set[str]:
    from transferlab.registry import get_registry

    return get_registry().baseline_strategies()


def format_summary(table: pd.DataFrame) -> str:
    """The summary as a text table: one row per configuration, one column per training-set size."""
    if table.empty:
        return "No succeeded runs to summarise."
    sizes = sorted(table["examples_per_class"].dropna().unique())
    cell = lambda m, c: f"{m:.3f} ± {c:.3f}" if np.isfinite(c) else f"{m:.3f}"  # noqa: E731
    gain = lambda g, c: "" if not np.isfinite(g) else (f"{g:+.3f} ± {c:.3f}" if np.isfinite(c) else f"{g:+.3f}")  # noqa: E731
    lines = []
    for task, per_task in table.groupby("task"):
        metric = str(per_task["metric"].dropna().iloc[0]) if per_task["metric"].notna().any() else "score"
        baseline = per_task.loc[per_task["is_baseline"].astype(bool), "label"]
        against = f"gain over {', '.join(sorted(set(baseline)))}" if len(baseline) else "no random-init baseline run"
        header = [f"{task}: test {metric}, mean ± 95% CI over seeds ({against})"]
        width = max(len(label) for label in per_task["label"]) + 2
        head = "configuration".ljust(width) + "".join(f"{int(s):>6d}/class".rjust(36) for s in sizes)
        lines += header + [head, "-" * len(head)]
        for label, rows in per_task.groupby("label", sort=False):
            text = label.ljust(width)
            for size in sizes:
                match = rows[rows["examples_per_class"] == size]
                if match.empty:
                    text += "—".rjust(36)
                    continue
                r = match.iloc[0]
                g = gain(r["gain_vs_baseline"], r["gain_ci95"]) if not r["is_baseline"] else ""
                text += (cell(r["mean"], r["ci95"]) + (f" ({g})" if g else "") + f" n={int(r['n'])}").rjust(36)
            lines.append(text)
        lines.append("")
    return "\n".join(lines)


def differing_settings(runs: pd.DataFrame) -> pd.DataFrame:
    """The job settings (from each run's spec) that differ between the given runs, one row per run."""
    import json

    if runs.empty:
        return pd.DataFrame(columns=["run_id"])
    specs = pd.DataFrame([json.loads(s) for s in runs["spec_json"]], index=runs.index)
    specs = specs.drop(columns=["depends_on", "weights_sha256"], errors="ignore")
    varying = [c for c in specs.columns if specs[c].astype(str).nunique() > 1]
    out = specs[varying].copy()
    out.insert(0, "run_id", runs["run_id"])
    if "score" in runs:
        out["score"] = runs["score"]
    return out.reset_index(drop=True)
