"""Your own data (--data): class-folder trees, CSVs of path,label and tfds names become tasks whose data
version is part of every job id; changed data is never reused; bad input is one message and nothing stored."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from support_datasets import write_gtsrb_fixture, write_ham10000_fixture
from transferlab.cli import main
from transferlab.errors import UserError

#: (class folder, colour): a class name with spaces and one with non-ASCII letters
CLASSES = {"blue tit": (40, 80, 200), "Amsel": (20, 20, 20), "Vögel grün": (40, 180, 60)}
#: every Pillow format the scan must take, extensions in any case
FORMATS = (("png", "PNG"), ("jpg", "JPEG"), ("JPG", "JPEG"), ("bmp", "BMP"))
FAST = ["--backbone", "tiny", "--strategy", "scratch", "--input-size", "32", "--epochs", "1", "--batch-size", "8",
        "--workers", "0"]


def write_class_tree(root: Path, per_class: int = 6, seed: int = 0) -> Path:
    """A class-folder tree the project has never seen: nested folders, mixed formats, odd class names."""
    rng = np.random.default_rng(seed)
    for name, colour in CLASSES.items():
        for i in range(per_class):
            folder = root / name / ("nested/deeper" if i % 3 == 0 else "")
            folder.mkdir(parents=True, exist_ok=True)
            ext, fmt = FORMATS[i % len(FORMATS)]
            pixels = np.clip(rng.normal(colour, 25, (20, 20, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"img {i}.{ext}", fmt)
    return root


def _rows(tl_home: Path) -> int:
    path = tl_home / "runs.sqlite"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]


def _started(tl_home: Path) -> dict[str, float]:
    """When each stored run started, by run id (a run trained again starts anew)."""
    with sqlite3.connect(tl_home / "runs.sqlite") as conn:
        return dict(conn.execute("SELECT run_id, started_at FROM runs").fetchall())


@pytest.fixture
def tiny_cli(registry, monkeypatch):
    """The CLI with the test registry (the tiny backbone), in this process."""
    monkeypatch.setattr("transferlab.registry.get_registry", lambda: registry)
    return registry


def test_run_and_sweep_train_on_a_class_folder_tree_never_seen(tmp_path, tiny_cli, capsys, tl_home):
    root = write_class_tree(tmp_path / "My Birds")
    assert main(["run", "--data", str(root), "--examples-per-class", "2", *FAST]) == 0
    out = capsys.readouterr().out
    assert "Data data.my_birds (folder:" in out and "status: succeeded 1" in out
    # the split table, per class, before training: 6 images -> 1 test, 1 validation, 4 training
    lines = {line.split()[0]: line.split()[-4:] for line in out.splitlines()
             if line.strip().startswith(("Amsel", "blue", "Vögel"))}
    assert lines["Amsel"] == ["6", "1", "1", "4"]
    first = _started(tl_home)
    assert len(first) == 1
    assert main(["sweep", "--data", str(root), "--backbones", "tiny", "--strategies", "scratch",
                 "--examples-per-class", "2", "--seeds", "0,1", "--input-size", "32", "--epochs", "1",
                 "--batch-size", "8", "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert "2 jobs" in out and "status: succeeded 2" in out
    after = _started(tl_home)  # seed 0 is the run above: kept as it was (not trained again), seed 1 is new
    assert len(after) == 2 and {k: after[k] for k in first} == first
    assert main(["runs", "--csv"]) == 0
    rows = [line.split(",") for line in capsys.readouterr().out.strip().splitlines()]
    header, rows = rows[0], rows[1:]
    versions = {row[header.index("data_version")] for row in rows}
    assert len(rows) == 2 and {row[header.index("task")] for row in rows} == {"data.my_birds"}
    assert len(versions) == 1 and len(versions.pop()) == 12


def test_changing_the_folder_never_reuses_a_run_of_the_old_content(tmp_path, registry, store):
    from transferlab.data import load_task_data
    from transferlab.executor import run_jobs
    from transferlab.features import feature_key
    from transferlab.fingerprints import forget_data_versions
    from transferlab.jobs import make_job
    from transferlab.runner import Runner
    from transferlab.userdata import resolve_data

    root = write_class_tree(tmp_path / "birds")
    task = resolve_data(registry, str(root))
    options = dict(task=task.name, backbone="tiny", strategy="scratch", examples_per_class=2, input_size=32,
                   epochs=1, batch_size=8)
    old = make_job(registry, **options)
    old_key = feature_key("tiny", "none", None, task.name, load_task_data(registry, task.name),
                          np.arange(4), 32, "unit")
    assert run_jobs([old], store, workers=0, registry=registry) == {"succeeded": 1}

    shutil.move(root / "Amsel" / "img 1.jpg", root / "blue tit" / "img 1.jpg")  # one file to another class
    forget_data_versions()
    new = make_job(registry, **options)
    new_key = feature_key("tiny", "none", None, task.name, load_task_data(registry, task.name), np.arange(4), 32,
                          "unit")
    assert new.data_version != old.data_version and new.job_id != old.job_id and new_key != old_key
    assert store.get(new.job_id) is None  # nothing of the old content answers for the new
    frame = store.runs_frame()
    assert frame["data_version"].tolist() == [old.data_version]  # the old run keeps its old version
    with pytest.raises(UserError, match="data at data.birds .*changed since this job was queued.*run the sweep again"):
        Runner(registry).run(old)  # queued before the change: refused, never recorded under the old version


def test_a_worker_rebuilds_a_data_task_from_the_job_spec_alone(tmp_path, registry):
    from transferlab.data import check_jobs_fit_data
    from transferlab.jobs import JobSpec, make_job
    from transferlab.registry import load_registry
    from transferlab.userdata import resolve_data, task_for_job

    root = write_class_tree(tmp_path / "birds")
    job = make_job(registry, task=resolve_data(registry, f"folder:{root}").name, backbone="small_cnn",
                   strategy="scratch", examples_per_class=2)
    spec = json.loads(job.canonical_json())
    assert spec["data"] == f"folder:{root}" and spec["data_version"] == job.data_version
    assert JobSpec(**{**spec, "data": f"folder:{tmp_path}/elsewhere"}).job_id == job.job_id  # the place is not the id
    fresh = load_registry()  # what a worker process has: the installed plugins, no data task
    assert "data.birds" not in fresh.tasks
    again = JobSpec.from_json(job.canonical_json())
    assert task_for_job(fresh, again).data == f"folder:{root}"
    check_jobs_fit_data(fresh, [again])


def test_fingerprints_follow_content_not_place(tmp_path, monkeypatch):
    from transferlab import fingerprints

    a = write_class_tree(tmp_path / "a")
    b = shutil.copytree(a, tmp_path / "b")  # a copy elsewhere, new modification times
    version = fingerprints.fingerprint_class_folders(a)
    assert fingerprints.fingerprint_class_folders(b) == version
    (b / "Amsel" / "notes.txt").write_text("not an image: the scan ignores it")
    assert fingerprints.fingerprint_class_folders(b) == version
    with open(b / "Amsel" / "img 1.jpg", "ab") as fh:
        fh.write(b"\0")  # one byte more
    assert fingerprints.fingerprint_class_folders(b) != version
    # above the byte limit, sizes and modification times stand in for the bytes
    monkeypatch.setattr(fingerprints, "FINGERPRINT_BYTES_LIMIT", 0)
    by_stat = fingerprints.fingerprint_class_folders(a)
    assert by_stat != version and by_stat == fingerprints.fingerprint_class_folders(a)
    os.utime(a / "Amsel" / "img 1.jpg", ns=(1, 1))
    assert fingerprints.fingerprint_class_folders(a) != by_stat


def test_csv_of_paths_and_labels_becomes_a_task(tmp_path, registry):
    from transferlab.data import load_task_data
    from transferlab.userdata import resolve_data

    root = write_class_tree(tmp_path / "images")
    files = sorted(p for p in root.rglob("*") if p.is_file())
    rows = [f"{p.relative_to(tmp_path).as_posix()},{'bird' if 'Amsel' in str(p) else 'other'}" for p in files]
    (tmp_path / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    task = resolve_data(registry, str(tmp_path / "labels.csv"))
    assert task.name.startswith("data.test_csv_of_paths")  # labels.csv says nothing: named after its folder
    data = load_task_data(registry, task.name)
    assert data.class_names == ("bird", "other") and np.bincount(data.labels).tolist() == [6, 12]
    headerless = tmp_path / "birds.csv"
    headerless.write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert resolve_data(registry, f"csv:{headerless}").name == "data.birds"
    assert len(load_task_data(registry, "data.birds")) == len(files)


def _bad_csv(tmp_path: Path, text: str) -> Path:
    write_class_tree(tmp_path / "images", per_class=3)
    path = tmp_path / "set.csv"
    path.write_text(text, encoding="utf-8")
    return path


def _rows_of(folder: str, label: str) -> str:
    """CSV rows for the three images ``write_class_tree(per_class=3)`` puts in ``folder``."""
    names = ("nested/deeper/img 0.png", "img 1.jpg", "img 2.JPG")
    return "".join(f"images/{folder}/{name},{label}\n" for name in names)


GOOD_ROWS = _rows_of("Amsel", "a")


def _one_class(d: Path) -> Path:
    root = write_class_tree(d / "one")
    shutil.rmtree(root / "Amsel")
    shutil.rmtree(root / "blue tit")
    return root


def _empty(d: Path) -> Path:
    (d / "empty").mkdir()
    return d / "empty"


@pytest.mark.parametrize("make, expected", [
    (lambda d: d / "nowhere", ["No folder or file at", "nowhere", "a CSV of path,label"]),
    (_empty, ["No class folders in", "empty"]),
    (_one_class, ["has one class folder", "at least two"]),
    (lambda d: write_class_tree(d / "small", per_class=2), ["fewer than 3 usable images", "'Amsel' (2)"]),
    (lambda d: _bad_csv(d, "path,label\n" + GOOD_ROWS + "images/Amsel/img 0.png,b,extra\n"),
     ["Cannot parse", "set.csv", "line 5"]),
    (lambda d: _bad_csv(d, "path,label\n" + GOOD_ROWS + "images/missing one.png,b\nimages/gone.png,b\n"),
     ["2 of 5 image files", "missing one.png", "file not found", "relative to"]),
    (lambda d: _bad_csv(d, "path,label\n" + GOOD_ROWS + ",b\n"), ["empty path or label", "line 5"]),
    (lambda d: _bad_csv(d, "file,class,extra\nx,y,z\n"), ["needs path and label"]),
    (lambda d: _bad_csv(d, "path,label\n" + GOOD_ROWS + "images/blue tit/img 1.jpg,b\n" * 2),
     ["listed twice", "lines 5 and 6"]),
    (lambda d: _bad_csv(d, "path,label\n" + GOOD_ROWS + _rows_of("blue tit", "b").split("\n", 1)[1]),
     ["Every class needs at least 3 examples", "'b' has 2 examples"]),
    (lambda d: "tfds:surely_not_prepared_here", ["no prepared copy of 'surely_not_prepared_here'", "TFDS_DATA_DIR"]),
])
def test_bad_data_is_one_message_exit_2_and_nothing_stored(make, expected, tmp_path, tiny_cli, capsys, tl_home,
                                                           monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    target = make(tmp_path)
    assert main(["run", "--data", str(target), *FAST]) == 2
    err = capsys.readouterr().err
    assert err.startswith("transferlab: error: ") and err.count("\n") == 1, err
    for text in expected:
        assert text in err, (text, err)
    assert _rows(tl_home) == 0


def test_data_with_a_task_is_refused(tmp_path, tiny_cli, capsys, tl_home):
    root = write_class_tree(tmp_path / "birds")
    assert main(["sweep", "--data", str(root), "--tasks", "digits", "--backbones", "tiny", "--strategies",
                 "scratch"]) == 2
    err = capsys.readouterr().err
    assert "Give --data or --tasks, not both" in err and "not needed" in err
    with pytest.raises(SystemExit):  # argparse: one of the two, not both
        main(["run", "--data", str(root), "--task", "digits", "--backbone", "tiny", "--strategy", "scratch"])
    assert "not allowed with argument" in capsys.readouterr().err
    assert _rows(tl_home) == 0


def test_data_tasks_have_neutral_defaults_and_stable_names(tmp_path, registry):
    from transferlab.jobs import make_job
    from transferlab.userdata import data_task_name, parse_data, resolve_data

    root = write_class_tree(tmp_path / "Vögel Ünd Co")
    task = resolve_data(registry, str(root))
    assert task.name == "data.vogel_und_co" and task.job_defaults == {} and resolve_data(registry, str(root)) is task
    job = make_job(registry, task=task.name, backbone="small_cnn", strategy="scratch")
    assert job.augment is False and job.class_weight == "none"
    assert data_task_name(parse_data("tfds:voc/2007:train[:10%]")) == "tfds.voc_2007.train_10"
    (tmp_path / "My Set.CSV").write_text("path,label\n")
    assert data_task_name(parse_data(str(tmp_path / "My Set.CSV"))) == "data.my_set"
    (tmp_path / "鳥").mkdir()
    name = data_task_name(parse_data(str(tmp_path / "鳥")))
    assert name.startswith("data.h") and name == data_task_name(parse_data(str(tmp_path / "鳥")))


def test_run_page_takes_a_path_shows_the_splits_and_launches_its_jobs(tmp_path, monkeypatch, tl_home):
    from streamlit.testing.v1 import AppTest

    root = write_class_tree(tmp_path / "birds")
    launched = []
    monkeypatch.setattr("transferlab.launch.launch", lambda jobs, workers=1: launched.append(jobs) or
                        type("Launch", (), {"launch_id": "test"})())
    page = Path(__file__).resolve().parents[1] / "dashboard" / "views" / "run.py"
    at = AppTest.from_file(str(page), default_timeout=120)
    at.run()
    field = next(t for t in at.text_input if t.label.startswith("Your data"))
    field.set_value(str(tmp_path / "nowhere")).run()
    assert len(at.error) == 1 and "No folder or file at" in at.error[0].value
    field.set_value(str(root)).run()
    assert not at.exception and not at.error
    assert next(m for m in at.multiselect if m.label == "Tasks").value == ["data.birds"]
    splits = next(df.value for df in at.dataframe if "validation" in df.value.columns)
    assert splits.set_index("class").loc["Vögel grün"].tolist() == [6, 1, 1, 4]
    assert any("data version" in m.value for m in at.markdown)
    next(t for t in at.text_input if t.label == "Labelled examples per class").set_value("2").run()
    next(b for b in at.button if b.label == "Launch in the background").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    (jobs,) = launched
    assert {j.task for j in jobs} == {"data.birds"} and {j.data for j in jobs} == {f"folder:{root}"}
    assert all(j.data_version and len(j.data_version) == 12 for j in jobs)


def _append_byte(folder: Path, suffixes: tuple[str, ...]) -> None:
    path = next(p for p in sorted(folder.rglob("*")) if p.suffix.lower() in suffixes)
    with open(path, "ab") as fh:
        fh.write(b"\0")


@pytest.mark.parametrize("task, env, write, suffixes", [
    ("medical_folder", "TRANSFERLAB_MEDICAL_DIR", lambda d: write_class_tree(d, per_class=3), (".png",)),
    ("skin_lesions", "TRANSFERLAB_HAM10000_DIR", lambda d: write_ham10000_fixture(d, per_class=3, size=16), (".jpg",)),
    ("road_signs", "TRANSFERLAB_GTSRB_DIR", lambda d: write_gtsrb_fixture(d, classes=(1, 2), per_class=3, n_test=2),
     (".ppm",)),
    ("voc2007_detection", "TRANSFERLAB_VOC_DIR", lambda d: write_class_tree(d / "VOC2007" / "JPEGImages", 1) and d,
     (".png",)),
    ("sentiment_tweets", "TRANSFERLAB_SENTIMENT_CSV",
     lambda d: (d.mkdir(), (d / "t.csv").write_text("sentiment,text\npositive,yes\n"), d / "t.csv")[-1], (".csv",)),
])
def test_built_in_file_tasks_have_a_data_version_that_follows_their_files(task, env, write, suffixes, tmp_path,
                                                                          registry, monkeypatch):
    from transferlab.fingerprints import task_data_version

    spec = registry.task(task)
    monkeypatch.delenv(env, raising=False)
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "no-tfds"))  # VOC's other source: not prepared here
    assert task_data_version(spec, fresh=True) is None  # nothing here: load() says where to get it
    target = write(tmp_path / "data")
    monkeypatch.setenv(env, str(target))
    before = task_data_version(spec, fresh=True)
    assert before is not None and len(before) == 12
    _append_byte(target if target.is_dir() else target.parent, suffixes)
    assert task_data_version(spec, fresh=True) != before


def test_a_medical_folder_job_gets_a_new_id_when_the_folder_changes(tmp_path, registry, monkeypatch):
    from transferlab.fingerprints import forget_data_versions
    from transferlab.jobs import make_job

    root = write_class_tree(tmp_path / "scans", per_class=3)
    monkeypatch.setenv("TRANSFERLAB_MEDICAL_DIR", str(root))
    first = make_job(registry, task="medical_folder", backbone="small_cnn", strategy="scratch")
    (root / "Amsel" / "img 1.jpg").unlink()
    forget_data_versions()
    second = make_job(registry, task="medical_folder", backbone="small_cnn", strategy="scratch")
    assert first.data_version != second.data_version and first.job_id != second.job_id


def _prepare_tiny_tfds(data_dir: Path) -> str:
    """A two-class image set built by tensorflow-datasets from a local builder, offline."""
    import tensorflow_datasets as tfds

    class TinyShades(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, supervised_keys=("image", "label"), features=tfds.features.FeaturesDict(
                {"image": tfds.features.Image(shape=(8, 8, 3)), "label": tfds.features.ClassLabel(names=["dark", "light"])}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(12), "test": self._generate_examples(6)}

        def _generate_examples(self, n):
            for i in range(n):
                yield i, {"image": np.full((8, 8, 3), 40 + 160 * (i % 2), np.uint8), "label": i % 2}

    TinyShades(data_dir=str(data_dir)).download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    return "tiny_shades"


def test_a_tfds_set_prepared_offline_trains_with_its_official_test_split(tmp_path, tiny_cli, capsys, monkeypatch):
    from transferlab.data import load_task_data
    from transferlab.userdata import resolve_data

    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    name = _prepare_tiny_tfds(tmp_path / "tfds")
    task = resolve_data(tiny_cli, f"tfds:{name}")
    data = load_task_data(tiny_cli, task.name)
    assert task.name == "tfds.tiny_shades" and data.class_names == ("dark", "light")
    assert len(data) == 18 and len(data.test_indices) == 6  # tfds' own test split is the test split
    assert main(["run", "--data", f"tfds:{name}", "--examples-per-class", "2", *FAST]) == 0
    assert "status: succeeded 1" in capsys.readouterr().out
