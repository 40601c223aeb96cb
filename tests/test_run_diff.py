"""transferlab.run_diff: the paired table of two runs, McNemar's test, mistakes worst first, detection errors,
which runs share a test set; and the confusion-matrix chart of transferlab.dashboard.charts_runs."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from transferlab.errors import UserError
from transferlab.run_diff import (comparable_runs, confusion_counts, detection_errors, mcnemar, mistakes, paired_table,
                                  split_key)


def _payload(labels, predicted, confidence=None, indices=None, names=("cat", "dog", "owl")):
    n = len(labels)
    return {"kind": "classification", "indices": list(range(100, 100 + n)) if indices is None else indices,
            "labels": list(labels), "predicted": list(predicted),
            "confidence": [0.5] * n if confidence is None else list(confidence), "class_names": list(names)}


# ------------------------------------------------------------------------------------------ paired table

def test_paired_table_counts_each_cell_and_lists_its_indices():
    labels = [0, 1, 2, 0, 1, 2]
    a = _payload(labels, [0, 1, 0, 0, 2, 1])  # right at 100, 101, 103
    b = _payload(labels, [0, 0, 2, 1, 1, 1])  # right at 100, 102, 104
    table = paired_table(a, b)
    assert (table["both_right"], table["only_a"], table["only_b"], table["both_wrong"], table["n"]) == (1, 2, 2, 1, 6)
    assert table["indices"] == {"both_right": [100], "only_a": [101, 103], "only_b": [102, 104], "both_wrong": [105]}


def test_paired_table_refuses_different_test_sets_and_labels():
    a = _payload([0, 1, 2], [0, 1, 2])
    with pytest.raises(UserError, match="different images"):
        paired_table(a, _payload([0, 1, 2], [0, 1, 2], indices=[100, 101, 7]))
    with pytest.raises(UserError, match="different images"):
        paired_table(a, _payload([0, 1], [0, 1]))
    with pytest.raises(UserError, match="different true labels"):
        paired_table(a, _payload([0, 1, 1], [0, 1, 2]))
    with pytest.raises(UserError, match="classification"):
        paired_table(a, {"kind": "detection", "indices": [100, 101, 102], "boxes": [[], [], []]})
    with pytest.raises(UserError, match="inconsistent"):
        paired_table(a, dict(_payload([0, 1, 2], [0, 1, 2]), confidence=[0.5]))


# ------------------------------------------------------------------------------------------ McNemar

@pytest.mark.parametrize("b, c", [(0, 5), (1, 9), (3, 4), (12, 12), (2, 20)])
def test_mcnemar_below_25_discordant_is_the_exact_binomial_test(b, c):
    result = mcnemar(b, c)
    assert result["test"] == "exact binomial"
    # by hand: two-sided p = 2 * P(X <= min(b, c)) for X ~ Binomial(b + c, 1/2), capped at 1
    n, k = b + c, min(b, c)
    by_hand = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)
    assert result["p_value"] == pytest.approx(by_hand, rel=1e-9)
    assert result["p_value"] == pytest.approx(stats.binomtest(b, n, 0.5).pvalue, rel=1e-9)


def test_mcnemar_from_25_discordant_is_chi_square_with_continuity_correction():
    result = mcnemar(30, 10)
    assert result["test"].startswith("chi-square")
    assert result["statistic"] == pytest.approx((abs(30 - 10) - 1) ** 2 / 40)  # 9.025
    assert result["p_value"] == pytest.approx(stats.chi2.sf(9.025, 1))
    assert result["p_value"] < 0.01 and result["significant"] and result["better"] == "A"
    close = mcnemar(14, 11)  # 25 discordant: chi-square already, and no difference
    assert close["test"].startswith("chi-square") and close["p_value"] == pytest.approx(stats.chi2.sf(4 / 25, 1))


def test_mcnemar_verdict_never_claims_a_difference_at_p_at_or_above_005():
    for b in range(0, 40):
        for c in range(0, 40, 3):
            result = mcnemar(b, c, names=("frozen", "fine-tuned"))
            if result["p_value"] >= 0.05:
                assert not result["significant"] and result["better"] is None
                assert result["verdict"].startswith("a tie") and "differ (" not in result["verdict"]
            else:
                assert result["verdict"].startswith("frozen and fine-tuned differ (")
                assert result["better"] == ("frozen" if b > c else "fine-tuned")


def test_mcnemar_reads_in_plain_words():
    strong = mcnemar(2, 18)  # exact: p = 2 * P(X <= 2 | n=20) = 0.000402
    assert strong["verdict"].startswith("A and B differ (p<0.001")
    assert "A alone gets 2 test images right, B alone 18" in strong["verdict"] and "B is better" in strong["verdict"]
    tie = mcnemar(6, 9)
    assert tie["verdict"].startswith("a tie: A alone gets 6") and "p=0.61" in tie["verdict"]
    same = mcnemar(0, 0)
    assert same["p_value"] == 1.0 and same["verdict"].startswith("a tie")
    with pytest.raises(UserError, match="whole numbers"):
        mcnemar(-1, 3)


# ------------------------------------------------------------------------------------------ one run

def test_mistakes_worst_first_and_filtered_by_class():
    payload = _payload([0, 1, 2, 0, 1, 2], [1, 1, 0, 2, 0, 2], confidence=[0.6, 0.9, 0.95, 0.7, 0.6, 0.8])
    wrong = mistakes(payload)
    assert wrong["index"].tolist() == [102, 103, 100, 104]  # 0.95, 0.7, then the two 0.6 in test order
    assert wrong.loc[0, ["true_name", "predicted_name"]].tolist() == ["owl", "cat"]
    assert mistakes(payload, true_class=0)["index"].tolist() == [103, 100]
    assert mistakes(payload, predicted_class=0)["index"].tolist() == [102, 104]
    assert mistakes(payload, true_class=0, predicted_class=2)["index"].tolist() == [103]
    assert mistakes(payload, true_class=1, predicted_class=2).empty


def test_confusion_counts_rows_true_columns_predicted():
    counts = confusion_counts(_payload([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2]))
    assert counts.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_detection_errors_count_missed_and_false_boxes():
    targets = {5: (np.array([[0.1, 0.1, 0.4, 0.4], [0.6, 0.6, 0.9, 0.9]]), np.array([0, 1])),
               6: (np.array([[0.2, 0.2, 0.5, 0.5]]), np.array([1])),
               7: (np.array([[0.0, 0.0, 0.5, 0.5]]), np.array([0]))}
    targets_list = [None] * 5 + [targets[5], targets[6], targets[7]]
    payload = {"kind": "detection", "indices": [5, 6, 7], "class_names": ["a", "b"], "boxes": [
        [[0.1, 0.1, 0.4, 0.4, 0, 0.9], [0.6, 0.6, 0.9, 0.9, 0, 0.8]],  # second box: right place, wrong class
        [[0.2, 0.2, 0.5, 0.5, 1, 0.7], [0.2, 0.2, 0.5, 0.5, 1, 0.6], [0.7, 0.7, 0.9, 0.9, 1, 0.3]],  # a duplicate
        [[0.0, 0.0, 0.5, 0.5, 0, 0.9]],  # all right
    ]}
    errors = detection_errors(payload, targets_list)
    assert errors.set_index("index")[["missed", "false"]].to_dict("index") == {5: {"missed": 1, "false": 1},
                                                                             6: {"missed": 0, "false": 1}}
    assert errors["index"].tolist() == [5, 6]  # most errors first; image 7 is all right
    assert errors["top_score"].tolist() == [0.9, 0.7]


# ------------------------------------------------------------------------------------------ which runs

def _runs_frame(rows):
    base = dict(kind="train", status="succeeded", data_version="v1", score=0.5)
    return pd.DataFrame([{**base, **row} for row in rows])


def test_comparable_runs_share_task_data_version_and_test_indices():
    sha = lambda s: json.dumps({"test_indices_sha": s})  # noqa: E731
    runs = _runs_frame([dict(run_id="a", task="t", manifest_json=sha("x")),
                        dict(run_id="b", task="t", manifest_json=sha("x")),
                        dict(run_id="c", task="t", manifest_json=sha("y")),  # another split
                        dict(run_id="d", task="t", manifest_json=sha("x"), data_version="v2"),
                        dict(run_id="e", task="u", manifest_json=sha("x")),
                        dict(run_id="f", task="t", manifest_json=sha("x"), status="failed"),
                        dict(run_id="g", task="t", manifest_json=None)])
    assert comparable_runs(runs, "a")["run_id"].tolist() == ["b"]
    assert comparable_runs(runs, "g").empty  # no hash stored: never taken as the same test set
    assert comparable_runs(runs, "nope").empty
    assert split_key(runs.iloc[0].to_dict()) == ("t", "v1", "x")


# ------------------------------------------------------------------------------------------ chart

def test_confusion_heatmap_is_normalised_by_true_class():
    from transferlab.dashboard.charts_runs import confusion_heatmap, normalise_by_true_class

    counts = np.array([[8, 2, 0], [1, 3, 0], [0, 0, 0]])
    fig = confusion_heatmap(counts, ["cat", "dog", "owl"])
    z = np.asarray(fig.data[0].z, dtype=float)
    assert np.allclose(z[0], [0.8, 0.2, 0.0]) and np.allclose(z[1], [0.25, 0.75, 0.0])
    assert np.isnan(z[2]).all()  # a class without test images has no colour, not zeros
    assert list(fig.data[0].x) == ["cat", "dog", "owl"] and fig.data[0].text[0][1] == "0.20<br>(2)"
    assert "true dog → predicted cat: 1 of 4" in fig.data[0].customdata[1][0]
    assert np.allclose(np.nansum(normalise_by_true_class(counts), axis=1), [1, 1, 0])


def test_confusion_heatmap_says_when_there_is_nothing_and_drops_text_for_many_classes():
    from transferlab.dashboard.charts_runs import MAX_CELL_TEXT_CLASSES, confusion_heatmap

    empty = confusion_heatmap(np.zeros((0, 0)), [])
    assert "No confusion matrix" in empty.layout.annotations[0].text
    k = MAX_CELL_TEXT_CLASSES + 1
    many = confusion_heatmap(np.eye(k, dtype=int) * 3, [f"c{i}" for i in range(k)])
    assert many.data[0].text is None and many.data[0].customdata is not None
