"""What a run gets wrong on its test set, and how two runs differ on the same test images (pure functions).

Everything here reads the compact test predictions a run keeps (``Store.predictions``): for
classification ``indices`` (data indices of the test split, in order), ``labels``, ``predicted``,
``confidence`` and ``class_names``; for detection ``boxes`` per test image. Nothing trains or loads images.

Two runs on the same test set are compared image by image: the 2x2 table of which images each gets right
(:func:`paired_table`) and McNemar's test on its off-diagonal cells (:func:`mcnemar`): an exact two-sided
binomial test while fewer than :data:`EXACT_BELOW` images are discordant, else the chi-square test with
continuity correction. A difference is claimed only at ``p < ALPHA``; otherwise the two runs tie.
"""
from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from transferlab.errors import UserError

__all__ = ["ALPHA", "CELLS", "EXACT_BELOW", "MIN_IOU", "MIN_SCORE", "class_name", "comparable_runs", "confusion_counts",
           "detection_errors", "mcnemar", "mistakes", "paired_table", "parse_json", "split_key", "winning_runs"]

#: significance level of McNemar's test here (as in :mod:`transferlab.verdict`)
ALPHA = 0.05
#: below this many discordant images the exact binomial test is used, from here the chi-square approximation
EXACT_BELOW = 25
#: the cells of :func:`paired_table`, in the order shown
CELLS = ("both_right", "only_a", "only_b", "both_wrong")
#: a detection counts from this score, and matches a true box of its class from this IoU (:func:`detection_errors`)
MIN_SCORE = 0.5
MIN_IOU = 0.5


def _classification(payload: Mapping[str, Any], name: str) -> dict[str, np.ndarray]:
    """The arrays of a classification payload, checked to be one entry per test image."""
    if not isinstance(payload, Mapping) or payload.get("kind") != "classification":
        kind = payload.get("kind") if isinstance(payload, Mapping) else type(payload).__name__
        raise UserError(f"Run {name}'s predictions are not per-image classes (kind {kind!r}): the comparison of right "
                        "and wrong images needs two classification runs.")
    arrays = {key: np.asarray(payload.get(key, []), dtype=float if key == "confidence" else np.int64)
              for key in ("indices", "labels", "predicted", "confidence")}
    lengths = {key: len(value) for key, value in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise UserError(f"Run {name}'s stored predictions are inconsistent (one entry per test image expected). "
                        f"Received: {', '.join(f'{k}={v}' for k, v in lengths.items())}. Run it again.")
    return arrays


def class_name(names: Sequence[str], index: Any) -> str:
    """The name of class ``index`` in ``names``, or the index as text when ``names`` does not reach it."""
    index = int(index)
    return str(names[index]) if 0 <= index < len(names) else str(index)


def confusion_counts(payload: Mapping[str, Any]) -> np.ndarray:
    """The confusion matrix of a classification payload: counts, rows the true class, columns the predicted
    one, ``len(class_names)`` square."""
    arrays = _classification(payload, "this")
    k = len(payload.get("class_names") or []) or int(max(arrays["labels"].max(initial=0),
                                                          arrays["predicted"].max(initial=0)) + 1)
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (arrays["labels"], arrays["predicted"]), 1)
    return counts


