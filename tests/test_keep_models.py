"""Kept models: the best run of each group and every run asked keep their trained weights; a kept model
rebuilds into the network the run trained and reproduces its test predictions; tampered files are refused;
gc removes what no page needs; the CLI lists and collects them."""
from __future__ import annotations

import json
import os
import time
from types import SimpleNamespace

import numpy as np
import pytest

from transferlab.errors import UserError
from transferlab.executor import run_jobs
from transferlab.jobs import make_job
from transferlab.models import NotKeptError, gc, keep, keep_after_run, load_kept, models_root, needed, rebuild

FAST = dict(task="digits", backbone="tiny", examples_per_class=10, input_size=16, epochs=3, fine_tune_epochs=2,
            batch_size=16, fine_tune_layers=3, learning_rate=1e-2, fine_tune_learning_rate=1e-3)


def _test_inputs(registry, job):
    """The run's test images, preprocessed as the runner feeds them, and their data indices."""
    from transferlab.data import make_dataset, make_splits
    from transferlab.userdata import load_job_data

    data = load_job_data(registry, job)
    test = make_splits(data).test
    dataset = make_dataset(data, test, data.labels[test], registry.backbone(job.backbone), job.input_size, 64)
    return dataset.map(lambda x, y: x), test


# cached features (base outside the model), end to end with a frozen base and the feature scale inside the
# model, and end to end training the base (BatchNorm in inference mode): the three paths to a trained network
@pytest.mark.parametrize("strategy", ["frozen_features", "feature_extraction", "full_fine_tune"])
def test_a_kept_model_rebuilds_and_reproduces_the_runs_test_predictions(registry, store, strategy):
    job = make_job(registry, strategy=strategy, **FAST)
    assert run_jobs([job], store, workers=0, registry=registry) == {"succeeded": 1}
    row = store.model(job.job_id)
    assert row["reason"] == "best" and row["path"] == f"models/{job.job_id}"  # the first of its group
    meta, arrays = load_kept(store, job.job_id)
    assert meta["run_id"] == job.job_id and meta["num_classes"] == 10 and meta["head_kind"] == "classification"
    manifest = json.loads(store.get(job.job_id)["manifest_json"])
    assert meta["feature_scale"] == manifest["feature_scale"]
    assert (meta["feature_scale"] is None) == (strategy == "full_fine_tune")  # only frozen bases are scaled
    inputs, test = _test_inputs(registry, job)
    probs = rebuild(registry, meta, arrays).predict(inputs, verbose=0)
    stored = store.predictions(job.job_id)
    assert stored["indices"] == test.tolist()
    assert probs.argmax(axis=1).tolist() == stored["predicted"]
    np.testing.assert_allclose(probs.max(axis=1), stored["confidence"], atol=6e-5)  # stored to 4 decimals
    accuracy = float(np.mean(probs.argmax(axis=1) == np.array(stored["labels"])))
    assert accuracy == pytest.approx(store.get(job.job_id)["score"], abs=1e-12)
    # the same network with its initial weights gives other probabilities: the arrays are what reproduce it
    import keras

    from transferlab.runner.inference import inference_model

    fresh = inference_model(registry.backbone("tiny"), registry.task("digits").task_head, job, 10,
                            meta["feature_scale"])
    assert not np.allclose(fresh.predict(inputs, verbose=0).max(axis=1), stored["confidence"], atol=1e-3)
    keras.backend.clear_session()


def _finished(store, registry, score, keep_model=False, **fields):
    """A job stored as succeeded with ``score``, and a RunResult-like object of it with tiny weights."""
    job = make_job(registry, **{**FAST, "strategy": "scratch", "keep_model": keep_model, **fields})
    store.submit([job])
    store.claim("w", [job.job_id])
    store.finish(job.job_id, "succeeded", score=score, metric="accuracy")
    result = SimpleNamespace(score=score, final_arrays=[np.full((2, 3), score, dtype=np.float32), np.arange(4.0)],
                             manifest=dict(class_names=[str(i) for i in range(10)], feature_scale=None,
                                           metric="accuracy", head="classification"))
    return job, result


