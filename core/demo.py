"""The embedded default comparison: runs offline on a fresh machine in about a quarter of an hour.

Animal-MNIST at 5, 20 and 100 labelled examples per class, 3 seeds, comparing
- the small CNN from scratch (32 px),
- EfficientNet-Lite0 ImageNet, frozen, head trained on cached features (96 px),
- EfficientNet-Lite0 ImageNet, head-then-fine-tune (96 px),
- the small CNN pretrained on Animal-MNIST with shuffled labels (a corrupted source), then fine-tuned
  with the same budget as scratch.
Input sizes and epochs are chosen to fit about 13 minutes on 2 CPU cores.
"""
from __future__ import annotations

from transferlab.jobs import JobSpec, expand_grid
from transferlab.registry import Registry

SIZES = [5, 20, 100]
SEEDS = [0, 1, 2]
TASK = "animal_mnist"

GRIDS: list[tuple[dict, dict]] = [
    ({"backbones": ["small_cnn"], "strategies": ["scratch"]},
     {"input_size": 32, "epochs": 30, "learning_rate": 1e-3}),
    ({"backbones": ["efficientnet_lite0"], "weights": ["imagenet"], "strategies": ["frozen_features"]},
     {"input_size": 96, "epochs": 40, "learning_rate": 1e-3}),
    ({"backbones": ["efficientnet_lite0"], "weights": ["imagenet"], "strategies": ["lp_ft"]},
     {"input_size": 96, "epochs": 8, "fine_tune_epochs": 3, "learning_rate": 1e-3, "fine_tune_learning_rate": 1e-4}),
    ({"backbones": ["small_cnn"], "strategies": ["full_fine_tune"], "sources": ["animal_mnist:shuffled"]},
     {"input_size": 32, "fine_tune_epochs": 30, "fine_tune_learning_rate": 1e-3, "pretrain_epochs": 5}),
]


def demo_jobs(registry: Registry, sizes: list[int] | None = None, seeds: list[int] | None = None) -> list[JobSpec]:
    """Every job of the demo sweep (pretrain jobs included), in a stable order."""
    jobs: dict[str, JobSpec] = {}
    for grid, options in GRIDS:
        full = dict(grid, tasks=[TASK], examples_per_class=sizes or SIZES, seeds=seeds or SEEDS)
        for job in expand_grid(registry, full, options):
            jobs.setdefault(job.job_id, job)
    pretrains = [j for j in jobs.values() if j.kind == "pretrain"]
    return pretrains + [j for j in jobs.values() if j.kind != "pretrain"]
