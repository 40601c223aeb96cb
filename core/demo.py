"""The embedded comparisons: two sweeps that run offline on a fresh machine.

``strategies`` (``transferlab demo``): Animal-MNIST at 5, 20 and 100 labelled examples per class, 3 seeds,
comparing
- the small CNN from scratch (32 px),
- EfficientNet-Lite0 ImageNet, frozen, head trained on cached features (96 px),
- EfficientNet-Lite0 ImageNet, head-then-fine-tune (96 px),
- the small CNN pretrained on Animal-MNIST with shuffled labels (a corrupted source), then fine-tuned
  with the same budget as scratch.
Every configuration trains under the same budget rules (:data:`BUDGET`): each phase at least 50 optimizer
steps, then until its validation loss has not improved for 5 epochs, ending with the best epoch's weights;
the epochs of each grid are only caps, and a run that reaches one still improving says so
(``still_improving``). Before these rules the 5-per-class scratch runs stopped after 30 epochs of two steps
each with their validation loss still falling fast (seed 0: test accuracy 0.528, still improving); under them
the same run stops after 48 epochs (96 steps), converged, at 0.610. Fine-tuning at 96 px to convergence is
what costs: measured per run (seed 0, one worker, 2 shared CPU cores) lp_ft took 174, 293 and 406 s at 5, 20
and 100 per class, scratch 17-21 s and frozen features 11-12 s; about 52 minutes for the whole demo, estimated
from those runs. With lp_ft's head phase on cached features, validation thinned before each phase's step floor and
two workers, the whole demo took 10 min 48 s on 2 CPU cores (its runs add up to 20 minutes; lp_ft 51-175 s), with
the same findings; ``benchmarks/demo_wall.py`` measures the ratio against the runner of before in one run.

``backbones`` (``transferlab demo --backbones``): "which backbone?" on a near domain (Animal-MNIST) and a
distant one (ELPV solar-cell electroluminescence), at two sizes: the offline ImageNet ladder
(EfficientNet-Lite0/1/2, torchvision's MobileNetV2), DenseNet121 from a MedMNIST classifier (another
domain's checkpoint, though its saved model marks the trunk frozen, so the trunk may be ImageNet's) and
Lite0 from random init (frozen random features), each frozen (2 seeds) and head-then-fine-tune (1 seed:
fine-tuning is what costs), all at 96 px so the backbones are compared like with like, against the small
CNN trained from scratch (32 px, 2 seeds) as the baseline of every gain; two worker processes. Measured:
33 minutes on 2 CPU cores, over the 15 it was meant to fit (fine-tuning five backbones is what costs).

``quick`` (``transferlab demo --quick``): the strategies demo's question in about two minutes, still real runs:
Animal-MNIST at one size (:data:`QUICK_SIZE` per class), one seed, and the three answers to "freeze, fine-tune or
scratch?": the small CNN from scratch (32 px), EfficientNet-Lite0 ImageNet frozen (head on cached features) and
Lite0 ImageNet head-then-fine-tune, both at :data:`QUICK_INPUT_SIZE` px, under the strategies demo's budget rules
with smaller caps (``QUICK_*`` constants: tune them there). Measured on 2 shared CPU cores, one worker, with lp_ft's
head phase on cached features: 63 s for the whole demo (frozen 15 s, lp_ft 29 s, scratch 8 s, the rest starting
up); test accuracy 0.844 frozen, 0.870 lp_ft, 0.791 scratch (the strategies demo at 20 per class, 3 seeds: 0.845 ±
0.015, 0.884 ± 0.010, 0.776 ± 0.045), in the same order. Its scratch and frozen jobs are the strategies demo's own
(same job ids), so the full demo afterwards reuses those two runs.
"""
from __future__ import annotations

from dataclasses import dataclass

from transferlab.errors import UserError
from transferlab.jobs import JobSpec, expand_grid
from transferlab.registry import Registry


@dataclass(frozen=True)
class Demo:
    """One embedded sweep: its grids (axes, shared options), tasks, sizes and seeds."""

    name: str
    tasks: tuple[str, ...]
    sizes: tuple[int, ...]
    seeds: tuple[int, ...]
    grids: tuple[tuple[dict, dict], ...]
    minutes: int  # measured on 2 CPU cores, for the message before it starts
    question: str = ""
    workers: int = 1  # worker processes by default (small batches leave a core idle: two keep both busy)
    flag: str = ""  # how `transferlab demo` asks for it ("" for the default demo)

    @property
    def command(self) -> str:
        """The terminal command that runs this demo."""
        return "transferlab demo" + (f" {self.flag}" if self.flag else "")


