"""The verdict (pandas only): per task, data version and training-set size, which configuration wins, whether
the win over the runner-up holds over seeds, what it gains over scratch and what it costs.

A configuration is what :func:`~transferlab.analysis.config_keys` calls one (the whole job spec minus seed and
size). Only succeeded training runs count: failed, unfinished and NaN runs, source pretraining jobs and
shuffled-label controls are left out.

Tests, between two configurations at one size: a paired t-test (``scipy.stats.ttest_rel``) when both were run
on the same seeds, else Welch's t-test; a configuration with one seed is never tested ("one seed: not
tested") and never called a winner. A difference is a win only when ``p < ALPHA`` and the 95 % CI of the
difference leaves out zero; otherwise the two tie. Runs whose differences have no spread at all (identical
scores over seeds) give no p-value either. Matched seeds whose paired differences are all equal give a paired test
no noise to measure; Welch's test over the seed-to-seed spread stands in, and the evidence says so (such a
consistent gap can still tie).

Cost: :func:`configurations` makes one ``groupby`` over the runs (O(runs)), then every size compares only its
top two configurations, its strongest scratch baseline and its best other backbone; nothing compares all
pairs. So a store of 10,000 runs costs a few JSON parses per run and a handful of t-tests per size: 1.2 s for
10,000 runs in 1,000 configurations on the 2-core development machine, most of it in the labels
(:func:`~transferlab.analysis.run_labels`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from transferlab.analysis import config_keys, run_labels, t_ci95, welch_ci95
from transferlab.cells import known_bool, size_text
from transferlab.compare import score_intervals

__all__ = ["ALPHA", "Comparison", "NOT_SET", "Recommendation", "compare_rows", "compare_scores", "configurations",
           "eligible_runs", "recommend", "size_text", "task_summaries", "tristate_columns", "verdicts"]

#: significance level of every test here
ALPHA = 0.05
NOT_SET = -1  #: stands for "not set" (all examples, no fraction) where pandas needs a comparable key
GROUP = ["task", "data_version", "size_key", "fraction_key"]  # one verdict per group
DATA_FIELDS = {"data", "data_version"}  # job fields that say which data, not how it was trained

CONFIG_COLUMNS = [*GROUP, "config", "label", "backbone", "strategy", "is_baseline", "examples_per_class", "fraction",
                  "n", "mean", "ci95", "low", "high", "interval", "still_improving", "wall_seconds",
                  "trainable_params", "latency_ms", "metric", "metric_label"]
VERDICT_COLUMNS = [*GROUP, "examples_per_class", "fraction", "size", "metric_label",
                   "winner", "winner_config", "winner_mean", "winner_low", "winner_high", "winner_n", "winner_interval",
                   "winner_still_improving", "runner_up", "runner_up_mean", "runner_up_n", "difference",
                   "difference_ci95", "test", "p_value", "outcome", "evidence",
                   "baseline", "baseline_mean", "baseline_n", "baseline_still_improving", "gain", "gain_ci95",
                   "gain_p_value", "gain_claim", "gain_text", "wall_seconds", "trainable_params", "latency_ms",
                   "sentence", "winner_runs"]


# ---------------------------------------------------------------------------------------- selection

def _shuffled_control(runs: pd.DataFrame) -> pd.Series:
    """Runs trained on (or transferred from) shuffled labels: negative-transfer controls, never a candidate."""
    source = runs["source"] if "source" in runs else pd.Series(None, index=runs.index, dtype=object)
    from_shuffled = source.map(lambda s: isinstance(s, str) and s.endswith(":shuffled"))
    if "spec_json" not in runs:
        return from_shuffled.astype(bool)

    def shuffled(text: Any) -> bool:
        try:
            return bool(json.loads(text).get("shuffled_labels")) if isinstance(text, str) else False
        except (ValueError, AttributeError):
            return False

    return (from_shuffled | runs["spec_json"].map(shuffled)).astype(bool)


def eligible_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs a verdict may use: succeeded training runs with a finite score, shuffled-label controls left
    out (a control measures harm, it is not a way to train)."""
    if runs is None or runs.empty:
        return pd.DataFrame(columns=list(runs.columns) if runs is not None else [])
    ok = runs[(runs["status"] == "succeeded") & (runs["kind"] == "train")]
    ok = ok[np.isfinite(pd.to_numeric(ok["score"], errors="coerce").astype(float))]
    return ok[~_shuffled_control(ok)] if not ok.empty else ok


