"""Hostile input, refused before anything is queued: every numeric flag at 0, negative, huge, NaN, inf and
not a number; unknown names; bad sweep files; broken folder datasets; bad weight files; bad store URLs.

Each case asserts what a user is promised: exit status 2, exactly one message on stderr that names the
problem (the flag, the key or the file), no traceback, and nothing stored (no run in the store and no
file in TRANSFERLAB_HOME). Everything runs in-process through ``transferlab.cli.main`` and fails in
validation, so nothing here trains; one case imports TensorFlow to load a weights file into a backbone,
and a handful run the real ``transferlab`` command in a subprocess.
"""
from __future__ import annotations

import os
import re
import sqlite3
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from transferlab import BackboneSpec, TaskSpec, WeightSourceSpec, hookimpl
from transferlab.cli import main
from transferlab.data import _TASK_DATA

RUN = ["run", "--task", "digits", "--backbone", "small_cnn", "--strategy", "scratch"]
DRY_SWEEP = ["sweep", "--tasks", "digits", "--backbones", "small_cnn", "--strategies", "scratch", "--dry-run"]
STORE_FILES = {"runs.sqlite", "runs.sqlite-wal", "runs.sqlite-shm"}
PAGES = Path(__file__).resolve().parents[1] / "dashboard" / "views"


@pytest.fixture(autouse=True)
def fresh_task_data():
    _TASK_DATA.clear()  # data is cached per process; a folder dataset of another test must not leak in
    yield
    _TASK_DATA.clear()


def assert_nothing_stored(home) -> None:
    """No run in the store, and no file in the home but the (empty) store itself."""
    files = [p for p in home.rglob("*") if p.is_file()] if home.exists() else []
    assert {p.name for p in files} <= STORE_FILES, [str(p) for p in files]
    if (home / "runs.sqlite").exists():
        with sqlite3.connect(home / "runs.sqlite") as conn:
            assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0


def refused(argv, capsys, home, *expected: str, one_line: bool = True) -> str:
    """Run the CLI in-process and check the promise; returns the message."""
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("transferlab: error: ") and err.count("transferlab: error:") == 1, err
    assert "Traceback" not in err
    if one_line:
        assert err.count("\n") == 1, err
    for text in expected:
        assert text in err, (text, err)
    assert_nothing_stored(home)
    return err


# ------------------------------------------------------------------------------------------ numeric flags

INT_FLAGS = ["--input-size", "--epochs", "--fine-tune-epochs", "--batch-size", "--fine-tune-layers",
             "--examples-per-class", "--seed"]
INT_VALUES = ["0", "-3", "2147483648", "nan", "inf", "abc", "2.5", ""]
FLOAT_FLAGS = ["--learning-rate", "--fine-tune-learning-rate"]
FLOAT_VALUES = ["0", "-1e-3", "nan", "inf", "-inf", "1e999", "abc", ""]
FRACTION_VALUES = ["0", "-0.5", "1.5", "nan", "inf", "abc"]
WORKER_VALUES = ["-1", "100000", "abc", "1.5"]


def _numeric_cases():
    cases = []
    for flag in INT_FLAGS:
        for value in INT_VALUES:
            if flag == "--seed" and value == "0":
                continue  # seed 0 is valid
            cases.append((flag, value))
    cases += [(flag, value) for flag in FLOAT_FLAGS for value in FLOAT_VALUES]
    cases += [("--fraction", value) for value in FRACTION_VALUES]
    cases += [("--workers", value) for value in WORKER_VALUES]
    return cases


@pytest.mark.parametrize("flag, value", _numeric_cases())
def test_numeric_flag_out_of_range(flag, value, capsys, tl_home):
    err = refused([*RUN, f"{flag}={value}"], capsys, tl_home, flag)  # =: argparse reads "-1e-3" as a flag
    assert f"Received: {flag}=" in err


@pytest.mark.parametrize("flag, value, expected", [
    ("--input-size", "100000", "needs at least about"),  # a TensorFlow out-of-memory traceback before
    ("--batch-size", "100000000", "needs at least about"),
])
def test_sizes_that_cannot_fit_memory_say_how_much_is_needed(flag, value, expected, capsys, tl_home):
    refused([*RUN, flag, value], capsys, tl_home, f"{flag} {value}", expected, "GiB", "this machine has", "Use at most")


