"""The verdict as people read it: ``transferlab recommend`` (text or ``--json``). The numbers come from
:mod:`transferlab.verdict` and :mod:`transferlab.pareto`; this module only words and prints them."""
from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np

from transferlab.cells import records
from transferlab.errors import UserError
from transferlab.pareto import pareto_front
from transferlab.verdict import Recommendation, eligible_runs, recommend

__all__ = ["cmd_recommend", "format_recommendation", "model_line", "recommendation_json", "winner_model"]

_KEYS = ("size_key", "fraction_key")  # sortable stand-ins for the size, not data


def recommendation_json(recommendation: Recommendation, kept: set[str] | None = None) -> dict[str, Any]:
    """The verdict as JSON-ready data: ``verdicts`` (with ``winner_runs``, best first, and with ``kept``
    given, ``model_run`` and ``model_kept``: see :func:`winner_model`), ``summaries``,
    ``more_labels_or_backbone`` and the two ``pareto`` fronts (only configurations on them)."""
    summaries = [dict(task=t, data_version=v or None, summary=s) for (t, v), s in recommendation.summaries().items()]
    pareto = {}
    for cost in ("wall_seconds", "latency_ms"):
        front = pareto_front(recommendation.configurations, cost)
        pareto[cost] = records(front[front["on_front"].astype(bool)], drop=(*_KEYS, "on_front"))
    verdict = recommendation.verdicts.assign(data_version=recommendation.verdicts["data_version"].replace("", None))
    if kept is not None:
        chosen = [winner_model(row, kept) for row in verdict.to_dict("records")]
        verdict = verdict.assign(model_run=[c[0] for c in chosen], model_kept=[c[1] for c in chosen])
    return dict(verdicts=records(verdict, drop=_KEYS), summaries=summaries,
                more_labels_or_backbone=records(recommendation.labels_or_backbone, drop=_KEYS), pareto=pareto)


def _cell(value: Any, number: str = ".3f") -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return f"{value:{number}}" if isinstance(value, (int, float, np.floating, np.integer)) else str(value)


def winner_model(row: Any, kept: set[str]) -> tuple[str | None, bool]:
    """The run whose model a verdict row points to: the winning configuration's best-scoring run with a kept
    model, else its best-scoring run (to re-run with ``--rerun``); and whether that model is kept."""
    runs = list(row.get("winner_runs") or [])
    for run_id in runs:
        if run_id in kept:
            return run_id, True
    return (runs[0], False) if runs else (None, False)


def model_line(row: Any, kept: set[str]) -> str | None:
    """``model: ...``, the command that exports the winner of a verdict row, or None without runs."""
    run_id, is_kept = winner_model(row, kept)
    if run_id is None:
        return None
    if is_kept:
        return f"model: kept (run {run_id}): transferlab export {run_id} --format all --out winner/"
    return (f"model: not kept (run {run_id}, the best seed): transferlab export {run_id} --rerun --format all "
            "--out winner/ trains it again and keeps it")


def format_recommendation(recommendation: Recommendation, kept: set[str] | None = None) -> str:
    """The verdict as text: per task (and data version) its paragraph, a table per size, and more labels or
    another backbone. With ``kept`` (run ids with a kept model), each size says how to export its winner."""
    lines = []
    summaries = recommendation.summaries()
    labels = recommendation.labels_or_backbone
    for (task, version), rows in recommendation.verdicts.groupby(["task", "data_version"], sort=True):
        metric = rows["metric_label"].dropna().iloc[0] if rows["metric_label"].notna().any() else "test score"
        lines.append(f"{task}" + (f" (data {version})" if version else "") + f": {metric}")
        lines.append(summaries[(task, version)])
        for _, row in rows.sort_values(["size_key", "fraction_key"]).iterrows():
            cost = (f"{_cell(row['wall_seconds'], '.0f')} s training, {_cell(row['trainable_params'], ',.0f')} "
                    f"trainable parameters" + (f", {row['latency_ms']:.1f} ms/image"
                                               if np.isfinite(row["latency_ms"]) else ""))
            interval = (f" [{row['winner_low']:.3f}, {row['winner_high']:.3f}]"
                        if np.isfinite(row["winner_low"]) else "")
            against = (f" vs {row['runner_up']} {row['runner_up_mean']:.3f} (n={int(row['runner_up_n'])}), "
                       f"{row['difference']:+.3f}, {row['evidence']}") if isinstance(row["runner_up"], str) else ""
            lines.append(f"  {row['size']}: {row['outcome'].upper()}  {row['winner']} {row['winner_mean']:.3f}"
                         f"{interval} (n={row['winner_n']}){against}")
            lines.append(f"      gain over scratch: {row['gain_text']}; cost: {cost}")
            model = model_line(row, kept) if kept is not None else None
            if model:
                lines.append(f"      {model}")
        mine = labels[(labels["task"] == task) & (labels["data_version"] == version)] if not labels.empty else labels
        if not mine.empty:
            lines.append("  More labels or a better backbone?")
            lines += [f"    at {r['size']}: {r['answer']}" for _, r in mine.sort_values("size_key").iterrows()]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def cmd_recommend(args: Any) -> int:
    """``transferlab recommend [--task NAME] [--json]``: the verdict over the store's finished runs."""
    from transferlab.latency import latency_lookup
    from transferlab.paths import default_store_url
    from transferlab.store import Store

    url = default_store_url()
    from transferlab.demo import DEMOS

    empty = (f"No finished training runs in the store yet. Try `transferlab demo --quick` (about "
             f"{DEMOS['quick'].minutes} minutes), `transferlab demo`, or a sweep, then ask again.")
    if url.startswith("sqlite") and ":memory:" not in url:
        from pathlib import Path

        if not Path(url.split(":///", 1)[-1]).is_file():  # nothing ran here yet: say so, create nothing
            print(empty)
            return 0
    store = Store(url, read_only=True)
    runs = eligible_runs(store.runs_frame())
    task = getattr(args, "task", None)
    if task is not None:
        tasks = sorted(runs["task"].astype(str).unique()) if not runs.empty else []
        if task not in tasks:
            listed = ", ".join(tasks) if tasks else "none yet"
            raise UserError(f"--task {task!r} has no finished training runs in the store. Tasks with runs: "
                            f"{listed}. Received: --task={task!r}")
        runs = runs[runs["task"] == task]
    if runs.empty:
        print(empty)
        return 0
    recommendation = recommend(runs, latency=latency_lookup())
    models = store.models_frame()
    kept = set(models["run_id"].astype(str)) if not models.empty else set()
    if getattr(args, "json", False):
        json.dump(recommendation_json(recommendation, kept), sys.stdout, indent=2, ensure_ascii=False)
        print()
    else:
        print(format_recommendation(recommendation, kept), end="")
    return 0
