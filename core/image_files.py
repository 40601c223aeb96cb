"""Image datasets on disk: per-file lists for lazy decoding, and one decoder for every Pillow mode.

Nothing here holds the decoded pixels of a whole dataset. The readers (a one-folder-per-class tree,
HAM10000, GTSRB) return an :class:`ImageFolderScan` of file paths, labels, optional ROI boxes and group
ids; a tf.data pipeline decodes each file when it needs it with :func:`read_image_rgb`. Scans check every
file cheaply (:func:`check_image`) so that a corrupt file is skipped up front instead of stopping
training mid-epoch.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

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


def too_large(width: int, height: int) -> str:
    """The reason text for an image above MAX_PIXELS."""
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
    if os.path.islink(path) and not os.path.exists(path):
        return "a broken or looping symbolic link"
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width <= 0 or height <= 0:
                return f"empty image: {width}x{height} px"
            if width * height > MAX_PIXELS:
                return too_large(width, height)
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


def check_files(paths: Sequence[str | None], missing: str) -> list[str | None]:
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


def check_bad_fraction(max_bad_fraction: float) -> None:
    """Refuse a max_bad_fraction outside [0, 1]."""
    if not 0 <= max_bad_fraction <= 1:
        raise UserError(
            "max_bad_fraction must be in [0, 1] (0.05 = skip up to 5% bad files). "
            f"Received: max_bad_fraction={max_bad_fraction!r}"
        )


def refuse_if_too_many_bad(bad: list[tuple[str, str]], n_files: int, max_bad_fraction: float, where: str, fix: str) -> None:
    """Raise one UserError listing the first bad files when more than ``max_bad_fraction`` of ``n_files`` are bad."""
    if not n_files or len(bad) / n_files <= max_bad_fraction:
        return
    listing = "; ".join(f"{path}: {reason}" for path, reason in bad[:5])
    more = f"; and {len(bad) - 5} more" if len(bad) > 5 else ""
    raise UserError(
        f"{len(bad)} of {n_files} image files in {where} cannot be used ({len(bad) / n_files:.1%}; a scan skips "
        f"bad files only up to {max_bad_fraction:.0%} of them): {listing}{more}. {fix} "
        f"Received: max_bad_fraction={max_bad_fraction}"
    )


def is_hidden(name: str) -> bool:
    """Whether a file or folder name is hidden (dot files, macOS zip resource forks)."""
    # "__MACOSX" holds the "._*" resource forks of zips made on macOS: never data.
    return name.startswith(".") or name == "__MACOSX"


def is_image_name(name: str) -> bool:
    """Whether a file name is a visible image (by extension)."""
    return not is_hidden(name) and name.lower().endswith(IMAGE_EXTENSIONS)


def read_table(csv_path: Path, required: Sequence[str], fix: str, **options) -> pd.DataFrame:
    """A CSV file as a DataFrame with stripped column names; a UserError that ends with ``fix`` when it
    cannot be parsed or lacks a ``required`` column."""
    try:
        table = pd.read_csv(csv_path, **options)
    except (ValueError, UnicodeDecodeError) as err:  # pandas' ParserError and EmptyDataError are ValueErrors
        detail = " ".join(str(err).split())  # pandas' parser ends its text with a newline
        raise UserError(f"Cannot parse {csv_path}: {detail}. {fix}") from err
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise UserError(
            f"{csv_path} lacks the column(s) {', '.join(missing)}; it needs {', '.join(required)}. "
            f"Present columns: {', '.join(table.columns)}. {fix}"
        )
    return table


def walk_files(folder: Path) -> list[str]:
    """Every non-hidden file under ``folder``, in a stable order (sorted at every level)."""
    found = []
    for current, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not is_hidden(d))
        found.extend(os.path.join(current, f) for f in sorted(filenames) if not is_hidden(f))
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

    Links to folders are not followed below a class folder (so a link loop ends the walk), and a file
    that two classes reach through links is refused.

    Raises DatasetUnavailableError when ``root`` does not exist, and UserError when it holds no
    class folder, a class folder without images or with fewer than
    :data:`transferlab.data.MIN_EXAMPLES_PER_CLASS` usable ones, a single class, or a file in two classes.
    """
    check_bad_fraction(max_bad_fraction)
    root_path = Path(os.path.abspath(os.fsdecode(root)))
    layout = f"{root_path}/<class name>/<image files>, e.g. {root_path}/cats/001.jpg and {root_path}/dogs/001.jpg"
    if not root_path.exists():
        raise DatasetUnavailableError(f"Image folder not found: {root_path}. Expected one folder per class: {layout}.")
    if not root_path.is_dir():
        raise UserError(f"Expected a folder of class folders, but {root_path} is a file. Expected layout: {layout}.")
    entries = sorted(e for e in os.listdir(root_path) if not is_hidden(e))
    class_names = [e for e in entries if (root_path / e).is_dir()]
    loose = [str(root_path / e) for e in entries if is_image_name(e) and (root_path / e).is_file()]
    if not class_names:
        found = f" It holds {len(loose)} image files directly, which belong to no class." if loose else ""
        raise UserError(
            f"No class folders in {root_path}.{found} Put each class's images in a folder named after it: {layout}."
        )
    files = {name: [f for f in walk_files(root_path / name) if is_image_name(os.path.basename(f))] for name in class_names}
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
    fix = "Replace or delete these files, then run again."
    refuse_if_too_many_bad(bad, len(all_files), max_bad_fraction, str(root_path), fix)
    unusable = [name for name in class_names if all(reasons[f] is not None for f in files[name])]
    if unusable:
        raise UserError(
            f"Class folder(s) in {root_path} where no image can be read: {', '.join(map(repr, unusable))}. "
            "Replace the files or remove the folders."
        )
    _refuse_shared_files(root_path, class_names, files)
    from transferlab.data import MIN_EXAMPLES_PER_CLASS as least  # the splits' own minimum: one rule, one number

    usable = {name: sum(reasons[f] is None for f in files[name]) for name in class_names}
    too_few = [f"{name!r} ({usable[name]})" for name in class_names if usable[name] < least]
    if too_few:
        raise UserError(
            f"Class folder(s) in {root_path} with fewer than {least} usable images: "
            f"{', '.join(too_few)}. Every class needs one image each for the test, validation and training splits; "
            "add images to these folders or remove them."
        )
    kept = [(f, label) for label, name in enumerate(class_names) for f in files[name] if reasons[f] is None]
    return ImageFolderScan(
        paths=np.array([f for f, _ in kept], dtype=str),
        labels=np.array([label for _, label in kept], dtype=np.int64),
        class_names=tuple(class_names),
        skipped=tuple([(p, "not in a class folder") for p in loose] + bad),
    )