def test_memory_limit_is_worked_out_from_the_machine(monkeypatch):
    from transferlab import jobs
    from transferlab.errors import UserError

    monkeypatch.setattr(jobs, "machine_memory_bytes", lambda: 8 * 2**30)
    jobs.check_input_memory(512, 32)  # 8 GiB: 512 px x 32 images x 1 KiB = 8 GiB fits exactly
    with pytest.raises(UserError) as info:
        jobs.check_input_memory(513, 32)
    text = info.value.render(jobs.flag_names())
    assert "--input-size 513 needs at least about 8.0 GiB" in text and "this machine has 8.0 GiB" in text
    assert "Use at most --input-size 512, or a smaller --batch-size" in text
    with pytest.raises(UserError, match=r"batch_size 9000 at input_size 32 .* Use at most batch_size 8192\."):
        jobs.check_input_memory(32, 9000)


def test_examples_per_class_zero_is_refused_not_read_as_all(capsys, tl_home):
    # 0 used to be falsy: the run trained on the whole pool and printed an empty summary
    refused([*RUN, "--examples-per-class", "0"], capsys, tl_home, "Received: --examples-per-class=0")


def test_input_size_zero_is_refused_not_read_as_the_default(capsys, tl_home):
    refused([*RUN, "--input-size", "0"], capsys, tl_home, "--input-size", "Received: --input-size=0")


@pytest.mark.parametrize("argv, expected", [
    ([*RUN, "--class-weight", "heavy"], "--class-weight must be one of 'none', 'balanced'"),
    ([*RUN, "--executor", "slurm"], "--executor must be 'local' or 'ray'"),
    ([*RUN, "--input-size", "10"], "Received: --input-size=10. Use --input-size 16 or more."),
    (["sweep", "--tasks", "digits", "--backbones", "small_cnn", "--strategies", "scratch", "--seeds", "a,b"],
     "--seeds must be an integer >= 0"),
    ([*DRY_SWEEP[:-1], "--examples-per-class", "5,0"], "--examples-per-class must be an integer >= 1"),
    (["sweep", "--tasks", ",", "--backbones", "small_cnn", "--strategies", "scratch"], "--tasks is empty"),
    (["sweep", "--tasks", "digits", "--backbones", "small_cnn", "--strategies", "scratch", "--seeds", ","],
     "--seeds is empty"),
    (["sweep", "--tasks", "digits", "--backbones", "small_cnn", "--strategies", "scratch", "--workers", "-2"],
     "--workers must be a whole number"),
])
def test_other_flag_values(argv, expected, capsys, tl_home):
    refused(argv, capsys, tl_home, expected)


# ------------------------------------------------------------------------------------------ unknown names

@pytest.mark.parametrize("flag, value, expected", [
    ("--task", "imagenet21k", "Unknown task 'imagenet21k'. Valid tasks:"),
    ("--backbone", "alexnet", "Unknown backbone 'alexnet'. Valid backbones:"),
    ("--strategy", "freeze_all", "Unknown strategy 'freeze_all'. Valid strategies:"),
    ("--weights", "cifar", "Unknown weight source 'cifar' for backbone 'small_cnn'"),
    ("--source", "nope", "Unknown task 'nope'"),
    ("--source", "digits:upside_down", "--source is TASK or TASK:shuffled. Received: --source='digits:upside_down'"),
    ("--task", "", "--task must be a name"),
    ("--task", "<script>alert(1)</script>", "Unknown task '<script>alert(1)</script>'"),
])
def test_unknown_names(flag, value, expected, capsys, tl_home):
    argv = [*RUN]
    if flag in argv:
        argv[argv.index(flag) + 1] = value
    else:
        argv += [flag, value]
    if flag == "--source":
        argv[argv.index("scratch")] = "full_fine_tune"  # scratch ignores sources
    refused(argv, capsys, tl_home, expected)


