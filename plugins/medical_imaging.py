"""Medical imaging: skin lesions (HAM10000), any one-folder-per-class image tree, and colorectal histology.

- ``skin_lesions``: HAM10000 (10,015 dermatoscopic images, 7 diagnoses) from its official layout at
  ``TRANSFERLAB_HAM10000_DIR``: ``HAM10000_metadata.csv`` (``image_id``, ``dx``, ``lesion_id``, ...) and
  the two image folders. Splits go by ``lesion_id``, so images of one lesion never sit in both training
  and test.
- ``medical_folder``: any one-folder-per-class tree at ``TRANSFERLAB_MEDICAL_DIR`` (the layout of
  ``keras.utils.image_dataset_from_directory``), with the medical defaults below; ``--data PATH`` is the
  general way to train on a folder, with neutral defaults.
- ``colorectal_histology``: 5,000 histology tiles, 8 tissue classes, downloaded by tensorflow-datasets.

Defaults for medical images, as on the slide: augmentation (rotation 20 degrees, shifts 0.2, horizontal
flip, zoom 0.2, Keras preprocessing layers), ``balanced`` class weights (nv is about two thirds of
HAM10000), MobileNetV2. Every run stores balanced accuracy, macro F1, per-class recall and the
confusion matrix. Images stay on disk and are decoded as tf.data streams them; a corrupt file is
skipped and counted (refused above ``MAX_BAD_FRACTION``).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
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
    fingerprint_class_folders,
    fingerprint_tfds,
    fingerprint_tree,
    hookimpl,
    read_table,
    refuse_if_too_many_bad,
    scan_class_folders,
    scan_to_task_data,
    tfds_prepared,
    walk_files,
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
    check_bad_fraction(max_bad_fraction)
    root_path = Path(os.path.abspath(os.fsdecode(root)))
    csv_path = root_path / HAM10000_CSV
    if not root_path.is_dir():
        raise _ham10000_unavailable(f"folder {root_path} does not exist")
    if not csv_path.is_file():
        raise _ham10000_unavailable(f"{csv_path} is missing")
    # dtype=str and no NA parsing: ids stay text, and a blank lesion_id reads as "" rather than NaN
    fix = f"Download the metadata file again from {HAM10000_URL}."
    table = read_table(csv_path, _HAM10000_REQUIRED, fix, dtype=str, keep_default_na=False)
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
    for file in walk_files(root_path):
        stem, ext = os.path.splitext(os.path.basename(file))
        if ext.lower() in (".jpg", ".jpeg"):
            jpegs.setdefault(stem, file)  # a second copy of an image (two extractions) is ignored
    order = np.argsort(image_ids.to_numpy(), kind="stable")
    rows = [(image_ids.iloc[i], HAM10000_CLASSES.index(dx.iloc[i]), lesions.iloc[i]) for i in order]
    found = [jpegs.get(image_id) for image_id, _, _ in rows]
    bad, kept = [], []
    reasons = check_files(found, missing=f"image file not found under {root_path}")
    for (image_id, label, lesion), file, reason in zip(rows, found, reasons):
        if reason is not None:
            bad.append((file or str(root_path / f"{image_id}.jpg"), reason))
        else:
            kept.append((file, label, lesion))
    refuse_if_too_many_bad(
        bad, len(rows), max_bad_fraction, str(root_path),
        "Both image archives (HAM10000_images_part_1.zip and _part_2.zip) must be unzipped under the folder; "
        "replace the corrupt files by downloading them again (a scan skips bad files only up to 5% of them).",
    )
    return ImageFolderScan(
        paths=np.array([f for f, _, _ in kept], dtype=str),
        labels=np.array([label for _, label, _ in kept], dtype=np.int64),
        class_names=HAM10000_CLASSES,
        skipped=tuple(bad),
        groups=np.array([lesion for _, _, lesion in kept], dtype=str),
    )


# ---------------------------------------------------------------------------------------------------
# Tasks

MEDICAL_DIR_ENV = "TRANSFERLAB_MEDICAL_DIR"
MEDICAL_JOB_DEFAULTS = {"augment": True, "class_weight": "balanced"}


def load_skin_lesions() -> TaskData:
    """HAM10000 from ``TRANSFERLAB_HAM10000_DIR`` (split by lesion)."""
    folder = os.environ.get(HAM10000_ENV)
    if not folder:
        raise _ham10000_unavailable(f"{HAM10000_ENV} is not set")
    return scan_to_task_data(read_ham10000(folder), "HAM10000", source=str(folder), layout="HAM10000")


def load_medical_folder() -> TaskData:
    """A one-folder-per-class tree at ``TRANSFERLAB_MEDICAL_DIR``."""
    folder = os.environ.get(MEDICAL_DIR_ENV)
    if not folder:
        raise DatasetUnavailableError(
            f"Task 'medical_folder' reads a one-folder-per-class image tree: set {MEDICAL_DIR_ENV} to a folder that "
            "holds <folder>/<class name>/<image files> (two classes or more; JPEG, PNG, BMP, TIFF, ...)."
        )
    return scan_to_task_data(scan_class_folders(folder), folder, source=str(folder), layout="class folders")


def _folder_of(env: str) -> str | None:
    """The folder ``env`` names, or None when it is unset or not a folder (``load()`` then says what to do)."""
    folder = os.environ.get(env)
    return folder if folder and os.path.isdir(folder) else None


def skin_lesions_version() -> str | None:
    """The data version of HAM10000 at ``TRANSFERLAB_HAM10000_DIR``: its metadata CSV and every JPEG under it."""
    folder = _folder_of(HAM10000_ENV)
    if folder is None:
        return None
    return fingerprint_tree(folder, include=lambda name: name == HAM10000_CSV or name.lower().endswith((".jpg", ".jpeg")))


def medical_folder_version() -> str | None:
    """The data version of the class-folder tree at ``TRANSFERLAB_MEDICAL_DIR``."""
    folder = _folder_of(MEDICAL_DIR_ENV)
    return fingerprint_class_folders(folder) if folder else None


def load_colorectal_histology() -> TaskData:
    """tensorflow-datasets' ``colorectal_histology``: 5,000 150x150 tiles of 8 tissue types."""
    try:
        import tensorflow_datasets as tfds

        images, labels = tfds.as_numpy(tfds.load("colorectal_histology", split="train", as_supervised=True,
                                                 batch_size=-1))
        names = tfds.builder("colorectal_histology").info.features["label"].names
    except Exception as exc:
        raise DatasetUnavailableError(
            "Task 'colorectal_histology' downloads https://zenodo.org/record/53169 through tensorflow-datasets, which "
            f"failed here ({type(exc).__name__}). Run it online once (the data is kept in ~/tensorflow_datasets, or "
            "TFDS_DATA_DIR), or use 'skin_lesions' / 'medical_folder' with local files."
        ) from None
    return TaskData(images=images.astype(np.uint8), labels=labels, class_names=tuple(names),
                    provenance={"source": "tfds:colorectal_histology"})


