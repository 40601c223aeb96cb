"""The command line: user errors are one message with exit status 2 and leave the store untouched."""
from __future__ import annotations

import csv
import io
import json

import pytest

from transferlab.cli import main


def _store_rows(tl_home) -> int:
    import sqlite3

    path = tl_home / "runs.sqlite"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--task", "imagenet21k", "--backbone", "small_cnn", "--strategy", "scratch"],
         "Unknown task 'imagenet21k'. Valid tasks: animal_detection, animal_mnist, colorectal_histology, digits"),
        (["run", "--task", "digits", "--backbone", "alexnet", "--strategy", "scratch"],
         "Unknown backbone 'alexnet'. Valid backbones: bert-base-uncased, densenet121, efficientnet_lite0"),
        (["run", "--task", "digits", "--backbone", "small_cnn", "--strategy", "freeze_all"],
         "Unknown strategy 'freeze_all'. Valid strategies: discriminative_lr, feature_extraction, fine_tune_top_k"),
        (["run", "--task", "digits", "--backbone", "small_cnn", "--strategy", "scratch", "--examples-per-class", "400"],
         "Task 'digits' has only 125 labelled training examples in its smallest class"),
        (["run", "--task", "digits", "--backbone", "inceptionv3", "--strategy", "scratch", "--input-size", "40"],
         "Received: --input-size=40. Use --input-size 75 or more."),
        (["run", "--task", "digits", "--backbone", "vgg16", "--strategy", "feature_extraction", "--weights", "x.weights.h5"],
         "does not exist. Give a path to a Keras `.weights.h5` file"),
        (["sweep", "--tasks", "digits", "--backbones", "small_cnn", "--strategies", "scratch", "--seeds", "a,b"],
         "--seeds must be an integer >= 0 and <= 2147483647. Received: --seeds='a'."),
    ],
)
def test_user_errors_exit_2_with_one_message(argv, message, capsys, tl_home):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("transferlab: error: ") and message in err
    assert err.count("\n") == 1  # one message, no traceback
    assert _store_rows(tl_home) == 0


