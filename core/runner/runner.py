"""Running one job: build the model, train each phase, verify what changed, evaluate, report.

The runner never draws and never talks to the user beyond progress bars; the executor stores what
it returns. Data flows one way: job spec -> runner -> store.
"""
from __future__ import annotations

import math
import platform
import shutil
import time
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Callable

from transferlab.convergence import still_improving
from transferlab.data import (
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
from transferlab.runner.assembly import (
    augmentation_layers, feature_map, feature_standardizer, input_shape, load_weights_strictly, model_inputs,
)
from transferlab.runner.budget import phase_epochs, phase_watch, validation_epochs
from transferlab.runner.callbacks import (
    EpochLogger, epoch_log_callback, finite_weights, nan_guard, progress_callback,
)
from transferlab.runner.checkpoints import Checkpoints, checkpoint_dir
from transferlab.runner.freezing import (
    check_phase, count_params, expected_to_change, freeze_for_phase, max_gradients, model_weights, snapshot,
    unit_lr_scales, verify_phase,
)
from transferlab.runner.inference import trained_arrays
from transferlab.runner.optimizers import make_optimizer
from transferlab.runner.shared_head import on_features_ok, reuse_enabled
from transferlab.runner.stages import StageClock, step_timer
from transferlab.specs import BackboneSpec, PhaseSpec
from transferlab.userdata import load_job_data, task_for_job


@dataclass
class RunResult:
    """What a finished run reports; the executor stores it."""

    score: float
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
    #: the test predictions, compact (``TaskHead.compact_predictions``); None where the head could not say
    predictions: dict[str, Any] | None = None
    #: the trained weights in :func:`transferlab.runner.inference.inference_model`'s order, for keeping
    #: (:mod:`transferlab.models`); None for runs that are never kept (source pretraining, text). Not stored.
    final_arrays: list[Any] | None = field(default=None, repr=False)

    def store_values(self) -> dict[str, Any]:
        """What the store keeps for a succeeded run: its columns, and ``predictions`` (its own table).

        ``score`` holds the task's score (accuracy, or mAP@0.5 for detection; the manifest's
        ``metric`` names it); ``metrics_json`` holds the task's further figures; ``still_improving`` is the
        last phase's (:func:`transferlab.convergence.still_improving`).
        """
        return dict(
            score=self.score, test_loss=self.test_loss, balanced_accuracy=self.balanced_accuracy,
            trainable_params=self.trainable_params, total_params=self.total_params,
            images_per_second=self.images_per_second, wall_seconds=self.wall_seconds,
            transferability=self.transferability, phases_json=self.phases, confusion_json=self.confusion,
            manifest_json=self.manifest, metrics_json=self.metrics or {},
            metric=self.manifest.get("metric"), metric_label=self.manifest.get("metric_label"),
            still_improving=self.phases[-1].get("still_improving") if self.phases else None,
            predictions=self.predictions,
        )


#: the frameworks every run depends on; each plugin's own distribution and version come from the registry
FRAMEWORK_DISTRIBUTIONS = ("transferlab", "tensorflow", "keras", "numpy", "scikit-learn")


def package_versions(distributions: tuple[str, ...] | list[str]) -> dict[str, str]:
    """Installed versions of ``distributions`` (missing ones are left out)."""
    out = {}
    for name in distributions:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            pass
    return out


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

        self.clock = clock = StageClock()
        task = task_for_job(self.registry, job)
        backbone = self.registry.backbone(job.backbone)
        strategy = self.registry.strategy(job.strategy)
        with clock("load_data"):
            data = load_job_data(self.registry, job)  # refuses data that changed since the job was queued
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

        with clock("build"):
            base, weights_sha = self.build_base(backbone, job)
        self.weights_sha = weights_sha  # what was loaded (a `run:` weights file has no sha in the job): in head keys
        with clock("transferability"):
            transferability = (self._transferability(base, backbone, job, data, train_idx, y_train)
                               if head.kind == "classification" else None)
        class_weight = balanced_class_weight(y_train, num_classes) if job.class_weight == "balanced" else None
        # Seeded again: the head's initial weights, its Dropout masks and the batch order then depend on the seed
        # alone, not on what building the base drew (converting a checkpoint the first time draws, loading the
        # converted file does not), so identical prefixes start identically and share their head.
        keras.utils.set_random_seed(job.seed)
        context = dict(job=job, task=task, head=head, backbone=backbone, strategy=strategy, data=data, splits=splits,
                       train_idx=train_idx, y_train=y_train, num_classes=num_classes, base=base,
                       class_weight=class_weight)
        if strategy.cached_features:
            outcome = self._run_on_features(**context)
        else:
            outcome = self._run_end_to_end(**context)
        predictions, phases, model, train_images, train_seconds, final_arrays, feature_scale = outcome

        y_test = data.labels[splits.test]
        with clock("evaluate"):
            result = head.evaluate(predictions, data, splits.test, y_test, num_classes, job)
            compact, compact_error = _compact(head, predictions, data, splits.test, job)
        total = count_params(model_weights(model))
        trainable = phases[-1]["trainable_params"]
        plugins = {"task": self.registry.owner.get(("task", job.task)),
                   "backbone": self.registry.owner.get(("backbone", job.backbone)),
                   "strategy": self.registry.owner.get(("strategy", job.strategy))}
        source = backbone.weight_source(job.weights)
        distributions = (*FRAMEWORK_DISTRIBUTIONS, *backbone.distributions, *task.distributions,
                         *(source.distributions if source else ()))
        manifest = dict(
            packages=package_versions(list(dict.fromkeys(distributions))),
            python=platform.python_version(),
            plugins=plugins,
            plugin_versions={name: self.registry.plugin_version(name) for name in set(plugins.values()) if name},
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
            metric_label=head.metric_label,
            feature_scale=feature_scale,
            stage_seconds=clock.rounded(),
        )
        if compact_error:
            manifest["predictions_error"] = compact_error
        if job.kind == "pretrain":
            manifest.update(self._save_pretrained(base, job))
        return RunResult(
            score=result["score"], test_loss=result["loss"], balanced_accuracy=result.get("balanced_accuracy"),
            trainable_params=trainable, total_params=total,
            images_per_second=train_images / train_seconds if train_seconds > 0 else 0.0,
            wall_seconds=time.perf_counter() - t_start, phases=phases, confusion=result.get("confusion", []),
            manifest=manifest, transferability=transferability, metrics=result.get("metrics", {}),
            predictions=compact, final_arrays=final_arrays,
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
        from transferlab.safe_io import VerifiedFile

        target = cache_dir("weights") / f"run-{job.job_id}.weights.h5"
        return {"weights_file": str(target), "weights_file_sha256": VerifiedFile(target).write(base.save_weights)}

    def _fit_phase(self, model, phase_name, train_ds, val_ds, epochs, offset, optimizer, class_weight, steps, label,
                   xla=False, compile_args=None, extra_callback=None, score_key="val_accuracy", backup=None,
                   watch=None, log_epoch=None, floor=0):
        """Compile and fit one phase of at most ``epochs`` epochs; returns seconds spent. Raises NaNLossError on
        a non-finite loss. ``watch`` (:func:`~transferlab.runner.budget.phase_watch`) records the
        validation losses and may stop the phase early, restoring its best weights. ``log_epoch`` replaces the
        runner's epoch logger for this phase. ``floor`` (the phase's step floor in epochs) thins validation before
        it (:func:`~transferlab.runner.budget.validation_epochs`)."""
        from transferlab.progress import keras_bar_callback

        # A fresh compile per phase: Keras reads `trainable` at compile time, and each phase's optimizer
        # starts with empty slots. XLA stays off unless asked for: on CPU it made MobileNetV2 5-14x slower.
        model.compile(optimizer=optimizer, jit_compile=bool(xla), **compile_args)
        guard = nan_guard()
        bar = keras_bar_callback(f"{label} · {phase_name}", steps * epochs, "batch")
        # The head's metric callback comes first so the epoch log sees what it adds.
        callbacks = ([extra_callback] if extra_callback is not None else []) + [guard, bar]
        if backup is not None:  # before the epoch logger: an epoch that reached the store is in the backup
            callbacks.insert(0, backup)
        if watch is not None:  # before the backup, which keeps the watch's view of the epoch it backs up
            callbacks.insert(0, watch)
        log_epoch = log_epoch or self.log_epoch
        if log_epoch is not None:
            callbacks.append(epoch_log_callback(log_epoch, phase_name, score_key))
        if self.report_progress is not None:
            callbacks.append(progress_callback(self.report_progress, phase_name, offset, epochs, steps))
        steps_clock = step_timer()
        callbacks.append(steps_clock)
        t0 = time.perf_counter()
        model.fit(train_ds, validation_data=val_ds, epochs=offset + epochs, initial_epoch=offset, shuffle=False,
                  class_weight=class_weight, verbose=0, callbacks=callbacks,
                  validation_freq=validation_epochs(offset, epochs, floor) if floor and watch is not None and watch.stops
                  and reuse_enabled() else 1)
        seconds = time.perf_counter() - t0
        clock = getattr(self, "clock", None)
        if clock is not None:
            clock.seconds[f"steps:{phase_name}"] = clock.seconds.get(f"steps:{phase_name}", 0.0) + steps_clock.seconds
        if guard.hit or not finite_weights(model):
            raise NaNLossError(f"Loss or weights became NaN/inf during phase {phase_name!r}; lower the learning rate.")
        return seconds

    def _run_end_to_end(self, job, task, head, backbone, strategy, data, splits, train_idx, y_train, num_classes, base,
                        class_weight):
        import keras

        clock = self.clock
        inputs = model_inputs(backbone, base, job.input_size)
        x = augmentation_layers()(inputs) if job.augment else inputs
        net = feature_map(base, backbone.name) if head.feature == "map" else base
        # training=False keeps BatchNorm and Dropout of the base in inference mode for good (the Keras
        # transfer-learning guide); a strategy with a phase that trains BatchNorm leaves it to `trainable`.
        x = net(x, training=False) if strategy.batchnorm_always_inference else net(x)
        # A strategy that never trains the base is a frozen one: its head sees features scaled to unit RMS,
        # as on cached features (the training subset's features, shared with the cache).
        scaled = head.feature != "map" and not any(p.trains_base for p in strategy.phases)
        feature_scale, standardizer = None, None
        if scaled:
            from transferlab.features import cached_features

            standardizer = feature_standardizer(cached_features(base, backbone, job, data, train_idx, "train"))
            x, feature_scale = standardizer(x), float(standardizer.scale)
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
        checkpoints = Checkpoints(job, self.checkpoint_namespace, identity)
        phases, offset, seconds, images = [], 0, 0.0, 0
        feature_seconds, feature_images = 0.0, 0
        for index, phase in enumerate(strategy.phases):
            batchnorm = strategy.batchnorm_of(phase)
            units = freeze_for_phase(net, phase, job.fine_tune_layers, batchnorm, blocks)
            epochs, floor = phase_epochs(phase.resolved_epochs(job), steps, job.min_steps, job.early_stopping)
            lr = phase.resolved_learning_rate(job)
            resumed = checkpoints.load(model, index, backbone.name) if not phases or phases[-1].get("resumed") else None
            if resumed is not None:  # finished by an interrupted attempt: keep it, verified as it was then
                phases.append(dict(resumed, resumed=True))
                offset += resumed.get("epochs_run", resumed["epochs"])  # the next phase starts where it stopped
                continue
            checkpoints.forget_from(index + 1)  # later phases would have grown from another state
            trainable = count_params(model.trainable_weights)
            total = count_params(model_weights(model))
            common = dict(phase=phase.name, train=phase_train_label(phase), epochs=epochs, learning_rate=lr,
                          lr_decay=phase.lr_decay, optimizer=phase.optimizer, batchnorm=batchnorm,
                          units_trained=len(units), trainable_params=trainable, frozen_params=total - trainable,
                          features_scaled=scaled)
            on_features = None
            if on_features_ok(job, head, strategy, phase, index):
                on_features = self._head_on_features(
                    model, base, backbone, job, head, phase, data, splits, train_idx, y_train, num_classes,
                    class_weight, standardizer, compile_args, checkpoints, steps, epochs, floor, lr, offset)
            if on_features is not None:
                record, phase_seconds, phase_images = on_features
                record = dict(record, **common, min_learning_rate=lr)
                feature_seconds += phase_seconds
                feature_images += phase_images
            else:
                before = snapshot(model)
                expected = expected_to_change(model, batchnorm)
                scales = unit_lr_scales(units, phase.lr_decay)
                optimizer = make_optimizer(phase.optimizer, lr, scales, phase.weight_decay)
                watch = phase_watch(job.early_stopping, offset + max(floor - 1, 0))
                with clock(f"fit:{phase.name}"):
                    seconds += self._fit_phase(model, phase.name, train_ds, val_ds, epochs, offset, optimizer,
                                               class_weight, steps, job.label(), job.xla, compile_args, extra,
                                               head.val_metric, backup=checkpoints.backup(index, watch), watch=watch,
                                               floor=floor)
                with clock(f"check:{phase.name}"):
                    check = check_phase(model, before, expected, phase.name,
                                        lambda paths: max_gradients(model, train_ds, paths))
                outcome = phase_outcome(watch, offset, epochs, steps)
                images += len(train_idx) * outcome["epochs_run"]
                record = dict(**common, min_learning_rate=lr * min(scales.values(), default=1.0),
                              changed_params=check.changed_params, verified=True, **outcome, **no_signal_fields(check))
            offset += record["epochs_run"]
            phases.append(record)
            with clock(f"checkpoint:{phase.name}"):
                checkpoints.save(model, index, record)
        if not images:  # every phase trained on features: their throughput is the run's
            images, seconds = feature_images, feature_seconds
        with clock("test"):
            test_ds = make(splits.test, data.labels[splits.test])
            predictions = model.predict(test_ds.map(lambda x, y: x), verbose=0)
        with clock("keep_arrays"):
            arrays = trained_arrays(model) if keepable(job, backbone) else None
        return predictions, phases, model, images, seconds, arrays, feature_scale

    def _head_on_features(self, model, base, backbone, job, head, phase, data, splits, train_idx, y_train,
                          num_classes, class_weight, standardizer, compile_args, checkpoints, steps, epochs, floor,
                          lr, offset):
        """Phase 0 of an end-to-end strategy, head only: trained on cached features (or loaded from the head
        cache when an identical prefix trained it) and put into ``model``'s head. Returns (record without the
        fields every phase shares, training seconds, training images), or None where the head model on
        features does not match the full model's head (the phase then trains end to end)."""
        import keras
        import tensorflow as tf

        from transferlab.features import cached_features, job_feature_key
        from transferlab.runner import shared_head

        clock = self.clock
        # The full model's check covers the feature pass too: a base that changes when called (it must not) is
        # caught here as it is end to end, and the head this run loads or trains must be what changed.
        model_before = snapshot(model)
        model_expected = expected_to_change(model, "inference")
        with clock("features"):
            feats = {"train": cached_features(base, backbone, job, data, train_idx, "train"),
                     "val": cached_features(base, backbone, job, data, splits.val, "val")}
        with clock("assemble:features"):
            head_in = keras.Input(shape=(feats["train"].shape[1],), name="features")
            x = standardizer(head_in) if standardizer is not None else head_in
            head_model = keras.Model(head_in, head.outputs(x, num_classes, job), name="head_on_features")
        full_head = shared_head.head_variables(model, base)
        own = list(head_model.variables)
        if not shared_head.same_layout(own, full_head):
            return None
        initial = [v.numpy() for v in full_head]
        for variable, value in zip(own, initial):  # the same start as the end-to-end head, RNG state included
            variable.assign(value)
        y_fit = head.targets(data, train_idx, y_train, job)
        y_val = head.targets(data, splits.val, data.labels[splits.val], job)
        key = shared_head.head_key(
            train_features_key=job_feature_key(backbone, job, data, train_idx),
            val_features_key=job_feature_key(backbone, job, data, splits.val), y_train=y_fit, y_val=y_val,
            head_model=head_model, initial=initial, head=head, job=job, num_classes=num_classes, epochs=epochs,
            floor=floor, learning_rate=lr, phase=phase, class_weight=class_weight, compile_args=compile_args,
            scale=float(standardizer.scale) if standardizer is not None else None,
            base_weights_sha256=getattr(self, "weights_sha", None))
        cached = shared_head.load_head(key)
        if cached is not None and shared_head.same_layout(cached.arrays, full_head):
            for variable, value in zip(full_head, cached.arrays):
                variable.assign(value)
            if not cached.record.get("no_learning_signal"):  # as when it was trained: no probe to tell them apart
                check_phase(model, model_before, model_expected, phase.name)
            if self.log_epoch is not None:  # this run's learning curve shows the epochs it reused, at 0 s each
                for epoch, metrics in cached.epochs:
                    self.log_epoch(int(epoch), phase.name, dict(metrics), 0.0)
            # reused_from may name this very job: an earlier attempt (or run) of it trained and filed the head
            return dict(cached.record, on_features=True, reused=True, reused_from=cached.trained_by,
                        head_key=key), 0.0, 0

        # Same batches as end to end: the seeded shuffle of the same length over the training subset, in order.
        train_ds = (tf.data.Dataset.from_tensor_slices((feats["train"], y_fit))
                    .shuffle(len(y_fit), seed=job.seed, reshuffle_each_iteration=True).batch(job.batch_size)
                    .prefetch(tf.data.AUTOTUNE))
        val_ds = tf.data.Dataset.from_tensor_slices((feats["val"], y_val)).batch(256)
        extra = head.epoch_callback(lambda: head_model.predict(feats["val"], batch_size=256, verbose=0), data,
                                    splits.val, job)
        logged: list[list[Any]] = []

        def log_epoch(epoch, name, metrics, seconds):
            logged.append([epoch, metrics])
            if self.log_epoch is not None:
                self.log_epoch(epoch, name, metrics, seconds)

        before = snapshot(head_model)
        expected = expected_to_change(head_model, "inference")
        watch = phase_watch(job.early_stopping, offset + max(floor - 1, 0))
        with clock(f"fit:{phase.name}"):
            seconds = self._fit_phase(head_model, phase.name, train_ds, val_ds, epochs, offset,
                                      make_optimizer(phase.optimizer, lr, None, phase.weight_decay), class_weight,
                                      steps, job.label(), job.xla, compile_args, extra, head.val_metric,
                                      backup=checkpoints.backup(0, watch, tag="features"), watch=watch,
                                      log_epoch=log_epoch)
        with clock(f"check:{phase.name}"):
            check = check_phase(head_model, before, expected, phase.name,
                                lambda paths: max_gradients(head_model, train_ds, paths))
        for variable, trained in zip(full_head, own):
            variable.assign(trained.numpy())
        if not check.no_signal_layers:
            check_phase(model, model_before, model_expected, phase.name)
        outcome = phase_outcome(watch, offset, epochs, steps)
        record = dict(changed_params=check.changed_params, verified=True, **outcome, **no_signal_fields(check))
        # Only a phase run whole in this attempt is filed: one resumed from its backup lacks the epochs before the
        # kill in `logged`, and its later epochs saw the batches of a restarted shuffle, so its head depends on
        # when the kill came, not only on its key.
        if len(logged) == outcome["epochs_run"]:
            shared_head.store_head(key, [v.numpy() for v in full_head], record, logged, job.job_id)
        return (dict(record, on_features=True, reused=False, head_key=key), seconds,
                len(train_idx) * outcome["epochs_run"])

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
        standardizer = feature_standardizer(feats["train"])  # unit RMS over the training subset
        scaled = standardizer(head_in)
        head_model = keras.Model(head_in, head.outputs(scaled, num_classes, job), name="head")
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
        lr, steps = phase.resolved_learning_rate(job), math.ceil(len(y_train) / job.batch_size)
        epochs, floor = phase_epochs(phase.resolved_epochs(job), steps, job.min_steps, job.early_stopping)
        watch = phase_watch(job.early_stopping, max(floor - 1, 0))
        seconds = self._fit_phase(head_model, phase.name, train_ds, val_ds, epochs, 0,
                                  make_optimizer(phase.optimizer, lr, None, phase.weight_decay),
                                  class_weight, steps, job.label(), job.xla,
                                  head.compile_args(num_classes, job), extra, head.val_metric, watch=watch)
        check = check_phase(head_model, before, expected, phase.name,
                            lambda paths: max_gradients(head_model, train_ds, paths))
        outcome = phase_outcome(watch, 0, epochs, steps)
        head_params = count_params(head_model.trainable_weights)
        base_params = count_params(model_weights(base))
        phases = [dict(phase=phase.name, train="head", epochs=epochs, learning_rate=lr, min_learning_rate=lr,
                       lr_decay=1.0, optimizer=phase.optimizer, batchnorm="inference", units_trained=0,
                       trainable_params=head_params, frozen_params=base_params, changed_params=check.changed_params,
                       verified=True, cached_features=True, features_scaled=True, **outcome,
                       **no_signal_fields(check))]
        predictions = head_model.predict(feats["test"], batch_size=256, verbose=0)

        class _Both:  # total parameter count of base + head, as if one model
            weights = list(base.weights) + list(head_model.weights)

        arrays = trained_arrays(base, head_model) if keepable(job, backbone) else None
        return (predictions, phases, _Both, len(y_train) * outcome["epochs_run"], seconds, arrays,
                float(standardizer.scale))


def keepable(job: JobSpec, backbone: BackboneSpec) -> bool:
    """Whether a run's trained model can be kept (:mod:`transferlab.models`): a training run of an image
    backbone (source pretraining keeps its own weights file; text models are not exported)."""
    return job.kind == "train" and backbone.modality == "image"


def _compact(head: Any, predictions: Any, data: Any, indices: Any, job: JobSpec) -> tuple[dict | None, str | None]:
    """The head's compact test predictions and None, or None and why not: a plugin's head whose outputs the
    default cannot read still stores its run (its score is what it measured), only without predictions."""
    from transferlab.isolation import short_error

    try:
        return head.compact_predictions(predictions, data, indices, job), None
    except Exception as exc:  # plugin code
        return None, f"compact_predictions failed: {short_error(exc)}"


def phase_outcome(watch: Any, offset: int, epochs: int, steps: int) -> dict[str, Any]:
    """How a phase of at most ``epochs`` epochs from epoch index ``offset`` went, for its record: ``epochs_run``,
    ``optimizer_steps`` (actual), ``early_stopped``, ``best_epoch`` (numbered across the run's phases from 1,
    as the store's epochs are: the epoch whose weights the phase ended with when ``restored_best``, else
    the one with the lowest validation loss) and ``still_improving`` (False for a phase the watch stopped: it
    found no better loss for its patience, which the rule alone may miss with patience 1)."""
    run = watch.stopped_epoch + 1 - offset if watch.stopped else epochs
    restored = watch.best_epoch_index
    known = [(loss, i) for i, loss in enumerate(watch.losses) if loss is not None]
    lowest = offset + min(known)[1] if known else None  # the first of equal losses
    best = restored + 1 if restored is not None else (lowest + 1 if lowest is not None else None)
    return dict(epochs_run=run, optimizer_steps=steps * run, early_stopped=bool(watch.stopped), best_epoch=best,
                restored_best=restored is not None,
                still_improving=False if watch.stopped else still_improving(watch.losses))


def no_signal_fields(check: Any) -> dict[str, Any]:
    """``no_learning_signal`` and its layers for a phase record, where the phase check found any."""
    if not check.no_signal_layers:
        return {}
    return dict(no_learning_signal=True, no_learning_signal_layers=list(check.no_signal_layers))


def phase_train_label(phase: PhaseSpec) -> str:
    """What a phase trains, as stored with its record: ``head``, ``top``, ``all``, ``top 3`` or the callable's name."""
    if isinstance(phase.train, str):
        return phase.train
    if isinstance(phase.train, int):
        return f"top {phase.train}"
    return getattr(phase.train, "__name__", "custom")
