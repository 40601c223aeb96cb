"""transferlab rank: what is ranked, the subsample a job would train on, the shared feature cache, the stored
result, the CLI (table, --json, bad input: exit 2 and nothing written) and the check against realised runs."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from transferlab.cli import main
from transferlab.errors import UnknownNameError, UserError
from transferlab.rank_store import rank_path

FAST = ["--task", "digits", "--backbones", "tiny:none,small_cnn:none", "--max-images", "100"]


@pytest.fixture
def tiny_cli(registry, monkeypatch):
    """The CLI with the test registry (the tiny backbone), in this process."""
    monkeypatch.setattr("transferlab.registry.get_registry", lambda: registry)
    return registry


def _ranks(tl_home):
    folder = tl_home / "cache" / "ranks"
    return sorted(p.name for p in folder.glob("*.json")) if folder.is_dir() else []


# ------------------------------------------------------------------------------------------ what is ranked

def test_default_pairs_are_the_offline_sources_and_one_random_init_control(registry):
    from transferlab.ranking import rank_pairs
    from transferlab.registry import safe_available

    pairs = rank_pairs(registry, registry.task("animal_mnist"))
    pretrained = [(b.name, w) for b, w in pairs if w != "none"]
    assert pretrained and all(safe_available(b.weight_source(w)) is True for b, w in pairs if w != "none")
    controls = [b for b, w in pairs if w == "none"]
    assert len(controls) == 1
    ranked = {b.name: b for b, _ in pairs if b.published_params}
    assert controls[0].published_params == min(b.published_params for b in ranked.values())
    assert all(b.modality == "image" for b, _ in pairs)


def test_named_pairs_and_their_refusals(registry):
    from transferlab.ranking import rank_pairs

    task = registry.task("digits")
    assert [(b.name, w) for b, w in rank_pairs(registry, task, ["tiny:none", "tiny:none", "small_cnn:none"])] == [
        ("tiny", "none"), ("small_cnn", "none")]
    with pytest.raises(UnknownNameError, match="Unknown backbone 'nope'"):
        rank_pairs(registry, task, ["nope"])
    with pytest.raises(UserError, match=r"no weights available offline.*--backbones tiny:none"):
        rank_pairs(registry, task, ["tiny"])
    with pytest.raises(UnknownNameError, match="weight source 'imagenet' for backbone 'tiny'"):
        rank_pairs(registry, task, ["tiny:imagenet"])
    with pytest.raises(UserError, match="reads text"):
        rank_pairs(registry, task, ["minilm-l6:none"])


def test_default_input_size_is_the_task_default_capped_and_never_below_a_backbone_minimum(registry):
    from transferlab.ranking import RANK_INPUT_CAP, ranking_input_size

    lite = registry.backbone("efficientnet_lite0")
    task = registry.task("animal_mnist")
    assert ranking_input_size(task, [(lite, "imagenet")]) == (RANK_INPUT_CAP, "the backbones' smallest default "
                                                              f"(224 px) capped at {RANK_INPUT_CAP} px for speed")
    detection_like = dataclasses.replace(task, job_defaults={"input_size": 48})
    assert ranking_input_size(detection_like, [(lite, "imagenet")])[0] == 48
    tiny = registry.backbone("tiny")
    assert ranking_input_size(task, [(tiny, "none")])[0] == 16  # its own default is below the cap
    needy = dataclasses.replace(tiny, name="needy", min_input_size=40, default_input_size=64)
    assert ranking_input_size(dataclasses.replace(task, job_defaults={"input_size": 20}), [(needy, "none")])[0] == 40
    with pytest.raises(UserError, match=r"--input-size must be at least 40 px.*needy"):
        ranking_input_size(task, [(needy, "none"), (tiny, "none")], requested=32)


def test_the_subsample_is_a_jobs_training_subset_at_seed_0():
    from transferlab.data import sample_subset
    from transferlab.ranking import ranking_subset

    labels = np.repeat(np.arange(4), 50)
    pool = np.arange(200)[::2]  # 25 of each class
    per_class = ranking_subset(labels, pool, 40)
    assert per_class.examples_per_class == 10
    assert np.array_equal(per_class.indices, sample_subset(labels, pool, 0, examples_per_class=10))
    whole = ranking_subset(labels, pool, 1000)
    assert whole.examples_per_class is None and np.array_equal(whole.indices, sample_subset(labels, pool, 0))
    skewed = np.concatenate([np.zeros(180, int), np.ones(20, int)])
    share = ranking_subset(skewed, np.arange(200), 100)  # 50 of each is more than class 1 has: a fraction
    assert share.fraction == 0.5 and np.bincount(skewed[share.indices]).tolist() == [90, 10]
    with pytest.raises(UserError, match=r"--max-images 4 leaves a class .* Give --max-images 8 or more"):
        ranking_subset(labels, pool, 4)


# ------------------------------------------------------------------------------------------ the command

def test_rank_prints_the_table_and_the_top_sentence_and_stores_the_result(tiny_cli, capsys, tl_home):
    assert main(["rank", *FAST]) == 0
    out = capsys.readouterr().out
    assert "100 training-pool images of 10 classes (the training subset of a job at --examples-per-class 10 --seed 0)" \
        in out
    assert "at 16 px (the backbones' smallest default)" in out
    header = next(line for line in out.splitlines() if line.startswith("rank "))
    assert header.split() == ["rank", "backbone", "weights", "probe", "vs_top", "logme", "knn", "seconds", "params",
                              "latency_ms"]
    top = next(line for line in out.splitlines() if line.startswith("Top: "))
    assert (" ties the second" in top) != (" beats the second" in top)
    assert _ranks(tl_home) == [rank_path("digits", None, 16, 100, ["tiny:none", "small_cnn:none"]).name]
    from transferlab.ranking import load_ranking, stored_rankings

    stored = load_ranking("digits", None, 16)
    assert [r["rank"] for r in stored["pairs"]] == [1, 2]
    assert stored["pairs"][0]["probe_mean"] >= stored["pairs"][1]["probe_mean"]
    assert stored["pairs"][0]["vs_top"] == "top" and stored["pairs"][1]["vs_top"] in ("tie", "below")
    assert {r["params"] for r in stored["pairs"]} == {420, 103_264}  # tiny's and the small CNN's bases
    assert stored_rankings("digits")[0] == stored and stored_rankings("other") == []


def test_a_second_ranking_builds_no_model_and_extracts_nothing(tiny_cli, capsys, tl_home, monkeypatch):
    assert main(["rank", *FAST, "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert not any(r["features_cached"] for r in first["pairs"])

    def never(*args, **kwargs):
        raise AssertionError("built or extracted again")

    for name in ("tiny", "small_cnn"):
        tiny_cli.backbones[name] = dataclasses.replace(tiny_cli.backbones[name], build=never)
    monkeypatch.setattr("transferlab.features.cached_features", never)
    assert main(["rank", *FAST, "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert all(r["features_cached"] for r in second["pairs"])
    keep = ("backbone", "weights", "probe_folds", "knn_folds", "logme", "params", "feature_key")
    assert [{k: r[k] for k in keep} for r in second["pairs"]] == [{k: r[k] for k in keep} for r in first["pairs"]]


def test_a_frozen_run_at_the_ranked_size_reads_the_rankings_features(tiny_cli, capsys, tl_home):
    from transferlab.jobs import make_job
    from transferlab.ranking import load_ranking
    from transferlab.runner import Runner

    assert main(["rank", "--task", "digits", "--backbones", "tiny:none", "--max-images", "100"]) == 0
    ranked = load_ranking("digits", None, 16)["pairs"][0]
    features = tl_home / "cache" / "features"
    before = {p.name for p in features.glob("*.npy")}
    assert before == {ranked["feature_key"] + ".npy"}
    job = make_job(tiny_cli, task="digits", backbone="tiny", strategy="frozen_features", weights="none",
                   examples_per_class=10, seed=0, input_size=16, epochs=1)
    Runner(tiny_cli).run(job)
    added = {p.name for p in features.glob("*.npy")} - before
    assert len(added) == 2  # validation and test only: the training subset's features were the ranking's


def test_rank_on_your_own_data_folder(tiny_cli, capsys, tl_home, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
        (tmp_path / "shapes" / name).mkdir(parents=True)
        for i in range(12):
            pixels = np.clip(rng.normal(colour, 20, (12, 12, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "shapes" / name / f"{i}.png")
    assert main(["rank", "--data", str(tmp_path / "shapes"), "--backbones", "tiny:none"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Ranking on data.shapes (data version ")
    assert str(tmp_path) not in "".join((tl_home / "cache" / "ranks").glob("*.json").__next__().read_text())


@pytest.mark.parametrize("argv, message", [
    (["--task", "digits", "--backbones", "nope"], "Unknown backbone 'nope'"),
    (["--task", "digits", "--backbones", "tiny"], "no weights available offline"),
    (["--task", "digits", "--max-images", "0"], "--max-images must be a whole number >= 1. Received: --max-images '0'"),
    (["--task", "digits", "--max-images", "lots"], "--max-images must be a whole number"),
    (["--task", "digits", "--backbones", "tiny:none", "--input-size", "4"], "--input-size must be at least 8 px"),
    (["--task", "digits", "--backbones", "tiny:none", "--max-images", "5"], "leaves a class"),
    (["--task", "sentiment_tweets"], "holds text"),
    (["--task", "animal_detection"], "is detection: ranking scores frozen features against class labels"),
    (["--task", "multimodal_stub"], "is a stub"),
    (["--task", "no_such_task"], "Unknown task 'no_such_task'"),
    (["--data", "/no/such/folder"], "/no/such/folder"),
])
def test_bad_input_is_one_message_exit_2_and_nothing_written(tiny_cli, capsys, tl_home, argv, message):
    assert main(["rank", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("transferlab: error: ") and message in err and "Traceback" not in err
    assert _ranks(tl_home) == [] and not (tl_home / "cache" / "features").exists()


def test_no_backbone_with_offline_weights_is_refused(tiny_cli, capsys, monkeypatch, tl_home):
    monkeypatch.setattr("transferlab.ranking._offline", lambda source: False)
    assert main(["rank", "--task", "digits"]) == 2
    assert "No image backbone has weights available offline" in capsys.readouterr().err


def test_a_partial_ranking_sits_beside_the_full_one_and_replaces_nothing(tiny_cli, capsys, tl_home):
    from transferlab.ranking import load_ranking

    assert main(["rank", *FAST]) == 0
    assert main(["rank", "--task", "digits", "--backbones", "tiny:none", "--max-images", "100"]) == 0
    assert main(["rank", "--task", "digits", "--backbones", "tiny:none", "--max-images", "50"]) == 0
    assert len(_ranks(tl_home)) == 3
    both = load_ranking("digits", None, 16, 100, ["tiny:none", "small_cnn:none"])
    assert sorted(r["backbone"] for r in both["pairs"]) == ["small_cnn", "tiny"]
    assert [r["backbone"] for r in load_ranking("digits", None, 16, 100, ["tiny:none"])["pairs"]] == ["tiny"]
    assert load_ranking("digits", None, 16, 50)["n_images"] == 50


def test_an_altered_ranking_file_is_not_shown(tiny_cli, capsys, tl_home):
    from transferlab.ranking import load_ranking, rank_path, stored_rankings

    assert main(["rank", *FAST]) == 0
    path = rank_path("digits", None, 16, 100, ["small_cnn:none", "tiny:none"])
    path.write_text(path.read_text().replace('"tiny"', '"tinx"'))
    assert load_ranking("digits", None, 16) is None and stored_rankings() == []


# ------------------------------------------------------------------------------------------ against realised runs

def _ranking(probe, params, top1=None):
    names = [f"b{i}" for i in range(len(probe))]
    return pd.DataFrame(dict(pair=names, backbone=names, weights="w", probe_mean=probe, logme=probe[::-1],
                             knn_mean=probe, params=params, imagenet_top1=top1 or [np.nan] * len(probe)))


def _realised(scores, size=20):
    names = [f"b{i}" for i in range(len(scores))]
    return pd.DataFrame(dict(backbone=names, weights="w", examples_per_class=size, realised=scores,
                             realised_ci95=np.nan, realised_n=2, best_strategy="frozen_features",
                             metric_label="test accuracy"))


def test_weighted_tau_of_a_known_ordering():
    from transferlab.rank_check import rank_vs_realised

    ranking = _ranking([0.9, 0.8, 0.7, 0.6], params=[1, 2, 3, 4], top1=[0.70, 0.75, np.nan, 0.80])
    points, taus = rank_vs_realised(ranking, _realised([0.95, 0.85, 0.80, 0.70]))
    row = taus.iloc[0]
    assert row["pairs"] == 4 and len(points) == 4
    assert row["tau_probe_mean"] == pytest.approx(1.0) and row["tau_knn_mean"] == pytest.approx(1.0)
    assert row["tau_logme"] == pytest.approx(-1.0) and row["tau_params"] == pytest.approx(-1.0)
    assert row["n_imagenet_top1"] == 3 and row["tau_imagenet_top1"] == pytest.approx(-1.0)
    assert row["reading"].startswith("probe accuracy and k-NN accuracy tie for the best order (τ +1.00) over 4 pairs")
    from scipy import stats

    partial = rank_vs_realised(_ranking([0.9, 0.8, 0.7, 0.6], [1, 2, 3, 4]), _realised([0.85, 0.95, 0.80, 0.70]))[1]
    expected = stats.weightedtau([0.9, 0.8, 0.7, 0.6], [0.85, 0.95, 0.80, 0.70]).statistic
    assert partial.iloc[0]["tau_probe_mean"] == pytest.approx(expected) and 0 < expected < 1


def test_the_probe_is_also_scored_on_the_pairs_that_have_an_imagenet_top1():
    from scipy import stats

    from transferlab.rank_check import rank_vs_realised

    probe, realised = [0.9, 0.8, 0.7, 0.6, 0.5], [0.95, 0.60, 0.80, 0.70, 0.85]
    top1 = [0.70, np.nan, 0.75, 0.80, 0.72]  # b1 (random init, say) has none
    row = rank_vs_realised(_ranking(probe, [1, 2, 3, 4, 5], top1=top1), _realised(realised))[1].iloc[0]
    keep = [0, 2, 3, 4]
    expected = stats.weightedtau([probe[i] for i in keep], [realised[i] for i in keep]).statistic
    assert row["tau_probe_mean_top1_pairs"] == pytest.approx(expected)
    assert row["tau_probe_mean_top1_pairs"] != pytest.approx(row["tau_probe_mean"])  # the subset matters here
    assert f"on the 4 pairs with a published top-1, probe τ {expected:+.2f} against top-1 τ " in row["reading"]


def test_tau_needs_three_pairs():
    from transferlab.rank_check import rank_vs_realised

    taus = rank_vs_realised(_ranking([0.9, 0.8, 0.7], [1, 2, 3]), _realised([0.9, 0.8]))[1]
    row = taus.iloc[0]
    assert row["pairs"] == 2 and np.isnan(row["tau_probe_mean"]) and row["reading"].startswith("too few pairs (2)")


def test_realised_scores_take_the_best_strategy_of_the_same_data_version_without_transfers():
    from transferlab.rank_check import realised_scores

    base = dict(task="digits", backbone="tiny", weights="none", examples_per_class=10, status="succeeded",
                kind="train", source=None, data_version=None, metric="accuracy", metric_label="test accuracy",
                input_size=16, fraction=None)
    runs = pd.DataFrame([
        dict(base, strategy="frozen_features", seed=0, score=0.6), dict(base, strategy="frozen_features", seed=1, score=0.7),
        dict(base, strategy="full_fine_tune", seed=0, score=0.8),
        dict(base, strategy="lp_ft", seed=0, score=0.99, data_version="abcdef012345"),  # other data
        dict(base, strategy="full_fine_tune", seed=0, score=0.97, source="lfw_faces"),  # a transfer
        dict(base, strategy="scratch", seed=0, score=0.95, status="failed"),
    ])
    best = realised_scores(runs, "digits", None, baselines={"scratch"})
    assert best[["backbone", "weights", "best_strategy", "realised"]].values.tolist() == [
        ["tiny", "none", "full_fine_tune", 0.8]]
    other = realised_scores(runs, "digits", "abcdef012345", baselines={"scratch"})
    assert other["realised"].tolist() == [0.99]


def test_latency_is_this_machines_record_at_the_ranked_size_else_the_newest_with_its_size(tiny_cli, capsys):
    from transferlab.latency import Latency, machine_id, record_latencies

    def measured(size, ms, when):
        return Latency(backbone="tiny", weights="none", input_size=size, batch=1, median_ms=ms, p90_ms=ms, repeats=3,
                       machine=machine_id(), tensorflow="x", measured_at=when)

    record_latencies([measured(32, 2.5, "2026-01-01T00:00:00"), measured(64, 4.0, "2026-01-02T00:00:00")])
    argv = ["rank", "--task", "digits", "--backbones", "tiny:none", "--max-images", "100", "--json"]
    assert main(argv) == 0
    row = json.loads(capsys.readouterr().out)["pairs"][0]
    assert (row["latency_ms"], row["latency_input_size"]) == (4.0, 64)  # not measured at 16 px: the newest figure
    record_latencies([measured(16, 1.5, "2025-01-01T00:00:00")])
    assert main(argv[:-1]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("1 "))
    assert line.split()[-1] == "1.5"  # measured at the ranked size: that one, without a size note