@pytest.mark.parametrize("argv, flag", [
    ([*RUN, "--frobnicate", "1"], "--frobnicate"),
    (["run", "--backbone", "small_cnn", "--strategy", "scratch"], "--task"),
])
def test_argparse_errors_exit_2_without_traceback(argv, flag, capsys, tl_home):
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("error:") == 1 and flag in err.splitlines()[-1]
    assert "Traceback" not in err
    assert_nothing_stored(tl_home)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(st.integers(-10**12, 10**12).map(str), st.floats(allow_nan=True).map(repr),
                      st.text(max_size=8)))
def test_any_epochs_text_is_accepted_or_refused_with_one_message(text, capsys, tl_home):
    """Whatever follows --epochs, the answer is a job list (a whole number in range) or exit 2 naming --epochs."""
    code = main([*DRY_SWEEP, f"--epochs={text}"])
    out, err = capsys.readouterr()
    stripped = text.strip()
    valid = re.fullmatch(r"[+-]?[0-9]+", stripped) is not None and 1 <= int(stripped) <= 2**31 - 1
    if valid:
        assert code == 0 and out.strip().endswith("1 jobs"), err
    else:
        assert code == 2 and err.count("\n") == 1 and "--epochs" in err and "Traceback" not in err
    assert_nothing_stored(tl_home)


# ------------------------------------------------------------------------------------------ sweep files

GOOD_GRID = '[grid]\ntasks = ["digits"]\nbackbones = ["small_cnn"]\nstrategies = ["scratch"]\n'

SWEEP_FILES = [
    ("invalid_toml", "[grid]\ntasks = [\"digits\"\nseeds = = 2\n", "is not valid TOML"),
    ("unknown_table", GOOD_GRID + "[optionz]\nepochs = 2\n", "unknown table(s) ['optionz']"),
    ("unknown_axis", GOOD_GRID + "task = ['digits']\n", "unknown axis ['task'] in [grid]"),
    ("axis_not_a_list", GOOD_GRID.replace('["scratch"]', '"scratch"'), "Sweep axis strategies must be a list"),
    ("nested_list", GOOD_GRID.replace('["digits"]', '[["digits"]]'), "Sweep axis tasks must be a flat list"),
    ("name_not_a_string", GOOD_GRID.replace('["digits"]', "[7]"), "tasks must be a name"),
    ("seed_not_an_int", GOOD_GRID + "seeds = ['a']\n", "seeds must be an integer >= 0"),
    ("size_a_float", GOOD_GRID + "examples_per_class = [1.5]\n", "examples_per_class must be an integer >= 1"),
    ("size_negative", GOOD_GRID + "examples_per_class = [-5]\n", "examples_per_class must be an integer >= 1"),
    ("empty_tasks", GOOD_GRID.replace('["digits"]', "[]"), "Sweep axis tasks is empty"),
    ("empty_seeds", GOOD_GRID + "seeds = []\n", "Sweep axis seeds is empty"),
    ("no_strategies", '[grid]\ntasks = ["digits"]\nbackbones = ["small_cnn"]\n', "at least one entry in strategies"),
    ("grid_not_a_table", "grid = 5\n", "grid must be a table"),
    ("option_wrong_type", GOOD_GRID + "[options]\nepochs = 'ten'\n", "epochs must be an integer >= 1"),
    ("option_bool_as_text", GOOD_GRID + "[options]\naugment = 'yes'\n", "augment must be true or false"),
    ("learning_rate_negative", GOOD_GRID + "[options]\nlearning_rate = -1.0\n", "learning_rate must be a finite"),
    ("learning_rate_nan", GOOD_GRID + "[options]\nlearning_rate = nan\n", "learning_rate must be a finite number > 0"),
    ("input_size_zero", GOOD_GRID + "[options]\ninput_size = 0\n", "input_size must be an integer >= 1"),
    ("input_size_huge", GOOD_GRID + "[options]\ninput_size = 100000\n", "input_size 100000 needs at least about"),
    ("fraction_above_one", GOOD_GRID + "[options]\nfraction = 2.0\n", "fraction must be a number in (0, 1]"),
    ("pretrain_epochs_zero", GOOD_GRID + "[options]\npretrain_epochs = 0\n", "pretrain_epochs must be an integer >= 1"),
    ("unknown_option", GOOD_GRID + "[options]\nepoch = 3\n", "unknown option(s) ['epoch']"),
    ("every_cell_skipped", GOOD_GRID + "weights = ['imagenet']\n", "every combination of the sweep was skipped"),
    ("huge_grid_without_yes",
     GOOD_GRID + f"seeds = {list(range(100))}\nexamples_per_class = {list(range(1, 31))}\n",
     "This sweep makes 3,000 jobs, more than the 2,000"),
]