def _keyed(runs: pd.DataFrame) -> pd.DataFrame:
    """The eligible runs with their group and configuration keys."""
    ok = eligible_runs(runs).copy()
    if ok.empty:
        return ok
    if "spec_json" in ok:  # the data is a group of its own (data_version); where it lies names no configuration
        ok["spec_json"] = ok["spec_json"].map(_without_data)
    ok["config"] = config_keys(ok)
    ok["label"] = run_labels(ok.drop(columns="data_version", errors="ignore"))  # the version is the group
    version = ok["data_version"] if "data_version" in ok else pd.Series(None, index=ok.index, dtype=object)
    ok["data_version"] = version.map(lambda v: v if isinstance(v, str) and v else "").astype(object)
    ok["size_key"] = pd.to_numeric(ok["examples_per_class"], errors="coerce").fillna(NOT_SET).astype(int)
    fraction = ok["fraction"] if "fraction" in ok else pd.Series(np.nan, index=ok.index)
    ok["fraction_key"] = pd.to_numeric(fraction, errors="coerce").fillna(NOT_SET).astype(float)
    ok["score"] = pd.to_numeric(ok["score"], errors="coerce").astype(float)
    for column in ("wall_seconds", "trainable_params"):
        ok[column] = pd.to_numeric(ok[column], errors="coerce").astype(float) if column in ok else np.nan
    ok["_improving"] = (ok["still_improving"].map(known_bool).map({True: 1.0, False: 0.0}).astype(float)
                       if "still_improving" in ok else np.nan)  # 1, 0 or NaN: max and count over seeds read it
    for column in ("metric", "metric_label"):
        if column not in ok:
            ok[column] = None
    return ok


def _without_data(text: Any) -> Any:
    try:
        spec = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return text
    if not isinstance(spec, dict) or not DATA_FIELDS & set(spec):
        return text
    return json.dumps({k: v for k, v in spec.items() if k not in DATA_FIELDS}, sort_keys=True)


def configurations(runs: pd.DataFrame, baselines: Iterable[str] | None = None,
                   latency: Mapping[str, float] | None = None) -> pd.DataFrame:
    """One row per task, data version, size and configuration: seed count, mean score with its 95 % interval
    (``compare.score_intervals``: t over seeds, Wilson for one seed's accuracy), whether any of its runs was
    still improving (None when no run says), median training seconds and trainable parameters, and the
    backbone's latency per image on this machine where ``latency`` (``latency.latency_lookup()``) has it.

    ``baselines`` are the strategies that train from random init (default: the loaded registry's). One
    ``groupby`` over the runs: O(runs)."""
    return _configurations(_keyed(runs), baselines, latency)


