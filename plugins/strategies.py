"""Built-in training strategies: scratch, frozen feature extraction (in-model or on cached features),
fine-tune the top k layers, full fine-tune, and head-then-fine-tune (linear probe, then everything)."""
from __future__ import annotations

from transferlab import PhaseSpec, StrategySpec, hookimpl

HEAD = PhaseSpec("head", train="head", stage="head")


@hookimpl
def register_strategies() -> list[StrategySpec]:
    """The five strategies of the transfer-learning playbook, plus cached-feature extraction."""
    return [
        StrategySpec(
            name="scratch",
            label="scratch",
            description="Random init; every layer trains, BatchNorm statistics update.",
            phases=(PhaseSpec("train", train="all", stage="head"),),
            random_init=True,
            batchnorm="train",
        ),
        StrategySpec(
            name="feature_extraction",
            label="frozen base",
            description="Frozen base called with training=False inside the model; only the new head trains.",
            phases=(HEAD,),
        ),
        StrategySpec(
            name="frozen_features",
            label="frozen (cached features)",
            description="The frozen base runs once per image; its features are cached and the head trains on them.",
            phases=(HEAD,),
            cached_features=True,
        ),
        StrategySpec(
            name="fine_tune_top_k",
            label="fine-tune top k",
            description="Train the head, then unfreeze the top `fine_tune_layers` layers of the base at "
            "`fine_tune_learning_rate`; BatchNorm stays in inference mode.",
            phases=(HEAD, PhaseSpec("fine_tune", train="top", stage="fine_tune")),
        ),
        StrategySpec(
            name="full_fine_tune",
            label="full fine-tune",
            description="Start from pretrained weights and train every layer at once at `fine_tune_learning_rate`; "
            "BatchNorm stays in inference mode.",
            phases=(PhaseSpec("fine_tune", train="all", stage="fine_tune"),),
        ),
        StrategySpec(
            name="lp_ft",
            label="head-then-fine-tune",
            description="Linear probe (head only), then fine-tune every layer at `fine_tune_learning_rate`; "
            "BatchNorm stays in inference mode.",
            phases=(HEAD, PhaseSpec("fine_tune", train="all", stage="fine_tune")),
        ),
    ]
