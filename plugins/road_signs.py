"""Autonomous driving: road-sign recognition on GTSRB (43 classes), streamed from disk.

Reads the official layout (``Final_Training/Images/000NN/*.ppm`` with ``GT-000NN.csv`` holding each
image's sign box, ``Final_Test/Images`` with ``GT-final_test.csv``) from ``TRANSFERLAB_GTSRB_DIR``;
online, without that setting, downloads the three official archives once through
``keras.utils.get_file`` (kept in the Keras cache; their sha256 is recorded at download and checked at
every later load). The set is never held in memory: tf.data decodes each file as it streams.

Tasks: ``road_signs`` crops every image to its annotated sign box (the option the slide's generator
takes); ``road_signs_full`` keeps the whole frame. Frames of one physical sign (a GTSRB track) stay in
one split. Default backbone ResNet50V2.
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from transferlab import (
    MAX_BAD_FRACTION,
    DatasetUnavailableError,
    ImageFolderScan,
    PathLike,
    TaskData,
    TaskSpec,
    UserError,
    check_bad_fraction,
    check_files,
    checked_download,
    fingerprint_tree,
    hookimpl,
    is_hidden,
    read_table,
    refuse_if_too_many_bad,
    scan_to_task_data,
)

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
GTSRB_COLUMNS = ("Filename", "Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2", "ClassId")
GTSRB_TEST_GT = "GT-final_test.csv"


def _gtsrb_unavailable(reason: str) -> DatasetUnavailableError:
    return DatasetUnavailableError(
        f"GTSRB is not available: {reason}. Download and unzip into one folder\n"
        f"  {GTSRB_TRAIN_URL}\n  {GTSRB_TEST_URL}\n  {GTSRB_TEST_GT_URL}\n"
        "so that it holds\n"
        "  <folder>/Final_Training/Images/00000/00000_00000.ppm ... and GT-00000.csv, one folder per class 00000..00042\n"
        "  <folder>/Final_Test/Images/00000.ppm ...\n"
        f"  <folder>/{GTSRB_TEST_GT}   (the test labels, from the GT archive)\n"
        f"and set {GTSRB_ENV} to that folder (a folder holding GTSRB/Final_Training works too)."
    )


def _read_gtsrb_csv(csv_path: Path) -> list[tuple[str, np.ndarray, int]]:
    """The rows of a GTSRB annotation file, with whole-number columns checked and ROIs clamped."""
    fix = "GTSRB annotation files are semicolon-separated; unzip the file again from the official archive."
    table = read_table(csv_path, GTSRB_COLUMNS, fix, sep=";", dtype={"Filename": str})
    numbers = {}
    for column in GTSRB_COLUMNS[1:]:
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
            f"Roi=({', '.join(str(numbers[c][line]) for c in GTSRB_COLUMNS[3:7])})"
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
    check_bad_fraction(max_bad_fraction)
    root_path = Path(os.path.abspath(os.fsdecode(root)))
    data_root = next((p for p in (root_path, root_path / "GTSRB") if (p / "Final_Training" / "Images").is_dir()), None)
    if data_root is None:
        raise _gtsrb_unavailable(f"{root_path / 'Final_Training' / 'Images'} does not exist")
    train_dir = data_root / "Final_Training" / "Images"
    class_dirs = sorted(d for d in os.listdir(train_dir) if not is_hidden(d) and (train_dir / d).is_dir())
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
        candidates = [folder / GTSRB_TEST_GT for folder in (data_root, test_dir, root_path)]
        gt_path = next((p for p in candidates if p.is_file()), None)
        if gt_path is None:
            raise _gtsrb_unavailable(
                f"the test images in {test_dir} have no labels ({GTSRB_TEST_GT} from {GTSRB_TEST_GT_URL} is missing; "
                "the test archive's own GT-final_test.test.csv has no ClassId). Add it, or pass include_test=False"
            )
        rows = _read_gtsrb_csv(gt_path)
        entries += [(str(test_dir / f), roi, c, f"test/{os.path.splitext(f)[0]}", True) for f, roi, c in rows]
    reasons = check_files([e[0] for e in entries], missing="image file not found (listed in its annotation file)")
    bad = [(e[0], reason) for e, reason in zip(entries, reasons) if reason is not None]
    fix = "Unzip the archives again to replace them (a scan skips bad files only up to 5% of them)."
    refuse_if_too_many_bad(bad, len(entries), max_bad_fraction, str(data_root), fix)
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


# ---------------------------------------------------------------------------------------------------
# Tasks

GTSRB_ARCHIVES = (GTSRB_TRAIN_URL, GTSRB_TEST_URL, GTSRB_TEST_GT_URL)


def download_gtsrb() -> Path:
    """Download the three official archives into the Keras cache (once), extract them together into one
    folder (once), and return it.

    Each archive's sha256 is written next to it on first download and checked on every later call, so a
    truncated or altered archive is reported instead of read. Extraction goes to a temporary folder that
    is renamed into place when all three are out, so an interrupted extraction is never mistaken for data.
    """
    archives = [
        checked_download(url, cache_subdir="datasets/gtsrb", unavailable=functools.partial(_gtsrb_download_failed, url))
        for url in GTSRB_ARCHIVES
    ]
    folder = archives[0].parent / "extracted"
    if not folder.is_dir():
        staging = Path(tempfile.mkdtemp(prefix=".extracting-", dir=archives[0].parent))
        for archive in archives:
            with zipfile.ZipFile(archive) as bundle:
                bundle.extractall(staging)  # Python drops absolute and '..' member paths
        try:
            staging.rename(folder)
        except OSError:  # another worker finished first
            shutil.rmtree(staging, ignore_errors=True)
    if not any((folder / sub / "Final_Test" / "Images").is_dir() for sub in ("", "GTSRB")):
        raise _gtsrb_unavailable(f"the archives in {folder.parent} hold no Final_Test/Images; delete them to download again")
    return folder


def _gtsrb_download_failed(url: str, reason: str) -> DatasetUnavailableError:
    return _gtsrb_unavailable(f"downloading {url} failed ({reason}); set {GTSRB_ENV} instead")


def _gtsrb_root() -> Path:
    folder = os.environ.get(GTSRB_ENV)
    return Path(folder) if folder else download_gtsrb()


def load_gtsrb(crop: bool) -> TaskData:
    """GTSRB as file paths (+ sign boxes when ``crop``), split by track, with the official test set."""
    root = _gtsrb_root()
    scan, test = read_gtsrb(root)
    return scan_to_task_data(scan, "GTSRB", test_indices=test, use_rois=crop, source=str(root), layout="GTSRB",
                             crop="sign box" if crop else "whole frame")


def gtsrb_version() -> str | None:
    """The data version of GTSRB at ``TRANSFERLAB_GTSRB_DIR`` (every file under it: images and annotation
    CSVs). None without the setting: the official archives are then pinned by the sha256 recorded at download."""
    folder = os.environ.get(GTSRB_ENV)
    return fingerprint_tree(folder) if folder and os.path.isdir(folder) else None


@hookimpl
def register_tasks() -> list[TaskSpec]:
    """Road signs, cropped to the sign and whole-frame."""
    variants = (("road_signs", True, "cropped to the sign box"), ("road_signs_full", False, "whole frame around the sign"))
    return [
        TaskSpec(
            name=name,
            description=f"GTSRB road signs, 43 classes, {what} ({GTSRB_ENV}, or downloads).",
            load=functools.partial(load_gtsrb, crop=crop),
            num_classes=GTSRB_NUM_CLASSES,
            available=lambda: bool(os.environ.get(GTSRB_ENV)),  # without it, loading downloads
            fingerprint=gtsrb_version,
            default_backbone="resnet50v2",
        )
        for name, crop, what in variants
    ]
