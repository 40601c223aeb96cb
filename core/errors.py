"""Typed errors. Every error a user can cause carries a message that says what to do."""
from __future__ import annotations


class TransferlabError(Exception):
    """Base class of every error transferlab raises on purpose."""


class UserError(TransferlabError):
    """Bad input from the user (CLI exit status 2, an error box in the UI)."""


def _pluralise(noun: str) -> str:
    if noun.endswith("y") and noun[-2:-1] not in tuple("aeiou"):
        return noun[:-1] + "ies"
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    return noun + "s"


class UnknownNameError(UserError):
    """A task, backbone, strategy or weight source that is not registered.

    ``kind`` may carry a qualifier: ``weight source for backbone 'x'`` reads
    "Unknown weight source 'y' for backbone 'x'. Valid weight sources for backbone 'x': ...".
    """

    def __init__(self, kind: str, name: str, valid: list[str] | tuple[str, ...]):
        self.kind, self.name, self.valid = kind, name, list(valid)
        noun, sep, qualifier = kind.partition(" for ")
        where = sep + qualifier
        super().__init__(
            f"Unknown {noun} {name!r}{where}. Valid {_pluralise(noun)}{where}: "
            f"{', '.join(sorted(self.valid)) or '(none registered)'}."
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