@hookimpl
def register_tasks() -> list[TaskSpec]:
    """Skin lesions (HAM10000), a medical image folder, colorectal histology."""
    return [
        TaskSpec(
            name="skin_lesions",
            description=f"HAM10000 skin lesions, 7 diagnoses, split by lesion ({HAM10000_ENV}; from {HAM10000_URL}).",
            load=load_skin_lesions,
            num_classes=len(HAM10000_CLASSES),
            available=lambda: bool(os.environ.get(HAM10000_ENV)),
            fingerprint=skin_lesions_version,
            kind="image_classification",
            job_defaults=dict(MEDICAL_JOB_DEFAULTS),
            default_backbone="mobilenetv2",
        ),
        TaskSpec(
            name="medical_folder",
            description=f"Your medical images, one folder per class ({MEDICAL_DIR_ENV}).",
            load=load_medical_folder,
            num_classes=None,
            available=lambda: bool(os.environ.get(MEDICAL_DIR_ENV)),
            fingerprint=medical_folder_version,
            job_defaults=dict(MEDICAL_JOB_DEFAULTS),
            default_backbone="mobilenetv2",
        ),
        TaskSpec(
            name="colorectal_histology",
            description="Colorectal cancer histology, 5,000 tiles, 8 tissue types (tensorflow-datasets, downloads).",
            load=load_colorectal_histology,
            num_classes=8,
            available=lambda: tfds_prepared("colorectal_histology"),
            fingerprint=lambda: fingerprint_tfds("colorectal_histology"),
            job_defaults=dict(MEDICAL_JOB_DEFAULTS),
            default_backbone="mobilenetv2",
        ),
    ]