def mistakes(payload: Mapping[str, Any], true_class: int | None = None,
             predicted_class: int | None = None) -> pd.DataFrame:
    """The wrongly classified test images, worst first (highest confidence in the wrong class), optionally only
    those of one true and/or predicted class: a frame of ``index`` (data index), ``position`` (in the test
    split), ``true``, ``predicted`` (class ids), ``true_name``, ``predicted_name`` and ``confidence``."""
    arrays = _classification(payload, "this")
    names = list(payload.get("class_names") or [])
    wrong = arrays["labels"] != arrays["predicted"]
    if true_class is not None:
        wrong &= arrays["labels"] == true_class
    if predicted_class is not None:
        wrong &= arrays["predicted"] == predicted_class
    position = np.flatnonzero(wrong)
    frame = pd.DataFrame({"index": arrays["indices"][position], "position": position,
                          "true": arrays["labels"][position], "predicted": arrays["predicted"][position],
                          "confidence": arrays["confidence"][position]})
    frame["true_name"] = [class_name(names, c) for c in frame["true"]]
    frame["predicted_name"] = [class_name(names, c) for c in frame["predicted"]]
    # stable sort: equal confidences keep the test split's order
    return frame.sort_values("confidence", ascending=False, kind="stable").reset_index(drop=True)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes ``a`` (N, 4) and ``b`` (M, 4), ``x0, y0, x1, y1``."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda z: np.clip(z[:, 2] - z[:, 0], 0, None) * np.clip(z[:, 3] - z[:, 1], 0, None)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def detection_errors(payload: Mapping[str, Any], targets: list[Any], min_score: float = MIN_SCORE,
                     min_iou: float = MIN_IOU) -> pd.DataFrame:
    """Per test image of a detection payload, what it gets wrong: true boxes no prediction (score ≥
    ``min_score``, same class) matches at IoU ≥ ``min_iou`` (``missed``) and such predictions matching no true
    box (``false``); one match per true box, best score first; ``top_score``, the best score of any stored box
    (NaN without one). ``targets`` are the task data's ``(boxes (k, 4), classes (k,))`` per data index. Worst
    first (most errors), images without error left out."""
    if payload.get("kind") != "detection":
        raise UserError(f"These predictions are not boxes (kind {payload.get('kind')!r}).")
    rows = []
    for position, (index, found) in enumerate(zip(payload["indices"], payload["boxes"])):
        true_boxes, true_classes = (np.asarray(v) for v in targets[int(index)])
        found = np.asarray(found, dtype=float).reshape(-1, 6)
        top_score = float(found[:, 5].max()) if len(found) else float("nan")
        found = found[found[:, 5] >= min_score]
        overlap = _iou(found[:, :4], true_boxes.reshape(-1, 4).astype(float))
        taken = np.zeros(len(true_boxes), dtype=bool)
        false = 0
        for row in np.argsort(-found[:, 5], kind="stable"):
            fits = (overlap[row] >= min_iou) & (true_classes == int(found[row, 4])) & ~taken
            if fits.any():
                taken[np.argmax(np.where(fits, overlap[row], -1.0))] = True
            else:
                false += 1
        missed = int((~taken).sum())
        if missed or false:
            rows.append(dict(index=int(index), position=position, missed=missed, false=false, errors=missed + false,
                             top_score=top_score))
    frame = pd.DataFrame(rows, columns=["index", "position", "missed", "false", "errors", "top_score"])
    return frame.sort_values("errors", ascending=False, kind="stable").reset_index(drop=True)


