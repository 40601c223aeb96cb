"""Solar cells: defect detection in electroluminescence (EL) images, a domain far from ImageNet.

- ``elpv_solar``: the ELPV dataset (Buerhop-Lutz et al. 2018, Deitsch et al. 2019; ZAE Bayern), 2,624
  real 300x300 grayscale EL images of cells cut from mono- and polycrystalline PV modules, each graded by
  experts with a defect probability of 0, 1/3, 2/3 or 1. Read as files from the PyPI package
  ``elpv-dataset`` (found with ``package_dir``, never imported): ``data/labels.csv`` is pinned by
  sha256, the images by one digest over their files. Binary: ``defective`` (probability >= 0.5) vs
  ``functional``. There is no official split, so core's fixed, seeded split applies (stratified by
  label, seed ``SPLIT_SEED``, recorded in each run's manifest). Images stay single-channel uint8 at
  300x300; the input pipeline turns them into RGB and resizes them for the backbone.

Licence of the data: CC BY-NC-SA 4.0, non-commercial use only; it comes with the ``noncommercial``
extra (``pip install transferlab[noncommercial]``).
"""
from __future__ import annotations

import hashlib
import io
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from transferlab import DatasetUnavailableError, TaskData, TaskSpec, hookimpl, package_dir, sha256_file

ELPV_PACKAGE = "elpv-dataset==1.0.0.post1"
ELPV_URL = "https://github.com/zae-bayern/elpv-dataset"
ELPV_LICENCE = "CC BY-NC-SA 4.0 — non-commercial use only"
ELPV_LABELS_SHA256 = "0abe6fe7700aea571717d7d7dfec005a47c6207b4cde26a4556b6807a115483d"
#: sha256 over the lines ``<path>\\0<sha256 of the file>\\n`` of every image, in labels.csv order
ELPV_IMAGES_DIGEST = "283ebd06133d0a6517441b7cfd762c7f62766a0a5364b3ef0f5459fa83eaa7f1"
ELPV_CLASSES = ("functional", "defective")
ELPV_MODULE_TYPES = ("mono", "poly")
ELPV_IMAGE_SIZE = 300
#: a cell is ``defective`` when the experts' defect probability is at least this
DEFECTIVE_THRESHOLD = 0.5
_CELL_PATH = re.compile(r"images/cell\d{4}\.png")


def _unavailable(reason: str) -> DatasetUnavailableError:
    return DatasetUnavailableError(
        f"Task 'elpv_solar' is not available: {reason}. It reads the PyPI package {ELPV_PACKAGE}, which ships "
        f"the data (licence {ELPV_LICENCE}): run `pip install transferlab[noncommercial]` "
        f"(or `pip install {ELPV_PACKAGE}`) in this environment."
    )


def elpv_data_dir() -> Path | None:
    """The ``data`` folder of the installed ``elpv-dataset`` package, or None when it is not installed."""
    root = package_dir("elpv_dataset")
    return root / "data" if root else None


def elpv_available() -> bool:
    """Whether ``elpv-dataset`` is installed with its labels file and image folder (nothing is read)."""
    folder = elpv_data_dir()
    return folder is not None and (folder / "labels.csv").is_file() and (folder / "images").is_dir()


