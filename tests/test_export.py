"""Export: a real small run in every available format, reloaded without transferlab, and every refusal.

The run is trained and exported once per session (``exported`` in conftest.py); tests that change its store take
``own_export`` (a copy)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from transferlab.cli import main
from transferlab.errors import TransferlabError, UserError

def _formats_here() -> list[str]:
    from transferlab.export import available_formats

    return [name for name, why in available_formats().items() if why is None]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name) if folder.is_dir() else []


# ------------------------------------------------------------------------------------------ what is written

def test_export_writes_each_format_labels_card_and_hashes(exported):
    from transferlab.safe_io import sha256_file

    out = exported.out
    record = json.loads((out / "export.json").read_text())
    assert record["formats"] == _formats_here() and {"keras", "saved_model", "tflite"} <= set(record["formats"])
    assert (out / "labels.txt").read_text().splitlines() == exported.class_names
    listed = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {"export.json"}
    assert set(record["files"]) == listed  # every file is listed with its hash, and nothing else
    for relative, entry in record["files"].items():
        assert sha256_file(out / relative) == entry["sha256"] and (out / relative).stat().st_size == entry["bytes"]
    assert record["input"]["shape"] == [None, None, None, 3] and record["input"]["resized_to"] == [16, 16]
    assert record["reproduction"]["checked"] and record["reproduction"]["agreement"] == 1.0
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # an ordinary folder, not the temp folder's 0700
    card = (out / "model-card.md").read_text()
    kept = json.loads((exported.home / "models" / exported.run_id / "model.json").read_text())
    assert kept["weights_sha256"] in card and record["recipe"]["weights_sha256"] == kept["weights_sha256"]
    n_test = len(exported.labels)
    assert f"test accuracy {exported.score:.3f} (95 % Wilson interval" in card and f"over {n_test} test images" in card
    assert "data version" in card and "tensorflow 2." in card and "Standard Keras layers only" in card
    assert "come from a re-run" not in card and not kept.get("rerun", False)  # the stored run's own weights
    assert f"kept {datetime.fromtimestamp(kept['created_at'], timezone.utc).isoformat(timespec='seconds')})" in card
    for name in record["formats"]:
        assert f"{name} (`" in card
    # no local path reaches what is meant for others
    for text in (card, (out / "export.json").read_text()):
        assert str(exported.base) not in text and str(exported.home) not in text and "Garden Colours/" not in text


RELOAD = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    import keras
    folder, images_file, formats = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
    with np.load(images_file, allow_pickle=False) as archive:
        images = [archive[name] for name in sorted(archive.files)]

    def tflite():
        interpreter = tf.lite.Interpreter(model_path=folder + "/model.tflite")
        i, o = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
        def run(x):
            interpreter.resize_tensor_input(i, x.shape); interpreter.allocate_tensors()
            interpreter.set_tensor(i, x); interpreter.invoke()
            return interpreter.get_tensor(o)
        return run

    def onnx():
        import onnxruntime
        session = onnxruntime.InferenceSession(folder + "/model.onnx")
        return lambda x: session.run(None, {"image": x})[0]

    def saved_model():
        serve = tf.saved_model.load(folder + "/saved_model").signatures["serving_default"]
        return lambda x: serve(image=tf.constant(x))["output_0"].numpy()

    def keras_format():
        model = keras.saving.load_model(folder + "/model.keras")
        return lambda x: np.asarray(model(x))

    loaders = {"tflite": tflite, "onnx": onnx, "saved_model": saved_model, "keras": keras_format}
    out = {}
    for name in formats:
        run = loaders[name]()
        probabilities = np.concatenate([run(image[None].astype(np.float32)) for image in images])
        out[name] = {"predicted": probabilities.argmax(1).tolist(), "confidence": probabilities.max(1).tolist()}
    assert "transferlab" not in sys.modules, sorted(m for m in sys.modules if m.startswith("transferlab"))
    print(json.dumps(out))
""")