def paired_table(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """The 2x2 table of two classification runs on the same test images: how many both get right, only A,
    only B, neither (``both_right``, ``only_a``, ``only_b``, ``both_wrong``), ``n``, and the data indices in each
    cell (``indices``: cell -> list). Refuses (:class:`UserError`) payloads of different test sets (their
    ``indices`` differ: another split or data version) or with different true labels."""
    first, second = _classification(a, "A"), _classification(b, "B")
    if not np.array_equal(first["indices"], second["indices"]):
        raise UserError(f"The two runs were tested on different images ({len(first['indices'])} and "
                        f"{len(second['indices'])} test images, not the same ones): another test split or data "
                        "version. Compare runs of the same task and data version.")
    if not np.array_equal(first["labels"], second["labels"]):
        raise UserError("The two runs' test images carry different true labels: the data changed between them. "
                        "Compare runs of the same data version.")
    right_a = first["predicted"] == first["labels"]
    right_b = second["predicted"] == second["labels"]
    masks = {"both_right": right_a & right_b, "only_a": right_a & ~right_b, "only_b": ~right_a & right_b,
             "both_wrong": ~right_a & ~right_b}
    table: dict[str, Any] = {cell: int(mask.sum()) for cell, mask in masks.items()}
    table["n"] = int(len(right_a))
    table["indices"] = {cell: first["indices"][mask].tolist() for cell, mask in masks.items()}
    return table


def _p_text(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.2g}"


def mcnemar(b: int, c: int, names: tuple[str, str] = ("A", "B")) -> dict[str, Any]:
    """McNemar's test of two runs on the same images: ``b`` images only A gets right, ``c`` only B. Exact
    two-sided binomial test when ``b + c <`` :data:`EXACT_BELOW`, else chi-square with continuity correction.
    Returns ``b``, ``c``, ``test``, ``statistic`` (the chi-square, or ``min(b, c)`` for the exact test),
    ``p_value``, ``significant`` (``p < ALPHA``), ``better`` (the name of the run ahead, None in a tie) and
    ``verdict`` in plain words, which never claims a difference at ``p ≥ ALPHA``."""
    from scipy import stats

    if b < 0 or c < 0 or int(b) != b or int(c) != c:
        raise UserError(f"McNemar's test counts images: b and c must be whole numbers ≥ 0. Received: b={b!r}, c={c!r}")
    b, c = int(b), int(c)
    a_name, b_name = names
    n = b + c
    if n == 0:
        return dict(b=0, c=0, test="none", statistic=float("nan"), p_value=1.0, significant=False, better=None,
                    verdict=f"a tie: {a_name} and {b_name} get exactly the same test images right.")
    if n < EXACT_BELOW:
        test, statistic = "exact binomial", float(min(b, c))
        p = float(stats.binomtest(b, n, 0.5, alternative="two-sided").pvalue)
    else:
        test, statistic = "chi-square, continuity-corrected", (abs(b - c) - 1) ** 2 / n
        p = float(stats.chi2.sf(statistic, 1))
    p = min(p, 1.0)
    significant = p < ALPHA
    counts = f"{a_name} alone gets {b} test images right, {b_name} alone {c}"
    if significant:
        better = a_name if b > c else b_name
        verdict = f"{a_name} and {b_name} differ ({_p_text(p)}, McNemar {test}): {counts}; {better} is better."
    else:
        better = None
        verdict = (f"a tie: {counts} ({_p_text(p)}, McNemar {test}), not a difference at p < {ALPHA:g}.")
    return dict(b=b, c=c, test=test, statistic=statistic, p_value=p, significant=significant, better=better,
                verdict=verdict)


# ------------------------------------------------------------------------------------ which runs

def parse_json(text: Any, default: Any) -> Any:
    """A stored JSON column (``manifest_json``, ``confusion_json``) as Python, or ``default`` when it is missing,
    not JSON, or not of ``default``'s type."""
    try:
        value = json.loads(text) if isinstance(text, str) and text else default
    except ValueError:
        return default
    return value if isinstance(value, type(default)) else default


def split_key(run: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """What makes two runs' test sets the same: task, data version and the hash of the test indices (from
    the manifest; None for runs stored without one)."""
    version = run.get("data_version")
    version = version if isinstance(version, str) and version else None
    return run.get("task"), version, parse_json(run.get("manifest_json"), {}).get("test_indices_sha")


def comparable_runs(runs: pd.DataFrame, run_id: str) -> pd.DataFrame:
    """The succeeded training runs of ``runs`` (a runs frame) tested on the same images as ``run_id`` (same
    :func:`split_key`, the hash known), the run itself left out; empty when it is not there."""
    ok = runs[(runs["status"] == "succeeded") & (runs["kind"] == "train")] if not runs.empty else runs
    mine = ok[ok["run_id"] == run_id]
    if mine.empty:
        return ok.iloc[0:0]
    key = split_key(mine.iloc[0])
    if key[2] is None:
        return ok.iloc[0:0]
    same = [split_key(row) == key for row in ok.to_dict("records")]
    return ok[np.asarray(same, dtype=bool) & (ok["run_id"] != run_id).to_numpy()]


def _size_rank(row: pd.Series) -> tuple[int, float, int]:
    """Larger training sets rank higher: the whole pool, then fractions, then examples per class."""
    whole = row["size_key"] < 0 and row["fraction_key"] < 0
    return int(whole), float(row["fraction_key"]), int(row["size_key"])


def winning_runs(runs: pd.DataFrame, recommendation: Any = None) -> dict[tuple[str, str], str]:
    """``(task, data version) -> run id`` of the verdict's winner at the largest training-set size: the
    winning configuration's best-scoring seed (the verdict's ``winner_runs``, best first).
    ``recommendation`` is ``verdict.recommend(runs)`` when the caller has it already; data version ``""``
    for runs without one."""
    from transferlab.verdict import recommend

    recommendation = recommend(runs) if recommendation is None else recommendation
    verdicts = recommendation.verdicts
    chosen: dict[tuple[str, str], str] = {}
    for (task, version), group in verdicts.groupby(["task", "data_version"], sort=True):
        top = max(group.to_dict("records"), key=lambda r: _size_rank(pd.Series(r)))
        if top.get("winner_runs"):
            chosen[(task, version)] = str(top["winner_runs"][0])
    return chosen
