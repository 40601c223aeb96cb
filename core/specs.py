"""The frozen dataclasses that plugins return from their hooks.

Each spec validates itself when it is created, with messages in the Keras manner: what was expected,
then ``Received: name=value``. Core attributes every spec to the plugin that returned it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from transferlab.errors import SpecError

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")


def _check_name(kind: str, name: Any) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise SpecError(
            f"A {kind} name must be a lower-case identifier (letters, digits, '_', '-', '.'). "
            f"Received: name={name!r}"
        )


def _check_callable(kind: str, name: str, attr: str, value: Any, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not callable(value):
        raise SpecError(f"{kind} {name!r}: `{attr}` must be callable. Received: {attr}={value!r}")


def _check_distributions(kind: str, name: str, value: Any) -> None:
    if not isinstance(value, tuple) or not all(isinstance(d, str) and d for d in value):
        raise SpecError(f"{kind} {name!r}: distributions must be a tuple of package names. Received: distributions={value!r}")


MODALITIES = ("image", "text")


def _check_modality(kind: str, name: str, modality: Any) -> None:
    if modality not in MODALITIES:
        raise SpecError(f"{kind} {name!r}: modality must be one of {MODALITIES}. Received: modality={modality!r}")


@dataclass(frozen=True)
class WeightSourceSpec:
    """A named set of pretrained weights a backbone can start from (e.g. ``imagenet``).

    ``available`` answers, without network access, whether the weights can be loaded right now on this
    machine (bundled in an installed package, or already in the Keras cache). ``pretrained_on`` names
    the source task, shown in negative-transfer comparisons. ``sha256`` pins the source file, when
    the plugin knows it; it is recorded in every run's manifest, with the versions of
    ``distributions`` (the installed packages whose files the weights come from). ``imagenet_top1`` is the
    published ImageNet top-1 of this very checkpoint (a fraction), where it differs from the backbone's
    (e.g. torchvision's MobileNetV2 weights against Keras's); None falls back to the backbone's figure.
    """

    name: str
    description: str
    pretrained_on: str
    available: Callable[[], bool] = lambda: True
    sha256: str | None = None
    distributions: tuple[str, ...] = ()
    imagenet_top1: float | None = None

    def __post_init__(self) -> None:
        _check_name("weight source", self.name)
        if self.imagenet_top1 is not None and not 0 < self.imagenet_top1 <= 1:
            raise SpecError(f"Weight source {self.name!r}: imagenet_top1 is a fraction in (0, 1]. "
                            f"Received: imagenet_top1={self.imagenet_top1!r}")
        _check_distributions("Weight source", self.name, self.distributions)
        if self.name in ("none",) or self.name.startswith(("run:", "file:")):
            raise SpecError(f"Weight source names 'none', 'run:*' and 'file:*' are reserved. Received: name={self.name!r}")
        _check_callable("Weight source", self.name, "available", self.available)


@dataclass(frozen=True)
class BackboneSpec:
    """A feature extractor that tasks put a head on.

    ``build(input_shape, weights)`` returns a ``keras.Model`` mapping preprocessed images of
    ``input_shape`` to a pooled feature vector; ``weights`` is ``None`` (random init) or the name of one
    of ``weight_sources``. ``preprocess`` maps float images in [0, 255] to the backbone's input scale
    and must work on TensorFlow tensors; ``preprocessing`` names it (part of feature-cache keys).
    The builder imports Keras itself, so registering a backbone never imports TensorFlow.

    ``modality`` is ``image`` or ``text``. A text backbone's ``build((sequence_length,), weights)``
    returns a model taking a dict of int32 token arrays, and ``tokenize(texts, sequence_length)`` returns
    that dict (numpy) for a list of strings; its input sizes count tokens instead of pixels.
    ``blocks(model)``, when given, lists the units that ``fine_tune_layers`` counts from the top (for a
    transformer: its encoder layers); by default they are ``model.layers``. ``distributions`` names the
    installed packages the backbone needs beyond TensorFlow and Keras (e.g. ``keras-hub``); their versions
    are recorded in every run's manifest.
    """

    name: str
    build: Callable[..., Any]
    preprocess: Callable[[Any], Any]
    preprocessing: str
    min_input_size: int = 32
    default_input_size: int = 224
    weight_sources: tuple[WeightSourceSpec, ...] = ()
    imagenet_top1: float | None = None
    published_params: int | None = None
    family: str = ""
    description: str = ""
    modality: str = "image"
    tokenize: Callable[[list[str], int], dict[str, Any]] | None = None
    blocks: Callable[[Any], list[Any]] | None = None
    distributions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_name("backbone", self.name)
        _check_distributions("Backbone", self.name, self.distributions)
        _check_callable("Backbone", self.name, "build", self.build)
        _check_callable("Backbone", self.name, "preprocess", self.preprocess)
        _check_modality("Backbone", self.name, self.modality)
        _check_callable("Backbone", self.name, "blocks", self.blocks, optional=True)
        _check_callable("Backbone", self.name, "tokenize", self.tokenize, optional=self.modality != "text")
        if not isinstance(self.min_input_size, int) or self.min_input_size < 1:
            raise SpecError(
                f"Backbone {self.name!r}: min_input_size must be a positive int. Received: min_input_size={self.min_input_size!r}"
            )
        if not isinstance(self.default_input_size, int) or self.default_input_size < self.min_input_size:
            raise SpecError(
                f"Backbone {self.name!r}: default_input_size must be an int >= min_input_size ({self.min_input_size}). "
                f"Received: default_input_size={self.default_input_size!r}"
            )
        if not isinstance(self.weight_sources, tuple) or not all(
            isinstance(w, WeightSourceSpec) for w in self.weight_sources
        ):
            raise SpecError(
                f"Backbone {self.name!r}: weight_sources must be a tuple of WeightSourceSpec. "
                f"Received: weight_sources={self.weight_sources!r}"
            )
        if self.imagenet_top1 is not None and not 0 < self.imagenet_top1 <= 1:
            raise SpecError(
                f"Backbone {self.name!r}: imagenet_top1 is a fraction in (0, 1]. Received: imagenet_top1={self.imagenet_top1!r}"
            )

    def weight_source(self, name: str) -> WeightSourceSpec | None:
        """The weight source called ``name``, or None."""
        return next((w for w in self.weight_sources if w.name == name), None)


@dataclass(frozen=True)
class TaskSpec:
    """A labelled task: image classification by default.

    ``load()`` returns a :class:`transferlab.data.TaskData` (images or texts, integer labels, class
    names, optionally an official test split) or raises :class:`DatasetUnavailableError` with a message
    that says how to get the data. ``available()`` answers cheaply whether ``load`` will work offline.
    A ``stub`` task is listed but refuses to run.

    ``head`` is a :class:`transferlab.heads.TaskHead` (what goes on the backbone, the loss, the metrics
    and the scoring); ``None`` means the classification head. ``modality`` says which backbones fit.
    ``job_defaults`` fills job options the user did not set (e.g. a sequence length or a cap on
    labelled examples that keeps one run to minutes); ``default_backbone`` is preselected in the
    dashboard. ``num_classes`` may be None when the data decides (a folder of class folders).
    ``distributions`` names the installed packages whose files the data comes from; their versions are
    recorded in every run's manifest.

    ``fingerprint()``, when given, returns the *data version* of what ``load()`` would read now: a short
    content hash of its files (see :mod:`transferlab.fingerprints` for the public helpers), or None when it
    cannot tell (the data downloads on first use). It is part of every job id and feature-cache key, so runs
    of changed data are never reused; the runner refuses a job whose data changed since it was queued.
    Leave it None for data pinned otherwise (a package version, a sha256-checked download). ``data`` is set by
    core on the tasks it makes from ``--data`` (the location, e.g. ``folder:/abs/path``); plugins leave it None.
    """

    name: str
    description: str
    load: Callable[[], Any]
    num_classes: int | None
    available: Callable[[], bool] = lambda: True
    kind: str = "image_classification"
    stub: bool = False
    metric: str = "accuracy"
    modality: str = "image"
    head: Any = None
    default_backbone: str | None = None
    job_defaults: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    distributions: tuple[str, ...] = ()
    fingerprint: Callable[[], str | None] | None = field(default=None, hash=False, compare=False)
    data: str | None = None

    def __post_init__(self) -> None:
        _check_name("task", self.name)
        _check_distributions("Task", self.name, self.distributions)
        _check_callable("Task", self.name, "load", self.load)
        _check_callable("Task", self.name, "available", self.available)
        _check_callable("Task", self.name, "fingerprint", self.fingerprint, optional=True)
        if self.data is not None and (not isinstance(self.data, str) or not self.data):
            raise SpecError(f"Task {self.name!r}: data is a location string or None. Received: data={self.data!r}")
        _check_modality("Task", self.name, self.modality)
        if self.num_classes is not None and (isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int)
                                             or self.num_classes < 2):
            raise SpecError(
                f"Task {self.name!r}: num_classes must be an int >= 2, or None when the data decides. "
                f"Received: num_classes={self.num_classes!r}"
            )
        if not isinstance(self.job_defaults, dict):
            raise SpecError(f"Task {self.name!r}: job_defaults must be a dict. Received: job_defaults={self.job_defaults!r}")
        from transferlab.jobs import JOB_OPTIONS

        unknown = sorted(set(self.job_defaults) - JOB_OPTIONS)
        if unknown:
            raise SpecError(
                f"Task {self.name!r}: job_defaults sets unknown job option(s) {unknown}. Valid options: "
                f"{sorted(JOB_OPTIONS)}. Received: job_defaults={self.job_defaults!r}"
            )
        if self.head is not None:
            from transferlab.heads import TaskHead

            if not isinstance(self.head, TaskHead):
                raise SpecError(
                    f"Task {self.name!r}: head must be a transferlab.heads.TaskHead. Received: head={self.head!r}"
                )

    @property
    def task_head(self) -> Any:
        """The task's head, the classification head when it names none."""
        from transferlab.heads import ClassificationHead

        return self.head if self.head is not None else ClassificationHead()