def _configurations(ok: pd.DataFrame, baselines: Iterable[str] | None,
                    latency: Mapping[str, float] | None) -> pd.DataFrame:
    if ok.empty:
        return pd.DataFrame(columns=CONFIG_COLUMNS)
    baseline_names = set(baselines) if baselines is not None else _registry_baselines()
    keys = [*GROUP, "config"]
    table = ok.groupby(keys, sort=True, dropna=False).agg(
        label=("label", "first"), backbone=("backbone", "first"), strategy=("strategy", "first"),
        n=("score", "size"), mean=("score", "mean"), std=("score", "std"),
        improving=("_improving", "max"), improving_known=("_improving", "count"),
        wall_seconds=("wall_seconds", "median"), trainable_params=("trainable_params", "median"),
        metric=("metric", "first"), metric_label=("metric_label", "first")).reset_index()
    from scipy import stats

    with np.errstate(invalid="ignore", divide="ignore"):
        table["ci95"] = np.where(table["n"] >= 2, stats.t.ppf(0.975, (table["n"] - 1).clip(lower=1))
                                 * table["std"] / np.sqrt(table["n"]), np.nan)
    table["still_improving"] = [None if known == 0 else bool(value == 1.0)
                                for value, known in zip(table["improving"], table["improving_known"])]
    table["is_baseline"] = table["strategy"].isin(baseline_names)
    table["examples_per_class"] = table["size_key"].where(table["size_key"] != NOT_SET).astype(float)
    table["fraction"] = table["fraction_key"].where(table["fraction_key"] != NOT_SET).astype(float)
    table["metric"] = table["metric"].fillna("score")
    latency = latency or {}
    table["latency_ms"] = [float(latency[b]) if b in latency else float("nan") for b in table["backbone"]]
    manifests = ok if "manifest_json" in ok else None
    table = score_intervals(table, manifests)
    return table[CONFIG_COLUMNS].reset_index(drop=True)


def _registry_baselines() -> set[str]:
    from transferlab.registry import get_registry

    return get_registry().baseline_strategies()


# ---------------------------------------------------------------------------------------- tests

@dataclass(frozen=True)
class Comparison:
    """``first`` minus ``second`` over seeds, and how (and whether) the difference was tested."""

    test: str  # "paired t", "Welch t", "one seed" or "no spread"
    difference: float
    ci95: float
    p_value: float
    n_first: int
    n_second: int
    #: the seeds matched but every paired difference was the same, so Welch's test stood in for the paired one
    constant_pairs: bool = False

    @property
    def tested(self) -> bool:
        """Whether a t-test was possible (two or more seeds on both sides, some spread)."""
        return self.test in ("paired t", "Welch t")

    @property
    def significant(self) -> bool:
        """p below :data:`ALPHA` and the 95 % CI of the difference clear of zero."""
        return self.tested and self.p_value < ALPHA and abs(self.difference) > self.ci95

    def evidence(self) -> str:
        """``p=0.01, 3 paired seeds``, ``p=0.4, Welch, 3 and 2 seeds`` or why it was not tested."""
        if self.test == "one seed":
            return "one seed: not tested"
        if self.test == "no spread":
            return "no spread over seeds: not tested"
        p = "p<0.001" if self.p_value < 0.001 else f"p={self.p_value:.2g}"
        if self.test == "paired t":
            return f"{p}, {self.n_first} paired seeds"
        if self.constant_pairs:
            return (f"{p}, Welch, {self.n_first} and {self.n_second} seeds (the same difference on every paired "
                    "seed leaves a paired test no noise to measure; a consistent gap can still tie)")
        return f"{p}, Welch, {self.n_first} and {self.n_second} seeds"


def compare_scores(first: np.ndarray, first_seeds: np.ndarray, second: np.ndarray,
                   second_seeds: np.ndarray) -> Comparison:
    """Test ``first`` against ``second`` (scores per seed): paired t-test when the seed sets are equal, else
    Welch's; not tested with one seed on either side or no spread at all."""
    from scipy import stats

    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    difference = float(round(a.mean() - b.mean(), 12) + 0.0)  # equal means read +0.000, not -0.000
    nan = float("nan")
    if len(a) < 2 or len(b) < 2:
        return Comparison("one seed", difference, nan, nan, len(a), len(b))
    sa, sb = np.asarray(first_seeds), np.asarray(second_seeds)
    constant_pairs = False
    if len(set(sa)) == len(sa) and set(sa) == set(sb) and len(sa) == len(sb):
        order_a, order_b = np.argsort(sa), np.argsort(sb)
        diffs = a[order_a] - b[order_b]
        # equal differences on every seed (scores on a test set are counts) leave the test without a noise
        # estimate and give p=0; Welch's then uses the seed-to-seed spread instead
        if np.ptp(diffs) > 1e-9:
            p = float(stats.ttest_rel(a[order_a], b[order_b]).pvalue)
            return Comparison("paired t", difference, t_ci95(diffs), p, len(a), len(b))
        constant_pairs = True
    if np.ptp(a) <= 1e-9 and np.ptp(b) <= 1e-9:
        return Comparison("no spread", difference, nan, nan, len(a), len(b))
    p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return Comparison("Welch t", difference, welch_ci95(a, b), p, len(a), len(b), constant_pairs)


