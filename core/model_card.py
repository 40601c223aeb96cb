"""``model-card.md`` of an export: what the model does, its input, data and split, training, scores with
Wilson intervals, the check made at export, weights provenance, package versions, and how to load each
exported format. Written from the stored run, the kept model's ``model.json`` and the export record;
local paths never reach it (:func:`transferlab.redact.redact_text`)."""
from __future__ import annotations

import datetime as _dt
import json
from typing import Any

from transferlab.jobs import JobSpec

_LOAD = {
    "keras": ('import keras',
              'model = keras.saving.load_model("model.keras")  # standard layers only',
              'probabilities = model.predict(images)'),
    "saved_model": ('import tensorflow as tf',
                    'serve = tf.saved_model.load("saved_model").signatures["serving_default"]',
                    'probabilities = serve(image=tf.constant(images))["output_0"].numpy()'),
    "tflite": ('import tensorflow as tf  # or ai_edge_litert.interpreter',
               'interpreter = tf.lite.Interpreter(model_path="model.tflite")',
               'i, o = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]',
               'interpreter.resize_tensor_input(i, images.shape); interpreter.allocate_tensors()',
               'interpreter.set_tensor(i, images); interpreter.invoke(); probabilities = interpreter.get_tensor(o)'),
    "onnx": ('import onnxruntime',
             'session = onnxruntime.InferenceSession("model.onnx")',
             'probabilities = session.run(None, {"image": images})[0]'),
}


def utc_time(seconds: Any) -> str:
    """A POSIX time as an ISO 8601 date-time in UTC (``2025-05-01T12:34:56+00:00``), or ``unknown``."""
    try:
        return _dt.datetime.fromtimestamp(float(seconds), _dt.timezone.utc).isoformat(timespec="seconds")
    except (TypeError, ValueError, OverflowError, OSError):
        return "unknown"


def score_text(score: Any, metric: str, label: str, n_test: Any) -> str:
    """``test accuracy 0.912 (95 % Wilson interval 0.870–0.941, over 200 test images)``; the interval only for
    accuracy with a known test-set size; ``not recorded`` without a score."""
    if score is None:
        return "not recorded"
    text = f"{label} {float(score):.3f}"
    if metric == "accuracy" and isinstance(n_test, int) and n_test > 0:
        from transferlab.compare import wilson_interval

        low, high = wilson_interval(float(score), n_test)
        text += f" (95 % Wilson interval {float(low):.3f}–{float(high):.3f}, over {n_test} test images)"
    return text


def check_text(check: dict[str, Any]) -> str:
    """What a whole-split reproduction check (:func:`transferlab.export.reproduction` without reference
    predictions) held the export to, in words: ``accuracy 0.917, within 0.005 of the kept weights' score
    (0.917)``."""
    return (f"accuracy {check['accuracy']:.3f}, within {check['tolerance']:g} of the kept weights' score "
            f"({float(check['score']):.3f})")


