"""Built-in image-classification tasks that run offline on real data.

- ``animal_mnist``: 10,000 real 28x28 animal silhouettes, read by path from the pinned PyPI package
  ``animal-mnist`` (its own loader imports ``tensorflow.keras.datasets`` and may download, so it is not
  used) through a numpy-only unpickler after a sha256 check.
- ``digits``: scikit-learn's 8x8 handwritten digits.
- ``lfw_faces``: scikit-image's ``lfw_subset`` (100 faces, then 100 non-faces).
- ``fashion_mnist``: the Keras cache or download when online; offline from Debian's
  ``dataset-fashion-mnist``.
"""
from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np

from transferlab import DatasetUnavailableError, TaskData, TaskSpec, hookimpl, load_numpy_pickle, package_dir

ANIMAL_MNIST_FILES = {
    "animal_data_version_3.gz": "68a30346781a0984f839463a4615d2decb899d1ce65091bb92586311754a34ce",
    "animal_label_version_3.gz": "dec8dba7c469830989fbab46825021a08a38470753a512f27ada847eced97b57",
}
# The package's description lists its classes in this order; its labels are 0..9.
ANIMAL_MNIST_CLASSES = ("bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra")
FASHION_MNIST_CLASSES = (
    "t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot",
)
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def _animal_mnist_dir() -> Path | None:
    root = package_dir("animal_mnist")
    return root / "data" / "Animal_MNIST" if root else None


def animal_mnist_available() -> bool:
    """Whether the ``animal-mnist`` package and its two data files are installed."""
    folder = _animal_mnist_dir()
    return folder is not None and all((folder / name).is_file() for name in ANIMAL_MNIST_FILES)


def load_animal_mnist() -> TaskData:
    """Animal-MNIST from the installed ``animal-mnist`` package (pinned files, no official split)."""
    folder = _animal_mnist_dir()
    if not animal_mnist_available():
        raise DatasetUnavailableError(
            "Task 'animal_mnist' needs the PyPI package animal-mnist==0.4 (it ships the data): "
            "run `pip install --no-deps animal-mnist==0.4` in this environment."
        )
    data_name, label_name = ANIMAL_MNIST_FILES
    images = load_numpy_pickle(folder / data_name, ANIMAL_MNIST_FILES[data_name])
    labels = load_numpy_pickle(folder / label_name, ANIMAL_MNIST_FILES[label_name])
    return TaskData(
        images=np.ascontiguousarray(images, dtype=np.uint8),
        labels=labels,
        class_names=ANIMAL_MNIST_CLASSES,
        provenance={"package": "animal-mnist==0.4", "sha256": dict(ANIMAL_MNIST_FILES)},
    )


def load_digits_task() -> TaskData:
    """scikit-learn's ``load_digits``: 1,797 8x8 digits, values 0..16 scaled to 0..255."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.clip(np.round(bunch.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    return TaskData(images=images, labels=bunch.target, class_names=tuple(str(d) for d in range(10)),
                    provenance={"source": "sklearn.datasets.load_digits"})


def load_lfw_faces() -> TaskData:
    """scikit-image's ``lfw_subset``: 100 face images, then 100 non-face images, 25x25 grey."""
    from skimage import data

    images = data.lfw_subset()
    images = np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)
    labels = np.array([1] * 100 + [0] * 100)
    return TaskData(images=images, labels=labels, class_names=("non-face", "face"),
                    provenance={"source": "skimage.data.lfw_subset"})


def read_idx(path: Path) -> np.ndarray:
    """Read a (gzipped) IDX file, the MNIST family's format: magic, dims, then big-endian data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise DatasetUnavailableError(f"{path} is not an unsigned-byte IDX file (magic {raw[:4].hex()}).")
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DatasetUnavailableError(f"{path} is truncated: expected {int(np.prod(dims))} values, found {data.size}.")
    return data.reshape(dims)


_FASHION_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                  "t10k-labels-idx1-ubyte.gz")


def _fashion_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("TRANSFERLAB_FASHION_MNIST_DIR"):
        dirs.append(Path(os.environ["TRANSFERLAB_FASHION_MNIST_DIR"]))
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    dirs += [keras_home / "datasets" / "fashion-mnist", DEBIAN_FASHION_MNIST]
    return dirs


def _fashion_local_dir() -> Path | None:
    return next((d for d in _fashion_dirs() if all((d / f).is_file() for f in _FASHION_FILES)), None)


def load_fashion_mnist() -> TaskData:
    """Fashion-MNIST with its official test split: local files first, else Keras's download."""
    folder = _fashion_local_dir()
    if folder is not None:
        x_train, y_train, x_test, y_test = (read_idx(folder / f) for f in _FASHION_FILES)
    else:
        try:
            import keras

            (x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
        except Exception as exc:
            raise DatasetUnavailableError(
                "Task 'fashion_mnist' found no local copy and could not download it "
                f"({type(exc).__name__}). Offline, install Debian's package (`apt-get install dataset-fashion-mnist`, "
                f"files in {DEBIAN_FASHION_MNIST}/), or put the four files {', '.join(_FASHION_FILES)} in a folder and "
                "set TRANSFERLAB_FASHION_MNIST_DIR to it. Online, Keras downloads them into ~/.keras/datasets/."
            ) from None
        folder = "keras.datasets.fashion_mnist"
    images = np.concatenate([x_train, x_test]).astype(np.uint8)
    labels = np.concatenate([y_train, y_test])
    return TaskData(images=images, labels=labels, class_names=FASHION_MNIST_CLASSES,
                    test_indices=np.arange(len(x_train), len(images)), provenance={"source": str(folder)})


def fashion_mnist_available() -> bool:
    """Whether Fashion-MNIST's four files are on this machine (so loading needs no download)."""
    return _fashion_local_dir() is not None


@hookimpl
def register_tasks() -> list[TaskSpec]:
    """The offline image-classification tasks."""
    return [
        TaskSpec(
            name="animal_mnist",
            description="Animal-MNIST: 10,000 real 28x28 animal silhouettes, 10 classes (PyPI animal-mnist).",
            load=load_animal_mnist,
            num_classes=10,
            available=animal_mnist_available,
            distributions=("animal-mnist",),
        ),
        TaskSpec(
            name="digits",
            description="scikit-learn digits: 1,797 8x8 handwritten digits, 10 classes.",
            load=load_digits_task,
            num_classes=10,
        ),
        TaskSpec(
            name="lfw_faces",
            description="scikit-image lfw_subset: 100 faces vs 100 non-faces, 25x25.",
            load=load_lfw_faces,
            num_classes=2,
        ),
        TaskSpec(
            name="fashion_mnist",
            description="Fashion-MNIST: 70,000 28x28 clothing images, 10 classes (Keras, or Debian's package offline).",
            load=load_fashion_mnist,
            num_classes=10,
            available=fashion_mnist_available,
        ),
    ]
