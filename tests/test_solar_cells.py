"""The ``elpv_solar`` task on the real ELPV data of the installed ``elpv-dataset`` package: labels, split,
pins, the message when the package is missing, and one run through the CLI."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from transferlab import SPLIT_SEED, DatasetUnavailableError
from transferlab.cli import main
from transferlab.data import _TASK_DATA, make_splits
from transferlab.plugins import solar_cells
from transferlab.store import Store

pytestmark = pytest.mark.skipif(not solar_cells.elpv_available(),
                                reason="needs elpv-dataset (pip install transferlab[noncommercial])")

LICENCE = "CC BY-NC-SA 4.0 — non-commercial use only"


@pytest.fixture(scope="module")
def elpv():
    """The task's data, loaded once for the module (about 2-3 s of PNG decoding)."""
    return solar_cells.load_elpv_solar()


def _csv_rows() -> list[list[str]]:
    """labels.csv read independently of the plugin: whitespace-separated path, probability, type."""
    text = (solar_cells.elpv_data_dir() / "labels.csv").read_text(encoding="utf-8")
    return [line.split() for line in text.splitlines() if line.strip()]


def _copy_of_the_data(tmp_path, monkeypatch):
    """A fake package root whose data is a copy of labels.csv and links to the real images; the plugin
    is pointed at it. Returns the copy's data folder."""
    data = tmp_path / "elpv_dataset" / "data"
    (data / "images").mkdir(parents=True)
    shutil.copyfile(solar_cells.elpv_data_dir() / "labels.csv", data / "labels.csv")
    for image in (solar_cells.elpv_data_dir() / "images").iterdir():
        (data / "images" / image.name).symlink_to(image)
    monkeypatch.setattr(solar_cells, "package_dir", lambda name: tmp_path / "elpv_dataset")
    return data


def test_loads_all_2624_cells_as_300px_grayscale(elpv):
    assert elpv.images.shape == (2624, 300, 300, 1) and elpv.images.dtype == np.uint8
    assert elpv.class_names == ("functional", "defective")
    assert elpv.test_indices is None and elpv.groups is None  # no official split: core's seeded one
    assert elpv.provenance["sha256"]["labels.csv"] == solar_cells.ELPV_LABELS_SHA256
    assert 0 < elpv.images.mean() < 255  # decoded pixels, not an empty buffer


def test_labels_follow_the_rule_on_the_csv(elpv):
    rows = _csv_rows()
    assert len(rows) == 2624
    expected = np.array([float(p) >= 0.5 for _, p, _ in rows], dtype=np.int64)
    np.testing.assert_array_equal(elpv.labels, expected)
    assert np.bincount(elpv.labels).tolist() == [1803, 821]  # the counts the description states
    types = np.array([t for _, _, t in rows])
    assert elpv.provenance["module_types"] == {
        name: {t: int(np.sum((expected == c) & (types == t))) for t in ("mono", "poly")}
        for c, name in enumerate(("functional", "defective"))
    }


def test_split_is_stratified_and_identical_across_two_loads(elpv):
    splits = make_splits(elpv)
    again = make_splits(solar_cells.load_elpv_solar())
    for name in ("test", "val", "pool"):
        np.testing.assert_array_equal(getattr(splits, name), getattr(again, name))
    assert f"stratified 20% test, seed {SPLIT_SEED}" in splits.method
    assert (len(splits.test), len(splits.val), len(splits.pool)) == (525, 100, 1999)
    for cls, count in enumerate(np.bincount(elpv.labels)):
        assert abs(np.sum(elpv.labels[splits.test] == cls) - 0.2 * count) <= 1
    assert not set(splits.test) & set(splits.pool) and not set(splits.val) & set(splits.pool)


def test_altered_labels_csv_is_refused(tmp_path, monkeypatch):
    data = _copy_of_the_data(tmp_path, monkeypatch)
    text = (data / "labels.csv").read_text(encoding="utf-8")
    (data / "labels.csv").write_text(text.replace("images/cell0004.png  0.0", "images/cell0004.png  1.0", 1),
                                     encoding="utf-8")
    with pytest.raises(DatasetUnavailableError) as err:
        solar_cells.load_elpv_solar()
    message = str(err.value)
    assert str(data / "labels.csv") in message and f"expected {solar_cells.ELPV_LABELS_SHA256}" in message
    assert "pip install --force-reinstall elpv-dataset==1.0.0.post1" in message


def test_altered_image_is_refused(tmp_path, monkeypatch):
    data = _copy_of_the_data(tmp_path, monkeypatch)
    (data / "images" / "cell0001.png").unlink()
    (data / "images" / "cell0001.png").symlink_to(data / "images" / "cell0002.png")
    with pytest.raises(DatasetUnavailableError, match="some are altered. Reinstall it"):
        solar_cells.load_elpv_solar()


def test_malformed_labels_line_names_its_line(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("images/cell0001.png  1.0  mono\n\nimages/cell0002.png  high  poly\n", encoding="utf-8")
    with pytest.raises(DatasetUnavailableError, match=r"line 3 is not .*Received: 'images/cell0002.png  high  poly'"):
        solar_cells.read_elpv_labels(labels)


def test_missing_package_says_how_to_install(registry, monkeypatch):
    monkeypatch.setattr(solar_cells, "package_dir", lambda name: None)
    task = registry.task("elpv_solar")
    assert not task.available()
    with pytest.raises(DatasetUnavailableError) as err:
        task.load()
    message = str(err.value)
    assert "pip install transferlab[noncommercial]" in message and "pip install elpv-dataset==1.0.0.post1" in message
    assert LICENCE in message


def test_description_and_tasks_command_show_the_licence(registry, capsys):
    task = registry.task("elpv_solar")
    assert LICENCE in task.description
    assert all(fact in task.description for fact in ("2,624", "probability >= 0.5", "821", "1,803", "31%"))
    assert task.distributions == ("elpv-dataset",) and task.default_backbone == "efficientnet_lite0"
    assert main(["tasks"]) == 0
    line = next(row for row in capsys.readouterr().out.splitlines() if row.startswith("elpv_solar "))
    assert LICENCE in line and "transferlab.plugins.solar_cells" in line


@pytest.fixture
def fresh_task_data():
    """The run loads the task into core's per-process cache; drop it before and after (236 MB)."""
    _TASK_DATA.pop("elpv_solar", None)
    yield
    _TASK_DATA.pop("elpv_solar", None)


@pytest.mark.slow  # about 25 s here: TensorFlow, the 2,624 decodes and resizing the 625 held-out cells
def test_run_through_the_cli_stores_a_score(tl_home, capsys, fresh_task_data):
    argv = ["run", "--task", "elpv_solar", "--backbone", "small_cnn", "--strategy", "scratch",
            "--examples-per-class", "5", "--epochs", "1", "--input-size", "32", "--workers", "0"]
    assert main(argv) == 0
    assert "status: succeeded 1" in capsys.readouterr().out
    runs = Store().runs_frame(task="elpv_solar")
    assert len(runs) == 1 and runs.loc[0, "status"] == "succeeded" and 0 <= runs.loc[0, "score"] <= 1
    manifest = json.loads(runs.loc[0, "manifest_json"])
    assert manifest["n_test"] == 525 and f"seed {SPLIT_SEED}" in manifest["split"]
    assert manifest["packages"]["elpv-dataset"] == "1.0.0.post1"
    assert manifest["provenance"]["licence"] == LICENCE
