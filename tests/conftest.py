"""Shared fixtures: an isolated TRANSFERLAB_HOME per test, a registry with tiny test backbones, and one run trained
and exported once per session (`exported`, `at_export`, `own_export`) for the export and predict tests."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["TRANSFERLAB_QUIET"] = "1"


@pytest.fixture(autouse=True)
def tl_home(tmp_path, monkeypatch):
    """Every test gets its own store and caches; no test sees the user's."""
    home = tmp_path / "tl-home"
    monkeypatch.setenv("TRANSFERLAB_HOME", str(home))
    monkeypatch.delenv("TRANSFERLAB_STORE", raising=False)
    monkeypatch.delenv("TRANSFERLAB_PLUGINS", raising=False)
    monkeypatch.delenv("TRANSFERLAB_STRICT_PLUGINS", raising=False)
    return home


@pytest.fixture
def registry():
    """Built-ins plus the test-only plugins (tiny, leaky and NaN backbones)."""
    import support_plugins

    from transferlab.registry import load_registry

    return load_registry(extra_plugins=[("tests.tiny", support_plugins.TinyPlugin)])


@pytest.fixture
def store(tl_home):
    """A fresh SQLite store in the test's home."""
    from transferlab.store import Store

    return Store()


@pytest.fixture(autouse=True)
def _no_reused_data_versions():
    """Each test starts with no reused data versions: a version reused for a few seconds (one walk of the files
    per sweep) is keyed on the task, not on settings such as a folder variable that another test changed."""
    from transferlab.fingerprints import forget_data_versions

    forget_data_versions()
    yield


@pytest.fixture(scope="session")
def seeded_home(tmp_path_factory):
    """A store with real runs: scratch, frozen features and a corrupted-source transfer, 2 sizes x 2 seeds."""
    home = tmp_path_factory.mktemp("seeded-home")
    saved = os.environ.get("TRANSFERLAB_HOME")
    os.environ["TRANSFERLAB_HOME"] = str(home)
    try:
        from transferlab.executor import run_jobs
        from transferlab.jobs import expand_grid
        from transferlab.registry import load_registry
        from transferlab.store import Store

        registry = load_registry()
        options = dict(input_size=16, epochs=2, fine_tune_epochs=2, batch_size=16, fine_tune_learning_rate=1e-3,
                       pretrain_epochs=1)
        jobs = expand_grid(registry, dict(tasks=["digits"], backbones=["small_cnn"],
                                          strategies=["scratch", "frozen_features", "full_fine_tune"],
                                          examples_per_class=[5, 10], seeds=[0, 1],
                                          sources=["none", "lfw_faces:shuffled"]), options)
        counts = run_jobs(jobs, Store(), workers=0, registry=registry)
        assert counts == {"succeeded": len(jobs)}
    finally:
        if saved is None:
            os.environ.pop("TRANSFERLAB_HOME", None)
        else:
            os.environ["TRANSFERLAB_HOME"] = saved
    return home


# ------------------------------------------------------------------------------------------ an exported run
# Shared by tests/test_export.py and tests/test_predict.py: the run is trained and exported once per session.

#: colour of each class of the exported run's images (sizes vary: the export takes any size)
EXPORT_COLOURS = {"blue": (40, 40, 210), "green": (40, 200, 40), "red": (210, 40, 40)}
EXPORT_TRAIN_FLAGS = ["--backbone", "tiny", "--strategy", "scratch", "--examples-per-class", "6", "--input-size", "16",
                      "--epochs", "8", "--learning-rate", "0.02", "--batch-size", "8", "--workers", "0"]


def write_colour_tree(root: Path, per_class: int = 10, seed: int = 0) -> Path:
    """A class-folder tree of noisy colour images, each of its own size (14-39 px a side)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name, colour in EXPORT_COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            height, width = rng.integers(14, 40, 2)
            pixels = np.clip(rng.normal(colour, 40, (height, width, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{name} {i}.png")
    return root


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """One real run (the tiny backbone on a class tree never seen), trained through the CLI, its model kept
    by the default policy, exported with `--format all`; the test images and stored predictions beside it.
    Read-only: a test that changes the store or the export takes ``own_export``, or copies ``out``."""
    from types import SimpleNamespace

    import support_plugins

    from transferlab.registry import load_registry

    base = tmp_path_factory.mktemp("export")
    home = base / "home"
    registry = load_registry(extra_plugins=[("tests.tiny", support_plugins.TinyPlugin)])
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRANSFERLAB_HOME", str(home))
        patch.setattr("transferlab.registry.get_registry", lambda: registry)
        from transferlab.cli import main
        from transferlab.data import make_splits
        from transferlab.jobs import JobSpec
        from transferlab.store import Store
        from transferlab.test_images import image_at
        from transferlab.userdata import load_job_data

        root = write_colour_tree(base / "Garden Colours")
        assert main(["run", "--data", str(root), *EXPORT_TRAIN_FLAGS]) == 0
        store = Store()
        run = store.runs_frame().iloc[0]
        run_id = run["run_id"]
        assert store.model(run_id) is not None  # kept as the best of its group
        out = base / "exports" / "tiny-run"
        assert main(["export", run_id, "--format", "all", "--out", str(out)]) == 0
        job = JobSpec.from_json(run["spec_json"])
        data = load_job_data(registry, job)
        predictions = store.predictions(run_id)
        assert predictions["indices"] == make_splits(data).test.tolist()
        images = [image_at(data.images, i) for i in predictions["indices"]]
    assert len({image.shape for image in images}) > 1  # the test images come in several sizes
    return SimpleNamespace(home=home, registry=registry, run_id=run_id, score=float(run["score"]), out=out,
                           root=root, base=base, images=images, predictions=predictions,
                           labels=[int(v) for v in predictions["labels"]], class_names=list(data.class_names),
                           test_paths=[str(data.images.paths[i]) for i in predictions["indices"]])


@pytest.fixture
def at_export(exported, monkeypatch):
    """This test's CLI sees the exported run's store (shared: do not change it) and the test registry."""
    monkeypatch.setenv("TRANSFERLAB_HOME", str(exported.home))
    monkeypatch.setattr("transferlab.registry.get_registry", lambda: exported.registry)
    return exported


@pytest.fixture
def own_export(exported, tmp_path, monkeypatch):
    """As ``at_export``, on this test's own copy of the exported run's home (store and kept model), for tests
    that add runs, keep models or edit model.json."""
    import shutil
    from types import SimpleNamespace

    home = tmp_path / "own-home"
    shutil.copytree(exported.home, home)
    monkeypatch.setenv("TRANSFERLAB_HOME", str(home))
    monkeypatch.setattr("transferlab.registry.get_registry", lambda: exported.registry)
    return SimpleNamespace(**dict(vars(exported), home=home))
