"""A stored run's test images as small uint8 RGB thumbnails, found by data index, for galleries.

The images are not stored with a run: they are the job's own data, loaded again with
:func:`transferlab.userdata.load_job_data` (which refuses data that changed since the run, so a thumbnail
always shows the image the run was tested on). In-memory arrays are indexed; files on disk
(:class:`transferlab.data.ImageFiles`) are decoded one by one with :func:`transferlab.image_files.read_image_rgb`,
only those asked for. Nothing here imports TensorFlow.

Detection canvases get their boxes drawn on: true boxes in :data:`TRUE_COLOUR`, predicted ones in
:data:`PREDICTED_COLOUR` (:data:`BOX_LEGEND` says so in words).
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

from transferlab.errors import UserError
from transferlab.jobs import JobSpec

__all__ = ["BOX_LEGEND", "MAX_SIDE", "PREDICTED_COLOUR", "TRUE_COLOUR", "draw_boxes", "image_at", "job_of",
           "load_test_data", "thumbnail", "thumbnails"]

#: the longest side of a thumbnail, in pixels
MAX_SIDE = 128
#: images smaller than this (8x8 digits) are enlarged with nearest-neighbour, so their pixels stay sharp at the
#: size a gallery shows them
MIN_SIDE = 112
TRUE_COLOUR = (0, 200, 83)  # green
PREDICTED_COLOUR = (255, 109, 0)  # orange: told apart from green also by most colour-blind readers
BOX_LEGEND = "Boxes: green = true objects, orange = predicted (score shown in the caption)."


def job_of(run: Any) -> JobSpec:
    """The job of a stored run (a ``Store.get`` dict or a runs-frame row), from its ``spec_json``."""
    text = run.get("spec_json") if hasattr(run, "get") else None
    if not isinstance(text, str) or not text:
        raise UserError(f"Run {run.get('run_id') if hasattr(run, 'get') else run!r} has no stored job spec.")
    return JobSpec.from_json(text)


def load_test_data(registry: Any, job: JobSpec) -> Any:
    """The task data of ``job`` (:class:`transferlab.data.TaskData`), as the run saw it; a :class:`UserError`
    when it is not on this machine or changed since the run."""
    from transferlab.userdata import load_job_data

    data = load_job_data(registry, job)
    if data.images is None:
        raise UserError(f"Task {job.task!r} has no images (its examples are texts): there are no thumbnails to show.")
    return data


def thumbnail(image: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
    """``image`` (H, W), (H, W, 1) or (H, W, 3) uint8 as an RGB uint8 array whose longer side is at most
    ``max_side`` (shrunk smoothly); an image under half :data:`MIN_SIDE` is enlarged by the largest whole factor
    that keeps it within :data:`MIN_SIDE` (each pixel a sharp square)."""
    from PIL import Image

    pixels = np.asarray(image)
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    if pixels.ndim != 3 or pixels.shape[-1] != 3:
        raise UserError(f"An image must be (H, W), (H, W, 1) or (H, W, 3). Received: shape={np.shape(image)}")
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    height, width = pixels.shape[:2]
    longest = max(height, width)
    if longest > max_side:
        scale, resample = max_side / longest, Image.Resampling.LANCZOS
    elif MIN_SIDE // longest > 1:  # a whole factor, so every source pixel becomes an equal square
        scale, resample = float(min(MIN_SIDE, max_side) // longest), Image.Resampling.NEAREST
    else:
        return pixels
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(pixels).resize(size, resample), dtype=np.uint8)


def image_at(images: Any, index: int) -> np.ndarray:
    """Image ``index`` of a task's ``data.images`` as the runner reads it: uint8 RGB (h, w, 3). Files
    (:class:`transferlab.data.ImageFiles`) are decoded as in training, cropped to their ROI (a row of ``-1``:
    no ROI for that file); arrays (h, w) or (h, w, 1) get their grey channel repeated three times."""
    from transferlab.data import ImageFiles
    from transferlab.image_files import read_image_rgb

    if isinstance(images, ImageFiles):
        roi = None if images.rois is None else [int(v) for v in images.rois[index]]
        return read_image_rgb(images.paths[index], None if roi is None or roi[0] < 0 else roi)
    image = np.asarray(images[index])
    if image.ndim == 2:
        image = image[..., None]
    return np.repeat(image, 3, axis=2) if image.shape[-1] == 1 else image


def thumbnails(data: Any, indices: Iterable[int], max_side: int = MAX_SIDE) -> list[np.ndarray]:
    """The thumbnails (:func:`thumbnail`) of ``data``'s images at data ``indices``, in that order. An image
    that cannot be decoded any more (a file deleted since) raises the decoder's :class:`UserError`."""
    count = len(data.images)
    out = []
    for index in indices:
        index = int(index)
        if not 0 <= index < count:
            raise UserError(f"Test image {index} is not in this data ({count} examples): the data changed since the "
                            "run. Run it again.")
        out.append(thumbnail(image_at(data.images, index), max_side))
    return out


def draw_boxes(image: np.ndarray, true_boxes: Sequence[Sequence[float]] = (),
               predicted_boxes: Sequence[Sequence[float]] = (), width: int = 2) -> np.ndarray:
    """A copy of RGB ``image`` with boxes outlined: ``true_boxes`` in :data:`TRUE_COLOUR`, ``predicted_boxes``
    in :data:`PREDICTED_COLOUR` (drawn last, on top). Boxes are ``x0, y0, x1, y1`` normalised to [0, 1]
    (further columns, class and score, are ignored)."""
    from PIL import Image, ImageDraw

    canvas = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    draw = ImageDraw.Draw(canvas)
    w, h = canvas.size
    for boxes, colour in ((true_boxes, TRUE_COLOUR), (predicted_boxes, PREDICTED_COLOUR)):
        for box in boxes:
            x0, y0, x1, y1 = (float(v) for v in list(box)[:4])
            left, right = sorted((x0 * w, x1 * w))
            top, bottom = sorted((y0 * h, y1 * h))
            draw.rectangle([left, top, max(left, right - 1), max(top, bottom - 1)], outline=colour, width=width)
    return np.asarray(canvas, dtype=np.uint8)