def test_keep_policy_best_per_group_ties_asked_and_superseded_best_dropped(registry, store):
    a, result_a = _finished(store, registry, 0.5, seed=0)
    assert keep_after_run(store, registry, a, result_a)["reason"] == "best"
    b, result_b = _finished(store, registry, 0.4, seed=1)
    assert keep_after_run(store, registry, b, result_b) is None  # worse than the kept best: not kept
    c, result_c = _finished(store, registry, 0.7, seed=2)
    assert keep_after_run(store, registry, c, result_c)["reason"] == "best"
    assert store.model(a.job_id) is None and not (models_root() / a.job_id).exists()  # superseded: dropped
    d, result_d = _finished(store, registry, 0.7, seed=3)
    assert keep_after_run(store, registry, d, result_d)["reason"] == "best"  # a tie keeps both
    e, result_e = _finished(store, registry, 0.1, keep_model=True, seed=4)
    assert keep_after_run(store, registry, e, result_e)["reason"] == "asked"
    f, result_f = _finished(store, registry, 0.2, seed=0, examples_per_class=5)  # another size: its own group
    assert keep_after_run(store, registry, f, result_f)["reason"] == "best"
    g, result_g = _finished(store, registry, 0.9, seed=5)  # beats c and d, never the asked e
    keep_after_run(store, registry, g, result_g)
    kept = dict(zip(store.models_frame()["run_id"], store.models_frame()["reason"]))
    assert kept == {g.job_id: "best", e.job_id: "asked", f.job_id: "best"}
    assert needed(store) == {g.job_id, e.job_id, f.job_id}
    assert sorted(p.name for p in models_root().iterdir()) == sorted(kept)
    # a run without arrays (source pretraining, text) is never kept, however good
    assert keep_after_run(store, registry, a, SimpleNamespace(score=1.0, final_arrays=None)) is None
    from transferlab.runner.runner import keepable

    image, text = SimpleNamespace(modality="image"), SimpleNamespace(modality="text")
    assert keepable(a, image) and not keepable(a, text)
    assert not keepable(make_job(registry, strategy="scratch", kind="pretrain", task="digits", backbone="tiny"), image)


def test_keep_model_is_stored_but_not_part_of_the_job_id(registry, store):
    plain = make_job(registry, strategy="scratch", **FAST)
    asked = make_job(registry, strategy="scratch", keep_model=True, **FAST)
    assert asked.job_id == plain.job_id and asked.keep_model and not plain.keep_model
    assert json.loads(asked.canonical_json())["keep_model"] is True and "keep_model" not in plain.canonical()
    with pytest.raises(UserError, match="keep_model must be true or false"):
        make_job(registry, strategy="scratch", keep_model="yes", **FAST)
    store.submit([plain])
    assert store.submit([asked]) == {"queued": 0, "kept": 1}
    assert store.claim("w").keep_model is True  # a queued run asked again keeps its model when it runs
    store.finish(plain.job_id, "succeeded", score=0.5)
    assert store.submit([asked]) == {"queued": 0, "kept": 1}  # succeeded: not run again for its model
    assert store.get(plain.job_id)["status"] == "succeeded"


def test_load_kept_refuses_a_tampered_file_and_offers_a_rerun_when_nothing_is_kept(registry, store):
    job, result = _finished(store, registry, 0.5)
    meta = keep(store, registry, job, result, "asked")
    again, arrays = load_kept(store, job.job_id)
    assert again == meta and [a.tolist() for a in arrays] == [a.tolist() for a in result.final_arrays]
    assert set(os.listdir(models_root() / job.job_id)) == {"weights.npz", "model.json"}
    weights = models_root() / job.job_id / "weights.npz"
    raw = bytearray(weights.read_bytes())
    raw[-40] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(UserError, match="sha256") as refused:
        load_kept(store, job.job_id)
    assert not isinstance(refused.value, NotKeptError)
    other, _ = _finished(store, registry, 0.3, seed=1)
    with pytest.raises(NotKeptError, match=rf"transferlab export {other.job_id} --rerun"):
        load_kept(store, other.job_id)
    with pytest.raises(UserError, match="no run 'nope'"):
        load_kept(store, "nope")
    import shutil

    shutil.rmtree(models_root() / job.job_id)
    with pytest.raises(NotKeptError, match="files are gone"):
        load_kept(store, job.job_id)


