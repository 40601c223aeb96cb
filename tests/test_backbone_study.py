"""Measured backbone figures: frozen-feature accuracy, ImageNet top-1 against transfer, latency on this machine."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from transferlab.backbone_study import (
    frozen_accuracy,
    frozen_accuracy_table,
    imagenet_vs_transfer,
    transfer_correlations,
)


def _summary(rows):
    frame = pd.DataFrame(rows, columns=["task", "examples_per_class", "backbone", "weights", "strategy", "mean",
                                        "ci95", "n"])
    frame["label"] = frame["backbone"] + " · " + frame["weights"] + " · " + frame["strategy"]
    frame["metric_label"] = "test accuracy"
    return frame


LADDER = {("lite0", "imagenet"): 0.751, ("lite1", "imagenet"): 0.767, ("lite2", "imagenet"): 0.776,
          ("mbv2", "imagenet-torchvision"): 0.719}


def _ladder_summary(scores_frozen, scores_ft, size=20):
    rows = []
    for (backbone, weights), frozen, tuned in zip(LADDER, scores_frozen, scores_ft):
        rows.append(("animal", size, backbone, weights, "frozen_features", frozen, 0.02, 3))
        rows.append(("animal", size, backbone, weights, "lp_ft", tuned, 0.05, 2))
    rows.append(("animal", size, "lite0", "none", "frozen_features", 0.3, 0.02, 3))
    rows.append(("animal", size, "densenet", "medmnist", "frozen_features", 0.5, 0.02, 3))
    return _summary(rows)


def test_frozen_accuracy_keeps_only_frozen_strategies_and_the_best_per_backbone():
    summary = _ladder_summary([0.8, 0.82, 0.85, 0.7], [0.9, 0.91, 0.92, 0.88])
    extra = _summary([("animal", 20, "lite0", "imagenet", "feature_extraction", 0.6, 0.1, 3),
                      ("animal", 5, "lite0", "imagenet", "frozen_features", 0.55, 0.0, 1)])
    frozen = frozen_accuracy(pd.concat([summary, extra]), {"frozen_features", "feature_extraction"})
    assert set(frozen["strategy"]) == {"frozen_features", "feature_extraction"}
    table = frozen_accuracy_table(frozen)
    assert set(table.loc[table["backbone"] == "lite0", "starting_point"]) == {"imagenet", "random init"}
    lite0 = table[(table["backbone"] == "lite0") & (table["starting_point"] == "imagenet")].iloc[0]
    assert lite0["animal @ 20/class"] == "0.800 ± 0.020 (3)"  # the better of the two frozen strategies
    assert lite0["animal @ 5/class"] == "0.550 (1 seed)"
    assert list(table.columns[2:]) == ["animal @ 5/class", "animal @ 20/class"]  # sizes in numeric order
    mbv2 = table[table["backbone"] == "mbv2"].iloc[0]
    assert mbv2["animal @ 5/class"] == "—"


def test_imagenet_vs_transfer_leaves_out_sources_without_an_imagenet_top1():
    points = imagenet_vs_transfer(_ladder_summary([0.8, 0.82, 0.85, 0.7], [0.9, 0.91, 0.92, 0.88]), LADDER)
    assert set(zip(points["backbone"], points["weights"])) == set(LADDER)
    assert len(points) == 8
    row = points[(points["backbone"] == "mbv2") & (points["strategy"] == "lp_ft")].iloc[0]
    assert row["imagenet_top1"] == pytest.approx(0.719) and row["mean"] == pytest.approx(0.88)


def test_correlations_per_size_and_strategy_say_when_the_data_cannot_tell():
    rising = _ladder_summary([0.70, 0.80, 0.85, 0.60], [0.90, 0.85, 0.80, 0.95], size=20)
    few = _summary([("animal", 5, "lite0", "imagenet", "lp_ft", 0.5, 0.1, 2),
                    ("animal", 5, "lite1", "imagenet", "lp_ft", 0.6, 0.1, 2)])
    table = transfer_correlations(imagenet_vs_transfer(pd.concat([rising, few]), LADDER))
    frozen = table[(table["strategy"] == "frozen_features") & (table["examples_per_class"] == 20)].iloc[0]
    tuned = table[(table["strategy"] == "lp_ft") & (table["examples_per_class"] == 20)].iloc[0]
    assert frozen["spearman"] == pytest.approx(1.0) and tuned["spearman"] == pytest.approx(-1.0)
    assert frozen["backbones"] == 4
    # Four points: even a perfect ordering has p = 2/24 under the exact test, so it is not called significant.
    assert frozen["spearman_p"] == pytest.approx(2 / 24)
    assert frozen["reading"].startswith("no significant relation (Spearman +1.00")
    small = table[table["examples_per_class"] == 5].iloc[0]
    assert np.isnan(small["spearman"]) and "too few backbones (2)" in small["reading"]


def test_imagenet_transfer_chart_facets_sizes_apart_and_clips_intervals():
    from transferlab.dashboard.charts import imagenet_transfer_chart

    summary = pd.concat([_ladder_summary([0.98, 0.99, 0.97, 0.96], [0.9, 0.91, 0.92, 0.88], size=20),
                         _ladder_summary([0.02, 0.5, 0.6, 0.4], [0.5, 0.6, 0.7, 0.4], size=5)])
    summary.loc[summary["mean"] > 0.95, "ci95"] = 0.2
    summary.loc[summary["mean"] < 0.05, "ci95"] = 0.2
    fig = imagenet_transfer_chart(imagenet_vs_transfer(summary, LADDER))
    titles = [a.text for a in fig.layout.annotations]
    assert "animal · 5/class" in titles and "animal · 20/class" in titles
    for trace in fig.data:
        y = np.asarray(trace.y, dtype=float)
        assert np.all(y + np.asarray(trace.error_y.array) <= 1.0 + 1e-9)
        assert np.all(y - np.asarray(trace.error_y.arrayminus) >= -1e-9)
    assert {t.name for t in fig.data} == {"frozen_features", "lp_ft"}
    assert len(fig.data) == 4  # two strategies in each of two facets


def test_imagenet_transfer_chart_without_points_says_what_to_run():
    from transferlab.dashboard.charts import imagenet_transfer_chart

    fig = imagenet_transfer_chart(pd.DataFrame())
    assert "demo --backbones" in fig.layout.annotations[0].text


def test_registry_knows_frozen_strategies_and_each_checkpoints_top1():
    from transferlab import BackboneSpec, WeightSourceSpec
    from transferlab.registry import load_registry

    registry = load_registry()
    frozen = registry.frozen_strategies()
    assert {"frozen_features", "feature_extraction"} <= frozen
    assert not frozen & {"lp_ft", "scratch", "full_fine_tune", "gradual_unfreeze"}
    top1 = registry.imagenet_top1()
    assert top1[("efficientnet_lite0", "imagenet")] == pytest.approx(0.751)
    assert all(registry.backbone(b).weight_source(w).pretrained_on == "imagenet" for b, w in top1)
    spec = BackboneSpec(name="x", build=lambda *a: None, preprocess=lambda x: x, preprocessing="tf",
                        imagenet_top1=0.7, weight_sources=(
                            WeightSourceSpec(name="imagenet", description="d", pretrained_on="imagenet"),
                            WeightSourceSpec(name="imagenet-other", description="d", pretrained_on="imagenet",
                                             imagenet_top1=0.72),
                            WeightSourceSpec(name="edges", description="d", pretrained_on="bsds500-edges")))
    registry.backbones["x"] = spec
    top1 = registry.imagenet_top1()
    assert top1[("x", "imagenet")] == 0.7 and top1[("x", "imagenet-other")] == 0.72 and ("x", "edges") not in top1


@pytest.mark.parametrize("bad", [0.0, 1.5, -0.2, 76.7])
def test_weight_source_top1_is_a_fraction(bad):
    from transferlab import SpecError, WeightSourceSpec

    with pytest.raises(SpecError, match=f"Received: imagenet_top1={bad!r}"):
        WeightSourceSpec(name="imagenet", description="d", pretrained_on="imagenet", imagenet_top1=bad)


def test_latency_is_measured_recorded_and_shown_only_on_its_machine(tmp_path, monkeypatch):
    from transferlab import latency
    from transferlab.registry import load_registry

    monkeypatch.setenv("TRANSFERLAB_HOME", str(tmp_path))
    spec = load_registry().backbone("small_cnn")
    measured = latency.measure_latency(spec, repeats=3, warmup=1)
    assert measured.input_size == spec.default_input_size and 0 < measured.median_ms <= measured.p90_ms
    other = latency.Latency(**{**measured.__dict__, "backbone": "vgg16", "machine": "another machine"})
    latency.record_latencies([measured, other])
    assert latency.latency_lookup() == {"small_cnn": measured.median_ms}
    again = latency.Latency(**{**measured.__dict__, "median_ms": 1234.0, "measured_at": "9999"})
    latency.record_latencies([again])  # a newer measurement replaces the old one, nothing duplicated
    frame = latency.read_latencies(this_machine=False)
    assert len(frame) == 2 and latency.latency_lookup() == {"small_cnn": 1234.0}
    assert str(tmp_path) not in latency.machine_id()


def test_latency_file_that_is_not_a_table_reads_as_nothing(tmp_path, monkeypatch):
    from transferlab import latency

    monkeypatch.setenv("TRANSFERLAB_HOME", str(tmp_path))
    latency.latency_file().parent.mkdir(parents=True)
    latency.latency_file().write_bytes(b"\x00\xffnot,a\ncsv")
    assert latency.latency_lookup() == {}


def test_latency_refuses_text_backbones_and_bad_repeats():
    from types import SimpleNamespace

    from transferlab.latency import measure_latency

    with pytest.raises(ValueError, match="image backbones"):
        measure_latency(SimpleNamespace(name="minilm", modality="text"))
    with pytest.raises(ValueError, match="Received: repeats=0"):
        measure_latency(SimpleNamespace(name="cnn", modality="image"), repeats=0)