def read_elpv_labels(labels_csv: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The rows of ELPV's ``labels.csv``: image paths (relative to its folder), defect probabilities and
    module types (``mono``/``poly``), in file order.

    The file is whitespace-separated, ``images/cellNNNN.png  <probability>  <type>`` per line. Raises
    DatasetUnavailableError naming the first line that does not have that form.
    """
    paths, probabilities, types = [], [], []
    with open(labels_csv, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            fields = line.split()
            if not fields:
                continue
            well_formed = len(fields) == 3 and _CELL_PATH.fullmatch(fields[0]) and fields[2] in ELPV_MODULE_TYPES
            try:
                probability = float(fields[1]) if well_formed else -1.0
            except ValueError:
                probability = -1.0
            if not 0 <= probability <= 1:  # also refuses a malformed line, and NaN
                raise _unavailable(
                    f"{labels_csv} line {number} is not `images/cellNNNN.png <probability 0..1> <mono|poly>`. "
                    f"Received: {line.strip()!r}"
                )
            path, _, module_type = fields
            paths.append(path)
            probabilities.append(probability)
            types.append(module_type)
    return paths, np.array(probabilities, dtype=np.float64), np.array(types, dtype=str)


def _read_cell(path: Path) -> tuple[np.ndarray, str]:
    """One cell image as a (300, 300) uint8 array, and the sha256 of its file."""
    from PIL import Image, UnidentifiedImageError

    try:
        raw = path.read_bytes()
        with Image.open(io.BytesIO(raw)) as image:
            pixels = np.asarray(image.convert("L") if image.mode != "L" else image)
    except (OSError, UnidentifiedImageError) as err:  # a missing or truncated file
        raise _unavailable(f"{path} cannot be read ({type(err).__name__}: {err}); reinstall the package") from None
    if pixels.shape != (ELPV_IMAGE_SIZE, ELPV_IMAGE_SIZE):
        raise _unavailable(f"{path} is {pixels.shape[1]}x{pixels.shape[0]}, not {ELPV_IMAGE_SIZE}x{ELPV_IMAGE_SIZE}; "
                           "reinstall the package")
    return pixels, hashlib.sha256(raw).hexdigest()


def load_elpv_solar() -> TaskData:
    """ELPV from the installed ``elpv-dataset`` package: 2,624 EL cell images, defective vs functional.

    Checks ``labels.csv`` against its pinned sha256 before reading it and the images against their
    pinned digest after decoding them (threads: Pillow decodes without the GIL). Images are (N, 300,
    300, 1) uint8. Provenance records the pins and the count of each module type in each class; the
    per-image module type is not kept, as TaskData has no per-example metadata besides split groups.
    """
    folder = elpv_data_dir()
    if not elpv_available():
        reason = "the package is not installed" if folder is None else f"{folder} lacks labels.csv or images/"
        raise _unavailable(reason)
    labels_csv = folder / "labels.csv"
    actual = sha256_file(labels_csv)
    if actual != ELPV_LABELS_SHA256:
        raise _unavailable(
            f"{labels_csv} has sha256 {actual}, expected {ELPV_LABELS_SHA256} (the file of {ELPV_PACKAGE}); it is "
            f"altered or another version. Reinstall it: `pip install --force-reinstall {ELPV_PACKAGE}`"
        )
    paths, probabilities, types = read_elpv_labels(labels_csv)
    images = np.empty((len(paths), ELPV_IMAGE_SIZE, ELPV_IMAGE_SIZE, 1), dtype=np.uint8)
    hashes = [""] * len(paths)

    def decode(index: int) -> None:
        images[index, ..., 0], hashes[index] = _read_cell(folder / paths[index])

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(decode, range(len(paths))))
    digest = hashlib.sha256("".join(f"{p}\0{h}\n" for p, h in zip(paths, hashes)).encode()).hexdigest()
    if digest != ELPV_IMAGES_DIGEST:
        raise _unavailable(
            f"the images under {folder / 'images'} have digest {digest}, expected {ELPV_IMAGES_DIGEST} (the files "
            f"of {ELPV_PACKAGE}); some are altered. Reinstall it: `pip install --force-reinstall {ELPV_PACKAGE}`"
        )
    labels = (probabilities >= DEFECTIVE_THRESHOLD).astype(np.int64)
    module_types = {
        name: {t: int(np.sum((labels == c) & (types == t))) for t in ELPV_MODULE_TYPES}
        for c, name in enumerate(ELPV_CLASSES)
    }
    return TaskData(
        images=images,
        labels=labels,
        class_names=ELPV_CLASSES,
        provenance={
            "package": ELPV_PACKAGE, "source": ELPV_URL, "licence": ELPV_LICENCE,
            "sha256": {"labels.csv": ELPV_LABELS_SHA256}, "images_digest": ELPV_IMAGES_DIGEST,
            "label_rule": f"defective if defect probability >= {DEFECTIVE_THRESHOLD}",
            "module_types": module_types,
        },
    )


@hookimpl
def register_tasks() -> list[TaskSpec]:
    """ELPV solar-cell defects (electroluminescence images)."""
    return [
        TaskSpec(
            name="elpv_solar",
            description=(
                "ELPV solar cells (PyPI elpv-dataset, ZAE Bayern): 2,624 real 300x300 grayscale electroluminescence "
                "images; defective (defect probability >= 0.5) vs functional, 821 vs 1,803 (31% defective). "
                f"Licence {ELPV_LICENCE}."
            ),
            load=load_elpv_solar,
            num_classes=len(ELPV_CLASSES),
            available=elpv_available,
            # a third of the cells are defective: weigh the classes when training on all of them
            job_defaults={"class_weight": "balanced"},
            default_backbone="efficientnet_lite0",
            distributions=("elpv-dataset",),
        ),
    ]
