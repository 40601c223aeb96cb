"""Detection canvases composed from classification images (bright objects on black), with their boxes.

``animal_detection`` pastes real Animal-MNIST silhouettes, ``fashion_detection`` Fashion-MNIST garments,
at random positions and scales on 128x128 canvases, 1-4 objects each, deterministic from a fixed seed.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from transferlab import TaskData
from transferlab.plugins.object_detection.boxes import as_class_ids, check_positive_int, pairwise_iou

__all__ = [
    "CANVAS_SEED",
    "CANVAS_SIZE",
    "N_CANVASES",
    "OBJECT_PIXEL_THRESHOLD",
    "canvases_from",
    "compose_canvases",
    "load_animal_detection",
    "load_fashion_detection",
    "primary_class",
]

CANVAS_SIZE = 128
N_CANVASES = 3000
CANVAS_SEED = 2024
#: A canvas pixel above this value belongs to an object; boxes from compose_canvases are tight
#: around such pixels. Bilinear resizing leaves faint fringes, which should not widen a box.
OBJECT_PIXEL_THRESHOLD = 32
_MAX_OVERLAP_BETWEEN_OBJECTS = 0.3
_PLACEMENT_TRIES = 30


def compose_canvases(
    images: np.ndarray,
    labels: np.ndarray,
    n_canvases: int,
    canvas_size: int = 128,
    max_objects: int = 4,
    scale_range: tuple[float, float] = (0.25, 0.5),
    seed: int = 0,
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Detection images built from classification images (bright objects on a black background,
    e.g. Animal-MNIST or Fashion-MNIST).

    Each canvas gets a uniformly drawn number of objects in 1..``max_objects``. Each object is a
    random source image resized (bilinear) to a square of side ``scale * canvas_size``, scale uniform
    in ``scale_range``, placed at a random position fully inside the canvas and composited by taking
    the pixel maximum. A placement whose box has IoU > 0.3 with an already placed box is redrawn
    (new image, size and position) up to 30 times; after that the canvas keeps the objects it has,
    so crowded settings may give fewer objects than drawn. There is no added background noise.

    Boxes are tight around the object's own pasted pixels above :data:`OBJECT_PIXEL_THRESHOLD`
    (pixel k spans [k, k + 1) / canvas_size), not the paste square. Source images with no pixel
    above the threshold are never used. The output depends only on the arguments: the same seed
    gives identical canvases.

    Returns:
        ``(canvases (n, S, S, 3) uint8 grey replicated to RGB, boxes: list of (k, 4) float32,
        classes: list of (k,) int64 labels of the pasted images)``.
    """
    from PIL import Image

    source = np.asarray(images)
    if source.ndim == 4 and source.shape[-1] == 1:
        source = source[..., 0]
    if source.ndim != 3 or source.shape[0] == 0:
        raise ValueError(
            f"Expected `images` of shape (N, h, w) or (N, h, w, 1) with N >= 1. Received: images.shape={np.shape(images)}"
        )
    if source.dtype != np.uint8:
        raise ValueError(f"Expected `images` of dtype uint8 (0..255). Received: images.dtype={source.dtype}")
    label_ids = as_class_ids(labels, "labels", len(source))
    n_canvases = check_positive_int(n_canvases, "n_canvases", minimum=0)
    canvas_size = check_positive_int(canvas_size, "canvas_size", minimum=8)
    max_objects = check_positive_int(max_objects, "max_objects")
    low, high = (float(s) for s in scale_range) if len(scale_range) == 2 else (0.0, -1.0)
    if not 0.0 < low <= high <= 1.0:
        raise ValueError(
            f"Expected `scale_range` as (low, high) with 0 < low <= high <= 1. Received: scale_range={scale_range!r}"
        )
    usable = np.flatnonzero(source.reshape(len(source), -1).max(axis=1) > OBJECT_PIXEL_THRESHOLD)
    if usable.size == 0:
        raise ValueError(
            f"Expected source images with object pixels above {OBJECT_PIXEL_THRESHOLD} on a black background. "
            f"Received: images with maximum value {int(source.max())}"
        )

    rng = np.random.default_rng(seed)
    size = canvas_size
    canvases = np.zeros((n_canvases, size, size), dtype=np.uint8)
    all_boxes: list[np.ndarray] = []
    all_classes: list[np.ndarray] = []
    for index in range(n_canvases):
        canvas = canvases[index]
        boxes: list[np.ndarray] = []
        classes: list[int] = []
        for _ in range(int(rng.integers(1, max_objects + 1))):
            for _attempt in range(_PLACEMENT_TRIES):
                chosen = usable[rng.integers(len(usable))]
                side = max(2, int(round(rng.uniform(low, high) * size)))
                patch = np.asarray(Image.fromarray(source[chosen]).resize((side, side), Image.BILINEAR))
                rows, cols = np.nonzero(patch > OBJECT_PIXEL_THRESHOLD)
                x0, y0 = (int(v) for v in rng.integers(0, size - side + 1, size=2))
                if rows.size == 0:  # shrinking blurred a faint object below the threshold
                    continue
                box = np.array([x0 + cols.min(), y0 + rows.min(), x0 + cols.max() + 1, y0 + rows.max() + 1]) / size
                if boxes and pairwise_iou(box[None], np.stack(boxes)).max() > _MAX_OVERLAP_BETWEEN_OBJECTS:
                    continue
                region = canvas[y0 : y0 + side, x0 : x0 + side]
                np.maximum(region, patch, out=region)
                boxes.append(box)
                classes.append(int(label_ids[chosen]))
                break
            else:
                break  # no room found for another object: keep the ones placed
        if not boxes:
            raise ValueError(
                f"Expected objects that stay visible when resized to {low}..{high} of the canvas. "
                f"Received: canvas_size={canvas_size}, scale_range={scale_range!r} (no object survived resizing)"
            )
        all_boxes.append(np.stack(boxes).astype(np.float32))
        all_classes.append(np.asarray(classes, dtype=np.int64))
    return np.repeat(canvases[..., None], 3, axis=-1), all_boxes, all_classes


def primary_class(classes_list: Sequence[np.ndarray]) -> np.ndarray:
    """Each canvas's label for stratified splitting: the class of its first object (int64, (n,))."""
    firsts = []
    for i, classes in enumerate(classes_list):
        classes = np.asarray(classes).reshape(-1)
        if classes.size == 0:
            raise ValueError(f"Expected every canvas to hold at least one object. Received: classes_list[{i}] is empty")
        firsts.append(int(classes[0]))
    return np.asarray(firsts, dtype=np.int64)


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
        parts.append(compose_canvases(source.images[sources], source.labels[sources], count, CANVAS_SIZE,
                                          max_objects=4, scale_range=(0.25, 0.5), seed=seed))
    canvases = np.concatenate([parts[0][0], parts[1][0]])
    boxes, classes = parts[0][1] + parts[1][1], parts[0][2] + parts[1][2]
    return TaskData(
        images=canvases, labels=primary_class(classes), class_names=source.class_names,
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