TRAIN_WHAT = ("head", "top", "all")
#: job fields a phase may take its epochs / learning rate from
EPOCH_FIELDS = ("epochs", "fine_tune_epochs")
LEARNING_RATE_FIELDS = ("learning_rate", "fine_tune_learning_rate")
OPTIMIZERS = ("adam", "adamw", "sgd")
BATCHNORM_MODES = ("inference", "train")


@dataclass(frozen=True)
class PhaseSpec:
    """One phase of a strategy, as plain data: what trains, for how long, at which learning rates.

    ``train`` says which units of the base train with the head (the base's units are
    ``BackboneSpec.blocks(base)`` when the backbone names them, else its layers):

    - ``"head"``: the base is frozen; ``"all"``: every unit trains;
    - ``"top"``: the top ``fine_tune_layers`` units (the job's option; weightless layers count, as
      ``fine_tune_top_k`` always has);
    - an int ``k``: the top ``k`` units that hold weights (``1`` is the last layer with weights);
    - a callable ``train(units) -> units``: any selection over the base's units.

    ``epochs`` is an int, or the job field it comes from (``epochs`` or ``fine_tune_epochs``).
    ``learning_rate`` is a float, or the job field it comes from (``learning_rate`` or
    ``fine_tune_learning_rate``), multiplied by ``lr_scale``. ``lr_decay`` is layer-wise learning-rate
    decay: the top training unit gets the phase's rate, and each training unit below it ``lr_decay``
    times the rate of the one above (units with nothing to train take no step); the head gets the
    phase's rate. ``batchnorm`` overrides the strategy's BatchNorm mode for this phase (``None``: the
    strategy's). ``optimizer`` is ``adam``, ``adamw`` (with ``weight_decay``) or ``sgd``; per-unit rates
    are exact for each (see :mod:`transferlab.runner.optimizers`).
    """

    name: str
    train: Any = "head"
    epochs: int | str = "epochs"
    learning_rate: float | str = "learning_rate"
    lr_scale: float = 1.0
    lr_decay: float = 1.0
    batchnorm: str | None = None
    optimizer: str = "adam"
    weight_decay: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SpecError(f"A phase needs a non-empty name. Received: name={self.name!r}")
        train_ok = (self.train in TRAIN_WHAT if isinstance(self.train, str)
                    else callable(self.train) or (isinstance(self.train, int) and not isinstance(self.train, bool)
                                                  and self.train >= 1))
        if not train_ok:
            raise SpecError(f"Phase {self.name!r}: train must be one of {TRAIN_WHAT}, an int >= 1 (top k units with "
                            f"weights) or a callable over the base's units. Received: train={self.train!r}")
        if not (self.epochs in EPOCH_FIELDS if isinstance(self.epochs, str)
                else isinstance(self.epochs, int) and not isinstance(self.epochs, bool) and self.epochs >= 1):
            raise SpecError(f"Phase {self.name!r}: epochs must be an int >= 1 or one of the job fields {EPOCH_FIELDS}. "
                            f"Received: epochs={self.epochs!r}")
        if not (self.learning_rate in LEARNING_RATE_FIELDS if isinstance(self.learning_rate, str)
                else _positive_number(self.learning_rate)):
            raise SpecError(f"Phase {self.name!r}: learning_rate must be a positive number or one of the job fields "
                            f"{LEARNING_RATE_FIELDS}. Received: learning_rate={self.learning_rate!r}")
        if not _positive_number(self.lr_scale):
            raise SpecError(f"Phase {self.name!r}: lr_scale must be a positive number. Received: lr_scale={self.lr_scale!r}")
        if not _positive_number(self.lr_decay) or self.lr_decay > 1:
            raise SpecError(f"Phase {self.name!r}: lr_decay must be in (0, 1]. Received: lr_decay={self.lr_decay!r}")
        if self.batchnorm is not None and self.batchnorm not in BATCHNORM_MODES:
            raise SpecError(f"Phase {self.name!r}: batchnorm must be None (the strategy's), 'inference' or 'train'. "
                            f"Received: batchnorm={self.batchnorm!r}")
        if self.optimizer not in OPTIMIZERS:
            raise SpecError(f"Phase {self.name!r}: optimizer must be one of {OPTIMIZERS}. "
                            f"Received: optimizer={self.optimizer!r}")
        if self.weight_decay is not None and (self.optimizer != "adamw" or not _positive_number(self.weight_decay)):
            raise SpecError(f"Phase {self.name!r}: weight_decay is a positive number, for optimizer='adamw' only. "
                            f"Received: weight_decay={self.weight_decay!r}, optimizer={self.optimizer!r}")

    @property
    def trains_base(self) -> bool:
        """Whether any unit of the base trains in this phase."""
        return not (isinstance(self.train, str) and self.train == "head")

    def resolved_epochs(self, job: Any) -> int:
        """The phase's epochs for ``job`` (a number, or the job field it names)."""
        return int(getattr(job, self.epochs)) if isinstance(self.epochs, str) else self.epochs

    def resolved_learning_rate(self, job: Any) -> float:
        """The phase's learning rate for ``job``: a number, or the job field it names, times ``lr_scale``."""
        base = getattr(job, self.learning_rate) if isinstance(self.learning_rate, str) else self.learning_rate
        return float(base) * self.lr_scale

    def describe(self) -> str:
        """A short text of the phase, e.g. ``fine_tune(all, fine_tune_epochs, fine_tune_learning_rate, decay 0.95)``."""
        train = getattr(self.train, "__name__", "callable") if callable(self.train) else (
            f"top {self.train} units" if isinstance(self.train, int) else self.train)
        lr = self.learning_rate if isinstance(self.learning_rate, str) else f"lr {self.learning_rate:g}"
        parts = [train, str(self.epochs) + ("" if isinstance(self.epochs, str) else " ep"),
                 lr + (f" x{self.lr_scale:g}" if self.lr_scale != 1 else "")]
        if self.lr_decay != 1:
            parts.append(f"decay {self.lr_decay:g}")
        if self.batchnorm:
            parts.append(f"BN {self.batchnorm}")
        if self.optimizer != "adam":
            parts.append(self.optimizer)
        return f"{self.name}({', '.join(parts)})"


