"""Image datasets on disk: per-file lists for lazy decoding, and one decoder for every Pillow mode.

Nothing here holds the decoded pixels of a whole dataset. The readers (a one-folder-per-class tree,
HAM10000, GTSRB) return an :class:`ImageFolderScan` of file paths, labels, optional ROI boxes and group
ids; a tf.data pipeline decodes each file when it needs it with :func:`read_image_rgb`. Scans check every
file cheaply (:func:`check_image`) so that a corrupt file is skipped up front instead of stopping
training mid-epoch. The fixture writers make tiny copies of the real layouts for tests and demos.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from transferlab.errors import DatasetUnavailableError, UserError

MAX_PIXELS = 40_000_000
MAX_BAD_FRACTION = 0.05
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".ppm", ".tif", ".tiff", ".webp")

PathLike = str | bytes | os.PathLike

# ---------------------------------------------------------------------------------------------------
# Decoding


def _too_large(width: int, height: int) -> str:
    return f"too large: {width}x{height} px (limit {MAX_PIXELS / 1e6:g} MP)"


def read_image_rgb(path: PathLike, roi: Sequence[int] | None = None) -> np.ndarray:
    """Decode one image file to a uint8 array of shape (H, W, 3), optionally cropped to ``roi``.

    Every Pillow mode becomes RGB: grayscale and 1-bit are replicated to three channels, palettes
    (with transparency) and CMYK/YCbCr are converted, 16-bit images are scaled by their 16-bit range
    (65535 -> 255), 32-bit integer images likewise when their values fit 16 bits and by their own
    min..max otherwise, float images from [0, 1] (or their min..max when outside it), and images with
    alpha are composited on black. The EXIF orientation is applied first, so ``roi`` is in the
    coordinates of the image as displayed. Multi-frame files (GIF, TIFF) give their first frame.

    ``roi`` is ``(x1, y1, x2, y2)`` in pixels with x2 and y2 inclusive (the GTSRB convention),
    clamped to the image. ``path`` may be bytes, as ``tf.numpy_function`` passes it.

    Raises UserError for a missing, corrupt or over-large file (more than ``MAX_PIXELS``; the size
    is read from the header, before anything is decoded) and for an ROI that misses the image.
    """
    path = os.fsdecode(path)
    try:
        image = Image.open(path)
    except FileNotFoundError:
        raise UserError(f"Image file not found: {path}. Scan the dataset again to refresh the file list.") from None
    except Image.DecompressionBombError as err:  # Pillow's own limit, far above ours: refused in the header
        raise UserError(
            f"Image {path} is too large to decode ({err}). The limit is {MAX_PIXELS / 1e6:g} MP; "
            "downscale the image or remove it from the dataset."
        ) from None
    except Exception as err:  # Pillow signals unreadable headers with many exception types
        raise UserError(
            f"Cannot read image file {path}: {err}. Replace or delete the file, then scan the dataset again."
        ) from err
    with image:
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise UserError(
                f"Image {path} is {width}x{height} px ({width * height / 1e6:.1f} MP), above the limit of "
                f"{MAX_PIXELS / 1e6:g} MP (transferlab.image_files.MAX_PIXELS). Downscale it or remove it "
                f"from the dataset. Received: size={width}x{height}"
            )
        try:
            image.load()
            ImageOps.exif_transpose(image, in_place=True)
            pixels = _to_rgb(image)
        except UserError:
            raise
        except Exception as err:
            raise UserError(
                f"Cannot decode image file {path}: {err}. The file is truncated or corrupt; replace or delete "
                "it, then scan the dataset again."
            ) from err
    if roi is not None:
        pixels = pixels[_roi_slices(roi, pixels.shape[1], pixels.shape[0], path)]
    return np.require(pixels, np.uint8, ["C_CONTIGUOUS", "WRITEABLE"])  # Pillow's buffers are read-only


def _roi_slices(roi: Sequence[int], width: int, height: int, path: str) -> tuple[slice, slice]:
    values = np.asarray(roi)
    if values.shape != (4,) or not np.issubdtype(values.dtype, np.number) or not np.all(values == np.round(values)):
        raise UserError(f"roi must be 4 whole numbers (x1, y1, x2, y2) in pixels. Received: roi={roi!r}")
    x1, y1, x2, y2 = (int(v) for v in values)
    # x2 and y2 are inclusive (GTSRB), hence the + 1; clamping forgives boxes that touch the border.
    left, top, right, bottom = max(x1, 0), max(y1, 0), min(x2 + 1, width), min(y2 + 1, height)
    if right <= left or bottom <= top:
        raise UserError(
            f"The ROI lies outside image {path} ({width}x{height} px) or is empty. Fix the box in the "
            f"dataset's annotation file. Received: roi={(x1, y1, x2, y2)}"
        )
    return slice(top, bottom), slice(left, right)


def _to_rgb(image: Image.Image) -> np.ndarray:
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image)
    if mode in ("L", "1"):
        return _gray_to_rgb(np.asarray(image.convert("L")))
    if mode.startswith("I") or mode == "F":
        return _gray_to_rgb(_scale_to_uint8(np.asarray(image), mode))
    if mode in ("RGBa", "La"):  # premultiplied alpha is already composited on black
        channels = np.asarray(image)
        return channels[..., :3] if mode == "RGBa" else _gray_to_rgb(channels[..., 0])
    if mode == "LA":
        gray_alpha = np.asarray(image).astype(np.uint16)
        return _gray_to_rgb(((gray_alpha[..., 0] * gray_alpha[..., 1] + 127) // 255).astype(np.uint8))
    if mode in ("RGBA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = np.asarray(image.convert("RGBA")).astype(np.uint16)
        return ((rgba[..., :3] * rgba[..., 3:] + 127) // 255).astype(np.uint8)
    try:  # P, CMYK, YCbCr, LAB, HSV, RGBX
        return np.asarray(image.convert("RGB"))
    except ValueError as err:
        raise UserError(
            f"Images in Pillow mode {mode!r} cannot be converted to RGB ({err}). Convert the file to PNG or JPEG."
        ) from err


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=2)


def _scale_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """Map a 16/32-bit integer or float image to 0..255 by its range, never by clipping at 255."""
    values = values.astype(np.float32)
    low, high = 0.0, 65535.0  # the 16-bit container: a 12-bit image in it comes out dark, but consistently
    if mode == "F":
        finite = values[np.isfinite(values)]
        if finite.size and (finite.min() < 0 or finite.max() > 1):
            low, high = finite.min(), finite.max()
        else:
            low, high = 0.0, 1.0
    elif mode == "I" and values.size and (values.min() < 0 or values.max() > 65535):
        low, high = values.min(), values.max()  # a true 32-bit image has no fixed range to scale by
    span = max(float(high) - float(low), 1e-12)
    scaled = np.nan_to_num((values - low) * (255.0 / span), nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def check_image(path: PathLike) -> str | None:
    """None if the file is a usable image, else a short reason ("truncated or not an image", ...).

    Usable: Pillow opens it, its size is positive and at most ``MAX_PIXELS``, and its data is whole.
    PNG is checked with ``verify()`` (the CRC of every chunk, no decompression). The other formats
    have no real ``verify()`` in Pillow (a truncated JPEG passes it), so they are decoded: JPEG at 1/8
    scale through ``draft()``, which still reads every byte of the entropy-coded data, so truncation
    is caught at a fraction of a full decode (about 0.2-2 ms for a 600x450 photo). GIF, BMP, PPM, TIFF
    and WebP are decoded in full, which is cheap for the small images such datasets hold.
    """
    path = os.fsdecode(path)
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width <= 0 or height <= 0:
                return f"empty image: {width}x{height} px"
            if width * height > MAX_PIXELS:
                return _too_large(width, height)
            if image.format == "PNG":
                image.verify()
            else:
                if image.format == "JPEG":
                    image.draft(None, (max(1, width // 8), max(1, height // 8)))
                image.load()
    except FileNotFoundError:
        return "file not found"
    except PermissionError:
        return "permission denied"
    except Image.DecompressionBombError:
        return f"too large (limit {MAX_PIXELS / 1e6:g} MP)"
    except Exception as err:  # malformed files raise OSError, SyntaxError, ValueError, struct.error...
        detail = str(err)[:80]
        return "truncated or not an image" + (f" ({detail})" if detail else "")
    return None


def _file_reasons(paths: Sequence[str | None], missing: str) -> list[str | None]:
    """check_image of each file, or ``missing`` for a path that is None or not a file.

    Sequential on purpose: Pillow's decoders gained nothing from threads when measured (3000 small
    JPEGs check in about 0.4 s, 600x450 photos at about 0.7 ms each)."""
    exists = [p for p in paths if p is not None and os.path.isfile(p)]
    reasons = {p: check_image(p) for p in exists}
    return [reasons[p] if p in reasons else missing for p in paths]


# ---------------------------------------------------------------------------------------------------
# Scans


@dataclass(frozen=True, eq=False)  # eq=False: == on numpy fields would be ambiguous
class ImageFolderScan:
    """Image files of a dataset, not their pixels.

    ``paths``: absolute file paths (str); ``labels``: int64 indices into ``class_names``;
    ``skipped``: ``(path, reason)`` of every file left out; ``rois``: optional (N, 4) int32 boxes
    ``x1, y1, x2, y2`` (inclusive) for :func:`read_image_rgb`; ``groups``: optional str ids of
    images that must stay in the same split (a lesion, a GTSRB track of one physical sign).
    """

    paths: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]
    rois: np.ndarray | None = None
    groups: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name in ("labels", "rois", "groups"):
            value = getattr(self, name)
            if value is not None and len(value) != len(self.paths):
                raise UserError(f"ImageFolderScan has {len(self.paths)} paths but {len(value)} {name}.")

    def __len__(self) -> int:
        return len(self.paths)


def _check_fraction(max_bad_fraction: float) -> None:
    if not 0 <= max_bad_fraction <= 1:
        raise UserError(
            "max_bad_fraction must be in [0, 1] (0.05 = skip up to 5% bad files). "
            f"Received: max_bad_fraction={max_bad_fraction!r}"
        )


def _refuse_if_too_many_bad(bad: list[tuple[str, str]], n_files: int, max_bad_fraction: float, where: str, fix: str) -> None:
    if not n_files or len(bad) / n_files <= max_bad_fraction:
        return
    listing = "; ".join(f"{path}: {reason}" for path, reason in bad[:5])
    more = f"; and {len(bad) - 5} more" if len(bad) > 5 else ""
    raise UserError(
        f"{len(bad)} of {n_files} image files in {where} cannot be used ({len(bad) / n_files:.1%}, more than "
        f"max_bad_fraction allows): {listing}{more}. {fix} Received: max_bad_fraction={max_bad_fraction}"
    )


def _is_hidden(name: str) -> bool:
    # "__MACOSX" holds the "._*" resource forks of zips made on macOS: never data.
    return name.startswith(".") or name == "__MACOSX"


def _is_image_name(name: str) -> bool:
    return not _is_hidden(name) and name.lower().endswith(IMAGE_EXTENSIONS)


def _read_table(csv_path: Path, required: Sequence[str], fix: str, **options) -> pd.DataFrame:
    """A CSV file as a DataFrame with stripped column names; a UserError that ends with ``fix`` when it
    cannot be parsed or lacks a ``required`` column."""
    try:
        table = pd.read_csv(csv_path, **options)
    except (ValueError, UnicodeDecodeError) as err:  # pandas' ParserError and EmptyDataError are ValueErrors
        raise UserError(f"Cannot parse {csv_path}: {err}. {fix}") from err
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise UserError(
            f"{csv_path} lacks the column(s) {', '.join(missing)}; it needs {', '.join(required)}. "
            f"Present columns: {', '.join(table.columns)}. {fix}"
        )
    return table


def _walk_files(folder: Path) -> list[str]:
    """Every non-hidden file under ``folder``, in a stable order (sorted at every level)."""
    found = []
    for current, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d))
        found.extend(os.path.join(current, f) for f in sorted(filenames) if not _is_hidden(f))
    return found


# image_dataset_from_directory is not used: it stops mid-epoch at the first corrupt file, and it gives
# a tf.data.Dataset rather than per-file lists, which grouped and seeded splits need.
def scan_class_folders(root: PathLike, max_bad_fraction: float = MAX_BAD_FRACTION) -> ImageFolderScan:
    """List a one-folder-per-class tree (``root/<class>/<images>``, the layout of
    ``keras.utils.image_dataset_from_directory``) without decoding it.

    Classes are the sub-folders of ``root`` sorted by name; files are sorted (a folder's own before its
    sub-folders'), and images in nested folders belong to their top-level class folder. Hidden files
    and folders (and ``__MACOSX``) are ignored, as are files without an image extension
    (``IMAGE_EXTENSIONS``). Image files directly in
    ``root`` belong to no class: they are left out and listed in ``skipped`` with the reason
    "not in a class folder", without counting as bad. Corrupt files are skipped and listed too; when
    more than ``max_bad_fraction`` of the image files are bad the scan is refused.

    Raises DatasetUnavailableError when ``root`` does not exist, and UserError when it holds no
    class folder, a class folder without images, or a single class.
    """
    _check_fraction(max_bad_fraction)
    root_path = Path(os.path.abspath(os.fsdecode(root)))
    layout = f"{root_path}/<class name>/<image files>, e.g. {root_path}/cats/001.jpg and {root_path}/dogs/001.jpg"
    if not root_path.exists():
        raise DatasetUnavailableError(f"Image folder not found: {root_path}. Expected one folder per class: {layout}.")
    if not root_path.is_dir():
        raise UserError(f"Expected a folder of class folders, but {root_path} is a file. Expected layout: {layout}.")
    entries = sorted(e for e in os.listdir(root_path) if not _is_hidden(e))
    class_names = [e for e in entries if (root_path / e).is_dir()]
    loose = [str(root_path / e) for e in entries if _is_image_name(e) and (root_path / e).is_file()]
    if not class_names:
        found = f" It holds {len(loose)} image files directly, which belong to no class." if loose else ""
        raise UserError(
            f"No class folders in {root_path}.{found} Put each class's images in a folder named after it: {layout}."
        )
    files = {name: [f for f in _walk_files(root_path / name) if _is_image_name(os.path.basename(f))] for name in class_names}
    empty = [name for name in class_names if not files[name]]
    if empty:
        raise UserError(
            f"Class folder(s) without image files in {root_path}: {', '.join(map(repr, empty))}. Every folder "
            f"there is a class; remove these folders or add images to them (files ending in {', '.join(IMAGE_EXTENSIONS)})."
        )
    if len(class_names) < 2:
        raise UserError(
            f"{root_path} has one class folder ({class_names[0]!r}); a classifier needs at least two. "
            f"Add a folder of images for each other class: {layout}."
        )
    all_files = [f for name in class_names for f in files[name]]
    reasons = {f: check_image(f) for f in all_files}
    bad = [(f, reasons[f]) for f in all_files if reasons[f] is not None]
    fix = "Replace or delete these files, or raise max_bad_fraction to skip them."
    _refuse_if_too_many_bad(bad, len(all_files), max_bad_fraction, str(root_path), fix)
    unusable = [name for name in class_names if all(reasons[f] is not None for f in files[name])]
    if unusable:
        raise UserError(
            f"Class folder(s) in {root_path} where no image can be read: {', '.join(map(repr, unusable))}. "
            "Replace the files or remove the folders."
        )
    kept = [(f, label) for label, name in enumerate(class_names) for f in files[name] if reasons[f] is None]
    return ImageFolderScan(
        paths=np.array([f for f, _ in kept], dtype=str),
        labels=np.array([label for _, label in kept], dtype=np.int64),
        class_names=tuple(class_names),
        skipped=tuple([(p, "not in a class folder") for p in loose] + bad),
    )


# ---------------------------------------------------------------------------------------------------
# HAM10000 (dermatoscopic images, 7 diagnoses, several images per lesion)

HAM10000_CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
HAM10000_URL = "https://doi.org/10.7910/DVN/DBW86T"
HAM10000_ENV = "TRANSFERLAB_HAM10000_DIR"
HAM10000_CSV = "HAM10000_metadata.csv"
_HAM10000_REQUIRED = ("image_id", "dx", "lesion_id")


def _ham10000_unavailable(reason: str) -> DatasetUnavailableError:
    return DatasetUnavailableError(
        f"HAM10000 is not available: {reason}. Download HAM10000_metadata.csv, HAM10000_images_part_1.zip and "
        f"HAM10000_images_part_2.zip from {HAM10000_URL}, unzip both image archives into one folder so that it holds\n"
        f"  <folder>/{HAM10000_CSV}   (columns lesion_id, image_id, dx, ...)\n"
        "  <folder>/HAM10000_images_part_1/ISIC_0024306.jpg ...\n"
        "  <folder>/HAM10000_images_part_2/ISIC_0029306.jpg ...\n"
        f"and set {HAM10000_ENV} to that folder."
    )


def read_ham10000(root: PathLike, max_bad_fraction: float = MAX_BAD_FRACTION) -> ImageFolderScan:
    """List HAM10000 from its official layout: ``root/HAM10000_metadata.csv`` and ``<image_id>.jpg``
    files anywhere under ``root`` (the download splits them into two part folders).

    Labels index ``HAM10000_CLASSES``; ``groups`` are the lesion ids (a row without one is its own
    group), so that images of one lesion never straddle a split. Images are sorted by image id. Rows
    whose image is missing or corrupt are skipped and listed; above ``max_bad_fraction`` the scan is
    refused. Raises DatasetUnavailableError when the folder or the CSV is missing, and UserError for
    missing columns, unknown ``dx`` labels or duplicate image ids.
    """
    _check_fraction(max_bad_fraction)
    root_path = Path(os.path.abspath(os.fsdecode(root)))
    csv_path = root_path / HAM10000_CSV
    if not root_path.is_dir():
        raise _ham10000_unavailable(f"folder {root_path} does not exist")
    if not csv_path.is_file():
        raise _ham10000_unavailable(f"{csv_path} is missing")
    # dtype=str and no NA parsing: ids stay text, and a blank lesion_id reads as "" rather than NaN
    fix = f"Download the metadata file again from {HAM10000_URL}."
    table = _read_table(csv_path, _HAM10000_REQUIRED, fix, dtype=str, keep_default_na=False)
    image_ids = table["image_id"].str.strip()
    dx = table["dx"].str.strip().str.lower()
    unknown = dx[~dx.isin(HAM10000_CLASSES)].value_counts()
    if len(unknown):
        listing = ", ".join(f"{value!r} ({count} rows)" for value, count in unknown.items())
        raise UserError(
            f"{csv_path}: {int(unknown.sum())} rows have dx labels that are not HAM10000 diagnoses: {listing}. "
            f"Valid dx labels: {', '.join(HAM10000_CLASSES)}. Fix or remove these rows."
        )
    if (image_ids == "").any():
        raise UserError(f"{csv_path}: {int((image_ids == '').sum())} rows have an empty image_id. Fix or remove these rows.")
    duplicated = sorted(set(image_ids[image_ids.duplicated()]))
    if duplicated:
        raise UserError(
            f"{csv_path}: image ids must be unique, but {len(duplicated)} repeat: {', '.join(duplicated[:5])}. "
            "Remove the duplicate rows."
        )
    lesions = table["lesion_id"].str.strip()
    lesions = lesions.where(lesions != "", image_ids)
    jpegs: dict[str, str] = {}
    for file in _walk_files(root_path):
        stem, ext = os.path.splitext(os.path.basename(file))
        if ext.lower() in (".jpg", ".jpeg"):
            jpegs.setdefault(stem, file)  # a second copy of an image (two extractions) is ignored
    order = np.argsort(image_ids.to_numpy(), kind="stable")
    rows = [(image_ids.iloc[i], HAM10000_CLASSES.index(dx.iloc[i]), lesions.iloc[i]) for i in order]
    found = [jpegs.get(image_id) for image_id, _, _ in rows]
    bad, kept = [], []
    reasons = _file_reasons(found, missing=f"image file not found under {root_path}")
    for (image_id, label, lesion), file, reason in zip(rows, found, reasons):
        if reason is not None:
            bad.append((file or str(root_path / f"{image_id}.jpg"), reason))
        else:
            kept.append((file, label, lesion))
    _refuse_if_too_many_bad(
        bad, len(rows), max_bad_fraction, str(root_path),
        "Both image archives (HAM10000_images_part_1.zip and _part_2.zip) must be unzipped under the folder; "
        "replace corrupt files by downloading again, or raise max_bad_fraction to skip them.",
    )
    return ImageFolderScan(
        paths=np.array([f for f, _, _ in kept], dtype=str),
        labels=np.array([label for _, label, _ in kept], dtype=np.int64),
        class_names=HAM10000_CLASSES,
        skipped=tuple(bad),
        groups=np.array([lesion for _, _, lesion in kept], dtype=str),
    )


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
# GTSRB (German traffic signs, 43 classes, images with a sign ROI, official test set)

GTSRB_NUM_CLASSES = 43
_GTSRB_BASE_URL = "https://sid.erda.dk/public/archives/daaeac0d7ce1152aea9b61d9f1e19370/"
GTSRB_TRAIN_URL = _GTSRB_BASE_URL + "GTSRB_Final_Training_Images.zip"
GTSRB_TEST_URL = _GTSRB_BASE_URL + "GTSRB_Final_Test_Images.zip"
GTSRB_TEST_GT_URL = _GTSRB_BASE_URL + "GTSRB_Final_Test_GT.zip"
GTSRB_ENV = "TRANSFERLAB_GTSRB_DIR"
GTSRB_CLASSES = (
    "speed limit 20", "speed limit 30", "speed limit 50", "speed limit 60", "speed limit 70",
    "speed limit 80", "end of speed limit 80", "speed limit 100", "speed limit 120", "no passing",
    "no passing by vehicles over 3.5 tons", "right of way at next intersection", "priority road", "yield",
    "stop", "no vehicles", "no vehicles over 3.5 tons", "no entry", "general caution",
    "dangerous curve left", "dangerous curve right", "double curve", "bumpy road", "slippery road",
    "road narrows on the right", "road work", "traffic signals", "pedestrians", "children crossing",
    "bicycles crossing", "beware of ice/snow", "wild animals crossing", "end of all speed and passing limits",
    "turn right ahead", "turn left ahead", "ahead only", "go straight or right", "go straight or left",
    "keep right", "keep left", "roundabout mandatory", "end of no passing",
    "end of no passing by vehicles over 3.5 tons",
)
_GTSRB_COLUMNS = ("Filename", "Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2", "ClassId")
_GTSRB_TEST_GT = "GT-final_test.csv"


def _gtsrb_unavailable(reason: str) -> DatasetUnavailableError:
    return DatasetUnavailableError(
        f"GTSRB is not available: {reason}. Download and unzip into one folder\n"
        f"  {GTSRB_TRAIN_URL}\n  {GTSRB_TEST_URL}\n  {GTSRB_TEST_GT_URL}\n"
        "so that it holds\n"
        "  <folder>/Final_Training/Images/00000/00000_00000.ppm ... and GT-00000.csv, one folder per class 00000..00042\n"
        "  <folder>/Final_Test/Images/00000.ppm ...\n"
        f"  <folder>/{_GTSRB_TEST_GT}   (the test labels, from the GT archive)\n"
        f"and set {GTSRB_ENV} to that folder (a folder holding GTSRB/Final_Training works too)."
    )


def _read_gtsrb_csv(csv_path: Path) -> list[tuple[str, np.ndarray, int]]:
    """The rows of a GTSRB annotation file, with whole-number columns checked and ROIs clamped."""
    fix = "GTSRB annotation files are semicolon-separated; unzip the file again from the official archive."
    table = _read_table(csv_path, _GTSRB_COLUMNS, fix, sep=";", dtype={"Filename": str})
    numbers = {}
    for column in _GTSRB_COLUMNS[1:]:
        values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=np.float64)
        wrong = ~np.isfinite(values) | (values != np.round(values))
        if wrong.any():
            line = int(np.flatnonzero(wrong)[0])
            raise UserError(
                f"{csv_path}: {column} must be a whole number, but line {line + 2} has "
                f"{table[column].iloc[line]!r}. Fix that line."
            )
        numbers[column] = values.astype(np.int64)
    out_of_range = (numbers["ClassId"] < 0) | (numbers["ClassId"] >= GTSRB_NUM_CLASSES)
    if out_of_range.any():
        line = int(np.flatnonzero(out_of_range)[0])
        raise UserError(
            f"{csv_path}: ClassId must be in 0..{GTSRB_NUM_CLASSES - 1}; {int(out_of_range.sum())} rows are not, the first "
            f"on line {line + 2}. Fix these rows. Received: ClassId={numbers['ClassId'][line]}"
        )
    width, height = numbers["Width"], numbers["Height"]
    # Boxes are clamped to the image (a box one pixel past the border is a harmless annotation slip);
    # only a box with nothing left inside it is an error.
    x1, x2 = np.clip(numbers["Roi.X1"], 0, width - 1), np.clip(numbers["Roi.X2"], 0, width - 1)
    y1, y2 = np.clip(numbers["Roi.Y1"], 0, height - 1), np.clip(numbers["Roi.Y2"], 0, height - 1)
    empty = (width <= 0) | (height <= 0) | (x2 < x1) | (y2 < y1)
    if empty.any():
        line = int(np.flatnonzero(empty)[0])
        raise UserError(
            f"{csv_path}: line {line + 2} has an empty ROI or image size (the box must satisfy "
            "0 <= Roi.X1 <= Roi.X2 < Width and 0 <= Roi.Y1 <= Roi.Y2 < Height). Fix that line. "
            f"Received: Width={width[line]}, Height={height[line]}, "
            f"Roi=({', '.join(str(numbers[c][line]) for c in _GTSRB_COLUMNS[3:7])})"
        )
    rois = np.stack([x1, y1, x2, y2], axis=1).astype(np.int32)
    filenames = table["Filename"].astype(str).str.strip().to_list()
    order = sorted(range(len(filenames)), key=filenames.__getitem__)
    return [(filenames[i], rois[i], int(numbers["ClassId"][i])) for i in order]


def _gtsrb_track(filename: str) -> str:
    # Training files are named <track>_<frame>.ppm: the ~30 frames of one physical sign.
    match = re.fullmatch(r"(\d+)_\d+\.\w+", filename)
    return match.group(1) if match else os.path.splitext(filename)[0]


def read_gtsrb(
    root: PathLike, include_test: bool = True, max_bad_fraction: float = MAX_BAD_FRACTION
) -> tuple[ImageFolderScan, np.ndarray | None]:
    """List GTSRB from its official layout; return the scan and the indices of the official test images.

    The scan holds the training images (class folders in order, files sorted) followed by the test
    images (when ``include_test`` and ``Final_Test/Images`` exists; otherwise the indices are None).
    ``rois`` are the sign boxes of the annotation files (inclusive, clamped to the image);
    ``groups`` are ``<class>/<track>`` for training images, so the frames of one physical sign stay in
    one split, and ``test/<file>`` for test images. ``class_names`` always lists all 43 signs, while
    labels cover only the classes present, so a trimmed copy (a fixture, a subset task) reads too.

    The test labels come from ``GT-final_test.csv`` (the GT archive), looked for in the data folder,
    in ``Final_Test/Images`` and in ``root``; the test archive's own ``GT-final_test.test.csv`` has no
    ClassId. Raises DatasetUnavailableError when the layout or the test labels are missing, and
    UserError for bad annotation files (missing columns, ClassId out of range or not matching its folder).
    """
    _check_fraction(max_bad_fraction)
    root_path = Path(os.path.abspath(os.fsdecode(root)))
    data_root = next((p for p in (root_path, root_path / "GTSRB") if (p / "Final_Training" / "Images").is_dir()), None)
    if data_root is None:
        raise _gtsrb_unavailable(f"{root_path / 'Final_Training' / 'Images'} does not exist")
    train_dir = data_root / "Final_Training" / "Images"
    class_dirs = sorted(d for d in os.listdir(train_dir) if not _is_hidden(d) and (train_dir / d).is_dir())
    if not class_dirs:
        raise _gtsrb_unavailable(f"{train_dir} holds no class folders")
    entries = []  # (path, roi, label, group, is_test)
    for name in class_dirs:
        if not name.isdigit() or int(name) >= GTSRB_NUM_CLASSES:
            raise UserError(
                f"Unexpected folder {train_dir / name}: GTSRB class folders are named "
                f"00000..{GTSRB_NUM_CLASSES - 1:05d}. Remove it."
            )
        csv_path = train_dir / name / f"GT-{name}.csv"
        if not csv_path.is_file():
            raise UserError(f"{csv_path} is missing; it holds the class's ROIs. Unzip {GTSRB_TRAIN_URL} again.")
        rows = _read_gtsrb_csv(csv_path)
        strangers = sorted({class_id for _, _, class_id in rows} - {int(name)})
        if strangers:
            raise UserError(
                f"{csv_path}: every ClassId must be {int(name)}, the class of its folder. Fix the file. "
                f"Received: ClassId in {strangers}"
            )
        entries += [(str(train_dir / name / f), roi, c, f"{c:05d}/{_gtsrb_track(f)}", False) for f, roi, c in rows]
    test_dir = data_root / "Final_Test" / "Images"
    has_test = include_test and test_dir.is_dir()
    if has_test:
        candidates = [folder / _GTSRB_TEST_GT for folder in (data_root, test_dir, root_path)]
        gt_path = next((p for p in candidates if p.is_file()), None)
        if gt_path is None:
            raise _gtsrb_unavailable(
                f"the test images in {test_dir} have no labels ({_GTSRB_TEST_GT} from {GTSRB_TEST_GT_URL} is missing; "
                "the test archive's own GT-final_test.test.csv has no ClassId). Add it, or pass include_test=False"
            )
        rows = _read_gtsrb_csv(gt_path)
        entries += [(str(test_dir / f), roi, c, f"test/{os.path.splitext(f)[0]}", True) for f, roi, c in rows]
    reasons = _file_reasons([e[0] for e in entries], missing="image file not found (listed in its annotation file)")
    bad = [(e[0], reason) for e, reason in zip(entries, reasons) if reason is not None]
    fix = "Unzip the archives again, or raise max_bad_fraction to skip these files."
    _refuse_if_too_many_bad(bad, len(entries), max_bad_fraction, str(data_root), fix)
    kept = [e for e, reason in zip(entries, reasons) if reason is None]
    scan = ImageFolderScan(
        paths=np.array([e[0] for e in kept], dtype=str),
        labels=np.array([e[2] for e in kept], dtype=np.int64),
        class_names=GTSRB_CLASSES,
        skipped=tuple(bad),
        rois=np.array([e[1] for e in kept], dtype=np.int32).reshape(-1, 4),
        groups=np.array([e[3] for e in kept], dtype=str),
    )
    test_indices = np.flatnonzero([e[4] for e in kept]).astype(np.int64) if has_test else None
    return scan, test_indices


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
        pd.DataFrame(rows, columns=list(_GTSRB_COLUMNS)).to_csv(folder / f"GT-{class_id:05d}.csv", sep=";", index=False)
    test_dir = root_path / "Final_Test" / "Images"
    test_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(n_test):
        class_id = int(rng.choice(class_ids))
        pixels, roi = _draw_sign(rng, class_id, background())
        filename = f"{index:05d}.ppm"
        Image.fromarray(pixels).save(test_dir / filename)
        rows.append((filename, pixels.shape[1], pixels.shape[0], *roi, class_id))
    labels = pd.DataFrame(rows, columns=list(_GTSRB_COLUMNS))
    labels.drop(columns="ClassId").to_csv(test_dir / "GT-final_test.test.csv", sep=";", index=False)
    labels.to_csv(root_path / _GTSRB_TEST_GT, sep=";", index=False)
    return root_path
