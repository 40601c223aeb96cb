"""Job specs, their stable ids, and sweeps (grids of jobs, from flags or a TOML file).

A job is (task x backbone x weights x strategy x labelled examples per class x seed x source) plus
hyper-parameters. Its id is a hash of its canonical JSON, with every default filled in, so the same
experiment always has the same id and a re-submitted sweep finds its finished runs.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from transferlab.errors import UnknownNameError, UserError
from transferlab.registry import Registry

KINDS = ("train", "pretrain")
#: job options added after the first release, with the default that keeps them out of job ids
_LATER_OPTIONS: dict[str, Any] = {"mixed_precision": False, "xla": False}


@dataclass(frozen=True)
class JobSpec:
    """One training run. Build it with :func:`make_job`, which validates and normalises it."""

    task: str
    backbone: str
    strategy: str
    weights: str = "none"
    examples_per_class: int | None = None
    fraction: float | None = None
    seed: int = 0
    input_size: int | None = None
    epochs: int = 10
    fine_tune_epochs: int = 5
    batch_size: int = 32
    learning_rate: float = 1e-3
    fine_tune_learning_rate: float = 1e-5
    fine_tune_layers: int = 20
    class_weight: str = "none"
    augment: bool = False
    source: str | None = None
    kind: str = "train"
    shuffled_labels: bool = False
    weights_sha256: str | None = None
    depends_on: tuple[str, ...] = ()
    mixed_precision: bool = False
    xla: bool = False

    def canonical(self) -> dict[str, Any]:
        """Every field, JSON-ready, keys sorted; options added later are left out while at their default,
        so the ids of jobs made before they existed stay the same."""
        data = dataclasses.asdict(self)
        data["depends_on"] = sorted(self.depends_on)
        for name, default in _LATER_OPTIONS.items():
            if data.get(name) == default:
                data.pop(name)
        return dict(sorted(data.items()))

    def canonical_json(self) -> str:
        """The canonical JSON text that the id hashes."""
        return json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))

    @property
    def job_id(self) -> str:
        """Stable id: the first 16 hex digits of the sha256 of the canonical JSON."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]

    @classmethod
    def from_json(cls, text: str) -> "JobSpec":
        """Rebuild a spec from :meth:`canonical_json`."""
        data = json.loads(text)
        data["depends_on"] = tuple(data.get("depends_on", ()))
        return cls(**data)

    def label(self) -> str:
        """A short human label: backbone/weights/strategy/size/seed."""
        size = f"{self.examples_per_class}pc" if self.examples_per_class else (f"{self.fraction:g}" if self.fraction else "all")
        weights = f"src={self.source}" if self.source else self.weights
        prefix = "pretrain " if self.kind == "pretrain" else ""
        return f"{prefix}{self.task}/{self.backbone}/{weights}/{self.strategy}/{size}/s{self.seed}"


_FIELDS = {f.name for f in dataclasses.fields(JobSpec)}
#: The options a task may set defaults for (everything but what names the job).
JOB_OPTIONS = _FIELDS - {"task", "backbone", "strategy", "kind", "weights_sha256", "depends_on"}


def _positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserError(f"{name} must be an integer >= {minimum}. Received: {name}={value!r}")
    return value


def _positive_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise UserError(f"{name} must be a positive number. Received: {name}={value!r}")
    return float(value)


def resolve_weights(registry: Registry, backbone: str, weights: str) -> tuple[str, str | None]:
    """Check a weight source for a backbone; return (normalised name, sha256 for a local file)."""
    from transferlab.safe_io import sha256_file

    spec = registry.backbone(backbone)
    if weights in ("none", None):
        return "none", None
    if weights.startswith("run:"):
        return weights, None
    if weights.endswith(".weights.h5") or weights.startswith("file:"):
        path = Path(weights.removeprefix("file:")).expanduser().resolve()
        if not path.is_file():
            raise UserError(f"Weights file {path} does not exist. Give a path to a Keras `.weights.h5` file.")
        if not path.name.endswith(".weights.h5"):
            raise UserError(f"Local weights must be a Keras `.weights.h5` file (weights only). Received: weights={weights!r}")
        return f"file:{path}", sha256_file(path)
    valid = ["none"] + [w.name for w in spec.weight_sources] + ["<path>.weights.h5"]
    if spec.weight_source(weights) is None:
        raise UnknownNameError(f"weight source for backbone {backbone!r}", weights, valid)
    return weights, None