#: the budget rules of every strategies-demo configuration: at least 50 optimizer steps per phase (5 images per
#: class are 2 steps an epoch: 25 epochs, past the rise of the validation loss while the small CNN's BatchNorm
#: statistics settle), then early stopping with patience 5 epochs, restoring the best weights
BUDGET = {"min_steps": 50, "early_stopping": 5}
#: epoch caps where an epoch is cheap (32 px, cached features): early stopping ends the runs first (measured on
#: 5 per class: scratch after 43-49 epochs, seeds 0-2)
CHEAP_CAP = 300

_LP_FT_96 = {"input_size": 96, "epochs": 8, "fine_tune_epochs": 3, "learning_rate": 1e-3,
             "fine_tune_learning_rate": 1e-4}
#: lp_ft under the budget rules, with caps that 96 px epochs can afford (measured: early stopping ended the head
#: after 41 and 38 epochs, the fine-tuning after 30 and 17, at 5 and 100 per class)
_LP_FT_96_BUDGET = dict(_LP_FT_96, epochs=50, fine_tune_epochs=30, **BUDGET)

STRATEGIES = Demo(
    name="strategies",
    tasks=("animal_mnist",),
    sizes=(5, 20, 100),
    seeds=(0, 1, 2),
    grids=(
        ({"backbones": ["small_cnn"], "strategies": ["scratch"]},
         {"input_size": 32, "epochs": CHEAP_CAP, "learning_rate": 1e-3, **BUDGET}),
        ({"backbones": ["efficientnet_lite0"], "weights": ["imagenet"], "strategies": ["frozen_features"]},
         {"input_size": 96, "epochs": CHEAP_CAP, "learning_rate": 1e-3, **BUDGET}),
        ({"backbones": ["efficientnet_lite0"], "weights": ["imagenet"], "strategies": ["lp_ft"]}, _LP_FT_96_BUDGET),
        ({"backbones": ["small_cnn"], "strategies": ["full_fine_tune"], "sources": ["animal_mnist:shuffled"]},
         {"input_size": 32, "fine_tune_epochs": CHEAP_CAP, "fine_tune_learning_rate": 1e-3, "pretrain_epochs": 5,
          **BUDGET}),
    ),
    minutes=11,  # timed as a whole with head phases on cached features and two workers (module docstring)
    question="Freeze, fine-tune or train from scratch?",
    # two workers: with the head phases on cached features the runs are short and small-batch, and one worker left
    # a core idle (a slice of the demo, sizes 5 and 20, seed 0: 179 s with one worker, 139 s with two)
    workers=2,
)

# Every pretrained source of the backbone demo, as (backbone, weights).
LADDER = (
    ("efficientnet_lite0", "imagenet"),
    ("efficientnet_lite1", "imagenet"),
    ("efficientnet_lite2", "imagenet"),
    ("mobilenetv2", "imagenet-torchvision"),
    ("densenet121", "medmnist"),
)
_FROZEN_96 = {"input_size": 96, "epochs": 40, "learning_rate": 1e-3}

BACKBONES = Demo(
    name="backbones",
    tasks=("animal_mnist", "elpv_solar"),
    sizes=(10, 50),
    seeds=(0, 1),
    grids=tuple(
        [({"backbones": [b], "weights": [w], "strategies": ["frozen_features"]}, _FROZEN_96) for b, w in LADDER]
        + [({"backbones": [b], "weights": [w], "strategies": ["lp_ft"], "seed_count": 1}, _LP_FT_96)
           for b, w in LADDER]
        + [({"backbones": ["efficientnet_lite0"], "weights": ["none"], "strategies": ["frozen_features"]}, _FROZEN_96),
           # The baseline of every gain trains from scratch and converges: the small CNN at 32 px, as in the
           # strategies demo (Lite0 from scratch at 96 px stayed at chance on 100-500 images in 30 epochs).
           ({"backbones": ["small_cnn"], "strategies": ["scratch"]},
            {"input_size": 32, "epochs": 30, "learning_rate": 1e-3})]
    ),
    minutes=33,
    question="Which backbone, on a near and a distant domain?",
    workers=2,
    flag="--backbones",
)