@pytest.mark.parametrize("name, text, expected", SWEEP_FILES, ids=[c[0] for c in SWEEP_FILES])
def test_bad_sweep_file(name, text, expected, tmp_path, capsys, tl_home):
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    err = refused(["sweep", "--file", path], capsys, tl_home, expected)
    if name not in ("every_cell_skipped", "huge_grid_without_yes"):
        assert str(path) in err  # the file is named


@pytest.mark.parametrize("make, expected", [
    (lambda p: p, "does not exist"),
    (lambda p: (p.mkdir(), p)[1], "is a folder"),
    (lambda p: (p.write_bytes(b"\xff\xfe\x00\x81 not text"), p)[1], "is not UTF-8 text"),
], ids=["missing", "folder", "binary"])
def test_unreadable_sweep_file(make, expected, tmp_path, capsys, tl_home):
    path = make(tmp_path / "sweep.toml")
    refused(["sweep", "--file", path], capsys, tl_home, f"Sweep file {path}", expected)


def test_flag_overriding_a_sweep_file_is_named_as_the_flag(tmp_path, capsys, tl_home):
    path = tmp_path / "ok.toml"
    path.write_text(GOOD_GRID + "[options]\nepochs = 3\n")
    err = refused(["sweep", "--file", path, "--epochs", "0"], capsys, tl_home, "--epochs must be")
    assert "Sweep file" not in err


def test_huge_grid_is_sized_without_expanding_and_runs_only_with_yes(capsys, tl_home):
    seeds = ",".join(map(str, range(1000)))
    sizes = ",".join(map(str, range(1, 1001)))
    start = time.perf_counter()
    refused(["sweep", "--tasks", "digits", "--backbones", "small_cnn", "--strategies", "scratch,frozen_features",
             "--seeds", seeds, "--examples-per-class", sizes], capsys, tl_home, "2,000,000 jobs", "--yes")
    assert time.perf_counter() - start < 10  # expanding took minutes


def test_grid_over_the_limit_is_listed_with_yes(capsys):
    argv = [*DRY_SWEEP, "--seeds", ",".join(map(str, range(41))),
            "--examples-per-class", ",".join(map(str, range(1, 51)))]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "2,050 jobs" in out and "not listed" in out and "--yes" in out
    assert main([*argv, "--yes"]) == 0
    assert capsys.readouterr().out.strip().endswith("2050 jobs")