def _alternatives(registry: Registry, strategy: Any) -> str:
    """The registered strategies like ``strategy`` (head-only phases) that run the frozen base inside the model."""
    names = [s.name for s in registry.select("strategy", cached_features=False, random_init=False)
             if len(s.phases) == len(strategy.phases) and not any(p.trains_base for p in s.phases)]
    return ", ".join(names) or "none is registered"


def make_job(registry: Registry, **fields: Any) -> JobSpec:
    """Validate and normalise a job: names exist, sizes make sense, defaults filled in.

    Unknown names list the valid ones; every problem is a :class:`UserError` with what to do.
    """
    unknown = sorted(set(fields) - _FIELDS)
    if unknown:
        raise UserError(f"Unknown job option(s) {unknown}. Valid options: {sorted(_FIELDS)}")
    for required in ("task", "backbone", "strategy"):
        if not fields.get(required):
            raise UserError(f"A job needs a {required}.")
    task = registry.task(fields["task"])
    backbone = registry.backbone(fields["backbone"])
    strategy = registry.strategy(fields["strategy"])
    if task.stub:
        try:
            task.load()  # a stub's loader says what is missing
        except UserError as exc:
            raise UserError(f"Task {task.name!r} is a stub and cannot run: {exc}") from None
        raise UserError(f"Task {task.name!r} is a stub and cannot run: {task.description}")
    if backbone.modality != task.modality:
        fitting = sorted(b.name for b in registry.backbones.values() if b.modality == task.modality)
        raise UserError(
            f"Task {task.name!r} takes {task.modality} and backbone {backbone.name!r} reads {backbone.modality}. "
            f"Backbones for {task.modality}: {', '.join(fitting) or '(none registered)'}."
        )
    # The task's defaults fill what the user left unset (e.g. a sequence length, a cap on examples).
    for name, value in task.job_defaults.items():
        if name == "examples_per_class" and fields.get("kind") == "pretrain":
            continue  # a source pretrains on its whole pool
        if fields.get(name) is not None or (name in ("examples_per_class", "fraction")
                                                and (fields.get("examples_per_class") or fields.get("fraction"))):
            continue
        if name == "augment" and strategy.cached_features:
            continue  # cached features cannot be augmented: the default does not apply to them
        fields = {**fields, name: value}
    head = task.task_head
    if strategy.cached_features and not head.supports_cached_features:
        raise UserError(
            f"Strategy {strategy.name!r} trains on cached pooled features, which task {task.name!r} ({head.kind}) "
            f"cannot use. For a frozen backbone use a strategy that freezes it inside the model: "
            f"{_alternatives(registry, strategy)}."
        )
    if fields.get("augment") and not head.supports_augment:
        raise UserError(f"Task {task.name!r} ({head.kind}) does not support augment; leave it off.")
    if fields.get("class_weight", "none") != "none" and not head.supports_class_weight:
        raise UserError(f"Task {task.name!r} ({head.kind}) does not support class weights; use class_weight='none'.")
    if fields.get("shuffled_labels") and head.kind != "classification":
        raise UserError(f"Task {task.name!r} ({head.kind}) has no labels to shuffle; use it as a plain source.")
    if fields.get("augment") and task.modality != "image":
        raise UserError(f"Task {task.name!r} takes {task.modality}; augment applies to images only.")
    kind = fields.get("kind", "train")
    if kind not in KINDS:
        raise UserError(f"kind must be one of {KINDS}. Received: kind={kind!r}")
    epc, fraction = fields.get("examples_per_class"), fields.get("fraction")
    if epc is not None and fraction is not None:
        raise UserError("Give examples_per_class or fraction, not both.")
    if epc is not None:
        _positive_int("examples_per_class", epc)
    if fraction is not None and not (isinstance(fraction, (int, float)) and 0 < fraction <= 1):
        raise UserError(f"fraction must be in (0, 1]. Received: fraction={fraction!r}")
    input_size = fields.get("input_size") or backbone.default_input_size
    _positive_int("input_size", input_size)
    if input_size < backbone.min_input_size:
        unit = "tokens" if backbone.modality == "text" else "px"
        raise UserError(
            f"Backbone {backbone.name!r} needs inputs of at least {backbone.min_input_size} {unit}. "
            f"Received: input_size={input_size}. Use --input-size {backbone.min_input_size} or more."
        )
    for name in ("epochs", "fine_tune_epochs", "batch_size", "fine_tune_layers"):
        if name in fields:
            _positive_int(name, fields[name])
    for name in ("learning_rate", "fine_tune_learning_rate"):
        if name in fields:
            _positive_float(name, fields[name])
    _positive_int("seed", fields.get("seed", 0), minimum=0)
    if fields.get("class_weight", "none") not in ("none", "balanced"):
        raise UserError(f"class_weight must be 'none' or 'balanced'. Received: class_weight={fields['class_weight']!r}")
    weights, sha = resolve_weights(registry, backbone.name, fields.get("weights") or "none")
    if strategy.random_init:
        weights, sha = "none", None
    if strategy.cached_features and fields.get("augment"):
        raise UserError(
            f"Strategy {strategy.name!r} trains on cached features, which cannot be augmented. "
            f"For augmentation with a frozen base use a strategy that freezes it inside the model: "
            f"{_alternatives(registry, strategy)}."
        )
    clean = dict(fields)
    # One type per field, so 1 and 1.0 (TOML, CLI) give the same job id.
    for name in ("learning_rate", "fine_tune_learning_rate", "fraction"):
        if clean.get(name) is not None:
            clean[name] = float(clean[name])
    for name in ("epochs", "fine_tune_epochs", "batch_size", "fine_tune_layers", "seed", "examples_per_class"):
        if clean.get(name) is not None:
            clean[name] = int(clean[name])
    clean.update(weights=weights, weights_sha256=sha, input_size=int(input_size), kind=kind)
    clean["depends_on"] = tuple(fields.get("depends_on", ()))
    return JobSpec(**clean)