def test_missing_dataset_offline_says_how_to_get_it(capsys, tl_home, monkeypatch, tmp_path):
    import keras

    from transferlab.plugins import image_tasks

    def offline(*_a, **_k):
        raise OSError("URL fetch failure: no network")

    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", offline)
    monkeypatch.setattr(image_tasks, "DEBIAN_FASHION_MNIST", tmp_path / "nowhere")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    argv = ["run", "--task", "fashion_mnist", "--backbone", "small_cnn", "--strategy", "scratch", "--examples-per-class", "5"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "apt-get install dataset-fashion-mnist" in err and "TRANSFERLAB_FASHION_MNIST_DIR" in err
    assert _store_rows(tl_home) == 0


def test_fashion_mnist_reads_idx_files(tmp_path, monkeypatch):
    import gzip
    import struct

    import numpy as np

    from transferlab.plugins.image_tasks import load_fashion_mnist

    def write(name, array):
        header = struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
        with gzip.open(tmp_path / name, "wb") as fh:
            fh.write(header + array.astype(np.uint8).tobytes())

    rng = np.random.default_rng(0)
    write("train-images-idx3-ubyte.gz", rng.integers(0, 255, (20, 28, 28)))
    write("train-labels-idx1-ubyte.gz", np.arange(20) % 10)
    write("t10k-images-idx3-ubyte.gz", rng.integers(0, 255, (10, 28, 28)))
    write("t10k-labels-idx1-ubyte.gz", np.arange(10))
    monkeypatch.setenv("TRANSFERLAB_FASHION_MNIST_DIR", str(tmp_path))
    data = load_fashion_mnist()
    assert data.images.shape == (30, 28, 28, 1) and data.test_indices.tolist() == list(range(20, 30))
    assert data.labels[20:].tolist() == list(range(10))


def test_plugins_json(capsys):
    assert main(["plugins", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert all({"name", "version", "status", "error"} <= set(r) for r in rows)
    assert {r["status"] for r in rows} == {"ok"}


def test_run_then_runs_csv(capsys, tl_home):
    argv = ["run", "--task", "digits", "--backbone", "small_cnn", "--strategy", "scratch", "--examples-per-class", "5",
            "--epochs", "1", "--input-size", "16", "--workers", "0"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "digits: test accuracy" in out and "status: succeeded 1" in out
    assert main(["runs", "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 1
    for column in ("run_id", "task", "backbone", "weights", "strategy", "source", "examples_per_class", "seed", "status",
                   "score", "balanced_accuracy", "trainable_params", "total_params", "wall_seconds"):
        assert column in rows[0]
    assert rows[0]["status"] == "succeeded" and 0 <= float(rows[0]["score"]) <= 1
    assert int(float(rows[0]["trainable_params"])) == int(float(rows[0]["total_params"])) - 2 * (32 + 32 + 64 + 128)  # BatchNorm moving statistics


def test_sweep_dry_run_lists_jobs(capsys):
    assert main(["sweep", "--tasks", "digits", "--backbones", "small_cnn", "--strategies", "scratch,full_fine_tune",
                 "--examples-per-class", "5,10", "--seeds", "0,1", "--sources", "lfw_faces:shuffled", "--dry-run"]) == 0
    out = capsys.readouterr().out
    # 2 pretrains (one per seed) + 4 transfers + 4 scratch runs (a random-init strategy runs without the source)
    assert out.strip().endswith("10 jobs")
    assert out.count("pretrain ") == 2


def test_output_cut_short_by_a_closed_pipe_is_not_a_traceback(tl_home):
    import os
    import subprocess
    import sys

    # `transferlab tasks | true`: the reader is gone before the command writes a byte
    read, write = os.pipe()
    os.close(read)
    done = subprocess.run([sys.executable, "-m", "transferlab.cli", "tasks"], stdout=write, stderr=subprocess.PIPE,
                          env={**os.environ, "TRANSFERLAB_HOME": str(tl_home)}, timeout=120)
    os.close(write)
    err = done.stderr.decode()
    assert "Traceback" not in err and "BrokenPipeError" not in err and "Exception ignored" not in err, err
    assert done.returncode == 141


def test_backbones_lists_without_a_readable_store(tl_home, monkeypatch, capsys):
    """Listing backbones creates no store, and a store it cannot read costs only the frozen-accuracy section."""
    monkeypatch.setenv("TRANSFERLAB_STORE", "postgresql+psycopg://u:secretpw@127.0.0.1:1/none?connect_timeout=1")
    assert main(["backbones", "--only", "small_cnn"]) == 0
    captured = capsys.readouterr()
    assert "small_cnn" in captured.out and "secretpw" not in captured.out + captured.err
    monkeypatch.delenv("TRANSFERLAB_STORE")
    assert main(["backbones", "--only", "small_cnn"]) == 0
    assert not (tl_home / "runs.sqlite").exists()


@pytest.mark.parametrize("argv, flag", [
    (["demo", "--sizes", "0"], "--sizes"),
    (["demo", "--sizes", "5,abc"], "--sizes"),
    (["demo", "--seeds", "-1"], "--seeds"),
    (["demo", "--workers", "100000"], "--workers"),
    (["demo", "--backbones", "--workers", "x"], "--workers"),
])
def test_demo_flags_are_checked_before_anything_is_stored(argv, flag, capsys, tl_home):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("transferlab: error: ") and flag in err and "Traceback" not in err
    assert not (tl_home / "runs.sqlite").exists()


def test_demo_quick_and_backbones_together_are_refused_before_anything_is_stored(capsys, tl_home):
    assert main(["demo", "--quick", "--backbones"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("transferlab: error: Give --quick or --backbones, not both")
    assert "Received: --quick --backbones" in err and "Traceback" not in err
    assert not (tl_home / "runs.sqlite").exists()


def test_demo_quick_flags_are_checked_before_anything_is_stored(capsys, tl_home):
    assert main(["demo", "--quick", "--sizes", "0"]) == 2
    assert "--sizes" in capsys.readouterr().err
    assert not (tl_home / "runs.sqlite").exists()


def test_demo_intro_names_the_quick_demo_and_its_minutes():
    from transferlab.cli import demo_intro
    from transferlab.demo import DEMOS, demo_jobs
    from transferlab.registry import load_registry

    quick = DEMOS["quick"]
    line = demo_intro(quick, demo_jobs(load_registry(), which="quick"))
    assert line.startswith("transferlab demo --quick (quick): 3 runs on animal_mnist;")
    assert f"about {quick.minutes} minutes on 2 CPU cores" in line and "pretraining" not in line
    strategies = demo_intro(DEMOS["strategies"], demo_jobs(load_registry()))
    assert strategies.startswith("transferlab demo (strategies): 36 runs") and "(+3 source pretraining jobs)" in strategies
