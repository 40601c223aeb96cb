"""Pascal VOC 2007 for detection: a local VOCdevkit folder, or tensorflow-datasets online."""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from transferlab import DatasetUnavailableError, ImageFiles, TaskData, UserError, fingerprint_tfds, fingerprint_tree

__all__ = ["VOC_CLASSES", "VOC_ENV", "VOC_URL", "load_voc2007", "read_voc_folder", "voc2007_version"]

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
VOC_URL = "http://host.robots.ox.ac.uk/pascal/VOC/voc2007/"
VOC_ENV = "TRANSFERLAB_VOC_DIR"


def read_voc_folder(root: Path, year: str = "2007") -> TaskData:
    """A Pascal VOC devkit folder: ``VOC<year>/Annotations/*.xml``, ``JPEGImages/*.jpg`` and
    ``ImageSets/Main/{trainval,test}.txt`` (the test list gives the official test split when present).

    Boxes are read from the XML (1-based pixel corners) and normalised by the annotated image size.
    Objects marked ``difficult`` are left out of training and scoring; unlike the VOC devkit, which
    ignores detections of them, a detection of a difficult object then counts as a false positive.
    mAP is the VOC2010+ all-point average precision, not VOC2007's 11-point variant.
    """
    base = root / f"VOC{year}" if (root / f"VOC{year}").is_dir() else root
    ann_dir, img_dir = base / "Annotations", base / "JPEGImages"
    if not ann_dir.is_dir() or not img_dir.is_dir():
        raise DatasetUnavailableError(
            f"No Pascal VOC layout under {root}: expected VOC{year}/Annotations/*.xml and VOC{year}/JPEGImages/*.jpg "
            f"(the VOCdevkit folder of {VOC_URL}). Set TRANSFERLAB_VOC_DIR to the VOCdevkit folder."
        )
    index = {c: i for i, c in enumerate(VOC_CLASSES)}
    paths, targets, labels, names = [], [], [], []
    for xml_path in sorted(ann_dir.glob("*.xml")):
        try:
            tree = ET.parse(xml_path).getroot()
            width = float(tree.findtext("size/width"))
            height = float(tree.findtext("size/height"))
            filename = tree.findtext("filename") or f"{xml_path.stem}.jpg"
        except (ET.ParseError, TypeError, ValueError) as exc:
            raise UserError(f"VOC annotation {xml_path} is not valid ({exc}); it needs <filename> and <size>.") from None
        boxes, classes = [], []
        for obj in tree.iter("object"):
            name = (obj.findtext("name") or "").strip()
            if name not in index:
                raise UserError(f"VOC annotation {xml_path} names unknown class {name!r}. Valid classes: {list(VOC_CLASSES)}.")
            if obj.findtext("difficult", "0").strip() == "1":
                continue
            box = obj.find("bndbox")
            x1, y1, x2, y2 = (float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
            boxes.append([(x1 - 1) / width, (y1 - 1) / height, x2 / width, y2 / height])
            classes.append(index[name])
        if not boxes:
            continue
        paths.append(str(img_dir / filename))
        targets.append((np.clip(np.array(boxes, np.float32), 0, 1), np.array(classes, np.int64)))
        labels.append(classes[0])
        names.append(xml_path.stem)
    if not paths:
        raise UserError(f"No annotated objects found under {ann_dir}.")
    test_list = base / "ImageSets" / "Main" / "test.txt"
    test = None
    if test_list.is_file():
        wanted = set(test_list.read_text().split())
        test = np.array([i for i, n in enumerate(names) if n in wanted], dtype=np.int64)
    return TaskData(images=ImageFiles(np.array(paths)), labels=np.array(labels), class_names=VOC_CLASSES,
                    test_indices=test if test is not None and len(test) else None, targets=targets,
                    provenance={"source": str(base)})


def load_voc2007() -> TaskData:
    """Pascal VOC 2007: from ``TRANSFERLAB_VOC_DIR`` when set, else tensorflow-datasets (downloads)."""
    folder = os.environ.get(VOC_ENV)
    if folder:
        return read_voc_folder(Path(folder))
    try:
        import tensorflow_datasets as tfds

        train, test = tfds.load("voc/2007", split=["train+validation", "test"])
    except Exception as exc:
        raise DatasetUnavailableError(
            f"Task 'voc2007_detection' downloads Pascal VOC 2007 ({VOC_URL}) through tensorflow-datasets, which "
            f"failed here ({type(exc).__name__}). Run it online once, or set TRANSFERLAB_VOC_DIR to a VOCdevkit "
            "folder (VOC2007/Annotations, JPEGImages, ImageSets/Main/test.txt)."
        ) from None
    return _voc_from_tfds(train, test)


def voc2007_version() -> str | None:
    """The data version of Pascal VOC 2007: every file of the VOCdevkit folder at ``TRANSFERLAB_VOC_DIR``
    (annotations, images, image sets), else tensorflow-datasets' prepared ``voc/2007`` (None before it is)."""
    folder = os.environ.get(VOC_ENV)
    if folder:
        return fingerprint_tree(folder) if os.path.isdir(folder) else None
    return fingerprint_tfds("voc/2007")


def _voc_from_tfds(train, test, size: int = 224) -> TaskData:
    import tensorflow as tf

    images, targets, labels = [], [], []
    n_train = 0
    for split_index, split in enumerate((train, test)):
        for example in split.as_numpy_iterator():
            objects = example["objects"]
            keep = ~objects["is_difficult"]
            if not keep.any():
                continue
            ymin, xmin, ymax, xmax = objects["bbox"][keep].T  # tfds: normalised (ymin, xmin, ymax, xmax)
            images.append(tf.cast(tf.image.resize(example["image"], (size, size)), tf.uint8).numpy())
            targets.append((np.stack([xmin, ymin, xmax, ymax], 1).astype(np.float32), objects["label"][keep].astype(np.int64)))
            labels.append(int(objects["label"][keep][0]))
            n_train += split_index == 0
    return TaskData(images=np.stack(images), labels=np.array(labels), class_names=VOC_CLASSES,
                    test_indices=np.arange(n_train, len(images)), targets=targets,
                    provenance={"source": "tfds:voc/2007", "resized": size})
