"""The offline backbone ladder: every ImageNet source listed as offline, and (slow) each one's frozen features
beating its own random init on Animal-MNIST, the medical source's result reported as measured."""
from __future__ import annotations

import pytest

LADDER = [("efficientnet_lite0", "imagenet"), ("efficientnet_lite1", "imagenet"), ("efficientnet_lite2", "imagenet"),
          ("mobilenetv2", "imagenet-torchvision")]
MEDICAL = ("densenet121", "medmnist")


def test_backbones_command_lists_the_ladder_offline(capsys):
    from transferlab.cli import main

    assert main(["backbones", "--json", "--only", ",".join(b for b, _ in LADDER + [MEDICAL])]) == 0
    import json

    rows = {row["backbone"]: row for row in json.loads(capsys.readouterr().out)["backbones"]}
    for backbone, weights in LADDER + [MEDICAL]:
        sources = rows[backbone]["weights"].split(",")
        assert weights in sources, sources  # listed without "(online)": it loads offline


def test_backbone_demo_compares_the_ladder_like_with_like():
    from transferlab.demo import demo_jobs
    from transferlab.registry import load_registry

    jobs = [j for j in demo_jobs(load_registry(), which="backbones") if j.kind == "train"]
    pairs = {(j.backbone, j.weights) for j in jobs}
    assert set(LADDER) | {MEDICAL, ("efficientnet_lite0", "none"), ("small_cnn", "none")} == pairs
    assert {j.task for j in jobs} == {"animal_mnist", "elpv_solar"}
    # one input size for the backbones compared (like with like); the scratch baseline is the small CNN
    assert {j.input_size for j in jobs if j.backbone != "small_cnn"} == {96}
    assert {(j.strategy, j.input_size) for j in jobs if j.backbone == "small_cnn"} == {("scratch", 32)}
    assert {j.strategy for j in jobs} == {"frozen_features", "lp_ft", "scratch"}
    for strategy in ("frozen_features", "lp_ft"):
        for pair in LADDER + [MEDICAL]:
            sizes = {j.examples_per_class for j in jobs if (j.backbone, j.weights) == pair and j.strategy == strategy}
            assert len(sizes) == 2, (pair, strategy)
    frozen_seeds = {j.seed for j in jobs if j.strategy == "frozen_features"}
    assert len(frozen_seeds) >= 2  # intervals need seeds


def test_unknown_demo_is_refused():
    from transferlab.demo import demo_jobs
    from transferlab.errors import UserError
    from transferlab.registry import load_registry

    with pytest.raises(UserError, match="Valid demos: \\['backbones', 'quick', 'strategies'\\]"):
        demo_jobs(load_registry(), which="colour")


@pytest.mark.slow
def test_each_imagenet_source_beats_its_own_random_init_with_frozen_features(capsys):
    """Frozen features at 20 examples per class on Animal-MNIST, one seed, 96 px: each ImageNet checkpoint
    beats the same architecture from random init by at least 0.10 test accuracy. The MedMNIST source is
    run too and its margin printed, whichever way it goes."""
    from transferlab.analysis import summarize
    from transferlab.cli import main
    from transferlab.store import Store

    pairs = LADDER + [MEDICAL]
    for backbone, weights in pairs:
        assert main(["sweep", "--tasks", "animal_mnist", "--backbones", backbone, "--weights", f"none,{weights}",
                     "--strategies", "frozen_features", "--examples-per-class", "20", "--seeds", "0",
                     "--input-size", "96", "--epochs", "40", "--workers", "0"]) == 0
    summary = summarize(Store().runs_frame())
    score = {(r.backbone, r.weights): r.mean for r in summary.itertuples()}
    with capsys.disabled():
        for backbone, weights in pairs:
            print(f"\n{backbone} {weights}: {score[(backbone, weights)]:.3f} vs random init "
                  f"{score[(backbone, 'none')]:.3f} (margin {score[(backbone, weights)] - score[(backbone, 'none')]:+.3f})")
    for backbone, weights in LADDER:
        assert score[(backbone, weights)] - score[(backbone, "none")] >= 0.10, (backbone, score)
    assert (MEDICAL[0], MEDICAL[1]) in score  # measured and reported; no threshold claimed either way