def model_card(registry: Any, run: dict[str, Any], job: JobSpec, meta: dict[str, Any], record: dict[str, Any]) -> str:
    """``model-card.md``: what the model does, its input, data and split, training, scores with intervals,
    weights provenance, package versions, and how to load each exported format. No local paths."""
    from transferlab.redact import public_weights, redact_text
    from transferlab.runner.runner import package_versions

    manifest = json.loads(run.get("manifest_json") or "{}")
    metrics = json.loads(run.get("metrics_json") or "{}")
    phases = json.loads(run.get("phases_json") or "[]")
    metric = run.get("metric") or "accuracy"
    label = run.get("metric_label") or metric
    n_test = manifest.get("n_test")
    names = record["class_names"]
    size = record["input"]["resized_to"][0]
    task = registry.tasks.get(job.task)
    backbone = registry.backbone(job.backbone)
    shown = ", ".join(names[:20]) + (f", … ({len(names)} in all)" if len(names) > 20 else "")
    weights = public_weights(job.weights, job.weights_sha256)
    source_sha = manifest.get("weights_sha256")
    lines = [
        f"# Model card: {job.task} · {job.backbone} · {job.strategy}", "",
        f"Run `{run['run_id']}`, exported {record['exported_at']} by transferlab "
        f"{package_versions(['transferlab']).get('transferlab', '?')}.", "",
        "## What it does",
        f"Image classification into {len(names)} classes (`labels.txt`, one per line, in output order): {shown}.",
        *([f"Task: {task.description}"] if task is not None and task.description else []), "",
        "## Input and output",
        "- Input `image`: float32, RGB, values 0–255, shape (batch, height, width, 3), any height and width.",
        f"- Inside the model: bilinear resize to {size}×{size} px (as in training), then the backbone's "
        f"preprocessing ({backbone.preprocessing!r}, a fixed per-channel affine map).",
        "- Grey images: repeat the channel three times. Decode other modes to RGB first (Pillow `.convert(\"RGB\")`).",
        f"- Output: shape (batch, {len(names)}), class probabilities (softmax) in `labels.txt` order.", "",
        "## Data and split",
        f"- Task `{job.task}`, data version {run.get('data_version') or 'not fingerprinted'}.",
        f"- Split ({manifest.get('split', 'fixed, seeded')}): {manifest.get('n_train', '?')} training, "
        f"{manifest.get('n_val', '?')} validation, {n_test if n_test is not None else '?'} test images; training set "
        + (f"{job.examples_per_class} examples per class" if job.examples_per_class else
           (f"a fraction {job.fraction:g} of the pool" if job.fraction else "the whole pool"))
        + f", seed {job.seed}.", "",
        "## Training",
        f"- Strategy `{job.strategy}`; backbone `{job.backbone}` ({backbone.family or backbone.description or 'plugin'}), "
        f"starting weights `{weights}`" + (f", sha256 {source_sha}" if source_sha else ", no pinned sha256") + ".",
        f"- Input size {size} px, batch size {job.batch_size}, augmentation {'on' if job.augment else 'off'}, "
        f"class weights {job.class_weight}.",
        *[f"- Phase `{p.get('phase')}`: trains {p.get('train')}, {p.get('epochs_run', p.get('epochs'))} epochs, "
          f"learning rate {p.get('learning_rate')}" for p in phases], "",
        "## Scores (test split)",
        f"- Stored run: {score_text(run.get('score'), metric, label, n_test)}.",
    ]
    if run.get("balanced_accuracy") is not None:
        lines.append(f"- Balanced accuracy {float(run['balanced_accuracy']):.3f}"
                     + (f", macro F1 {float(metrics['macro_f1']):.3f}." if "macro_f1" in metrics else "."))
    if meta.get("rerun", False):  # model.json files from before the flag lack it: the run's own weights
        lines.append(f"- **These weights** come from a re-run of the same job ({utc_time(meta.get('created_at'))}): "
                     f"{score_text(meta.get('score'), metric, label, n_test)}. The stored run's figures above are of "
                     "its first training; training is not bit-for-bit repeatable.")
    check = record["reproduction"]
    if check.get("checked") and check.get("agreement") is not None:
        lines.append(f"- Checked at export on the first {check['images']} test images at their original size: the "
                     f"exported model's top class is the trained model's on {check['agreement']:.1%} of them "
                     f"(accuracy on them {check['accuracy']:.3f}).")
    elif check.get("checked"):
        lines.append(f"- Checked at export on all {check['images']} test images at their original size: "
                     f"{check_text(check)}.")
    else:
        lines.append(f"- Not checked against the test images at export: {check.get('why', 'no data')}")
    custom = record["custom_layers"]
    lines += [
        "", "## Weights provenance",
        f"- Kept weights (transferlab `weights.npz`, kept {utc_time(meta.get('created_at'))}): sha256 "
        f"{meta.get('weights_sha256', '?')}.",
        "- Every exported file's sha256: `export.json`.",
        "- " + ("Standard Keras layers only: `keras.saving.load_model` needs no custom objects." if not custom else
                "Layers from plugins (`keras.saving.load_model` needs them as custom_objects): " + ", ".join(custom)),
        "", "## Software",
        "- Trained with: " + ", ".join(f"{k} {v}" for k, v in sorted(manifest.get("packages", {}).items()))
        + (f", Python {manifest['python']}" if manifest.get("python") else "") + ".",
        "- Exported with: " + ", ".join(f"{k} {v}" for k, v in sorted(
            package_versions(["tensorflow", "keras", "tf2onnx", "onnx"]).items())) + ".",
        "", "## How to load",
        "`images`: a float32 numpy array (n, height, width, 3), RGB 0–255 (one size per call).",
    ]
    for name in record["formats"]:
        lines += ["", f"{name} (`{record['format_files'][name]}`):", "```python", *_LOAD[name], "```"]
    return redact_text("\n".join(lines) + "\n")
