"""Each succeeded run keeps its test predictions compactly (TaskHead.compact_predictions) in the store's
predictions table, written with the run's results; an older store without the new tables still reads."""
from __future__ import annotations

import contextlib
import json
import sqlite3

import numpy as np
import pytest

from transferlab.executor import run_jobs
from transferlab.jobs import make_job
from transferlab.store import Store

FAST = dict(task="digits", backbone="tiny", examples_per_class=5, input_size=16, epochs=1, fine_tune_epochs=1,
            batch_size=16, fine_tune_layers=3)


def _confusion(compact: dict) -> list[list[int]]:
    size = len(compact["class_names"])
    matrix = np.zeros((size, size), dtype=int)
    for true, predicted in zip(compact["labels"], compact["predicted"]):
        matrix[true, predicted] += 1
    return matrix.tolist()


def test_a_real_run_stores_predictions_that_match_its_confusion_matrix(registry, store):
    from transferlab.data import load_task_data, make_splits

    job = make_job(registry, strategy="frozen_features", **FAST)
    assert run_jobs([job], store, workers=0, registry=registry) == {"succeeded": 1}
    row = store.get(job.job_id)
    compact = store.predictions(job.job_id)
    manifest = json.loads(row["manifest_json"])
    assert compact["kind"] == "classification" and compact["class_names"] == manifest["class_names"]
    splits = make_splits(load_task_data(registry, "digits"))
    assert compact["indices"] == splits.test.tolist() and len(compact["indices"]) == manifest["n_test"]
    assert _confusion(compact) == json.loads(row["confusion_json"])
    accuracy = np.mean(np.array(compact["labels"]) == np.array(compact["predicted"]))
    assert accuracy == pytest.approx(row["score"])
    assert all(1 / 10 - 1e-4 <= c <= 1.0 for c in compact["confidence"])  # a top probability of 10 classes
    assert manifest["feature_scale"] > 0  # a frozen head on standardised features keeps their scale


def test_compact_predictions_pick_the_top_class_and_its_probability(registry):
    from types import SimpleNamespace

    from transferlab import ClassificationHead

    data = SimpleNamespace(labels=np.array([0, 1, 2, 1]), class_names=("a", "b", "c"))
    probs = np.array([[0.2, 0.7, 0.1], [0.1, 0.3, 0.6], [0.05, 0.05, 0.9]])
    compact = ClassificationHead().compact_predictions(probs, data, np.array([3, 0, 2]), None)
    assert compact == dict(kind="classification", indices=[3, 0, 2], labels=[1, 0, 2], predicted=[1, 2, 2],
                           confidence=[0.7, 0.6, 0.9], class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="Expected class probabilities"):
        ClassificationHead().compact_predictions(probs[:2], data, np.array([3, 0, 2]), None)


def test_detection_keeps_at_most_20_normalised_boxes_per_image_best_first():
    from types import SimpleNamespace

    import keras

    from transferlab.plugins.object_detection import encode_targets
    from transferlab.plugins.object_detection.head import SSDHead

    head, job, classes = SSDHead(), SimpleNamespace(job_id="j"), 3
    head.outputs(keras.Input((4, 4, 8)), classes, job)  # the head learns its feature map's size here
    anchors = head.anchors(4)
    truth = np.array([[0.05, 0.1, 0.45, 0.5], [0.5, 0.55, 0.95, 0.9]])
    matched = encode_targets(anchors, truth, np.array([2, 0]))
    perfect = np.zeros((len(anchors), classes + 1))
    perfect[np.arange(len(anchors)), matched[:, 4].astype(int)] = 1.0
    empty = np.zeros((len(anchors), classes + 1))
    empty[:, 0] = 1.0  # background everywhere: nothing found
    crowded = np.random.default_rng(0).dirichlet(np.ones(classes + 1), len(anchors))  # boxes everywhere
    predictions = np.stack([np.concatenate([matched[:, :4], probs], axis=1) for probs in (perfect, empty, crowded)])
    data = SimpleNamespace(class_names=("cat", "dog", "owl"))
    compact = head.compact_predictions(predictions, data, np.array([7, 8, 9]), job)
    assert compact["kind"] == "detection" and compact["indices"] == [7, 8, 9]
    assert compact["class_names"] == ["cat", "dog", "owl"]
    found, nothing, many = compact["boxes"]
    assert sorted(found, key=lambda b: b[4]) == [[0.5, 0.55, 0.95, 0.9, 0, 1.0], [0.05, 0.1, 0.45, 0.5, 2, 1.0]]
    assert nothing == []
    assert len(head.detections(predictions[2:], job)[0][0]) > 20 and len(many) == 20  # the best 20 of them
    scores = [b[5] for b in many]
    assert scores == sorted(scores, reverse=True)
    assert all(0 <= x0 <= x1 <= 1 and 0 <= y0 <= y1 <= 1 for x0, y0, x1, y1, _, _ in many)


