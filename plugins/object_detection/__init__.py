"""Object detection: an SSD-style head on a backbone's feature map, scored by mAP@0.5 (VOC).

The head puts anchors of several scales and aspect ratios on every cell of the backbone's last feature
map and predicts, for each, 4 box offsets and class probabilities with a background class. Training
matches anchors to boxes by IoU, encodes boxes as SSD offsets, and minimises smooth-L1 on positives
plus cross-entropy with 3:1 hard negative mining; inference decodes, applies per-class non-maximum
suppression and scores mAP@0.5 the VOC way.

Modules: :mod:`.anchors` (anchors, IoU, encoding, NMS; with :mod:`.boxes`), :mod:`.loss` (the SSD loss),
:mod:`.voc_map` (VOC mAP), :mod:`.head` (the task head), :mod:`.canvases` (composed detection images)
and :mod:`.voc` (Pascal VOC). The building blocks are re-exported here.

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

from transferlab import TaskSpec, hookimpl
from transferlab.plugins.object_detection.anchors import (
    DEFAULT_ASPECT_RATIOS,
    DEFAULT_SCALES,
    DEFAULT_VARIANCES,
    anchors_per_cell,
    decode_boxes,
    detect,
    encode_targets,
    iou,
    make_anchors,
    non_max_suppression,
)
from transferlab.plugins.object_detection.canvases import (
    CANVAS_SEED,
    CANVAS_SIZE,
    N_CANVASES,
    OBJECT_PIXEL_THRESHOLD,
    canvases_from,
    compose_canvases,
    load_animal_detection,
    load_fashion_detection,
    primary_class,
)
from transferlab.plugins.object_detection.head import SSDHead
from transferlab.plugins.object_detection.loss import ssd_loss
from transferlab.plugins.object_detection.voc import (
    VOC_CLASSES, VOC_ENV, VOC_URL, load_voc2007, read_voc_folder, voc2007_version,
)
from transferlab.plugins.object_detection.voc_map import average_precision, voc_map

__all__ = [
    "CANVAS_SEED",
    "CANVAS_SIZE",
    "DEFAULT_ASPECT_RATIOS",
    "DEFAULT_SCALES",
    "DEFAULT_VARIANCES",
    "N_CANVASES",
    "OBJECT_PIXEL_THRESHOLD",
    "SSDHead",
    "VOC_CLASSES",
    "VOC_ENV",
    "VOC_URL",
    "anchors_per_cell",
    "average_precision",
    "canvases_from",
    "compose_canvases",
    "decode_boxes",
    "detect",
    "detection_task",
    "encode_targets",
    "iou",
    "load_animal_detection",
    "load_fashion_detection",
    "load_voc2007",
    "make_anchors",
    "non_max_suppression",
    "primary_class",
    "read_voc_folder",
    "register_tasks",
    "ssd_loss",
    "voc2007_version",
    "voc_map",
]


def detection_task(name: str, description: str, load, num_classes: int, available, fingerprint=None,
                   **job_defaults) -> TaskSpec:
    """A detection TaskSpec: the SSD head, mAP@0.5, the small CNN preselected, detection job defaults."""
    return TaskSpec(
        name=name, description=description, load=load, num_classes=num_classes, available=available,
        fingerprint=fingerprint,
        kind="object_detection", metric="map50", head=SSDHead(), default_backbone="small_cnn",
        job_defaults={"input_size": 96, "epochs": 15, "fine_tune_epochs": 5, "learning_rate": 1e-3, **job_defaults},
    )


@hookimpl
def register_tasks() -> list[TaskSpec]:
    """Animal-MNIST and Fashion-MNIST canvases (offline) and Pascal VOC 2007."""
    from transferlab.plugins.image_tasks import animal_mnist_available, fashion_mnist_available

    return [
        detection_task("animal_detection", f"Detect animals: {N_CANVASES} {CANVAS_SIZE}px canvases of 1-4 real "
                       "Animal-MNIST silhouettes with boxes (offline), scored by mAP@0.5.",
                       load_animal_detection, 10, animal_mnist_available),
        detection_task("fashion_detection", f"Detect garments: {N_CANVASES} {CANVAS_SIZE}px canvases of 1-4 "
                       "Fashion-MNIST images with boxes (where Fashion-MNIST is present), scored by mAP@0.5.",
                       load_fashion_detection, 10, fashion_mnist_available),
        detection_task("voc2007_detection", "Pascal VOC 2007, 20 classes (TRANSFERLAB_VOC_DIR, or tensorflow-datasets "
                       "online), mAP@0.5.", load_voc2007, 20, lambda: bool(os.environ.get(VOC_ENV)),
                       fingerprint=voc2007_version, input_size=224),
    ]
