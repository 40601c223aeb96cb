"""Typed errors. Every error a user can cause carries a message that says what to do."""
from __future__ import annotations


class TransferlabError(Exception):
    """Base class of every error transferlab raises on purpose."""


class UserError(TransferlabError):
    """Bad input from the user (CLI exit status 2, an error box in the UI)."""


class UnknownNameError(UserError):
    """A task, backbone, strategy or weight source that is not registered."""

    def __init__(self, kind: str, name: str, valid: list[str] | tuple[str, ...]):
        self.kind, self.name, self.valid = kind, name, list(valid)
        super().__init__(
            f"Unknown {kind} {name!r}. Valid {kind}s: {', '.join(sorted(self.valid)) or '(none registered)'}."
        )


class SpecError(TransferlabError, ValueError):
    """A plugin returned a spec that does not validate."""


class PluginError(TransferlabError):
    """A plugin failed to load or a hook failed (raised only in strict mode)."""


class DatasetUnavailableError(UserError):
    """A dataset cannot be loaded here; the message says how to get it."""


class WeightsError(UserError):
    """Weights that cannot be loaded: offline download, wrong hash, wrong architecture."""


class FreezeViolationError(TransferlabError):
    """After a phase, weights that should be frozen changed, or trainable ones did not."""


class NaNLossError(TransferlabError):
    """The loss or the weights became NaN or infinite."""


class StoreError(UserError):
    """The run store cannot be opened or written."""