def test_a_keep_writes_nothing_half_and_replaces_an_earlier_model_whole(registry, store, monkeypatch):
    job, result = _finished(store, registry, 0.5)
    first = keep(store, registry, job, result, "best")
    import transferlab.models as models

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(models.np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        keep(store, registry, job, SimpleNamespace(**{**vars(result), "score": 0.9}), "asked")
    assert sorted(p.name for p in models_root().iterdir()) == [job.job_id]  # no temp folder left
    assert load_kept(store, job.job_id)[0] == first  # the earlier model, unchanged
    monkeypatch.undo()
    second = keep(store, registry, job, SimpleNamespace(**{**vars(result), "score": 0.9}), "asked")
    assert load_kept(store, job.job_id)[0] == second and store.model(job.job_id)["reason"] == "asked"


def test_a_keep_whose_registration_fails_puts_the_earlier_model_back_with_its_row(registry, store, monkeypatch):
    from transferlab.errors import StoreError

    job, result = _finished(store, registry, 0.5)
    first = keep(store, registry, job, result, "best")

    def locked(*args, **kwargs):  # the files are renamed into place already when the store refuses the row
        assert (models_root() / job.job_id / "model.json").is_file()
        raise StoreError("The store stayed locked by another process while registering a kept model.")

    monkeypatch.setattr(store, "add_model", locked)
    with pytest.raises(StoreError, match="locked"):
        keep(store, registry, job, SimpleNamespace(**{**vars(result), "score": 0.9}), "asked")
    assert sorted(p.name for p in models_root().iterdir()) == [job.job_id]  # no temp or old folder left
    assert load_kept(store, job.job_id)[0] == first  # the row and the files still belong together
    assert store.model(job.job_id)["reason"] == "best"
    other, result_other = _finished(store, registry, 0.4, seed=1)  # nothing kept before: nothing left
    with pytest.raises(StoreError):
        keep(store, registry, other, result_other, "asked")
    assert not (models_root() / other.job_id).exists() and store.model(other.job_id) is None


def test_a_kept_model_says_whether_it_was_rerun_and_its_size_counts_every_file(registry, store):
    from transferlab.models import folder_bytes

    job, result = _finished(store, registry, 0.5)
    assert keep(store, registry, job, result, "asked")["rerun"] is False
    meta = keep(store, registry, job, result, "asked", rerun=True)
    folder = models_root() / job.job_id
    assert meta["rerun"] is True and json.loads((folder / "model.json").read_text())["rerun"] is True
    assert store.model(job.job_id)["bytes"] == sum(f.stat().st_size for f in folder.iterdir())
    (folder / "sub").mkdir()
    (folder / "sub" / "x.bin").write_bytes(b"x" * 123)
    assert folder_bytes(folder) == store.model(job.job_id)["bytes"] + 123  # what removing it frees


def test_gc_leaves_a_model_kept_while_it_reads_what_is_needed(registry, store, monkeypatch):
    import transferlab.models as models

    late = make_job(registry, **{**FAST, "strategy": "scratch", "seed": 7})
    store.submit([late])
    store.claim("w", [late.job_id])
    result = SimpleNamespace(score=0.6, final_arrays=[np.zeros((2, 2), np.float32)],
                             manifest=dict(class_names=["a", "b"], feature_scale=None, metric="accuracy",
                                           head="classification"))
    real_needed = models.needed

    def racing(store_):  # a worker finishes and keeps its run's model just after gc read what is needed
        wanted = real_needed(store_)
        store_.finish(late.job_id, "succeeded", score=0.6, metric="accuracy")
        assert keep_after_run(store_, registry, late, result)["reason"] == "best"
        return wanted

    monkeypatch.setattr(models, "needed", racing)
    report = gc(store)
    assert report["removed"] == [] and late.job_id not in report["kept"]  # not seen by this gc: left alone
    assert store.model(late.job_id) and load_kept(store, late.job_id)
    monkeypatch.setattr(models, "needed", real_needed)
    assert gc(store)["kept"] == [late.job_id]  # the next gc sees it, and it is needed


def test_a_best_model_asked_again_with_keep_models_is_kept_as_asked(registry, store):
    import dataclasses

    from transferlab.cli import _keep_wish_lines

    best, result_best = _finished(store, registry, 0.6, seed=0)
    assert keep_after_run(store, registry, best, result_best)["reason"] == "best"
    plain, _ = _finished(store, registry, 0.3, seed=1)  # succeeded before without its model
    asked = [dataclasses.replace(best, keep_model=True), dataclasses.replace(plain, keep_model=True)]
    lines = _keep_wish_lines(store, asked, store.runs_frame())
    assert lines[0].startswith("KEPT AS ASKED: 1 of the runs") and best.job_id in lines[0]
    assert lines[1].startswith("NOT KEPT: 1 of the runs") and plain.job_id in lines[1]
    assert store.model(best.job_id)["reason"] == "asked"
    assert json.loads((models_root() / best.job_id / "model.json").read_text())["reason"] == "asked"
    assert store.model(best.job_id)["bytes"] == sum(f.stat().st_size for f in (models_root() / best.job_id).iterdir())
    better, result_better = _finished(store, registry, 0.9, seed=2)
    assert keep_after_run(store, registry, better, result_better)["reason"] == "best"
    assert load_kept(store, best.job_id)  # a better run no longer drops it
    assert gc(store)["removed"] == [] and best.job_id in needed(store)
    assert [line.split(":")[0] for line in _keep_wish_lines(store, asked, store.runs_frame())] == ["NOT KEPT"]


def test_gc_dry_run_lists_and_a_real_gc_removes_what_no_page_needs(registry, store):
    best, result_best = _finished(store, registry, 0.8, seed=0)
    keep_after_run(store, registry, best, result_best)
    low, result_low = _finished(store, registry, 0.2, seed=1)
    keep(store, registry, low, result_low, "best")  # kept by hand: neither the best nor asked
    stale = models_root() / ".tmp-crashed"
    stale.mkdir()
    (stale / "weights.npz").write_bytes(b"x" * 1000)
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    fresh = models_root() / ".tmp-writing-now"
    fresh.mkdir()
    report = gc(store, dry_run=True)
    assert report["removed"] == [low.job_id] and report["kept"] == [best.job_id] and report["dry_run"]
    assert report["leftovers"] == [".tmp-crashed"]
    assert report["freed_bytes"] == store.model(low.job_id)["bytes"] + 1000
    assert (models_root() / low.job_id).is_dir() and stale.is_dir() and store.model(low.job_id)  # nothing removed
    assert gc(store) == {**report, "dry_run": False}
    assert store.model(low.job_id) is None and not (models_root() / low.job_id).exists() and not stale.exists()
    assert fresh.is_dir() and store.model(best.job_id) and load_kept(store, best.job_id)
    assert gc(store)["removed"] == [] and gc(store)["freed_bytes"] == 0


def test_a_failure_while_keeping_warns_and_never_fails_the_run(registry, store, monkeypatch, capsys):
    import transferlab.models as models
    from transferlab.runner import Runner

    seen = []
    original = Runner.run

    def spy(self, job):
        seen.append(original(self, job))
        return seen[-1]

    def refuse(*args, **kwargs):
        raise UserError("Cannot write models/x: No space left on device.")

    monkeypatch.setattr(Runner, "run", spy)
    monkeypatch.setattr(models, "keep_after_run", refuse)
    job = make_job(registry, strategy="frozen_features", **dict(FAST, epochs=1))
    assert run_jobs([job], store, workers=0, registry=registry) == {"succeeded": 1}
    assert "succeeded, but its trained model was not kept" in capsys.readouterr().err
    assert store.model(job.job_id) is None and store.predictions(job.job_id) is not None
    assert seen[0].final_arrays is None  # freed after the keep, kept or not


def test_models_and_gc_commands_list_sizes_and_free_space(registry, store, capsys):
    from transferlab.cli import main

    assert main(["models"]) == 0 and "No kept models" in capsys.readouterr().out
    best, result_best = _finished(store, registry, 0.8, seed=0)
    keep_after_run(store, registry, best, result_best)
    low, result_low = _finished(store, registry, 0.2, seed=1)
    keep(store, registry, low, result_low, "best")
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert best.job_id in out and low.job_id in out and best.label() in out and "0.800 accuracy" in out
    total = store.models_frame()["bytes"].sum()
    assert f"2 kept models, {total / 1e6:,.1f} MB in all" in out
    assert main(["gc", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"would remove kept model {low.job_id}" in out and "Would free" in out and store.model(low.job_id)
    assert main(["gc"]) == 0
    out = capsys.readouterr().out
    assert f"removed kept model {low.job_id}" in out and "1 kept model stays" in out
    assert store.model(low.job_id) is None


def test_export_and_predict_parse_their_arguments():
    from transferlab.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["export", "abc", "--format", "keras", "--format", "tflite", "--out", "dir"])
    assert (args.run_id, args.format, args.out, args.rerun) == ("abc", ["keras", "tflite"], "dir", False)
    assert parser.parse_args(["export", "abc", "--out", "d", "--rerun"]).format is None
    args = parser.parse_args(["predict", "model", "a.png", "b.png", "--top", "2", "--json", "--format", "onnx"])
    assert (args.model_dir, args.images, args.top, args.json, args.format) == ("model", ["a.png", "b.png"], 2, True,
                                                                                "onnx")
    assert parser.parse_args(["predict", "m", "a.png"]).top == 3
    for bad in (["export", "abc"], ["export", "abc", "--out", "d", "--format", "pickle"], ["predict", "m"],
                ["predict", "m", "a.png", "--top", "0"], ["predict", "m", "a.png", "--format", "all"]):
        with pytest.raises(SystemExit) as exited:
            parser.parse_args(bad)
        assert exited.value.code == 2
    assert parser.parse_args(["run", "--task", "digits", "--backbone", "b", "--strategy", "s",
                              "--keep-models"]).keep_models is True
    assert parser.parse_args(["sweep", "--keep-models"]).keep_models is True



def test_predict_help_says_what_the_hash_does_not_prove(capsys):
    from transferlab.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["predict", "--help"])
    assert ("export.json's sha256 shows the files are intact, not who made them; a SavedModel runs its graph: "
            "prefer tflite or keras for files from others.") in " ".join(capsys.readouterr().out.split())


@pytest.mark.slow
def test_a_kept_detection_model_rebuilds_on_the_feature_map_and_reproduces_its_boxes(registry, store):
    job = make_job(registry, task="animal_detection", backbone="tiny", strategy="scratch", examples_per_class=5,
                   input_size=32, epochs=2, batch_size=32)
    assert run_jobs([job], store, workers=0, registry=registry) == {"succeeded": 1}
    meta, arrays = load_kept(store, job.job_id)
    assert meta["head_kind"] == "detection" and meta["feature_scale"] is None
    from transferlab.userdata import load_job_data

    inputs, test = _test_inputs(registry, job)
    outputs = rebuild(registry, meta, arrays).predict(inputs, verbose=0)
    head = registry.task("animal_detection").task_head
    again = head.compact_predictions(outputs, load_job_data(registry, job), test, job)
    stored = store.predictions(job.job_id)
    assert again["indices"] == stored["indices"] and sum(map(len, stored["boxes"])) > 0
    for mine, theirs in zip(again["boxes"], stored["boxes"]):
        assert [b[4] for b in mine] == [b[4] for b in theirs]  # the same classes, in the same order
        np.testing.assert_allclose(np.array(mine, dtype=float).reshape(-1, 6), np.array(theirs, dtype=float).reshape(-1, 6),
                                   atol=2e-4)


def test_run_page_checkbox_keeps_every_model_of_the_launched_jobs_and_shows_their_disk(registry, store, monkeypatch):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    import transferlab.launch

    launched = []
    monkeypatch.setattr(transferlab.launch, "launch", lambda jobs, workers=1: launched.append(jobs) or
                        SimpleNamespace(launch_id="test"))
    page = Path(__file__).resolve().parents[1] / "dashboard" / "views" / "run.py"
    at = AppTest.from_file(str(page), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    assert "Kept models now: none." in [c.value for c in at.caption]
    job, result = _finished(store, registry, 0.5)
    keep(store, registry, job, result, "asked")
    next(c for c in at.checkbox if c.label == "Keep every trained model").check().run()
    size = store.model(job.job_id)["bytes"] / 1e6
    assert f"Kept models now: 1, {size:,.1f} MB on disk." in [c.value for c in at.caption]
    next(b for b in at.button if b.label == "Launch in the background").click().run()
    assert not at.exception, at.exception
    assert launched and all(j.keep_model for j in launched[0])


def test_architecture_builds_the_base_from_its_weight_source_as_training_did(registry):
    # torchvision's MobileNetV2 pads before its strided convolutions; the random-init layout does not, and
    # the kept arrays would fit both (same shapes): rebuilding must take the layout of the run's source
    import keras

    from transferlab.models import architecture

    def meta(weights):
        job = make_job(registry, task="digits", backbone="mobilenetv2", weights=weights, strategy="frozen_features",
                       examples_per_class=3, input_size=32)
        return dict(job=job.canonical(), input_size=32, num_classes=10, feature_scale=1.0, run_id=job.job_id)

    def pads(layer):  # ZeroPadding2D layers anywhere inside, nested models included
        inner = getattr(layer, "layers", [])
        return isinstance(layer, keras.layers.ZeroPadding2D) + sum(pads(child) for child in inner)

    torchvision, plain = architecture(registry, meta("imagenet-torchvision")), architecture(registry, meta("none"))
    assert len(torchvision.weights) == len(plain.weights)
    assert pads(torchvision) > pads(plain)