#: the quick demo's one size (labelled examples per class) and seed
QUICK_SIZE = 20
QUICK_SEED = 0
#: pixels of the two Lite0 configurations: the strategies demo's, so the findings compare (at 64 px Lite0 lost about
#: 0.08 of accuracy on seed 0, frozen 0.765 against 0.844, and lp_ft fell to scratch's 0.791), and the same for both,
#: so lp_ft's head phase trains on the frozen run's cached features (a fine-tuning epoch costs about its square)
QUICK_INPUT_SIZE = 96
#: epoch caps of the quick lp_ft: its head phase trains on cached features (cheap: 50 epochs took 6 s; early stopping
#: ends it first, as the frozen run's head stopped after 55 epochs); the fine-tuning runs the whole network every
#: epoch (about 6 s an epoch at 96 px), so its cap is what bounds the demo's time
QUICK_HEAD_EPOCHS = 100
QUICK_FINE_TUNE_EPOCHS = 3
#: the quick lp_ft's minimum optimizer steps per phase, in place of :data:`BUDGET`'s 50, which would raise the
#: fine-tuning cap (20 per class are about 7 steps an epoch); early stopping as in :data:`BUDGET`
QUICK_LP_FT_MIN_STEPS = 0
_QUICK_LP_FT = dict(_LP_FT_96, input_size=QUICK_INPUT_SIZE, epochs=QUICK_HEAD_EPOCHS,
                    fine_tune_epochs=QUICK_FINE_TUNE_EPOCHS, early_stopping=BUDGET["early_stopping"],
                    min_steps=QUICK_LP_FT_MIN_STEPS)

QUICK = Demo(
    name="quick",
    tasks=("animal_mnist",),
    sizes=(QUICK_SIZE,),
    seeds=(QUICK_SEED,),
    grids=(
        ({"backbones": ["small_cnn"], "strategies": ["scratch"]},
         {"input_size": 32, "epochs": CHEAP_CAP, "learning_rate": 1e-3, **BUDGET}),
        ({"backbones": ["efficientnet_lite0"], "weights": ["imagenet"], "strategies": ["frozen_features"]},
         {"input_size": QUICK_INPUT_SIZE, "epochs": CHEAP_CAP, "learning_rate": 1e-3, **BUDGET}),
        ({"backbones": ["efficientnet_lite0"], "weights": ["imagenet"], "strategies": ["lp_ft"]}, _QUICK_LP_FT),
    ),
    minutes=2,  # an upper bound: timed as a whole on 2 CPU cores in under one (see the module docstring)
    question="Freeze, fine-tune or train from scratch, at a glance?",
    flag="--quick",
    workers=2,  # lp_ft is most of it: the other two runs go beside it
)

# Quick first: the order in which the Home page offers them.
DEMOS = {demo.name: demo for demo in (QUICK, STRATEGIES, BACKBONES)}

# Kept for callers of the strategies demo's constants.
SIZES = list(STRATEGIES.sizes)
SEEDS = list(STRATEGIES.seeds)
TASK = STRATEGIES.tasks[0]
GRIDS = list(STRATEGIES.grids)


def demo_jobs(registry: Registry, sizes: list[int] | None = None, seeds: list[int] | None = None,
              which: str = "strategies", options: dict | None = None) -> list[JobSpec]:
    """Every job of the demo sweep ``which`` (pretrain jobs included), in a stable order.

    ``sizes`` and ``seeds`` replace the demo's own; a grid with a ``seed_count`` (the costly fine-tuning
    ones) runs only the first that many of them. ``options`` adds job options to every grid (e.g.
    ``mixed_precision``, ``xla``: ``benchmarks/gpu_demo.py``)."""
    if which not in DEMOS:
        raise UserError(f"Unknown demo {which!r}. Valid demos: {sorted(DEMOS)}")
    demo = DEMOS[which]
    jobs: dict[str, JobSpec] = {}
    for grid, grid_options in demo.grids:
        axes = {axis: values for axis, values in grid.items() if axis != "seed_count"}
        chosen = list(seeds or demo.seeds)[: grid.get("seed_count")]
        full = dict(axes, tasks=list(demo.tasks), examples_per_class=sizes or list(demo.sizes), seeds=chosen)
        for job in expand_grid(registry, full, {**grid_options, **(options or {})}):
            jobs.setdefault(job.job_id, job)
    pretrains = [j for j in jobs.values() if j.kind == "pretrain"]
    return pretrains + [j for j in jobs.values() if j.kind != "pretrain"]