def test_sweep_skips_weights_a_backbone_lacks_says_so_once_and_runs_the_rest(capsys):
    # "Unknown weight source for backbone 'small_cnn' 'imagenet'" stopped this sweep before
    assert main(["sweep", "--tasks", "digits", "--backbones", "small_cnn,efficientnet_lite0", "--weights",
                 "none,imagenet", "--strategies", "scratch,lp_ft", "--seeds", "0,1", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("has no weight source 'imagenet'") == 1 and "backbone small_cnn" in out
    # lp_ft from random init is skipped too (BatchNorm statistics never estimated), with its reason
    assert out.count("lp_ft from random init") == 1
    assert "16 combinations" in out and "8 skipped" in out
    listed = [line for line in out.splitlines() if line[:16].isalnum() and "/" in line]
    assert len(listed) == 6 and out.strip().endswith("6 jobs")
    assert not any("small_cnn/imagenet" in line or "/none/lp_ft" in line for line in listed)
    assert any("efficientnet_lite0/imagenet/lp_ft" in line for line in listed)


# ------------------------------------------------------------------------------------------ folder datasets

def _images(folder, n, size=(12, 12)):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", size, (i * 20 % 255, 30, 30)).save(folder / f"{i}.png")


def _png_claiming(path, width, height):
    """A PNG whose header claims width x height pixels and holds no pixel data (a decompression bomb)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IEND", b""))


def _base(root):
    _images(root / "benign", 10)
    _images(root / "malignant", 10)


def _zero_byte(root):
    _base(root)
    for i in range(3):
        (root / "malignant" / f"empty{i}.png").write_bytes(b"")


def _truncated(root):
    _base(root)
    whole = (root / "benign" / "0.png").read_bytes()
    for i in range(3):
        (root / "malignant" / f"cut{i}.png").write_bytes(whole[: len(whole) // 2])


def _wrong_extension(root):
    _base(root)
    for i in range(3):
        (root / "malignant" / f"notes{i}.png").write_text("<html>not an image</html>")


def _no_image_extension(root):
    _images(root / "benign", 10)
    (root / "malignant").mkdir()
    for i in range(3):
        Image.new("RGB", (12, 12)).save(root / "malignant" / f"{i}.raw", format="PNG")


def _symlink_loops(root):
    _base(root)
    for i in range(3):
        os.symlink(root / "malignant" / f"loop{i}.png", root / "malignant" / f"loop{i}.png")
    os.symlink(root / "malignant", root / "malignant" / "again")  # a folder loop: never walked into


def _class_is_a_link(root):
    _base(root)
    os.symlink(root / "benign", root / "also_benign")


def _bomb(root):
    _base(root)
    for i in range(3):
        _png_claiming(root / "malignant" / f"bomb{i}.png", 100_000, 100_000)


def _html_class_with_one_image(root):
    _images(root / "benign", 10)
    _images(root / "<img src=x onerror=alert(1)>", 1)


def _one_image_class(root):
    _images(root / "benign", 10)
    _images(root / "rare", 1)


def _one_class(root):
    _images(root / "benign", 10)


def _no_class_folders(root):
    Image.new("RGB", (12, 12)).save(root / "loose.png")


FOLDERS = [
    (_zero_byte, ["3 of 23 image files", "empty0.png", "truncated or not an image"]),
    (_truncated, ["cut0.png", "truncated or not an image"]),
    (_wrong_extension, ["notes0.png", "truncated or not an image"]),
    (_no_image_extension, ["without image files", "'malignant'"]),
    (_symlink_loops, ["loop0.png", "a broken or looping symbolic link"]),
    (_class_is_a_link, ["belongs to two classes", "'also_benign'", "'benign'"]),
    (_bomb, ["bomb0.png", "too large"]),
    (_html_class_with_one_image, ["fewer than 3 usable images", "'<img src=x onerror=alert(1)>' (1)"]),
    (_one_image_class, ["fewer than 3 usable images", "'rare' (1)"]),
    (_one_class, ["one class folder", "at least two"]),
    (_no_class_folders, ["No class folders", "1 image files directly"]),
]


@pytest.mark.parametrize("make, expected", FOLDERS, ids=[c[0].__name__.strip("_") for c in FOLDERS])
def test_bad_folder_dataset(make, expected, tmp_path, monkeypatch, capsys, tl_home):
    root = tmp_path / "data"
    root.mkdir()
    make(root)
    monkeypatch.setenv("TRANSFERLAB_MEDICAL_DIR", str(root))
    err = refused(["run", "--task", "medical_folder", "--backbone", "small_cnn", "--strategy", "scratch",
                   "--fraction", "1", "--input-size", "16", "--epochs", "1"], capsys, tl_home, *expected)
    assert str(root) in err  # the dataset is named


@pytest.mark.parametrize("setting", ["missing", "a file"])
def test_folder_setting_that_is_not_a_folder(setting, tmp_path, monkeypatch, capsys, tl_home):
    target = tmp_path / "nowhere"
    if setting == "a file":
        target.write_text("x")
    monkeypatch.setenv("TRANSFERLAB_MEDICAL_DIR", str(target))
    refused(["run", "--task", "medical_folder", "--backbone", "small_cnn", "--strategy", "scratch", "--fraction", "1",
             "--input-size", "16"], capsys, tl_home, str(target))


def test_cmyk_16_bit_palette_and_html_named_images_are_accepted(tmp_path):
    """Unusual but valid files are data, not errors: each becomes RGB, and a class name is kept verbatim."""
    from transferlab.image_files import read_image_rgb, scan_class_folders

    root = tmp_path / "data"
    odd = root / "<b onmouseover=alert(1)>"
    odd.mkdir(parents=True)
    _images(root / "plain", 3)
    Image.new("CMYK", (9, 7), (0, 255, 255, 0)).save(odd / "cmyk.jpg")
    Image.fromarray(np.full((7, 9), 40000, dtype=np.uint16)).save(odd / "deep.png")
    Image.new("RGB", (9, 7), (10, 200, 30)).convert("P", palette=Image.Palette.ADAPTIVE).save(odd / "palette.png")
    scan = scan_class_folders(root)
    assert scan.class_names == ("<b onmouseover=alert(1)>", "plain") and not scan.skipped and len(scan) == 6
    for path in scan.paths[:3]:
        pixels = read_image_rgb(path)
        assert pixels.shape == (7, 9, 3) and pixels.dtype == np.uint8
    assert read_image_rgb(odd / "deep.png")[0, 0].tolist() == [round(40000 * 255 / 65535)] * 3


def test_scan_message_names_no_setting_that_does_not_exist(tmp_path):
    from transferlab.errors import UserError
    from transferlab.image_files import scan_class_folders

    _zero_byte(tmp_path)
    with pytest.raises(UserError) as info:
        scan_class_folders(tmp_path)
    assert "raise max_bad_fraction" not in str(info.value) and "up to 5%" in str(info.value)


# ------------------------------------------------------------------------------------------ weight files

def _hdf5_without_keras_weights(path):
    import h5py

    with h5py.File(path, "w") as fh:
        fh.create_dataset("something", data=np.arange(3))


def _damaged_hdf5(path):
    _hdf5_without_keras_weights(path)
    path.write_bytes(path.read_bytes()[:600])


WEIGHT_FILES = [
    ("missing", lambda p: None, "does not exist"),
    ("empty", lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
    ("not_hdf5", lambda p: p.write_text("these are not weights"), "is not an HDF5 file"),
    ("hdf5_without_weights", _hdf5_without_keras_weights, "holds no Keras weights"),
    ("damaged_hdf5", _damaged_hdf5, "damaged HDF5 file"),
    ("a_folder", lambda p: p.mkdir(), "is a folder"),
    ("symlink_loop", lambda p: os.symlink(p, p), "a broken or looping symbolic link"),
]


@pytest.mark.parametrize("name, make, expected", WEIGHT_FILES, ids=[c[0] for c in WEIGHT_FILES])
def test_bad_weights_file(name, make, expected, tmp_path, capsys, tl_home):
    path = tmp_path / "mine.weights.h5"
    make(path)
    refused(["run", "--task", "digits", "--backbone", "small_cnn", "--strategy", "feature_extraction",
             "--weights", path], capsys, tl_home, "--weights file", "mine.weights.h5", expected)


def test_weights_file_without_the_keras_suffix(tmp_path, capsys, tl_home):
    path = tmp_path / "model.h5"
    _hdf5_without_keras_weights(path)
    refused(["run", "--task", "digits", "--backbone", "small_cnn", "--strategy", "feature_extraction",
             "--weights", path], capsys, tl_home, "--weights file", "model.h5", "not a Keras `.weights.h5` file")


def test_weights_for_another_architecture_refused_before_queueing(tmp_path, capsys, tl_home):
    """Loaded into the backbone before anything is stored (it used to fail inside the run: exit 1, a failed run)."""
    from transferlab.progress import import_tensorflow_quietly

    import_tensorflow_quietly()
    import keras

    path = tmp_path / "dense.weights.h5"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]).save_weights(path)
    keras.backend.clear_session()
    refused(["run", "--task", "digits", "--backbone", "small_cnn", "--strategy", "feature_extraction",
             "--input-size", "16", "--weights", path], capsys, tl_home,
            "--weights file", "does not fit backbone 'small_cnn' at 16 px")


# ------------------------------------------------------------------------------------------ store URLs

STORES = [
    ("not_a_url", "not a url", "Cannot use store URL"),
    ("unknown_scheme", "foo://bar", "Cannot use store URL 'foo://bar'"),
    ("driver_missing", "mysql://reader@localhost/db", "Cannot use store URL"),
    ("missing_folder", "sqlite:////nonexistent-transferlab-dir/x/runs.sqlite", "cannot be opened"),
    ("a_folder", "sqlite:///{tmp}", "cannot be opened"),
    ("not_a_database", "sqlite:///{tmp}/garbage.sqlite", "cannot be read as a transferlab database"),
]


@pytest.mark.parametrize("name, url, expected", STORES, ids=[c[0] for c in STORES])
def test_bad_store_url(name, url, expected, tmp_path, monkeypatch, capsys, tl_home):
    (tmp_path / "garbage.sqlite").write_bytes(b"not a database " * 100)
    monkeypatch.setenv("TRANSFERLAB_STORE", url.format(tmp=tmp_path))
    refused([*RUN, "--examples-per-class", "2", "--input-size", "16", "--epochs", "1"], capsys, tl_home, expected)
    assert (tmp_path / "garbage.sqlite").read_bytes() == b"not a database " * 100  # left as it was


def _postgres_driver() -> bool:
    import importlib.util

    return importlib.util.find_spec("psycopg") is not None


@pytest.mark.skipif(not _postgres_driver(), reason="psycopg is not installed")
@pytest.mark.parametrize("host", ["127.0.0.1:9", "192.0.2.1:5432"], ids=["refused", "unroutable"])
def test_unreachable_postgres_fails_within_its_connect_timeout(host, monkeypatch, capsys, tl_home):
    monkeypatch.setenv("TRANSFERLAB_STORE", f"postgresql://reader@{host}/transferlab?connect_timeout=1")
    start = time.perf_counter()
    # one message, but psycopg's own text spans lines (store.py quotes it whole): reported, not fixed here
    refused([*RUN, "--examples-per-class", "2", "--input-size", "16", "--epochs", "1"], capsys, tl_home,
            "cannot be opened", host, one_line=False)
    assert time.perf_counter() - start < 15


# ------------------------------------------------------------------------------------------ real processes

SUBPROCESS_CASES = [
    ([*RUN, "--input-size", "100000"], {}, "--input-size 100000 needs at least about"),
    ([*RUN, "--learning-rate", "nan"], {}, "--learning-rate must be a finite number > 0"),
    (["run", "--task", "digits", "--backbone", "small_cnn", "--strategy", "feature_extraction", "--weights",
      "{tmp}/empty.weights.h5"], {}, "is empty (0 bytes)"),
    (["sweep", "--tasks", "digits", "--backbones", "small_cnn", "--strategies", "scratch", "--seeds",
      ",".join(map(str, range(3000)))], {}, "This sweep makes 3,000 jobs"),
    ([*RUN, "--epochs", "1"], {"TRANSFERLAB_STORE": "foo://bar"}, "Cannot use store URL 'foo://bar'"),
]


@pytest.mark.parametrize("argv, env, expected", SUBPROCESS_CASES, ids=["input_size", "nan_lr", "empty_weights",
                                                                       "huge_sweep", "store_url"])
def test_real_command_exits_2_with_one_line(argv, env, expected, tmp_path, tl_home):
    (tmp_path / "empty.weights.h5").write_bytes(b"")
    argv = [a.format(tmp=tmp_path) for a in argv]
    out = subprocess.run([sys.executable, "-m", "transferlab.cli", *argv], capture_output=True, text=True,
                         env={**os.environ, "TRANSFERLAB_HOME": str(tl_home), **env}, timeout=120, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("transferlab: error: ") and out.stderr.count("\n") == 1, out.stderr
    assert expected in out.stderr and "Traceback" not in out.stderr
    assert_nothing_stored(tl_home)


# ------------------------------------------------------------------------------------------ offline hints

def test_mobilenet_offline_hint_and_availability_follow_the_input_size(tmp_path, monkeypatch):
    """Keras picks MobileNetV2's ImageNet file by input size; the hint and available() name that file."""
    from transferlab.plugins import keras_backbones as kb

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    app = next(a for a in kb.APPS if a.name == "mobilenetv2")
    name = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{}_no_top.h5"
    assert [kb.notop_file(app, s) for s in (96, 128, 160, 192, 224, 100, 300)] == \
        [name.format(s) for s in (96, 128, 160, 192, 224, 224, 224)]
    assert kb.notop_file(next(a for a in kb.APPS if a.name == "vgg16"), 96).startswith("vgg16_")
    source = kb._imagenet_source(app)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / name.format(96)).write_bytes(b"x")
    assert source.available(input_size=96) and not source.available(input_size=128) and not source.available()
    assert kb.keras_cache_file("f.h5") == tmp_path / "models" / "f.h5"


# ------------------------------------------------------------------------------------------ the Run page

def _boom():
    raise RuntimeError("the check itself is broken")


class BrokenChecksPlugin:
    """A task and a weight source whose ``available()`` raises: each must stay on its own line."""

    @staticmethod
    @hookimpl
    def register_tasks():
        from transferlab.plugins.image_tasks import load_digits_task

        return [TaskSpec(name="cursed_digits", description="digits whose check raises", load=load_digits_task,
                         num_classes=10, available=_boom)]

    @staticmethod
    @hookimpl
    def register_backbones():
        from support_plugins import build_tiny

        haunted = WeightSourceSpec(name="haunted", description="a check that raises", pretrained_on="x",
                                   available=_boom)
        return [BackboneSpec(name="checkless", build=build_tiny, preprocess=lambda x: x / 255.0, preprocessing="unit",
                             min_input_size=8, default_input_size=16, weight_sources=(haunted,))]


@pytest.fixture
def run_page(monkeypatch):
    """The Run page over the installed plugins plus BrokenChecksPlugin, in an empty home."""
    from streamlit.testing.v1 import AppTest

    from transferlab import registry as registry_module
    from transferlab.dashboard import common

    registry = registry_module.load_registry(extra_plugins=[("tests.broken_checks", BrokenChecksPlugin)])
    monkeypatch.setattr(registry_module, "get_registry", lambda: registry)
    monkeypatch.delenv("TRANSFERLAB_READ_ONLY", raising=False)
    common.get_registry.clear()
    at = AppTest.from_file(str(PAGES / "run.py"), default_timeout=120)
    at.run()
    yield at
    common.get_registry.clear()


def _widget(items, label_start):
    return next(w for w in items if w.label.startswith(label_start))


def test_run_page_keeps_a_failing_availability_check_on_its_own_line(run_page):
    at = run_page
    _widget(at.multiselect, "Tasks").set_value(["cursed_digits", "digits"])
    _widget(at.multiselect, "Backbones").set_value(["checkless"])
    _widget(at.multiselect, "Weights").set_value(["none", "haunted"])
    _widget(at.multiselect, "Strategies").set_value(["feature_extraction"])
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    warnings = [w.value for w in at.warning]
    assert len([w for w in warnings if "cursed_digits" in w and "the check itself is broken" in w]) == 1
    assert len([w for w in warnings if "'haunted' of checkless" in w and "the check itself is broken" in w]) == 1
    assert any("**8 jobs**" in m.value for m in at.markdown)  # 2 tasks x 2 weights x 2 sizes: the page went on


def test_run_page_asks_before_a_sweep_over_the_limit(run_page):
    at = run_page
    _widget(at.text_input, "Seeds").set_value(",".join(map(str, range(1001))))  # 2 sizes x 1001 seeds
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("2,002 jobs" in w.value and "confirmation" in w.value for w in at.warning)
    launch = _widget(at.button, "Launch in the background")
    assert launch.disabled and not at.dataframe  # nothing built yet
    _widget(at.checkbox, "Yes, build and launch all 2,002 jobs").check().run()
    assert not at.exception
    assert not _widget(at.button, "Launch in the background").disabled and at.dataframe


def test_run_page_names_a_bad_form_value_in_the_form_s_words(run_page):
    at = run_page
    _widget(at.text_input, "Labelled examples per class").set_value("5,0").run()
    assert not at.exception and len(at.error) == 1
    assert "labelled examples per class must be an integer >= 1" in at.error[0].value