# ---------------------------------------------------------------------------------------------- sweeps

AXES = ("tasks", "backbones", "weights", "strategies", "examples_per_class", "seeds", "sources")
SOURCE_PRETRAIN_EPOCHS = 5


def parse_source(registry: Registry, source: str) -> tuple[str, bool]:
    """``"digits"`` or ``"animal_mnist:shuffled"`` -> (source task, shuffled labels)."""
    task, _, modifier = source.partition(":")
    if modifier not in ("", "shuffled"):
        raise UserError(f"A source is TASK or TASK:shuffled. Received: source={source!r}")
    registry.task(task)
    return task, modifier == "shuffled"


def pretrain_job(registry: Registry, target: JobSpec, source: str, pretrain_epochs: int) -> JobSpec:
    """The job that pretrains ``target``'s backbone from random weights on the source task (all its pool),
    with the first registered strategy that declares random init."""
    task, shuffled = parse_source(registry, source)
    baselines = registry.select("strategy", random_init=True)
    if not baselines:
        raise UserError(f"Pretraining on source {source!r} needs a strategy that declares random_init=True, and none "
                        "is registered. Install or enable a plugin that provides one (the built-in strategies do).")
    return make_job(
        registry,
        kind="pretrain",
        task=task,
        backbone=target.backbone,
        strategy=baselines[0].name,
        seed=target.seed,
        input_size=target.input_size,
        epochs=pretrain_epochs,
        batch_size=target.batch_size,
        learning_rate=target.learning_rate,
        shuffled_labels=shuffled,
    )