@pytest.mark.slow
def test_detection_runs_keep_at_most_20_normalised_boxes_per_test_image_best_first(registry, store):
    job = make_job(registry, task="animal_detection", backbone="tiny", strategy="scratch", examples_per_class=5,
                   input_size=32, epochs=1, batch_size=32)
    assert run_jobs([job], store, workers=0, registry=registry) == {"succeeded": 1}
    compact = store.predictions(job.job_id)
    assert compact["kind"] == "detection" and len(compact["boxes"]) == len(compact["indices"]) > 0
    assert compact["class_names"] == json.loads(store.get(job.job_id)["manifest_json"])["class_names"]
    assert any(compact["boxes"])  # an untrained SSD head still finds something above the threshold
    for boxes in compact["boxes"]:
        assert len(boxes) <= 20
        scores = [b[5] for b in boxes]
        assert scores == sorted(scores, reverse=True)
        for x0, y0, x1, y1, cls, _ in boxes:
            assert 0 <= x0 <= x1 <= 1 and 0 <= y0 <= y1 <= 1 and cls in range(len(compact["class_names"]))


def test_failed_runs_have_no_predictions_and_a_rerun_replaces_them(registry, store):
    job = make_job(registry, strategy="scratch", **FAST)
    store.submit([job])
    store.claim("w", [job.job_id])
    first = dict(kind="classification", indices=[1], labels=[0], predicted=[0], confidence=[0.9], class_names=["a"])
    store.finish(job.job_id, "succeeded", score=1.0, predictions=first)
    assert store.predictions(job.job_id) == first
    store.finish(job.job_id, "failed", only_if=None, error="again, and failed")
    assert store.predictions(job.job_id) is None
    store.finish(job.job_id, "succeeded", only_if="running", score=0.5, predictions=first)  # not running: no-op
    assert store.predictions(job.job_id) is None and store.get(job.job_id)["status"] == "failed"
    assert store.predictions("no-such-run") is None


def _store_without_new_tables(tmp_path):
    """A store as the release before predictions and kept models wrote it, with one succeeded run."""
    path = tmp_path / "before.db"
    url = f"sqlite:///{path}"
    Store(url).engine.dispose()
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("DROP TABLE predictions")
        db.execute("DROP TABLE models")
        db.execute("INSERT INTO runs (run_id, spec_json, kind, task, backbone, weights, strategy, seed, depends_on, "
                   "status, score, created_at) VALUES ('r1', '{}', 'train', 'digits', 'tiny', 'none', 'scratch', 0, "
                   "'[]', 'succeeded', 0.5, 1.0)")
    return path, url


def test_an_older_store_without_the_new_tables_reads_and_gets_them_when_opened_writable(tmp_path):
    path, url = _store_without_new_tables(tmp_path)
    before = path.read_bytes()
    reader = Store(url, read_only=True)
    assert reader.runs_frame()["score"].tolist() == [0.5]
    assert reader.predictions("r1") is None and reader.model("r1") is None
    frame = reader.models_frame()
    assert frame.empty and {"run_id", "path", "sha256", "bytes", "reason", "score"} <= set(frame.columns)
    assert reader.drop_model("r1") is False
    assert path.read_bytes() == before  # read-only: nothing written, no table created
    writer = Store(url)
    with sqlite3.connect(path) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"predictions", "models"} <= tables
    writer.add_model("r1", "models/r1", "ab" * 32, 1234, "best", 0.5)
    assert reader.model("r1")["bytes"] == 1234  # the reader sees the table a writer added since it opened
    assert writer.predictions("r1") is None


def test_kept_model_rows_are_replaced_listed_and_dropped(registry, store):
    job = make_job(registry, strategy="scratch", **FAST)
    store.submit([job])
    store.add_model(job.job_id, f"models/{job.job_id}", "a" * 64, 100, "best", 0.25, created_at=5.0)
    store.add_model(job.job_id, f"models/{job.job_id}", "b" * 64, 200, "asked", 0.25, created_at=6.0)
    frame = store.models_frame()
    assert frame["run_id"].tolist() == [job.job_id] and frame["bytes"].tolist() == [200]
    assert store.model(job.job_id)["reason"] == "asked" and store.model(job.job_id)["sha256"] == "b" * 64
    assert store.drop_model(job.job_id) is True and store.drop_model(job.job_id) is False
    assert store.model(job.job_id) is None and store.models_frame().empty


def test_predictions_and_kept_models_round_trip_on_postgres(registry):
    import os

    import sqlalchemy as sa

    from transferlab.store import metadata

    url = os.environ.get("TRANSFERLAB_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("TRANSFERLAB_TEST_POSTGRES_URL is not set: no PostgreSQL server (see tests/test_store_postgres.py)")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        metadata.drop_all(conn)
    try:
        store = Store(url)
        job = make_job(registry, strategy="scratch", **FAST)
        store.submit([job])
        store.claim("w", [job.job_id])
        compact = dict(kind="classification", indices=[4, 2], labels=[1, 0], predicted=[1, 1],
                       confidence=[0.9, 0.5123], class_names=["a", "b"])
        store.finish(job.job_id, "succeeded", score=0.5, predictions=compact)
        assert Store(url, read_only=True).predictions(job.job_id) == compact
        store.add_model(job.job_id, f"models/{job.job_id}", "c" * 64, 3 * 2**31, "asked", 0.5)
        assert store.model(job.job_id)["bytes"] == 3 * 2**31  # BigInteger: models over 2 GiB
        assert store.models_frame()["run_id"].tolist() == [job.job_id]
        assert store.drop_model(job.job_id) and store.models_frame().empty
    finally:
        with engine.begin() as conn:
            metadata.drop_all(conn)
        engine.dispose()
