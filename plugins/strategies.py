"""Built-in training strategies, each written only with the public PhaseSpec data: scratch, frozen feature
extraction (in-model or on cached features), fine-tune the top k layers, full fine-tune, head-then-fine-tune
(linear probe, then everything), discriminative learning rates and gradual unfreezing."""
from __future__ import annotations

from transferlab import PhaseSpec, StrategySpec, hookimpl

HEAD = PhaseSpec("head", train="head", epochs="epochs", learning_rate="learning_rate")


def fine_tune(name: str = "fine_tune", train="all", **fields) -> PhaseSpec:
    """A phase at the job's fine-tune epochs and learning rate (unless ``fields`` set them)."""
    fields = {"epochs": "fine_tune_epochs", "learning_rate": "fine_tune_learning_rate", **fields}
    return PhaseSpec(name, train=train, **fields)


#: layer-wise decay per unit with weights: over MobileNetV2's ~52 trainable conv layers the bottom one trains
#: at ~7 % of the top one's rate (0.95**52); over a 6-layer transformer at ~77 %.
DISCRIMINATIVE_DECAY = 0.95
#: how many one-epoch phases gradual unfreezing adds before everything trains
GRADUAL_STEPS = 3


@hookimpl
def register_strategies() -> list[StrategySpec]:
    """The strategies of the transfer-learning playbook, plus cached-feature extraction."""
    return [
        StrategySpec(
            name="scratch",
            label="scratch",
            description="Random init; every layer trains, BatchNorm statistics update. The baseline of every gain.",
            phases=(PhaseSpec("train", train="all"),),
            random_init=True,
            batchnorm="train",
        ),
        StrategySpec(
            name="feature_extraction",
            label="frozen base",
            description="Frozen base called with training=False inside the model; only the new head trains, on "
            "features scaled to unit RMS over the training subset.",
            phases=(HEAD,),
        ),
        StrategySpec(
            name="frozen_features",
            label="frozen (cached features)",
            description="The frozen base runs once per image; its features are cached and the head trains on them, "
            "scaled to unit RMS over the training subset.",
            phases=(HEAD,),
            cached_features=True,
        ),
        StrategySpec(
            name="fine_tune_top_k",
            label="fine-tune top k",
            description="Train the head, then unfreeze the top `fine_tune_layers` layers of the base at "
            "`fine_tune_learning_rate`; BatchNorm stays in inference mode.",
            phases=(HEAD, fine_tune(train="top")),
        ),
        StrategySpec(
            name="full_fine_tune",
            label="full fine-tune",
            description="Start from pretrained weights and train every layer at once at `fine_tune_learning_rate`; "
            "BatchNorm stays in inference mode.",
            phases=(fine_tune(),),
        ),
        StrategySpec(
            name="lp_ft",
            label="head-then-fine-tune",
            description="Linear probe (head only), then fine-tune every layer at `fine_tune_learning_rate`; "
            "BatchNorm stays in inference mode.",
            phases=(HEAD, fine_tune()),
        ),
        StrategySpec(
            name="discriminative_lr",
            label="discriminative LR",
            description=f"Train the head, then every layer with layer-wise learning-rate decay (fastai/ULMFiT): "
            f"the top layer at `fine_tune_learning_rate`, each layer with weights below it at {DISCRIMINATIVE_DECAY} "
            "times the one above; BatchNorm stays in inference mode. Same budget as lp_ft.",
            phases=(HEAD, fine_tune(lr_decay=DISCRIMINATIVE_DECAY)),
        ),
        StrategySpec(
            name="gradual_unfreeze",
            label="gradual unfreeze",
            description=f"Train the head, then unfreeze one more layer with weights per one-epoch phase "
            f"(top 1, top 2, ... top {GRADUAL_STEPS}), then every layer for `fine_tune_epochs`, recompiling each "
            f"time at `fine_tune_learning_rate`; BatchNorm stays in inference mode. {GRADUAL_STEPS} epochs more "
            "than lp_ft.",
            phases=(HEAD,
                    *(fine_tune(f"unfreeze_top_{k}", train=k, epochs=1) for k in range(1, GRADUAL_STEPS + 1)),
                    fine_tune()),
        ),
    ]