def test_every_format_reloads_without_transferlab_and_reproduces_the_stored_run(exported, tmp_path):
    images_file = tmp_path / "test-images.npz"
    np.savez(images_file, **{f"i{n:04d}": image for n, image in enumerate(exported.images)})
    formats = json.loads((exported.out / "export.json").read_text())["formats"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH="")
    done = subprocess.run([sys.executable, "-c", RELOAD, str(exported.out), str(images_file), ",".join(formats)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert sorted(results) == sorted(formats)
    labels = np.asarray(exported.labels)
    for name, result in results.items():
        predicted = np.asarray(result["predicted"])
        assert abs(float(np.mean(predicted == labels)) - exported.score) <= 0.005, name
        assert predicted.tolist() == exported.predictions["predicted"], name
        assert np.allclose(result["confidence"], exported.predictions["confidence"], atol=1e-3), name


def test_archive_holds_the_same_files_under_one_folder(at_export):
    from transferlab.export import export_archive
    from transferlab.store import Store

    name, payload = export_archive(Store(), at_export.registry, at_export.run_id, ["tflite"])
    assert name == f"transferlab-{at_export.run_id}.zip"
    with zipfile.ZipFile(__import__("io").BytesIO(payload)) as archive:
        members = set(archive.namelist())
        record = json.loads(archive.read(f"transferlab-{at_export.run_id}/export.json"))
        assert record["formats"] == ["tflite"]
        assert members == {f"transferlab-{at_export.run_id}/{p}" for p in [*record["files"], "export.json"]}
        tflite = archive.read(f"transferlab-{at_export.run_id}/model.tflite")
    assert (at_export.out / "model.tflite").read_bytes() == tflite  # the same model as the CLI wrote


# ------------------------------------------------------------------------------------------ the export model

def test_each_image_backbone_preprocessing_is_found_as_an_affine_map_and_applied_by_a_standard_layer():
    import tensorflow as tf

    from transferlab.export_model import affine_preprocessing, preprocessing_layer
    from transferlab.registry import load_registry

    images = np.random.default_rng(3).uniform(0, 255, (2, 9, 6, 3)).astype(np.float32)
    seen = set()
    for backbone in load_registry().backbones.values():
        if backbone.modality != "image":
            continue
        matrix, bias = affine_preprocessing(backbone)
        layer = preprocessing_layer(matrix, bias)
        if layer is None:
            got = images
        else:
            got = np.asarray(layer(images))
            if type(layer).__name__ == "Dense":
                layer.set_weights([matrix.T.astype(np.float32), bias.astype(np.float32)])
                got = np.asarray(layer(images))
            assert type(layer).__module__.startswith("keras.")
        want = np.asarray(backbone.preprocess(tf.constant(images)))
        assert np.allclose(got, want, atol=1e-4 * max(1.0, np.abs(want).max())), backbone.name
        seen.add(backbone.preprocessing)
    assert {"unit", "tf", "torch", "caffe", "lite", "in-model"} <= seen  # every kind of preprocessing built in


def test_a_preprocessing_that_is_not_per_pixel_affine_is_refused_naming_the_backbone():
    from transferlab.export_model import affine_preprocessing
    from transferlab.specs import BackboneSpec

    def squared(x):
        return (x / 255.0) ** 2

    def per_image(x):
        import tensorflow as tf

        return x - tf.reduce_mean(x, axis=(1, 2), keepdims=True)

    for preprocess in (squared, per_image):
        spec = BackboneSpec(name="odd_net", build=lambda shape, weights=None: None, preprocess=preprocess,
                            preprocessing=preprocess.__name__)
        with pytest.raises(UserError, match="Backbone 'odd_net'.*not a per-pixel affine"):
            affine_preprocessing(spec)


def test_the_export_model_runs_the_network_in_inference_mode_and_matches_the_training_pipeline(registry):
    import support_plugins

    from transferlab.export_model import check_export_model, export_model
    from transferlab.heads import ClassificationHead
    from transferlab.jobs import make_job
    from transferlab.runner.inference import inference_model

    job = make_job(registry, task="digits", backbone="tiny", strategy="scratch", input_size=16)
    backbone = registry.backbone("tiny")
    inference = inference_model(backbone, ClassificationHead(), job, 10)  # BatchNorm and dropout inside
    model = export_model(inference, 16, np.eye(3) / 255.0, np.zeros(3))
    check_export_model(model, inference, backbone, 16)  # repeatable, and equal to resize + preprocess + network
    other = support_plugins.BackboneSpec(name="other", build=backbone.build, preprocess=lambda x: x / 127.5 - 1,
                                         preprocessing="tf")
    with pytest.raises(TransferlabError, match="does not reproduce the training pipeline"):
        check_export_model(model, inference, other, 16)


# ------------------------------------------------------------------------------------------ refusals

def _fake_run(store, registry, status: str, manifest: dict | None = None, **fields):
    """A stored run of a real job that finished as ``status`` (its results written here, not trained)."""
    from transferlab.jobs import make_job

    job = make_job(registry, **fields)
    store.submit([job])
    if status == "failed":
        store.finish(job.job_id, status, only_if=None, error="FreezeViolationError: boom")
    else:
        store.finish(job.job_id, status, only_if=None, score=0.123, metric="accuracy",
                     manifest_json=manifest or {"head": "classification", "n_test": 6})
    return job


def _refused(args: list[str], where: Path, capsys, match: str) -> None:
    """``args`` exit 2 with one message holding ``match``, and nothing appears in folder ``where``."""
    before = sorted(p.relative_to(where).as_posix() for p in where.rglob("*"))
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("transferlab: error:") == 1 and match in err, err
    assert sorted(p.relative_to(where).as_posix() for p in where.rglob("*")) == before  # nothing (half-)written


def test_export_refusals_each_exit_2_with_one_message_and_write_nothing(own_export, tmp_path, capsys, monkeypatch):
    from transferlab.store import Store

    store, registry = Store(), own_export.registry
    where = tmp_path / "exports"
    where.mkdir()
    out = where / "new"
    _refused(["export", "0123456789abcdef", "--out", str(out)], where, capsys, "Unknown run id '0123456789abcdef'")
    failed = _fake_run(store, registry, "failed", task="digits", backbone="tiny", strategy="scratch", seed=7)
    _refused(["export", failed.job_id, "--out", str(out)], where, capsys, f"Run {failed.job_id} is failed (FreezeViolationError")
    detection = _fake_run(store, registry, "succeeded", task="animal_detection", backbone="tiny", strategy="scratch",
                          manifest={"head": "detection"})
    _refused(["export", detection.job_id, "--out", str(out)], where, capsys, "export covers image classification")
    text = _fake_run(store, registry, "succeeded", task="sentiment_tweets", backbone="minilm-l6",
                     strategy="frozen_features", weights="none")
    _refused(["export", text.job_id, "--out", str(out)], where, capsys, "is a text run; export covers image classification")
    not_kept = _fake_run(store, registry, "succeeded", task="digits", backbone="tiny", strategy="scratch", seed=8)
    _refused(["export", not_kept.job_id, "--out", str(out)], where, capsys, f"transferlab export {not_kept.job_id} --rerun")
    existing = where / "taken"
    existing.mkdir()
    (existing / "mine.txt").write_text("keep me")
    _refused(["export", own_export.run_id, "--out", str(existing)], where, capsys, "already exists")
    a_file = where / "notes.txt"
    a_file.write_text("not a folder")
    for inside in (a_file / "export", a_file / "deeper" / "export"):  # the nearest existing folder above is a file
        _refused(["export", own_export.run_id, "--out", str(inside)], where, capsys,
                 f"Cannot export to {inside}: {a_file} is a file, not a folder")
    assert a_file.read_text() == "not a folder"

    real_find_spec = __import__("importlib").util.find_spec
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "tf2onnx" else real_find_spec(name, *a))
    _refused(["export", own_export.run_id, "--format", "onnx", "--out", str(out)], where, capsys,
             "pip install 'transferlab[onnx]'")
    from transferlab.export import available_formats

    assert available_formats()["onnx"] == "needs the onnx extra: pip install 'transferlab[onnx]'"


REFUSE_IN_A_FRESH_PROCESS = textwrap.dedent("""
    import sys
    from transferlab.cli import main
    code = main(sys.argv[1:])
    print("tensorflow imported:", "tensorflow" in sys.modules)
    sys.exit(code)
""")


def _fresh_cli(args: list[str], home: Path, prefix: list[str] = ()) -> subprocess.CompletedProcess:
    env = dict(os.environ, TRANSFERLAB_HOME=str(home), TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([*prefix, sys.executable, "-c", REFUSE_IN_A_FRESH_PROCESS, *args], capture_output=True,
                          text=True, env=env, timeout=120)


def test_a_refusal_comes_before_tensorflow_is_imported(tmp_path):
    done = _fresh_cli(["export", "0123456789abcdef", "--out", str(tmp_path / "out")], tmp_path / "home")
    assert done.returncode == 2 and "Unknown run id '0123456789abcdef'" in done.stderr, done.stderr[-2000:]
    assert "tensorflow imported: False" in done.stdout


def test_an_out_folder_that_cannot_be_written_is_refused_before_anything_is_built(tmp_path):
    import shutil
    import tempfile

    # as nobody when the tests run as root (for whom a folder without write permission is still writable), in a
    # folder of its own under the system temp folder, which nobody can reach (pytest's is private)
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
    if as_nobody and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: no folder here is unwritable")
    top = Path(tempfile.mkdtemp(prefix="transferlab-locked-"))
    try:
        top.chmod(0o777)
        locked = top / "locked"
        locked.mkdir(mode=0o555)
        locked.chmod(0o555)
        out = locked / "new" / "export"
        done = _fresh_cli(["export", "0123456789abcdef", "--out", str(out)], top / "home", as_nobody)
        assert done.returncode == 2, done.stderr[-2000:]
        assert f"Cannot export to {out}: the folder {locked} is not writable" in done.stderr
        assert "Traceback" not in done.stderr and "tensorflow imported: False" in done.stdout
        assert list(locked.iterdir()) == []
    finally:
        (top / "locked").chmod(0o755)
        shutil.rmtree(top, ignore_errors=True)


def test_an_exporter_that_fails_midway_leaves_nothing_not_even_the_folders_above(at_export, tmp_path, capsys,
                                                                              monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("converter crashed")

    monkeypatch.setattr("transferlab.export_model._write_tflite", broken)
    root = tmp_path / "work"
    root.mkdir()
    out = root / "half" / "way" / "export"
    assert main(["export", at_export.run_id, "--format", "keras", "--format", "tflite", "--out", str(out)]) == 1
    assert "Exporting to tflite failed (RuntimeError: converter crashed)" in capsys.readouterr().err
    assert list(root.iterdir()) == []  # no export, no partial folder, no parent made for it


def test_folders_made_for_the_export_are_removed_when_its_last_step_fails(at_export, tmp_path, capsys, monkeypatch):
    root = tmp_path / "work"
    (root / "here").mkdir(parents=True)
    (root / "here" / "mine.txt").write_text("stays")
    out = root / "here" / "new" / "deeper" / "export"
    real_rename = os.rename

    def refuse_out(source, target, *args, **kwargs):  # as a rename to another disk, or a folder taken meanwhile
        if Path(target) == out:
            raise OSError(18, "Invalid cross-device link")
        return real_rename(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "rename", refuse_out)
    assert main(["export", at_export.run_id, "--format", "keras", "--out", str(out)]) == 2
    assert f"Cannot move the export into {out} (Invalid cross-device link)" in capsys.readouterr().err
    assert [p.relative_to(root).as_posix() for p in sorted(root.rglob("*"))] == ["here", "here/mine.txt"]


def test_rerun_trains_the_same_job_keeps_it_and_leaves_the_stored_run_alone(own_export, tmp_path, capsys):
    from transferlab.jobs import make_job
    from transferlab.store import Store

    store, registry = Store(), own_export.registry
    source = store.get(own_export.run_id)
    spec = json.loads(source["spec_json"])
    job = make_job(registry, **dict({k: v for k, v in spec.items() if k != "depends_on"}, seed=5))
    store.submit([job])  # the same data and recipe at another seed, its result stored without a kept model
    store.finish(job.job_id, "succeeded", only_if=None, score=0.123, metric="accuracy", metric_label="test accuracy",
                 manifest_json=json.loads(source["manifest_json"]))
    before = store.get(job.job_id)
    out = tmp_path / "rerun"
    assert main(["export", job.job_id, "--rerun", "--format", "tflite", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"Re-running run {job.job_id}" in printed and "(stored run: 0.123, accuracy)" in printed
    kept = store.model(job.job_id)
    assert kept is not None and kept["reason"] == "asked"
    assert json.loads((own_export.home / "models" / job.job_id / "model.json").read_text())["rerun"] is True
    card = (out / "model-card.md").read_text()
    assert "- Stored run: test accuracy 0.123" in card and "**These weights** come from a re-run" in card
    assert f"test accuracy {kept['score']:.3f}" in card
    after = store.get(job.job_id)
    assert {k: after[k] for k in ("score", "status", "finished_at", "manifest_json")} == \
        {k: before[k] for k in ("score", "status", "finished_at", "manifest_json")}


def test_rerun_of_a_run_whose_model_is_kept_exports_that_model_and_trains_nothing(own_export, tmp_path, capsys,
                                                                                  monkeypatch):
    from transferlab.store import Store

    def no_training(*args, **kwargs):
        raise AssertionError("a kept model must not be re-run")

    monkeypatch.setattr("transferlab.export_cli.rerun_and_keep", no_training)
    meta_file = own_export.home / "models" / own_export.run_id / "model.json"
    before, meta_before = Store().model(own_export.run_id), meta_file.read_bytes()
    out = tmp_path / "kept"
    assert main(["export", own_export.run_id, "--rerun", "--format", "keras", "--out", str(out)]) == 0
    assert f"Run {own_export.run_id}'s model is kept; exporting it" in capsys.readouterr().out
    after = Store().model(own_export.run_id)
    assert (after["sha256"], after["reason"], after["created_at"]) == \
        (before["sha256"], before["reason"], before["created_at"])
    assert meta_file.read_bytes() == meta_before
    assert json.loads((out / "export.json").read_text())["recipe"]["weights_sha256"] == before["sha256"]


def test_the_rerun_flag_not_the_score_says_whose_weights_these_are(own_export, tmp_path, capsys):
    """Weights marked ``rerun`` in model.json (here: the run's own, same score) are a re-run's: the card says so,
    with the time they were kept, and they are checked against their score on the whole test split."""
    meta_file = own_export.home / "models" / own_export.run_id / "model.json"
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps(dict(meta, rerun=True)))  # model.json has no hash of its own: weights.npz has
    out = tmp_path / "marked"
    assert main(["export", own_export.run_id, "--format", "keras", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    card = (out / "model-card.md").read_text()
    kept_at = datetime.fromtimestamp(meta["created_at"], timezone.utc).isoformat(timespec="seconds")
    assert f"**These weights** come from a re-run of the same job ({kept_at}):" in card
    check = json.loads((out / "export.json").read_text())["reproduction"]
    assert check["agreement"] is None and check["images"] == len(own_export.labels)
    said = (f"accuracy {check['accuracy']:.3f}, within 0.005 of the kept weights' score ({meta['score']:.3f})")
    assert f"- Checked at export on all {check['images']} test images at their original size: {said}." in card
    assert f"Checked on all {check['images']} test images at their own size: {said}." in printed


@pytest.mark.parametrize("reference", ["stored predictions", "whole test split"])
def test_a_rebuilt_model_that_is_not_the_trained_one_is_refused(at_export, tmp_path, capsys, monkeypatch, reference):
    import transferlab.models

    real_rebuild = transferlab.models.rebuild

    def wrong_architecture(registry, meta, arrays):  # what a backbone built otherwise without its weights gives
        model = real_rebuild(registry, meta, arrays)
        head = model.get_layer("head")
        kernel, bias = head.get_weights()
        head.set_weights([kernel[:, ::-1], bias[::-1]])  # every class scored as another
        return model

    monkeypatch.setattr(transferlab.models, "rebuild", wrong_architecture)
    if reference == "whole test split":
        monkeypatch.setattr("transferlab.export._stored_predictions", lambda store, run_id: None)
    out = tmp_path / "wrong"
    assert main(["export", at_export.run_id, "--format", "tflite", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"The rebuilt model of run {at_export.run_id} is not the trained one" in err
    assert ("agrees with the trained model's on" if reference == "stored predictions" else "it scores") in err
    assert not out.exists() and not _leftovers(tmp_path)


@pytest.mark.slow
def test_every_built_in_image_backbone_exports_with_standard_layers_and_reloads_with_plain_keras(tmp_path):
    """Each image backbone (and each weight source that builds a network of its own) behind the export's resize
    and preprocessing: standard Keras layers only, and the .keras file reloads with plain Keras to the same
    outputs. Architectures only (random weights): no download."""
    import keras

    from transferlab.export_model import affine_preprocessing, custom_layers, export_model
    from transferlab.heads import ClassificationHead
    from transferlab.jobs import make_job
    from transferlab.registry import load_registry
    from transferlab.runner.inference import inference_model

    registry = load_registry()
    images = np.random.default_rng(0).uniform(0, 255, (2, 50, 90, 3)).astype(np.float32)
    checked = []
    for backbone in sorted((b for b in registry.backbones.values() if b.modality == "image"), key=lambda b: b.name):
        size = max(backbone.min_input_size, 32)
        job = make_job(registry, task="digits", backbone=backbone.name, strategy="scratch", input_size=size)
        for weights in [None] + [w.name for w in backbone.weight_sources if w.name != "imagenet" and w.available()]:
            base = backbone.build((size, size, 3), weights)
            inference = inference_model(backbone, ClassificationHead(), job, 10, base=base)
            model = export_model(inference, size, *affine_preprocessing(backbone))
            assert custom_layers(model) == [], (backbone.name, weights)
            path = tmp_path / f"{backbone.name}-{weights}.keras"
            model.save(path)
            again = keras.saving.load_model(path)
            assert np.allclose(np.asarray(model(images)), np.asarray(again(images)), atol=1e-5), (backbone.name, weights)
            checked.append((backbone.name, weights))
            keras.backend.clear_session()
    assert len(checked) >= 10