# ---------------------------------------------------------------------------------------- the verdict

@dataclass
class Recommendation:
    """Everything the verdict shows: configurations, one verdict per size, and more-labels-or-backbone."""

    configurations: pd.DataFrame
    verdicts: pd.DataFrame
    labels_or_backbone: pd.DataFrame

    def summaries(self) -> dict[tuple[str, str], str]:
        """``(task, data_version) -> one paragraph``: consecutive sizes with the same outcome told once."""
        return task_summaries(self.verdicts)


def recommend(runs: pd.DataFrame, baselines: Iterable[str] | None = None,
              latency: Mapping[str, float] | None = None) -> Recommendation:
    """The whole verdict of a runs frame (``Store.runs_frame``), as pages, the report and the CLI show it."""
    ok = _keyed(runs)
    table = _configurations(ok, baselines, latency)
    values = _values(ok)
    verdict = verdicts(table, values)
    verdict["winner_runs"] = _winner_runs(ok, verdict)
    from transferlab.pareto import label_or_backbone  # it builds on this module
    return Recommendation(table, verdict, label_or_backbone(table, verdict, values))


def _winner_runs(ok: pd.DataFrame, verdict: pd.DataFrame) -> list[list[str]]:
    """Per verdict row, the run ids of its winning configuration, best score first (ties by run id): the
    runs whose model the verdict points to for export."""
    if verdict.empty:
        return []
    ranked = ok.sort_values(["score", "run_id"], ascending=[False, True], na_position="last")
    members = {key: list(ids) for key, ids in ranked.groupby([*GROUP, "config"], sort=False)["run_id"]}
    return [members.get((*(row[c] for c in GROUP), row["winner_config"]), [])
            for row in verdict.to_dict("records")]


def _values(ok: pd.DataFrame) -> dict[tuple, tuple[np.ndarray, np.ndarray]]:
    """``(group..., config) -> (seeds, scores)`` for every configuration, in one pass."""
    if ok.empty:
        return {}
    seeds, scores = ok["seed"].to_numpy(), ok["score"].to_numpy(dtype=float)
    return {key: (seeds[pos], scores[pos]) for key, pos in ok.groupby([*GROUP, "config"], sort=False).indices.items()}


def compare_rows(values: Mapping[tuple, tuple[np.ndarray, np.ndarray]], first: pd.Series,
                 second: pd.Series) -> Comparison:
    """:func:`compare_scores` of two configuration rows, their scores looked up in ``values``."""
    key = lambda row: tuple(row[c] for c in [*GROUP, "config"])  # noqa: E731
    (seeds_a, a), (seeds_b, b) = values[key(first)], values[key(second)]
    return compare_scores(a, seeds_a, b, seeds_b)


