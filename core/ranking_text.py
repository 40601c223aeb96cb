"""``transferlab rank`` as people read it: the command, its table and its JSON. The ranking itself is
:mod:`transferlab.ranking`; this module only parses, words and prints."""
from __future__ import annotations

import json
from typing import Any

from transferlab.cells import json_ready
from transferlab.errors import UserError
from transferlab.rank_store import p_text
from transferlab.ranking import rank

__all__ = ["cmd_rank", "format_ranking"]


def _whole_number(text: Any, flag: str) -> int:
    import re

    from transferlab.jobs import INT_MAX

    if text is None or not re.fullmatch(r"[0-9]+", str(text).strip()) or not 1 <= int(text) <= INT_MAX:
        raise UserError(f"{flag} must be a whole number >= 1. Received: {flag} {text!r}")
    return int(text)


def _versus_top(row: dict[str, Any]) -> str:
    if row.get("vs_top") in ("tie", "below"):
        return f"{row['vs_top']} (p {p_text(row['p_vs_top'])})"
    return row.get("vs_top") or "—"


def format_ranking(result: dict[str, Any]) -> str:
    """The ranking as the command prints it: what was scored, the table, the top sentence."""
    from transferlab.cli import table

    def number(value, digits=3):
        return "—" if value is None else f"{value:.{digits}f}"

    rows = []
    for r in result["pairs"]:
        latency = "—" if r.get("latency_ms") is None else (
            f"{r['latency_ms']:.1f}" + ("" if r.get("latency_input_size") == result["input_size"]
                                        else f" (at {r['latency_input_size']} px)"))
        probe = "—" if r.get("probe_mean") is None else f"{r['probe_mean']:.3f} ± {number(r.get('probe_std'))}"
        rows.append(dict(rank=r["rank"], backbone=r["backbone"], weights=r["weights"], probe=probe,
                         vs_top=_versus_top(r),
                         logme=number(r.get("logme")), knn=number(r.get("knn_mean")),
                         seconds=number(r.get("seconds"), 1) + (" (cached)" if r.get("features_cached") else ""),
                         params=f"{r['params']:,}" if r.get("params") else "—", latency_ms=latency,
                         error=r.get("error") or ""))
    columns = ["rank", "backbone", "weights", "probe", "vs_top", "logme", "knn", "seconds", "params", "latency_ms"]
    if any(row["error"] for row in rows):
        columns.append("error")
    subset = result["subset"]
    lines = [
        f"Ranking on {result['task']}" + (f" (data version {result['data_version']})" if result["data_version"] else "")
        + f": {result['n_images']:,} training-pool images of {result['classes']} classes (the training subset of a "
          f"job at {subset['as_job']}), at {result['input_size']} px ({result['input_size_reason']}).",
        f"probe: logistic-regression accuracy, mean ± std over {result['folds']} stratified folds; knn: "
        f"{result['knn_neighbours']}-NN accuracy on the same folds; logme: LogME (higher is better); seconds: to "
        "get the features (cached: from the feature cache) and score them; params: the frozen base's; latency_ms: "
        "median CPU time of one image recorded on this machine (`transferlab backbones --measure`; —: not measured).",
        "",
        table(rows, columns),
        "",
        result["top"],
        f"{len(result['pairs'])} pairs in {result['seconds']:.1f} s.",
    ]
    return "\n".join(lines)


def cmd_rank(args: Any) -> int:
    """``transferlab rank``: rank the offline backbones on ``--task`` or ``--data``, print the table (or
    ``--json``), and, when the store holds runs of the same task and data version, how well it predicted them.
    A later training run reuses the ranking's features only at its input size, seed 0 and ``max_images //
    classes`` examples per class (see :mod:`transferlab.ranking`)."""
    from transferlab import registry as registry_module
    from transferlab.cli import _csv_list

    registry = registry_module.get_registry()
    if args.data:
        from transferlab.userdata import resolve_data

        task = resolve_data(registry, args.data)
    else:
        task = registry.task(args.task)
    max_images = _whole_number(args.max_images, "--max-images")
    input_size = _whole_number(args.input_size, "--input-size") if args.input_size is not None else None
    result = rank(registry, task.name, _csv_list(args.backbones), max_images, input_size)
    from transferlab.rank_check import check_against_store, format_check

    check = check_against_store(registry, result)
    if args.json:
        print(json.dumps(json_ready(dict(result, realised=check)), indent=2, allow_nan=False))
        return 0
    print(format_ranking(result))
    if check is not None:
        print()
        print(format_check(check))
    return 0