def expand_grid(registry: Registry, grid: dict[str, Any], options: dict[str, Any] | None = None) -> list[JobSpec]:
    """All jobs of a sweep grid, pretrain jobs first, duplicates removed (in a stable order).

    ``grid`` maps the axes in :data:`AXES` to lists; ``options`` holds the hyper-parameters shared by
    every job. A source other than ``none`` adds a pretrain job per (backbone, seed) and makes the
    transfer job depend on it and start from its weights.
    """
    options = dict(options or {})
    pretrain_epochs = options.pop("pretrain_epochs", SOURCE_PRETRAIN_EPOCHS)
    unknown = sorted(set(grid) - set(AXES))
    if unknown:
        raise UserError(f"Unknown sweep axis {unknown}. Valid axes: {list(AXES)}")
    for axis, values in grid.items():
        if values is not None and not isinstance(values, (list, tuple)):
            raise UserError(f"Sweep axis {axis!r} must be a list, e.g. {axis} = [{values!r}]. Received: {axis}={values!r}")
    axes = {axis: list(grid.get(axis) or []) for axis in AXES}
    for axis in ("tasks", "backbones", "strategies"):
        if not axes[axis]:
            raise UserError(f"A sweep needs at least one entry in {axis!r}.")
    axes["weights"] = axes["weights"] or ["none"]
    axes["examples_per_class"] = axes["examples_per_class"] or [None]
    axes["seeds"] = axes["seeds"] or [0]
    axes["sources"] = axes["sources"] or ["none"]
    jobs: dict[str, JobSpec] = {}
    pretrains: dict[str, JobSpec] = {}
    for task, backbone, weights, strategy, epc, seed, source in itertools.product(*(axes[a] for a in AXES)):
        fields = dict(options, task=task, backbone=backbone, strategy=strategy, examples_per_class=epc, seed=seed)
        if source in (None, "none") or registry.strategy(strategy).random_init:
            # a random-init strategy has no use for a source: it runs as the plain job
            job = make_job(registry, weights=weights, **fields)
        else:
            base = make_job(registry, **fields)
            pre = pretrain_job(registry, base, source, pretrain_epochs)
            pretrains[pre.job_id] = pre
            job = make_job(registry, weights=f"run:{pre.job_id}", source=source, depends_on=(pre.job_id,), **fields)
        jobs.setdefault(job.job_id, job)
    return list(pretrains.values()) + list(jobs.values())


def load_sweep_file(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a sweep TOML file: a ``[grid]`` table of axes and an optional ``[options]`` table."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"Sweep file {path} does not exist.") from None
    except tomllib.TOMLDecodeError as exc:
        where = str(exc)
        if "line" not in where:  # e.g. "Unclosed array (at end of document)": point at the last line
            where += f" (line {len(path.read_text().splitlines())})"
        raise UserError(f"Sweep file {path} is not valid TOML: {where}. Fix that line and try again.") from None
    unknown = sorted(set(data) - {"grid", "options"})
    if unknown:
        raise UserError(f"Sweep file {path}: unknown table(s) {unknown}. Valid tables: ['grid', 'options']")
    options = data.get("options", {})
    bad = sorted(set(options) - (_FIELDS - {"task", "backbone", "strategy", "weights", "seed", "examples_per_class", "source", "kind", "depends_on", "weights_sha256"}) - {"pretrain_epochs"})
    if bad:
        raise UserError(f"Sweep file {path}: unknown option(s) {bad}.")
    return data.get("grid", {}), options


def jobs_by_id(jobs: Iterable[JobSpec]) -> dict[str, JobSpec]:
    """Index jobs by id."""
    return {j.job_id: j for j in jobs}