def verdicts(table: pd.DataFrame, values: Mapping[tuple, tuple[np.ndarray, np.ndarray]]) -> pd.DataFrame:
    """One row per task, data version and size of :func:`configurations`: the winner (highest mean), the
    runner-up, their test, the gain over the strongest scratch configuration at that size, the winner's
    cost, and a sentence. ``values`` maps each configuration key to its ``(seeds, scores)``.

    The gain over scratch is claimed only when both sides finished learning: when the baseline's runs were
    still improving it is ``not claimed`` (a baseline trained longer would score higher, so the measured
    gain only bounds the true one from above); when the baseline's convergence was not measured (under
    ``convergence.MIN_EPOCHS_TO_JUDGE`` epochs, or runs stored before it was recorded) it is ``unknown``; when only
    the winner was still improving, the gain is a lower bound (``≥``)."""
    if table.empty:
        return pd.DataFrame(columns=VERDICT_COLUMNS)
    ordered = table.sort_values([*GROUP, "mean", "label"], ascending=[True] * len(GROUP) + [False, True])
    rows = []
    for group, candidates in ordered.groupby(GROUP, sort=True):
        winner = candidates.iloc[0]
        runner = candidates.iloc[1] if len(candidates) > 1 else None
        record: dict[str, Any] = dict(zip(GROUP, group))
        record.update(examples_per_class=winner["examples_per_class"], fraction=winner["fraction"],
                      size=size_text(group[2], group[3]), metric_label=winner["metric_label"] if isinstance(winner["metric_label"], str) else "test score",
                      winner=winner["label"], winner_config=winner["config"], winner_mean=winner["mean"],
                      winner_low=winner["low"],
                      winner_high=winner["high"], winner_n=int(winner["n"]), winner_interval=winner["interval"],
                      winner_still_improving=winner["still_improving"], wall_seconds=winner["wall_seconds"],
                      trainable_params=winner["trainable_params"], latency_ms=winner["latency_ms"])
        if runner is None:
            record.update(outcome="alone", test="", evidence="only configuration at this size")
        else:
            result = compare_rows(values, winner, runner)
            outcome = "win" if result.significant and result.difference > 0 else "tie" if result.tested \
                else "not tested"
            record.update(runner_up=runner["label"], runner_up_mean=runner["mean"], runner_up_n=int(runner["n"]),
                          difference=result.difference, difference_ci95=result.ci95, test=result.test,
                          p_value=result.p_value, outcome=outcome, evidence=result.evidence())
        record.update(_gain(values, winner, candidates))
        record["sentence"] = _sentence(record)
        rows.append(record)
    return tristate_columns(pd.DataFrame(rows).reindex(columns=VERDICT_COLUMNS),
                             ("winner_still_improving", "baseline_still_improving"))


