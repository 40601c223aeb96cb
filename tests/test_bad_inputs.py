"""Bad datasets on the command line: each gives exit status 2, one message saying what was wrong and what
to do, no traceback, and nothing in the store."""
from __future__ import annotations

import pytest
from PIL import Image

from transferlab.cli import main
from transferlab.data import _TASK_DATA
from transferlab.store import Store


@pytest.fixture(autouse=True)
def fresh_task_data():
    _TASK_DATA.clear()
    yield
    _TASK_DATA.clear()


def _images(folder, n, colour=(120, 30, 30)):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (12, 12), colour).save(folder / f"{i}.png")


def _empty_class(root):
    _images(root / "benign", 10)
    _images(root / "malignant", 10)
    (root / "unlabelled").mkdir()


def _one_class(root):
    _images(root / "benign", 10)


def _mostly_corrupt(root):
    _images(root / "benign", 10)
    _images(root / "malignant", 2)
    for i in range(5):
        (root / "malignant" / f"bad{i}.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")


def _ham_without_dx(root):
    from support_datasets import write_ham10000_fixture

    write_ham10000_fixture(root, per_class=3)
    csv = root / "HAM10000_metadata.csv"
    lines = csv.read_text().splitlines()
    header = lines[0].split(",")
    keep = [i for i, name in enumerate(header) if name != "dx"]
    csv.write_text("\n".join(",".join(row.split(",")[i] for i in keep) for row in lines) + "\n")


def _ham_unknown_label(root):
    from support_datasets import write_ham10000_fixture

    write_ham10000_fixture(root, per_class=3)
    csv = root / "HAM10000_metadata.csv"
    csv.write_text(csv.read_text().replace(",mel,", ",melanoma??,", 1))


def _gtsrb_without_roi(root):
    from support_datasets import write_gtsrb_fixture

    write_gtsrb_fixture(root, classes=range(3), per_class=4, n_test=5)
    csv = root / "Final_Training" / "Images" / "00001" / "GT-00001.csv"
    csv.write_text(csv.read_text().replace("Roi.X2;", "RoiX2;"))


CASES = [
    ("medical_folder", "TRANSFERLAB_MEDICAL_DIR", _empty_class, ["unlabelled", "without image files"]),
    ("medical_folder", "TRANSFERLAB_MEDICAL_DIR", _one_class, ["one class folder", "at least two"]),
    ("medical_folder", "TRANSFERLAB_MEDICAL_DIR", _mostly_corrupt, ["5 of 17 image files", "max_bad_fraction"]),
    ("skin_lesions", "TRANSFERLAB_HAM10000_DIR", _ham_without_dx, ["lacks the column(s) dx"]),
    ("skin_lesions", "TRANSFERLAB_HAM10000_DIR", _ham_unknown_label, ["melanoma??", "akiec"]),
    ("road_signs", "TRANSFERLAB_GTSRB_DIR", _gtsrb_without_roi, ["Roi.X2"]),
]


@pytest.mark.parametrize("task, setting, make, expected", CASES, ids=[c[2].__name__.strip("_") for c in CASES])
def test_bad_dataset_exits_2_with_one_message(task, setting, make, expected, tmp_path, monkeypatch, capsys):
    root = tmp_path / "data"
    root.mkdir()
    make(root)
    monkeypatch.setenv(setting, str(root))
    code = main(["run", "--task", task, "--backbone", "small_cnn", "--strategy", "scratch", "--fraction", "1",
                 "--input-size", "16", "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 2, err
    for text in expected:
        assert text in err, (text, err)
    assert "Traceback" not in err and err.strip().count("\n") <= 3
    assert Store().runs_frame().empty  # nothing half-written
