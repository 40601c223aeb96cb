"""Object detection: an SSD-style head on a backbone's feature map, scored by mAP@0.5 (VOC).

The head puts anchors of several scales and aspect ratios on every cell of the backbone's last feature
map and predicts, for each, 4 box offsets and class probabilities with a background class. Training
matches anchors to boxes by IoU, encodes boxes as SSD offsets, and minimises smooth-L1 on positives
plus cross-entropy with 3:1 hard negative mining; inference decodes, applies per-class non-maximum
suppression and scores mAP@0.5 the VOC way. The pure parts live in
:mod:`transferlab.plugins.detection_ops`.

Tasks:
- ``animal_detection`` (offline): real Animal-MNIST silhouettes pasted at random positions and
  scales on 128x128 canvases, 1-4 objects each, with their boxes and labels, deterministic from a fixed
  seed. A canvas's class for stratified splits and ``examples_per_class`` is its first object's.
- ``fashion_detection``: the same with Fashion-MNIST garments, where Fashion-MNIST is present.
- ``voc2007_detection``: Pascal VOC 2007 from a local ``VOCdevkit`` folder (``TRANSFERLAB_VOC_DIR``)
  or, online, through tensorflow-datasets.

Strategies apply as for classification (frozen backbone, fine-tune, scratch); cached-feature
strategies do not (the head needs positions, not pooled vectors), nor do augmentation and class weights.
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from transferlab import DatasetUnavailableError, TaskSpec, hookimpl
from transferlab.data import ImageFiles, TaskData
from transferlab.errors import UserError
from transferlab.heads import TaskHead
from transferlab.plugins import detection_ops as ops

CANVAS_SIZE = 128
N_CANVASES = 3000
CANVAS_SEED = 2024
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
VOC_URL = "http://host.robots.ox.ac.uk/pascal/VOC/voc2007/"


class SSDHead(TaskHead):
    """An SSD head: a shared 3x3 conv, then per-anchor box offsets and class probabilities.

    Output per image: (anchors, 4 + classes + 1), offsets first, then softmax probabilities with
    background in column 0. Anchors follow the feature map's size, known once the model is built.
    """

    kind = "detection"
    feature = "map"
    metric = "map50"
    metric_label = "test mAP@0.5"
    val_metric = "val_map50"
    supports_cached_features = False
    supports_augment = False
    supports_class_weight = False

    def __init__(self, scales=ops.DEFAULT_SCALES, aspect_ratios=ops.DEFAULT_ASPECT_RATIOS, channels: int = 128):
        self.scales, self.aspect_ratios, self.channels = tuple(scales), tuple(aspect_ratios), channels
        self._anchors: dict[int, np.ndarray] = {}
        self._sizes: dict[str, int] = {}  # feature-map size per job, known once its model is built

    def anchors(self, feature_size: int) -> np.ndarray:
        """The anchors of a feature map of ``feature_size`` x ``feature_size`` cells."""
        if feature_size not in self._anchors:
            self._anchors[feature_size] = ops.make_anchors(feature_size, self.scales, self.aspect_ratios)
        return self._anchors[feature_size]

    def _feature_size(self, job: Any) -> int:
        if job.job_id not in self._sizes:
            raise UserError("The detection head's targets were asked for before its model was built.")
        return self._sizes[job.job_id]

    def outputs(self, features, num_classes, job):
        """Per-anchor offsets and class probabilities from the feature map."""
        import keras
        from keras import layers

        height, width = features.shape[1], features.shape[2]
        if height is None or height != width:
            raise UserError(f"The detection head needs a square feature map of known size. Received: shape={features.shape}")
        self._sizes[job.job_id] = int(height)
        k = ops.anchors_per_cell(self.scales, self.aspect_ratios)
        x = layers.Conv2D(self.channels, 3, padding="same", activation="relu", name="ssd_conv")(features)
        loc = layers.Conv2D(k * 4, 3, padding="same", name="ssd_loc")(x)
        cls = layers.Conv2D(k * (num_classes + 1), 3, padding="same", name="ssd_cls")(x)
        loc = layers.Reshape((-1, 4), name="ssd_loc_flat")(loc)
        cls = layers.Reshape((-1, num_classes + 1), name="ssd_cls_flat")(cls)
        cls = layers.Softmax(name="ssd_probs", dtype="float32")(cls)
        loc = layers.Activation("linear", dtype="float32", name="ssd_offsets")(loc)
        return keras.layers.Concatenate(axis=-1, name="head", dtype="float32")([loc, cls])

    def compile_args(self, num_classes, job):
        """SSD loss (smooth-L1 + cross-entropy with 3:1 hard negative mining); mAP comes per epoch."""
        return dict(loss=ops.ssd_loss(num_classes))

    def targets(self, data, indices, labels, job):
        """Encoded anchor targets (n, anchors, 5) for the boxes of each example."""
        anchors = self.anchors(self._feature_size(job))
        return np.stack([ops.encode_targets(anchors, *data.targets[i]) for i in indices]).astype(np.float32)

    def detections(self, predictions: np.ndarray, job: Any) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Decoded, NMS-filtered detections per image."""
        anchors = self.anchors(self._feature_size(job))
        return [ops.detect(anchors, p[:, :4], p[:, 4:]) for p in predictions]

    def score(self, predictions, data, indices, job, found=None) -> tuple[float, dict[int, float]]:
        """mAP@0.5 and per-class AP of ``predictions`` (or of their detections ``found``, when already
        decoded) against the boxes of ``indices``."""
        found = self.detections(predictions, job) if found is None else found
        return ops.voc_map(found, [data.targets[i] for i in indices], len(data.class_names), 0.5)

    def epoch_callback(self, predict_val, data, val_indices, job):
        """Adds ``val_map50`` to each epoch's logs."""
        import keras

        head = self

        class _ValMap(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if logs is not None:
                    logs["val_map50"] = head.score(predict_val(), data, val_indices, job)[0]

        return _ValMap()

    def evaluate(self, predictions, data, indices, labels, num_classes, job):
        """mAP@0.5 (the score), the SSD loss on the test set, per-class AP and detections per image."""
        import tensorflow as tf

        found = self.detections(predictions, job)  # decoded and NMS-filtered once, for mAP and the counts
        mean, per_class = self.score(predictions, data, indices, job, found)
        y_true = self.targets(data, indices, labels, job)
        loss = float(np.mean(ops.ssd_loss(num_classes)(tf.constant(y_true), tf.constant(predictions)).numpy()))
        names = list(data.class_names)
        return dict(score=mean, loss=loss, metrics=dict(
            ap_per_class={names[c]: float(ap) for c, ap in sorted(per_class.items())},
            mean_detections=float(np.mean([len(d[0]) for d in found])) if found else 0.0,
            mean_objects=float(np.mean([len(data.targets[i][0]) for i in indices])) if len(indices) else 0.0,
        ))


# ------------------------------------------------------------------------------------------ data

def canvases_from(source: TaskData, what: str = "objects") -> TaskData:
    """Detection canvases of a classification dataset's bright-on-black images, with their boxes (fixed
    seed, so always the same set).

    The test canvases are composed from source images that no training canvas uses (a fixed 20 %), so
    test mAP measures detection of unseen objects, not recall of pasted pixels.
    """
    order = np.random.default_rng(CANVAS_SEED).permutation(len(source.labels))
    n_test_sources = len(order) // 5
    n_test = N_CANVASES // 5
    parts = []
    for sources, count, seed in ((order[n_test_sources:], N_CANVASES - n_test, CANVAS_SEED),
                                 (order[:n_test_sources], n_test, CANVAS_SEED + 1)):
        parts.append(ops.compose_canvases(source.images[sources], source.labels[sources], count, CANVAS_SIZE,
                                          max_objects=4, scale_range=(0.25, 0.5), seed=seed))
    canvases = np.concatenate([parts[0][0], parts[1][0]])
    boxes, classes = parts[0][1] + parts[1][1], parts[0][2] + parts[1][2]
    return TaskData(
        images=canvases, labels=ops.primary_class(classes), class_names=source.class_names,
        targets=list(zip(boxes, classes)), test_indices=np.arange(N_CANVASES - n_test, N_CANVASES),
        provenance={**source.provenance, "canvases": N_CANVASES, "canvas_size": CANVAS_SIZE, "seed": CANVAS_SEED,
                    "objects": "1-4 per canvas, scale 0.25-0.5",
                    "test": f"{n_test} canvases from {n_test_sources} {what} no training canvas uses"},
    )


def load_animal_detection() -> TaskData:
    """Canvases of real Animal-MNIST silhouettes (offline, from the PyPI package)."""
    from transferlab.plugins.image_tasks import load_animal_mnist

    return canvases_from(load_animal_mnist(), "silhouettes")


def load_fashion_detection() -> TaskData:
    """Canvases of Fashion-MNIST garments (where Fashion-MNIST is present: Keras cache or Debian package)."""
    from transferlab.plugins.image_tasks import load_fashion_mnist

    return canvases_from(load_fashion_mnist(), "garments")


def read_voc_folder(root: Path, year: str = "2007") -> TaskData:
    """A Pascal VOC devkit folder: ``VOC<year>/Annotations/*.xml``, ``JPEGImages/*.jpg`` and
    ``ImageSets/Main/{trainval,test}.txt`` (the test list gives the official test split when present).

    Boxes are read from the XML (1-based pixel corners) and normalised by the annotated image size.
    Objects marked ``difficult`` are left out of training and scoring; unlike the VOC devkit, which
    ignores detections of them, a detection of a difficult object then counts as a false positive.
    mAP is the VOC2010+ all-point average precision, not VOC2007's 11-point variant.
    """
    base = root / f"VOC{year}" if (root / f"VOC{year}").is_dir() else root
    ann_dir, img_dir = base / "Annotations", base / "JPEGImages"
    if not ann_dir.is_dir() or not img_dir.is_dir():
        raise DatasetUnavailableError(
            f"No Pascal VOC layout under {root}: expected VOC{year}/Annotations/*.xml and VOC{year}/JPEGImages/*.jpg "
            f"(the VOCdevkit folder of {VOC_URL}). Set TRANSFERLAB_VOC_DIR to the VOCdevkit folder."
        )
    index = {c: i for i, c in enumerate(VOC_CLASSES)}
    paths, targets, labels, names = [], [], [], []
    for xml_path in sorted(ann_dir.glob("*.xml")):
        try:
            tree = ET.parse(xml_path).getroot()
            width = float(tree.findtext("size/width"))
            height = float(tree.findtext("size/height"))
            filename = tree.findtext("filename") or f"{xml_path.stem}.jpg"
        except (ET.ParseError, TypeError, ValueError) as exc:
            raise UserError(f"VOC annotation {xml_path} is not valid ({exc}); it needs <filename> and <size>.") from None
        boxes, classes = [], []
        for obj in tree.iter("object"):
            name = (obj.findtext("name") or "").strip()
            if name not in index:
                raise UserError(f"VOC annotation {xml_path} names unknown class {name!r}. Valid classes: {list(VOC_CLASSES)}.")
            if obj.findtext("difficult", "0").strip() == "1":
                continue
            box = obj.find("bndbox")
            x1, y1, x2, y2 = (float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
            boxes.append([(x1 - 1) / width, (y1 - 1) / height, x2 / width, y2 / height])
            classes.append(index[name])
        if not boxes:
            continue
        paths.append(str(img_dir / filename))
        targets.append((np.clip(np.array(boxes, np.float32), 0, 1), np.array(classes, np.int64)))
        labels.append(classes[0])
        names.append(xml_path.stem)
    if not paths:
        raise UserError(f"No annotated objects found under {ann_dir}.")
    test_list = base / "ImageSets" / "Main" / "test.txt"
    test = None
    if test_list.is_file():
        wanted = set(test_list.read_text().split())
        test = np.array([i for i, n in enumerate(names) if n in wanted], dtype=np.int64)
    return TaskData(images=ImageFiles(np.array(paths)), labels=np.array(labels), class_names=VOC_CLASSES,
                    test_indices=test if test is not None and len(test) else None, targets=targets,
                    provenance={"source": str(base)})


def load_voc2007() -> TaskData:
    """Pascal VOC 2007: from ``TRANSFERLAB_VOC_DIR`` when set, else tensorflow-datasets (downloads)."""
    folder = os.environ.get("TRANSFERLAB_VOC_DIR")
    if folder:
        return read_voc_folder(Path(folder))
    try:
        import tensorflow_datasets as tfds

        train, test = tfds.load("voc/2007", split=["train+validation", "test"])
    except Exception as exc:
        raise DatasetUnavailableError(
            f"Task 'voc2007_detection' downloads Pascal VOC 2007 ({VOC_URL}) through tensorflow-datasets, which "
            f"failed here ({type(exc).__name__}). Run it online once, or set TRANSFERLAB_VOC_DIR to a VOCdevkit "
            "folder (VOC2007/Annotations, JPEGImages, ImageSets/Main/test.txt)."
        ) from None
    return _voc_from_tfds(train, test)


def _voc_from_tfds(train, test, size: int = 224) -> TaskData:
    import tensorflow as tf

    images, targets, labels = [], [], []
    n_train = 0
    for split_index, split in enumerate((train, test)):
        for example in split.as_numpy_iterator():
            objects = example["objects"]
            keep = ~objects["is_difficult"]
            if not keep.any():
                continue
            ymin, xmin, ymax, xmax = objects["bbox"][keep].T  # tfds: normalised (ymin, xmin, ymax, xmax)
            images.append(tf.cast(tf.image.resize(example["image"], (size, size)), tf.uint8).numpy())
            targets.append((np.stack([xmin, ymin, xmax, ymax], 1).astype(np.float32), objects["label"][keep].astype(np.int64)))
            labels.append(int(objects["label"][keep][0]))
            n_train += split_index == 0
    return TaskData(images=np.stack(images), labels=np.array(labels), class_names=VOC_CLASSES,
                    test_indices=np.arange(n_train, len(images)), targets=targets,
                    provenance={"source": "tfds:voc/2007", "resized": size})


# ------------------------------------------------------------------------------------------ hooks

def detection_task(name: str, description: str, load, num_classes: int, available, **job_defaults) -> TaskSpec:
    """A detection TaskSpec: the SSD head, mAP@0.5, the small CNN preselected, detection job defaults."""
    return TaskSpec(
        name=name, description=description, load=load, num_classes=num_classes, available=available,
        kind="object_detection", metric="map50", head=SSDHead(), default_backbone="small_cnn",
        job_defaults={"input_size": 96, "epochs": 15, "fine_tune_epochs": 5, "learning_rate": 1e-3, **job_defaults},
    )


@hookimpl
def register_tasks() -> list[TaskSpec]:
    """Animal-MNIST and Fashion-MNIST canvases (offline) and Pascal VOC 2007."""
    from transferlab.plugins.image_tasks import _animal_mnist_available, _fashion_local_dir

    return [
        detection_task("animal_detection", f"Detect animals: {N_CANVASES} {CANVAS_SIZE}px canvases of 1-4 real "
                       "Animal-MNIST silhouettes with boxes (offline), scored by mAP@0.5.",
                       load_animal_detection, 10, _animal_mnist_available),
        detection_task("fashion_detection", f"Detect garments: {N_CANVASES} {CANVAS_SIZE}px canvases of 1-4 "
                       "Fashion-MNIST images with boxes (where Fashion-MNIST is present), scored by mAP@0.5.",
                       load_fashion_detection, 10, lambda: _fashion_local_dir() is not None),
        detection_task("voc2007_detection", "Pascal VOC 2007, 20 classes (TRANSFERLAB_VOC_DIR, or tensorflow-datasets "
                       "online), mAP@0.5.", load_voc2007, 20, lambda: bool(os.environ.get("TRANSFERLAB_VOC_DIR")),
                       input_size=224),
    ]