def tristate_columns(frame: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """Columns of True, False or None (not known) as Python objects, so ``is True`` reads them as written."""
    for column in columns:
        frame[column] = pd.Series([known_bool(v) for v in frame[column]], index=frame.index, dtype=object)
    return frame


def _gain(values: Mapping[tuple, tuple[np.ndarray, np.ndarray]], winner: pd.Series,
          candidates: pd.DataFrame) -> dict[str, Any]:
    """The winner's gain over the strongest scratch configuration of its size, and whether it may be claimed."""
    if winner["is_baseline"]:
        return dict(gain_claim="winner is scratch", gain_text="scratch wins: no pretrained start beat it")
    baselines = candidates[candidates["is_baseline"].astype(bool)]
    if baselines.empty:
        return dict(gain_claim="no baseline", gain_text="no scratch run at this size")
    baseline = baselines.iloc[0]  # candidates come sorted by mean: the strongest scratch, the most cautious gain
    result = compare_rows(values, winner, baseline)
    gain, ci = result.difference, result.ci95
    spread = f" ± {ci:.3f}" if np.isfinite(ci) else ""
    record = dict(baseline=baseline["label"], baseline_mean=baseline["mean"], baseline_n=int(baseline["n"]),
                  baseline_still_improving=baseline["still_improving"], gain=gain, gain_ci95=ci,
                  gain_p_value=result.p_value)
    if known_bool(baseline["still_improving"]):
        claim = "not claimed"
        text = f"not claimed: the scratch baseline was still improving (measured {gain:+.3f}, an upper bound)"
    elif not result.tested:
        claim, text = "not tested", f"{gain:+.3f} ({result.evidence()})"
    elif not result.significant:
        claim, text = "tie", f"ties with scratch ({gain:+.3f}{spread}, {result.evidence()})"
    elif known_bool(baseline["still_improving"]) is None:  # too few epochs to judge, or a run from before the flag
        claim = "unknown"
        text = f"{gain:+.3f}{spread} ({result.evidence()}), but baseline convergence not measured"
    elif known_bool(winner["still_improving"]):
        claim, text = "lower bound", f"≥ {gain:+.3f} (winner not converged; {result.evidence()})"
    else:
        claim, text = "claimed", f"{gain:+.3f}{spread} ({result.evidence()})"
    return dict(record, gain_claim=claim, gain_text=text)


def _sentence(record: Mapping[str, Any]) -> str:
    """One sentence for one size."""
    at = "With all labelled examples" if record["size"] == size_text(NOT_SET) else f"At {record['size']}"
    winner = record["winner"] + (" (still improving)" if known_bool(record.get("winner_still_improving")) else "")
    outcome = record["outcome"]
    if outcome == "alone":
        text = f"{at}, only {winner} was run"
    elif outcome == "win":
        text = (f"{at}, {winner} wins by {record['difference']:+.3f} over {record['runner_up']} "
                f"({record['evidence']})")
    elif outcome == "tie":
        text = (f"{at}, {winner} and {record['runner_up']} tie ({record['difference']:+.3f}, {record['evidence']})")
    else:
        text = (f"{at}, {winner} leads {record['runner_up']} by {record['difference']:+.3f}, "
                f"but {record['evidence']}")
    return text + f"; gain over scratch: {record['gain_text']}."


def task_summaries(verdict: pd.DataFrame) -> dict[tuple[str, str], str]:
    """``(task, data_version) -> paragraph``: the per-size sentences, where neighbouring sizes with the same
    outcome between the same two configurations are told once (``From 20 per class on, A and B tie``)."""
    out: dict[tuple[str, str], str] = {}
    if verdict.empty:
        return out
    for (task, version), rows in verdict.groupby(["task", "data_version"], sort=True):
        rows = rows.sort_values(["size_key", "fraction_key"])
        blocks: list[tuple[tuple, list[dict[str, Any]]]] = []
        for row in rows.to_dict(orient="records"):
            tie = row["outcome"] == "tie"
            # a tie has no winner, so its two sides form the key in either order
            key = (row["outcome"], frozenset([row["winner"], str(row["runner_up"])]) if tie
                   else (row["winner"], str(row["runner_up"])))
            mergeable = row["size_key"] != NOT_SET and row["outcome"] != "alone"
            if mergeable and blocks and blocks[-1][0] == key and blocks[-1][1][-1]["size_key"] != NOT_SET:
                blocks[-1][1].append(row)
            else:
                blocks.append((key, [row]))
        largest = rows["size_key"].max()
        out[(task, version)] = " ".join(_block_sentence(block, largest) for _, block in blocks)
    return out


def _block_sentence(block: list[dict[str, Any]], largest: int) -> str:
    """One sentence for neighbouring sizes that share an outcome: ``From 20 per class on, A and B tie (...)``."""
    if len(block) == 1:
        return block[0]["sentence"]
    sizes = [int(r["size_key"]) for r in block]
    where = (f"From {sizes[0]} per class on" if sizes[-1] == largest
             else f"At {', '.join(map(str, sizes[:-1]))} and {sizes[-1]} per class")
    first = block[0]
    details = "; ".join(f"{int(r['size_key'])}: {r['difference']:+.3f}, {r['evidence']}" for r in block)
    gains = "; ".join(f"{int(r['size_key'])}: {r['gain_text']}" for r in block)
    if first["outcome"] == "tie":
        core = f"{first['winner']} and {first['runner_up']} tie"
    elif first["outcome"] == "win":
        core = f"{first['winner']} wins over {first['runner_up']}"
    else:
        core = f"{first['winner']} leads {first['runner_up']}, not tested"
    return f"{where}, {core} ({details}); gain over scratch: {gains}."