def _refuse_shared_files(root: Path, class_names: list[str], files: dict[str, list[str]]) -> None:
    """Refuse a file that two classes reach (a class folder, or a folder in one, that is a link into another
    class or to the root): it would be trained on with one label and tested with the other."""
    owner: dict[str, str] = {}
    for name in class_names:
        for path in files[name]:
            real = os.path.realpath(path)
            first = owner.setdefault(real, name)
            if first != name:
                raise UserError(
                    f"{real} belongs to two classes in {root}: {first!r} and {name!r} (through a symbolic link). "
                    "Each image must be in one class folder; remove the link or the copy."
                )


def scan_to_task_data(scan: ImageFolderScan, where: str, test_indices: np.ndarray | None = None,
                      use_rois: bool = True, **provenance):
    """A :class:`transferlab.data.TaskData` that streams the scanned files from disk, with the scan's groups
    and (when ``use_rois``) its ROI boxes; skipped files are reported under ``where`` and counted in the
    provenance."""
    from transferlab.data import ImageFiles, TaskData
    from transferlab.progress import say

    if scan.skipped:
        say(f"{where}: skipped {len(scan.skipped)} file(s), e.g. {scan.skipped[0][0]} ({scan.skipped[0][1]}).")
    return TaskData(
        images=ImageFiles(scan.paths, scan.rois if use_rois else None), labels=scan.labels, class_names=scan.class_names,
        groups=scan.groups, test_indices=test_indices,
        provenance={**provenance, "files": int(len(scan)), "skipped": len(scan.skipped),
                    "skipped_examples": [f"{os.path.basename(p)}: {r}" for p, r in scan.skipped[:5]]},
    )