def _positive_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and value > 0


@dataclass(frozen=True)
class StrategySpec:
    """How a backbone is trained on a task: a list of phases.

    ``random_init``: the backbone always starts from random weights (jobs are normalised to
    ``weights="none"``). ``batchnorm``: ``inference`` calls the base with ``training=False`` so
    BatchNorm statistics stay frozen (the Keras transfer-learning guide); ``train`` updates them.
    ``cached_features``: the base runs once per image and the head trains on stored features.
    A strategy with ``random_init`` is the baseline every gain is measured against.
    """

    name: str
    description: str
    phases: tuple[PhaseSpec, ...]
    random_init: bool = False
    batchnorm: str = "inference"
    cached_features: bool = False
    label: str = ""
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        _check_name("strategy", self.name)
        if not isinstance(self.phases, tuple) or not self.phases or not all(isinstance(p, PhaseSpec) for p in self.phases):
            raise SpecError(
                f"Strategy {self.name!r}: phases must be a non-empty tuple of PhaseSpec. Received: phases={self.phases!r}"
            )
        if self.batchnorm not in ("inference", "train"):
            raise SpecError(
                f"Strategy {self.name!r}: batchnorm must be 'inference' or 'train'. Received: batchnorm={self.batchnorm!r}"
            )
        if self.cached_features and (any(p.trains_base for p in self.phases) or len(self.phases) != 1):
            raise SpecError(
                f"Strategy {self.name!r}: cached_features takes one phase that trains the head alone. "
                f"Received: phases={[p.train for p in self.phases]!r}"
            )
        if self.cached_features and any(p.lr_decay != 1 or p.batchnorm for p in self.phases):
            raise SpecError(f"Strategy {self.name!r}: a cached-features phase has no base to decay rates over or "
                            "BatchNorm to run.")

    def batchnorm_of(self, phase: PhaseSpec) -> str:
        """The BatchNorm mode of ``phase``: its own, else the strategy's."""
        return phase.batchnorm or self.batchnorm

    @property
    def batchnorm_always_inference(self) -> bool:
        """Whether every phase keeps BatchNorm in inference mode (the base is then called with training=False)."""
        return all(self.batchnorm_of(p) == "inference" for p in self.phases)
