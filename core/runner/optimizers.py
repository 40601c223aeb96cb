"""Optimizers with a learning rate per variable group (layer-wise learning-rate decay).

Keras 3 has no per-variable learning rates (keras-team/keras#21741). Scaling gradients instead is exact
only for plain SGD: Adam divides the gradient by its own running RMS, so a scaled gradient gives the same
step. Here the optimizer's own ``update_step`` receives the learning rate times the variable's scale, so
each variable moves exactly as it would under a separate optimizer with that rate (for Adam, AdamW and
SGD alike), with one set of slots and one compiled step. AdamW's decoupled weight decay uses the same
scaled rate, as PyTorch's per-group AdamW does.
"""
from __future__ import annotations

from typing import Any


def make_optimizer(name: str, learning_rate: float, scales: dict[str, float] | None = None,
                   weight_decay: float | None = None) -> Any:
    """A Keras optimizer ``name`` (``adam``, ``adamw``, ``sgd``) at ``learning_rate``.

    ``scales`` maps variable paths to a multiplier of the rate (missing paths: 1). With no scales the
    stock Keras optimizer is returned.
    """
    import keras

    classes = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW, "sgd": keras.optimizers.SGD}
    if name not in classes:
        raise ValueError(f"Unknown optimizer. Expected one of {sorted(classes)}. Received: name={name!r}")
    kwargs: dict[str, Any] = {"learning_rate": learning_rate}
    if name == "adamw" and weight_decay is not None:
        kwargs["weight_decay"] = weight_decay
    if not scales or all(s == 1 for s in scales.values()):
        return classes[name](**kwargs)
    return _per_variable_class(classes[name])(scales=dict(scales), **kwargs)


_CLASSES: dict[type, type] = {}


def _per_variable_class(base: type) -> type:
    """``base`` with per-variable learning-rate scales (one subclass per optimizer class)."""
    if base in _CLASSES:
        return _CLASSES[base]
    from keras import ops

    class PerVariableRate(base):  # type: ignore[misc, valid-type]
        """``base`` where each variable's step uses ``learning_rate * scales[variable.path]``."""

        def __init__(self, scales: dict[str, float], **kwargs: Any):
            super().__init__(**kwargs)
            self._scales_by_path = scales
            self._scale_of_index: list[float] = []

        def build(self, variables):
            super().build(variables)
            self._scale_of_index = [float(self._scales_by_path.get(v.path, 1.0)) for v in variables]

        def _scale(self, variable) -> float:
            return self._scale_of_index[self._get_variable_index(variable)]

        def update_step(self, gradient, variable, learning_rate):
            scale = self._scale(variable)
            super().update_step(gradient, variable, learning_rate if scale == 1.0 else learning_rate * scale)

        def _apply_weight_decay(self, variables):
            if self.weight_decay is None:
                return
            for variable in variables:
                if self._use_weight_decay(variable):
                    lr = ops.cast(self.learning_rate, variable.dtype) * self._scale(variable)
                    wd = ops.cast(self.weight_decay, variable.dtype)
                    variable.assign(variable - variable * wd * lr)

        def get_config(self):
            return {**super().get_config(), "scales": dict(self._scales_by_path)}

    PerVariableRate.__name__ = f"PerVariableRate{base.__name__}"
    _CLASSES[base] = PerVariableRate
    return PerVariableRate
