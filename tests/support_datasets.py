"""Writers of small datasets in the real layouts (HAM10000, GTSRB), for tests.

They write real files (JPEGs, .ppm, CSVs) that the plugins' readers take as they would the downloaded
sets; each class is drawn distinctly enough that a small CNN learns it in a few epochs.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from transferlab import PathLike, UserError
from transferlab.plugins.medical_imaging import HAM10000_CLASSES, HAM10000_CSV
from transferlab.plugins.road_signs import GTSRB_COLUMNS, GTSRB_NUM_CLASSES, GTSRB_TEST_GT

# ---------------------------------------------------------------------------------------------------
# HAM10000

# Each class gets a colour and a shape, so a small CNN can tell them apart through the noise.
_HAM_LOOKS = {  # dx: (RGB of the lesion, shape)
    "akiec": ((200, 70, 70), "square"),
    "bcc": ((235, 160, 190), "ring"),
    "bkl": ((160, 110, 60), "ellipse"),
    "df": ((110, 60, 40), "small"),
    "mel": ((40, 30, 50), "star"),
    "nv": ((130, 80, 45), "disc"),
    "vasc": ((130, 30, 120), "dots"),
}
_HAM_SITES = ("back", "lower extremity", "trunk", "upper extremity", "abdomen", "face", "chest", "foot", "scalp", "neck")


def _ham_lesion_mask(shape: str, size: int, cx: float, cy: float, radius: float, angle: float) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    u = ((x - cx) * np.cos(angle) + (y - cy) * np.sin(angle)) / radius
    v = (-(x - cx) * np.sin(angle) + (y - cy) * np.cos(angle)) / radius
    r = np.hypot(u, v)
    if shape == "square":
        inside = np.maximum(np.abs(u), np.abs(v)) - 0.85
    elif shape == "ring":
        inside = np.abs(r - 0.75) - 0.25
    elif shape == "ellipse":
        inside = np.hypot(u / 1.3, v * 1.8) - 1.0
    elif shape == "small":
        inside = r - 0.45
    elif shape == "star":
        inside = r - (0.8 + 0.3 * np.cos(5 * np.arctan2(v, u)))
    elif shape == "dots":
        centres = [(0.0, -0.6), (0.55, 0.35), (-0.55, 0.35)]
        inside = np.min([np.hypot(u - a, v - b) for a, b in centres], axis=0) - 0.3
    else:  # disc
        inside = r - 0.9
    return 1.0 / (1.0 + np.exp(np.clip(inside * 12.0, -30, 30)))  # soft edge, like a real lesion border


def write_ham10000_fixture(
    root: PathLike, per_class: int | Sequence[int] = (4, 5, 8, 3, 8, 20, 3), seed: int = 0, size: int = 64
) -> Path:
    """Write a small HAM10000 in the official layout and return its folder.

    ``HAM10000_metadata.csv`` has the real columns (lesion_id, image_id, dx, dx_type, age, sex,
    localization) and ids like ``HAM_0000118`` / ``ISIC_0024306``; the JPEGs are split between
    ``HAM10000_images_part_1`` and ``_part_2``. ``per_class`` is one count or seven (in
    ``HAM10000_CLASSES`` order; the default keeps the real imbalance). Each lesion has 1-3 images that
    look alike; each class has its own lesion colour and shape on noisy skin, so it is learnable.
    """
    counts = (per_class,) * len(HAM10000_CLASSES) if isinstance(per_class, (int, np.integer)) else tuple(per_class)
    if len(counts) != len(HAM10000_CLASSES) or any(int(c) != c or c < 0 for c in counts) or sum(counts) == 0:
        raise UserError(
            "per_class must be a count >= 0 or 7 of them (one per HAM10000 class), not all 0. "
            f"Received: per_class={per_class!r}"
        )
    if size < 16:
        raise UserError(f"size must be at least 16 pixels. Received: size={size!r}")
    rng = np.random.default_rng(seed)
    root_path = Path(os.fsdecode(root))
    lesions = []  # (dx, number of images)
    for dx, count in zip(HAM10000_CLASSES, counts):
        left = int(count)
        while left:
            take = min(left, int(rng.integers(1, 4)))
            lesions.append((dx, take))
            left -= take
    lesion_numbers = rng.permutation(len(lesions) * 3)[: len(lesions)] + 118
    n_images = sum(take for _, take in lesions)
    image_numbers = iter(rng.permutation(n_images) + 24306)
    first_of_part_2 = 24306 + (n_images + 1) // 2
    for part in (1, 2):
        (root_path / f"HAM10000_images_part_{part}").mkdir(parents=True, exist_ok=True)
    rows = []
    for (dx, take), lesion_number in zip(lesions, lesion_numbers):
        colour, shape = _HAM_LOOKS[dx]
        skin = np.array([215, 160, 130], dtype=np.float32) + rng.normal(0, 12, 3)
        cx, cy = size / 2 + rng.normal(0, size / 16, 2)
        radius, angle = size * rng.uniform(0.2, 0.3), rng.uniform(0, np.pi)
        lesion_colour = np.array(colour, dtype=np.float32) + rng.normal(0, 10, 3)
        meta = (  # dx_type, age (sometimes unknown), sex, localization: one per lesion, as in the real file
            rng.choice(["histo", "follow_up", "consensus", "confocal"]),
            rng.choice([""] + [f"{a}.0" for a in range(5, 90, 5)]),
            rng.choice(["male", "female", "unknown"]),
            rng.choice(_HAM_SITES),
        )
        for _ in range(take):
            number = next(image_numbers)
            # the images of one lesion differ by a small shift, scale and turn, and by their noise
            mask = _ham_lesion_mask(
                shape, size, cx + rng.normal(0, 1.5), cy + rng.normal(0, 1.5),
                radius * rng.uniform(0.93, 1.07), angle + rng.normal(0, 0.1),
            )
            pixels = skin * (1 - mask[..., None]) + lesion_colour * mask[..., None] + rng.normal(0, 14, (size, size, 3))
            image_id = f"ISIC_{number:07d}"
            part = 1 if number < first_of_part_2 else 2
            target = root_path / f"HAM10000_images_part_{part}" / f"{image_id}.jpg"
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(target, quality=90)
            rows.append((f"HAM_{lesion_number:07d}", image_id, dx, *meta))
    columns = ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"]
    pd.DataFrame(rows, columns=columns).to_csv(root_path / HAM10000_CSV, index=False)
    return root_path


# ---------------------------------------------------------------------------------------------------
# GTSRB

def _hsv_to_rgb(hue: float, saturation: float, value: float) -> np.ndarray:
    pixel = Image.new("HSV", (1, 1), (int(hue * 255) % 256, int(saturation * 255), int(value * 255)))
    return np.array(pixel.convert("RGB").getpixel((0, 0)), dtype=np.float32)


def _draw_sign(
    rng: np.random.Generator, class_id: int, background: np.ndarray
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A noisy photo with a sign-like shape inside a margin; its class shows in shape, colour and stripes."""
    width, height = (int(v) for v in rng.integers(30, 61, 2))
    # GTSRB keeps a margin of about 10% (at least 5 px in the originals) around each sign.
    def margin(side: int) -> int:
        return int(rng.integers(3, max(4, side // 7) + 1))

    x1, y1 = margin(width), margin(height)
    x2, y2 = width - 1 - margin(width), height - 1 - margin(height)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    u = (x - (x1 + x2) / 2) / ((x2 - x1) / 2)
    v = (y - (y1 + y2) / 2) / ((y2 - y1) / 2)
    shape = class_id % 4  # circle, triangle up, triangle down, diamond
    # extent: 1 on the shape's outline, scaling with it, so extent <= 0.6 is the same shape inside
    extent = [
        np.hypot(u, v),
        np.maximum(2 * np.abs(u) - v, np.abs(v)),
        np.maximum(2 * np.abs(u) + v, np.abs(v)),
        np.abs(u) + np.abs(v),
    ][shape]
    border = _hsv_to_rgb((class_id // 4) / 11, 0.85, 0.8)
    angle = class_id * np.pi / GTSRB_NUM_CLASSES
    stripes = np.sin((u * np.cos(angle) + v * np.sin(angle)) * 7.0) > 0
    inner = np.where(stripes[..., None], np.float32(235), border * 0.35)
    pixels = np.where((extent <= 0.6)[..., None], inner, np.where((extent <= 1.0)[..., None], border, background))
    pixels = pixels * rng.uniform(0.7, 1.2) + rng.normal(0, 10, pixels.shape)
    return np.clip(pixels, 0, 255).astype(np.uint8), (x1, y1, x2, y2)


def write_gtsrb_fixture(
    root: PathLike, classes: Iterable[int] = range(GTSRB_NUM_CLASSES), per_class: int = 6, n_test: int = 43, seed: int = 0
) -> Path:
    """Write a small GTSRB in the official layout and return its folder.

    ``Final_Training/Images/000NN/`` holds ``per_class`` real .ppm files per class in tracks of up to
    three frames (``<track>_<frame>.ppm``) and ``GT-000NN.csv``; ``Final_Test/Images/`` holds ``n_test``
    images of random written classes, the archive's label-less ``GT-final_test.test.csv``, and the
    labels go to ``GT-final_test.csv`` in the folder, as in the GT archive. Images are 30-60 px with a
    sign in a class-specific shape, colour and stripe angle inside a margin; the CSV ROI is the sign's
    box. Only the classes in ``classes`` are written.
    """
    class_ids = sorted({int(c) for c in classes})
    if not class_ids or class_ids[0] < 0 or class_ids[-1] >= GTSRB_NUM_CLASSES:
        raise UserError(f"classes must be a non-empty subset of 0..{GTSRB_NUM_CLASSES - 1}. Received: classes={class_ids}")
    if per_class < 1 or n_test < 0:
        raise UserError(f"per_class must be >= 1 and n_test >= 0. Received: per_class={per_class}, n_test={n_test}")
    rng = np.random.default_rng(seed)
    root_path = Path(os.fsdecode(root))

    def background() -> np.ndarray:
        return rng.uniform(40, 200, 3).astype(np.float32)

    for class_id in class_ids:
        folder = root_path / "Final_Training" / "Images" / f"{class_id:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for index in range(per_class):
            if index % 3 == 0:
                scene = background()  # the frames of one track share their surroundings
            pixels, roi = _draw_sign(rng, class_id, scene)
            filename = f"{index // 3:05d}_{index % 3:05d}.ppm"
            Image.fromarray(pixels).save(folder / filename)
            rows.append((filename, pixels.shape[1], pixels.shape[0], *roi, class_id))
        pd.DataFrame(rows, columns=list(GTSRB_COLUMNS)).to_csv(folder / f"GT-{class_id:05d}.csv", sep=";", index=False)
    test_dir = root_path / "Final_Test" / "Images"
    test_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(n_test):
        class_id = int(rng.choice(class_ids))
        pixels, roi = _draw_sign(rng, class_id, background())
        filename = f"{index:05d}.ppm"
        Image.fromarray(pixels).save(test_dir / filename)
        rows.append((filename, pixels.shape[1], pixels.shape[0], *roi, class_id))
    labels = pd.DataFrame(rows, columns=list(GTSRB_COLUMNS))
    labels.drop(columns="ClassId").to_csv(test_dir / "GT-final_test.test.csv", sep=";", index=False)
    labels.to_csv(root_path / GTSRB_TEST_GT, sep=";", index=False)
    return root_path
