"""Job specs, their stable ids, and the range of every job field. Sweeps (grids of jobs) are
:mod:`transferlab.sweeps`.

A job is (task x backbone x weights x strategy x labelled examples per class x seed x source) plus
hyper-parameters. Its id is a hash of its canonical JSON, with every default filled in, so the same
experiment always has the same id and a re-submitted sweep finds its finished runs.

Every field's range is checked here, in :func:`check_field` (the table :data:`FIELD_RANGES`) and, for
what depends on the backbone (input size, memory), in :func:`make_job`, before anything is queued. A
field out of range raises :class:`JobFieldError`, which callers re-word with their own name for the
field: ``--input-size`` on the command line, ``input_size`` in a sweep file.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from transferlab.errors import UnknownNameError, UserError
from transferlab.registry import Registry

KINDS = ("train", "pretrain")
#: job options added after the first release, with the default that keeps them out of job ids
_LATER_OPTIONS: dict[str, Any] = {"mixed_precision": False, "xla": False, "data": None, "data_version": None,
                                  "keep_model": False}
#: stored with a job but not part of its id: where its data lies (the content is ``data_version``, in the id),
#: and whether to keep its trained model (the same experiment, whether its weights are kept or not)
_NOT_IN_ID = ("data", "keep_model")
#: the step budget (transferlab.runner.budget), off by default so the ids of older jobs stay
_LATER_OPTIONS.update(min_steps=0, early_stopping=0)
#: the largest whole number a job field may hold: the store's Integer columns are 32-bit on PostgreSQL
INT_MAX = 2**31 - 1
#: Activation memory a training step keeps per input pixel of each image, in bytes: a LOW estimate, so
#: that what it refuses surely does not fit. Summing the layer outputs of the built-in image backbones at
#: 96 px gives 150 float32 values per input pixel for the small CNN (the lightest) and 250-1000 for the
#: ImageNet backbones (DenseNet121 the most); backpropagation keeps them with their gradients, so the
#: small CNN needs about 150 x 4 B x 2 = 1.2 KiB per pixel and the others 2-8 KiB.
ACTIVATION_BYTES_PER_PIXEL = 1024


class JobFieldError(UserError):
    """A job field out of its range. ``field`` names it; :meth:`render` words the message with the
    caller's name for each field (``--input-size`` on the command line), ``str()`` with the field names.

    ``text`` and ``advice`` hold ``{field}`` placeholders wherever a field is named; values are never
    formatted into them.
    """

    def __init__(self, field: str, value: Any, text: str, advice: str = "", received: bool = True):
        self.field, self.value, self.text, self.advice, self.received = field, value, text, advice, received
        super().__init__(self.render())

    def render(self, names: Mapping[str, str] | None = None) -> str:
        """The message with each field called as ``names`` says (a field it lacks keeps its own name):
        what was expected, ``Received: name=value``, then what to do."""
        called = _Names(names or {})
        message = self.text.format_map(called)
        if self.received:
            message += f" Received: {called[self.field]}={self.value!r}."
        return message + (" " + self.advice.format_map(called) if self.advice else "")


def literal(text: Any) -> str:
    """``text`` for a :class:`JobFieldError` template, its braces kept as they are (a path may hold them)."""
    return str(text).replace("{", "{{").replace("}", "}}")


class _Names(dict):
    def __missing__(self, key: str) -> str:
        return key


def flag_names(fields: Iterable[str] | None = None) -> dict[str, str]:
    """``field -> --flag`` for the command line: ``input_size -> --input-size``; by default for every job
    field and the run options (``workers``, ``executor``, ``pretrain_epochs``)."""
    if fields is None:
        fields = _FIELDS | {"workers", "executor", "pretrain_epochs"}
    return {name: "--" + name.replace("_", "-") for name in fields}


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
    min_steps: int = 0
    early_stopping: int = 0
    data: str | None = None
    data_version: str | None = None
    keep_model: bool = False

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
        """The canonical JSON text, as stored with the run (``data``, the location, included)."""
        return json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))

    @property
    def job_id(self) -> str:
        """Stable id: the first 16 hex digits of the sha256 of the canonical JSON without ``data`` and
        ``keep_model``: the same content (``data_version``) found at another path is the same experiment, and
        so is the same run with its model kept."""
        identity = {k: v for k, v in self.canonical().items() if k not in _NOT_IN_ID}
        text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

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
#: The options a task may set defaults for (everything but what names the job and its data).
JOB_OPTIONS = _FIELDS - {"task", "backbone", "strategy", "kind", "weights_sha256", "depends_on", "data", "data_version"}

# ------------------------------------------------------------------------------------------ field ranges

#: The range of every job field (and of the sweep option ``pretrain_epochs``), as ``(kind, low)``:
#: ``int`` fields are whole numbers from ``low`` to :data:`INT_MAX`; ``rate`` fields finite numbers > 0;
#: ``fraction`` a number in (0, 1]; ``bool`` true or false; a tuple lists the allowed values; ``name``
#: a non-empty string. ``input_size`` also lies between the backbone's ``min_input_size`` and what fits
#: this machine's memory (:func:`check_input_memory`).
FIELD_RANGES: dict[str, Any] = {
    "examples_per_class": ("int", 1), "seed": ("int", 0), "input_size": ("int", 1), "epochs": ("int", 1),
    "fine_tune_epochs": ("int", 1), "pretrain_epochs": ("int", 1), "batch_size": ("int", 1),
    "fine_tune_layers": ("int", 1), "fraction": ("fraction",), "learning_rate": ("rate",),
    "fine_tune_learning_rate": ("rate",), "class_weight": ("none", "balanced"), "kind": KINDS,
    "min_steps": ("int", 0), "early_stopping": ("int", 0),
    "augment": ("bool",), "mixed_precision": ("bool",), "xla": ("bool",), "shuffled_labels": ("bool",),
    "keep_model": ("bool",),
    "task": ("name",), "backbone": ("name",), "strategy": ("name",), "weights": ("name",), "source": ("name",),
}
_INT_TEXT = re.compile(r"[+-]?[0-9]+")  # ASCII digits only (int() also takes other scripts' digits)


def check_field(name: str, value: Any) -> Any:
    """``value`` as the type of job field ``name`` (an int, a float, ...), or :class:`JobFieldError` when it
    lies outside the field's range (:data:`FIELD_RANGES`). None (unset) passes for every field."""
    rule = FIELD_RANGES.get(name)
    if rule is None or value is None:
        return value
    kind = rule[0]
    if kind == "int":
        low = rule[1]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= INT_MAX:
            raise JobFieldError(name, value, f"{{{name}}} must be an integer >= {low} and <= {INT_MAX}.")
        return int(value)
    if kind in ("rate", "fraction"):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if kind == "rate" and not (number and math.isfinite(value) and value > 0):
            raise JobFieldError(name, value, f"{{{name}}} must be a finite number > 0.")
        if kind == "fraction" and not (number and 0 < value <= 1):
            raise JobFieldError(name, value, f"{{{name}}} must be a number in (0, 1]: the share of the training "
                                             "pool to train on.")
        return float(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise JobFieldError(name, value, f"{{{name}}} must be true or false.")
        return value
    if kind == "name":
        if not isinstance(value, str) or not value.strip():
            raise JobFieldError(name, value, f"{{{name}}} must be a name (a non-empty string).")
        return value
    if value not in rule:
        raise JobFieldError(name, value, f"{{{name}}} must be one of {', '.join(map(repr, rule))}.")
    return value


def parse_field(name: str, text: str) -> Any:
    """Command-line text for job field ``name``, converted to its type and checked (:func:`check_field`)."""
    kind = FIELD_RANGES.get(name, ("name",))[0]
    if kind == "int":
        if not _INT_TEXT.fullmatch(text.strip()):
            low = FIELD_RANGES[name][1]
            raise JobFieldError(name, text, f"{{{name}}} must be an integer >= {low} and <= {INT_MAX}.")
        return check_field(name, int(text))
    if kind in ("rate", "fraction"):
        try:
            value = float(text)
        except ValueError:
            value = text
        return check_field(name, value)
    return check_field(name, text)


def machine_memory_bytes() -> int | None:
    """This machine's memory in bytes (the smaller of physical RAM and a cgroup limit), or None if unknown.

    Total memory rather than what is free now, so that the same sweep is accepted or refused the same way
    whatever else is running."""
    total = None
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        try:
            import psutil

            total = int(psutil.virtual_memory().total)
        except Exception:  # no psutil, or it cannot tell
            total = None
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            limit = int(Path(limit_file).read_text().strip())
        except (OSError, ValueError):  # absent, or "max" (no limit)
            continue
        total = limit if total is None else min(total, limit)
    return total if total and total > 0 else None


def activation_bytes(input_size: int, batch_size: int) -> int:
    """At least the activation memory of one training step:
    ``batch_size x input_size^2 x`` :data:`ACTIVATION_BYTES_PER_PIXEL`."""
    return batch_size * input_size * input_size * ACTIVATION_BYTES_PER_PIXEL


def _gib(n: float) -> str:
    gib = n / 2**30
    return f"{gib:,.1f}" if gib < 10 else f"{gib:,.0f}"


def check_input_memory(input_size: int, batch_size: int, memory: int | None = None) -> None:
    """Refuse an image input size (or batch size) whose activations cannot fit this machine's memory.

    The estimate is :func:`activation_bytes`, a low one, so only what surely does not fit is refused. The
    batch size is named when it would not fit even at 32 px (and one image of this size would), else the
    input size."""
    memory = machine_memory_bytes() if memory is None else memory
    need = activation_bytes(input_size, batch_size)
    if memory is None or need <= memory:
        return
    per_image = activation_bytes(input_size, 1)
    if per_image <= memory and activation_bytes(32, batch_size) > memory:
        most = memory // per_image
        raise JobFieldError("batch_size", batch_size, (
            f"{{batch_size}} {batch_size} at {{input_size}} {input_size} needs at least about {_gib(need)} GiB of "
            f"activations ({ACTIVATION_BYTES_PER_PIXEL} bytes per pixel per image); this machine has "
            f"{_gib(memory)} GiB. Use at most {{batch_size}} {most}."), received=False)
    most = math.isqrt(memory // (batch_size * ACTIVATION_BYTES_PER_PIXEL))
    raise JobFieldError("input_size", input_size, (
        f"{{input_size}} {input_size} needs at least about {_gib(need)} GiB of activations for a batch of "
        f"{batch_size} ({ACTIVATION_BYTES_PER_PIXEL} bytes per pixel per image); this machine has {_gib(memory)} "
        f"GiB. Use at most {{input_size}} {most}, or a smaller {{batch_size}}."), received=False)


# ------------------------------------------------------------------------------------------ weights

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _looks_like_path(weights: str) -> bool:
    return weights.startswith("file:") or "/" in weights or os.sep in weights or weights.endswith(
        (".h5", ".hdf5", ".keras", ".weights.h5"))


def _check_weights_file(path: Path, given: str) -> None:
    """Refuse, without TensorFlow, a weights file that is missing, a folder, empty, not HDF5, or HDF5
    without Keras's weights layout (its ``layers``/``vars`` groups)."""
    def refuse(problem: str) -> JobFieldError:
        return JobFieldError("weights", given, "{weights} file " + literal(path) + " " + problem, received=False)

    save = "Save them with Keras 3's `model.save_weights('x.weights.h5')`."
    if path.is_symlink() and not path.exists():
        raise refuse("is a broken or looping symbolic link. Give a path to a Keras `.weights.h5` file.")
    if not path.exists():
        raise refuse("does not exist. Give a path to a Keras `.weights.h5` file.")
    if path.is_dir():
        raise refuse("is a folder. Give a path to a Keras `.weights.h5` file.")
    if not path.name.endswith(".weights.h5"):
        raise refuse(f"is not a Keras `.weights.h5` file (weights only). {save}")
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise refuse(f"cannot be read ({literal(exc.strerror or exc)}). Check its permissions.") from None
    if size == 0:
        raise refuse(f"is empty (0 bytes): an interrupted copy or save? {save}")
    if head != _HDF5_SIGNATURE:
        raise refuse(f"is not an HDF5 file, so not Keras weights. {save}")
    try:
        import h5py
    except ImportError:  # training installs h5py; without it the runner's own loading finds a bad file
        return
    try:
        with h5py.File(path, "r") as fh:
            groups = set(fh.keys())
    except Exception as exc:  # h5py signals truncated or damaged files with OSError and others
        raise refuse(f"is a damaged HDF5 file ({literal(str(exc)[:120])}). {save}") from None
    if not groups & {"layers", "vars"}:
        raise refuse(f"is HDF5 but holds no Keras weights (no 'layers' or 'vars' group: a Keras 2 `.h5` model?). "
                     f"{save}")


def resolve_weights(registry: Registry, backbone: str, weights: str) -> tuple[str, str | None]:
    """Check a weight source for a backbone; return (normalised name, sha256 for a local file).

    A local file is opened and checked for Keras's weights layout here (no TensorFlow);
    :func:`check_weight_files` then loads it into the backbone before anything is queued."""
    from transferlab.safe_io import sha256_file

    spec = registry.backbone(backbone)
    if weights in ("none", None):
        return "none", None
    weights = check_field("weights", weights)
    if weights.startswith("run:"):
        return weights, None
    if _looks_like_path(weights):
        try:
            path = Path(weights.removeprefix("file:")).expanduser().resolve()
        except (OSError, RuntimeError):  # RuntimeError: a symbolic link loop (Python < 3.13)
            raise JobFieldError("weights", weights, "{weights} file " + literal(weights) + " is a broken or looping "
                                "symbolic link. Give a path to a Keras `.weights.h5` file.", received=False) from None
        _check_weights_file(path, weights)
        return f"file:{path}", sha256_file(path)
    valid = ["none"] + [w.name for w in spec.weight_sources] + ["<path>.weights.h5"]
    if spec.weight_source(weights) is None:
        raise UnknownNameError(f"weight source for backbone {backbone!r}", weights, valid)
    return weights, None


def backbone_offers(registry: Registry, backbone: str, weights: Any) -> bool:
    """Whether ``weights`` can start ``backbone`` at all: none, another run's, a file, or a source it offers."""
    if weights in ("none", None) or not isinstance(weights, str):
        return True  # not a weights question (a bad type is refused by check_field)
    if weights.startswith("run:") or _looks_like_path(weights):
        return True
    return registry.backbone(backbone).weight_source(weights) is not None


def check_weight_files(registry: Registry, jobs: Iterable[JobSpec]) -> None:
    """Load each local weights file of ``jobs`` into its backbone, built with no weights at the job's input
    size, exactly as the runner will: a file for another architecture is refused here, before anything is
    queued, not inside the run. Imports TensorFlow only when a job has a local weights file."""
    from transferlab.errors import WeightsError

    seen = set()
    for job in jobs:
        if not job.weights.startswith("file:") or (job.backbone, job.input_size, job.weights) in seen:
            continue
        seen.add((job.backbone, job.input_size, job.weights))
        from transferlab.progress import import_tensorflow_quietly

        import_tensorflow_quietly()
        import keras

        from transferlab.runner import input_shape, load_weights_strictly

        spec = registry.backbone(job.backbone)
        path = Path(job.weights[5:])
        try:
            load_weights_strictly(spec.build(input_shape(spec, job.input_size), None), path, spec.name)
        except WeightsError as exc:
            # Keras's own text spans lines: one line, the start of it, after "... does not fit backbone 'x': "
            detail = " ".join(str(exc).split()).split(": ", 1)[-1]
            detail = detail.removesuffix(" Use a .weights.h5 saved from the same architecture.")
            detail = detail if len(detail) <= 200 else detail[:200] + "…"
            unit = "tokens" if spec.modality == "text" else "px"
            raise JobFieldError("weights", str(path), (
                f"{{weights}} file {literal(path)} does not fit backbone {spec.name!r} at {job.input_size} {unit} "
                f"({literal(detail)}). Give weights saved from {spec.name} with `model.save_weights`."),
                received=False) from None
        finally:
            keras.backend.clear_session()


def check_before_queueing(registry: Registry, jobs: list[JobSpec]) -> None:
    """What can only be checked with the jobs made: local weight files loaded into their backbones
    (:func:`check_weight_files`) and every task's data loaded and sized (``check_jobs_fit_data``). Call it
    before the store is opened, so that a bad file or dataset leaves nothing behind."""
    from transferlab.data import check_jobs_fit_data

    check_weight_files(registry, jobs)
    check_jobs_fit_data(registry, jobs)


def parse_workers(text: str | int, executor: str = "local") -> int:
    """``--workers`` and ``--executor`` checked: 0 (in this process) up to 4 per CPU core (more only compete
    for the cores, and each holds its own TensorFlow), and an executor that exists. Returns the workers."""
    if executor not in ("local", "ray"):
        raise JobFieldError("executor", executor, "{executor} must be 'local' or 'ray'.")
    most = 4 * (os.cpu_count() or 1)
    text = str(text)
    if not _INT_TEXT.fullmatch(text.strip()) or not 0 <= int(text) <= most:
        raise JobFieldError("workers", text, f"{{workers}} must be a whole number from 0 (run in this process) to "
                                             f"{most} (4 per CPU core here).")
    return int(text)


# ------------------------------------------------------------------------------------------ jobs

def _alternatives(registry: Registry, strategy: Any) -> str:
    """The registered strategies like ``strategy`` (head-only phases) that run the frozen base inside the model."""
    names = [s.name for s in registry.select("strategy", cached_features=False, random_init=False)
             if len(s.phases) == len(strategy.phases) and not any(p.trains_base for p in s.phases)]
    return ", ".join(names) or "none is registered"


def make_job(registry: Registry, **fields: Any) -> JobSpec:
    """Validate and normalise a job: names exist, every field in its range, defaults filled in.

    Unknown names list the valid ones; a field out of range raises :class:`JobFieldError`; every problem is
    a :class:`UserError` with what to do.
    """
    unknown = sorted(set(fields) - _FIELDS)
    if unknown:
        raise UserError(f"Unknown job option(s) {unknown}. Valid options: {sorted(_FIELDS)}")
    for required in ("task", "backbone", "strategy"):
        if fields.get(required) is None or fields.get(required) == "":
            raise JobFieldError(required, fields.get(required), f"A job needs a {{{required}}}.")
        check_field(required, fields[required])
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
    # The user's values are checked before the task's defaults fill what they left unset.
    fields = {name: check_field(name, value) for name, value in fields.items()}
    for name, value in task.job_defaults.items():
        if name == "examples_per_class" and fields.get("kind") == "pretrain":
            continue  # a source pretrains on its whole pool
        if fields.get(name) is not None or (name in ("examples_per_class", "fraction")
                                                and (fields.get("examples_per_class") or fields.get("fraction"))):
            continue
        if name == "augment" and strategy.cached_features:
            continue  # cached features cannot be augmented: the default does not apply to them
        fields = {**fields, name: check_field(name, value)}
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
    kind = fields.get("kind") or "train"
    if fields.get("examples_per_class") is not None and fields.get("fraction") is not None:
        raise JobFieldError("fraction", fields["fraction"], "Give {examples_per_class} or {fraction}, not both.")
    input_size = fields.get("input_size")
    if input_size is None:
        input_size = backbone.default_input_size
    unit = "tokens" if backbone.modality == "text" else "px"
    if input_size < backbone.min_input_size:
        raise JobFieldError("input_size", input_size, (
            f"Backbone {backbone.name!r} needs inputs of at least {backbone.min_input_size} {unit}."),
            advice=f"Use {{input_size}} {backbone.min_input_size} or more.")
    if backbone.modality == "image":
        check_input_memory(input_size, fields.get("batch_size") or JobSpec.batch_size)
    weights, sha = resolve_weights(registry, backbone.name, fields.get("weights") or "none")
    if strategy.random_init:
        weights, sha = "none", None
    if strategy.cached_features and fields.get("augment"):
        raise UserError(
            f"Strategy {strategy.name!r} trains on cached features, which cannot be augmented. "
            f"For augmentation with a frozen base use a strategy that freezes it inside the model: "
            f"{_alternatives(registry, strategy)}."
        )
    data, data_version = _data_identity(task, fields)
    clean = {name: value for name, value in fields.items() if value is not None}  # None: the field's default
    clean.update(weights=weights, weights_sha256=sha, input_size=int(input_size), kind=kind, data=data,
                 data_version=data_version)
    clean["depends_on"] = tuple(fields.get("depends_on", ()))
    return JobSpec(**clean)


def _data_identity(task: Any, fields: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The job's ``data`` (the task's location, for tasks made from ``--data``) and ``data_version`` (the
    task's fingerprint now). Values given by the caller must agree: a job is never made for data that is
    not there any more."""
    from transferlab.fingerprints import task_data_version

    version = task_data_version(task)
    for name, value in (("data", task.data), ("data_version", version)):
        given = fields.get(name)
        if given is not None and given != value:
            raise UserError(f"Task {task.name!r} now has {name}={value!r}, not the {given!r} given: its data "
                            "changed or moved. Make the job again from the task as it is now.")
    return task.data, version


def jobs_by_id(jobs: Iterable[JobSpec]) -> dict[str, JobSpec]:
    """Index jobs by id."""
    return {j.job_id: j for j in jobs}


_SWEEP_NAMES = ("AXES", "AXIS_FIELDS", "SKIP_MODES", "SWEEP_CONFIRM_LIMIT", "SOURCE_PRETRAIN_EPOCHS", "SweepPlan",
                "expand_grid", "expand_plan", "load_sweep_file", "parse_source", "plan_sweep", "pretrain_job")


def __getattr__(name: str) -> Any:
    """The sweep functions, which live in :mod:`transferlab.sweeps`, under their old import path."""
    if name in _SWEEP_NAMES:
        from transferlab import sweeps

        return getattr(sweeps, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
