"""The Inspect page (Streamlit AppTest) over the seeded store of real tiny runs, whose test predictions the runner
kept: the gallery of wrong images, the class picker, the diff of two runs, the deep link, read-only mode, a run
stored before predictions were kept; and the HTML report's gallery of the winning run."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "dashboard" / "views" / "inspect.py"


@pytest.fixture
def app_env(seeded_home, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_HOME", str(seeded_home))
    monkeypatch.delenv("TRANSFERLAB_READ_ONLY", raising=False)
    return seeded_home


def _page(query: dict[str, str] | None = None):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(PAGE), default_timeout=120)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def _text(at) -> str:
    kinds = ("title", "subheader", "markdown", "caption", "info", "success", "warning", "code")
    return "\n".join(str(getattr(e, "value", "")) for kind in kinds for e in getattr(at, kind, []))


def _runs():
    from transferlab.store import Store

    store = Store()
    runs = store.runs_frame()
    return store, runs[(runs["kind"] == "train") & (runs["status"] == "succeeded")]


def _wrong_count(store, run_id: str) -> int:
    payload = store.predictions(run_id)
    return sum(t != p for t, p in zip(payload["labels"], payload["predicted"]))


def test_inspect_shows_the_runs_wrong_images_worst_first(app_env):
    store, runs = _runs()
    run_id = runs.sort_values("score").iloc[0]["run_id"]  # the weakest run: surely some wrong images
    at = _page({"run": run_id})
    assert at.selectbox(key="inspect-run").value == run_id  # the deep link chose it
    payload = store.predictions(run_id)
    from transferlab.compare import wilson_interval

    score = runs.set_index("run_id").loc[run_id, "score"]
    low, high = wilson_interval(score, len(payload["indices"]))
    assert at.metric[0].value == f"{score:.3f}"
    assert f"95 % CI {float(low):.3f}–{float(high):.3f} over {len(payload['indices'])} test images" in _text(at)
    wrong = _wrong_count(store, run_id)
    assert f"{wrong} of {len(payload['indices'])} test images wrong" in _text(at)
    gallery = at.image[0]
    captions = [image.caption for image in gallery.proto.imgs]
    assert len(captions) == min(wrong, 48)
    confidences = [float(c.rsplit("(", 1)[1].rstrip(")")) for c in captions]
    assert confidences == sorted(confidences, reverse=True)  # worst first
    names = payload["class_names"]
    true_name, predicted_name = captions[0].split(" (")[0].split(" → ")
    assert true_name in names and predicted_name in names and true_name != predicted_name
    assert str(app_env) not in _text(at)


def test_show_more_adds_the_next_page_of_wrong_images(app_env):
    import streamlit as st

    store, runs = _runs()
    run_id = runs.sort_values("score").iloc[0]["run_id"]
    kept = store.predictions(run_id)
    n, k = len(kept["indices"]), len(kept["class_names"])
    assert n > 2 * 48, "the digits test split has a few hundred images"
    # every test image wrong, confidences falling: more than two pages of mistakes, in a known order
    every_wrong = dict(kept, predicted=[(t + 1) % k for t in kept["labels"]],
                       confidence=[round(0.99 - 0.5 * i / n, 4) for i in range(n)])
    store.finish(run_id, "succeeded", only_if="succeeded", predictions=every_wrong)
    st.cache_data.clear()  # the page keeps a run's predictions for a minute
    try:
        at = _page({"run": run_id})
        assert len(at.image[0].proto.imgs) == 48
        assert f"Show more ({n - 48} left)" in [b.label for b in at.button]
        next(b for b in at.button if b.label.startswith("Show more")).click().run()
        captions = [image.caption for image in at.image[0].proto.imgs]
        assert len(captions) == 96 and f"Show more ({n - 96} left)" in [b.label for b in at.button]
        # the next 48 worst, in order, after the first 48
        assert [c.rsplit("(", 1)[1].rstrip(")") for c in captions] == [f"{c:.2f}" for c in every_wrong["confidence"][:96]]
    finally:
        store.finish(run_id, "succeeded", only_if="succeeded", predictions=kept)
        st.cache_data.clear()
    assert store.predictions(run_id) == kept


def test_the_class_picker_filters_the_gallery(app_env):
    store, runs = _runs()
    run_id = runs.sort_values("score").iloc[0]["run_id"]
    payload = store.predictions(run_id)
    wrong_true = [t for t, p in zip(payload["labels"], payload["predicted"]) if t != p]
    cls = max(set(wrong_true), key=wrong_true.count)
    at = _page({"run": run_id})
    at.selectbox(key=f"inspect-true-{run_id}").set_value(cls).run()
    assert not at.exception, at.exception
    captions = [image.caption for image in at.image[0].proto.imgs]
    assert len(captions) == min(wrong_true.count(cls), 48)
    assert all(c.startswith(payload["class_names"][cls] + " → ") for c in captions)


def test_compare_shows_the_paired_table_and_mcnemar_verdict(app_env):
    from transferlab.run_diff import comparable_runs, mcnemar, paired_table

    store, runs = _runs()
    run_id = runs.sort_values("score").iloc[0]["run_id"]
    other = comparable_runs(store.runs_frame(), run_id).sort_values("score").iloc[-1]["run_id"]
    at = _page({"run": run_id, "other": other})
    assert at.selectbox(key=f"inspect-other-{run_id}").value == other
    table = paired_table(store.predictions(run_id), store.predictions(other))
    shown = next(d.value for d in at.dataframe if "A right" in d.value.columns)
    assert shown["A right"].tolist() == [table["both_right"], table["only_a"]]
    assert shown["A wrong"].tolist() == [table["only_b"], table["both_wrong"]]
    verdict = mcnemar(table["only_a"], table["only_b"], names=("A", "B"))["verdict"]
    assert any(verdict[1:] in m.value for m in at.markdown)
    assert [t.label for t in at.tabs] == [f"fixed by B ({table['only_b']})", f"broken by B ({table['only_a']})",
                                          f"both wrong ({table['both_wrong']})"]
    assert f"Both right: {table['both_right']} of {table['n']} test images (not shown)." in _text(at)
    assert table["both_wrong"], "the weakest and the best run share some mistakes"
    both_wrong = at.tabs[2].image[0].proto.imgs  # the images of that cell: true class, then A's and B's guesses
    assert len(both_wrong) == min(table["both_wrong"], 48)
    names = store.predictions(run_id)["class_names"]
    assert all(re.fullmatch(rf"({'|'.join(map(re.escape, names))}): A .+ \(\d\.\d\d\), B .+ \(\d\.\d\d\)",
                            image.caption) for image in both_wrong)


def test_export_offers_the_rerun_command_when_no_model_was_kept_and_nothing_in_read_only_mode(app_env, monkeypatch):
    store, runs = _runs()
    unkept = [r for r in runs["run_id"] if store.model(r) is None]
    assert unkept, "the seeded store keeps only the best run per group"
    at = _page({"run": unkept[0]})
    assert any(f"transferlab export {unkept[0]} --rerun --format keras --out DIR" in c.value for c in at.code)
    assert any(s.value == "Export" for s in at.subheader)
    monkeypatch.setenv("TRANSFERLAB_READ_ONLY", "1")
    at = _page({"run": unkept[0]})
    assert not any(s.value == "Export" for s in at.subheader)
    assert not at.code and not any("Build the export" in b.label for b in at.button)
    assert at.image, "read-only visitors still see the mistakes"


def test_a_run_stored_before_predictions_were_kept_says_so(app_env):
    import streamlit as st

    from transferlab.store import predictions

    store, runs = _runs()
    run_id = runs.iloc[0]["run_id"]
    kept = store.predictions(run_id)
    with store.engine.begin() as conn:  # as a store written before predictions were kept holds it
        conn.execute(predictions.delete().where(predictions.c.run_id == run_id))
    st.cache_data.clear()  # the page keeps a run's predictions for a minute
    try:
        at = _page({"run": run_id})
        assert "stored before predictions were kept — re-run to see its mistakes" in _text(at)
        assert not at.image
    finally:
        store.finish(run_id, "succeeded", only_if="succeeded", predictions=kept)
        st.cache_data.clear()
    assert store.predictions(run_id) == kept


def test_an_unknown_deep_link_warns_and_shows_a_run(app_env):
    at = _page({"run": "no-such-run"})
    assert "no-such-run is not a finished training run" in at.warning[0].value
    assert at.selectbox(key="inspect-run").value


def test_html_report_holds_the_winning_runs_gallery(app_env):
    from transferlab.dashboard.report import html_report
    from transferlab.run_diff import winning_runs

    store, runs = _runs()
    report = html_report(runs, store.epochs_frame())
    winner = winning_runs(runs)[("digits", runs["data_version"].dropna().iloc[0] if runs["data_version"].notna().any()
                                 else "")]
    assert "What the winner gets wrong" in report and winner in report
    wrong = _wrong_count(store, winner)
    assert report.count("<img src='data:image/png;base64,") == min(wrong, 12)
    assert str(app_env) not in report


def test_a_verdict_that_cannot_be_read_costs_the_report_its_gallery_only(app_env, monkeypatch):
    import transferlab.run_diff
    from transferlab.dashboard.report import html_report

    def broken(runs, recommendation=None):
        raise KeyError("winner_runs")

    monkeypatch.setattr(transferlab.run_diff, "winning_runs", broken)
    store, runs = _runs()
    report = html_report(runs, store.epochs_frame(), store=store)
    assert "What the winner gets wrong" in report and "The gallery could not be made" in report
    assert "KeyError" in report and "<img src='data:image/png" not in report
    assert "digits: data efficiency" in report and "<h2>Summary</h2>" in report  # the rest is all there


def test_a_report_built_without_a_store_closes_the_one_it_opens(app_env, monkeypatch):
    import transferlab.store
    from transferlab.dashboard.report import html_report

    opened = []

    class Watched(transferlab.store.Store):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.disposed = 0
            dispose = self.engine.dispose
            self.engine.dispose = lambda *a, **k: (setattr(self, "disposed", self.disposed + 1), dispose(*a, **k))
            opened.append(self)

    store, runs = _runs()
    epochs = store.epochs_frame()
    monkeypatch.setattr(transferlab.store, "Store", Watched)
    report = html_report(runs, epochs)
    assert "What the winner gets wrong" in report
    assert [(s.read_only, s.disposed) for s in opened] == [(True, 1)]
    html_report(runs, epochs, store=store)  # a store given is the caller's: neither opened nor closed here
    assert len(opened) == 1 and opened[0].disposed == 1


# ------------------------------------------------------------------------------------------ thumbnails

def test_thumbnails_of_arrays_and_files_by_data_index(tmp_path):
    import numpy as np
    from PIL import Image

    from transferlab.data import ImageFiles, TaskData
    from transferlab.errors import UserError
    from transferlab.test_images import MAX_SIDE, MIN_SIDE, thumbnail, thumbnails

    tiny = np.arange(2 * 8 * 8, dtype=np.uint8).reshape(2, 8, 8)  # grey 8x8, as the digits are
    data = TaskData(images=tiny, labels=np.array([0, 1]), class_names=("a", "b"))
    first, second = thumbnails(data, [1, 0])
    factor = MIN_SIDE // 8
    assert first.shape == (8 * factor, 8 * factor, 3) and first.dtype == np.uint8
    assert (first[:factor, :factor] == tiny[1, 0, 0]).all() and (first[factor, 0] == tiny[1, 1, 0]).all()
    assert (second[-1, -1] == tiny[0, -1, -1]).all()  # each pixel a square, the images in the order asked
    wide = thumbnail(np.full((200, 300, 3), 7, np.uint8))
    assert wide.shape == (round(200 * MAX_SIDE / 300), MAX_SIDE, 3) and (wide == 7).all()
    assert thumbnail(np.zeros((100, 90, 3), np.uint8)).shape == (100, 90, 3)  # already fits: untouched

    pixels = np.zeros((40, 60, 3), np.uint8)
    pixels[10:20, 30:50] = (255, 0, 0)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    rois = [[0, 0, 59, 39], [30, 10, 49, 19], [-1, -1, -1, -1]]  # -1: this file has no ROI (as training reads it)
    files = TaskData(images=ImageFiles(paths=[str(tmp_path / "x.png")] * 3, rois=rois),
                     labels=np.array([0, 1, 0]), class_names=("a", "b"))
    whole, cropped, no_roi = thumbnails(files, [0, 1, 2])
    assert whole.shape == (40, 60, 3) and (whole == pixels).all()  # over half MIN_SIDE: as it is
    assert (no_roi == pixels).all()
    factor = MIN_SIDE // 20
    assert cropped.shape == (10 * factor, 20 * factor, 3) and (cropped == (255, 0, 0)).all()  # the ROI (20x10 px)
    with pytest.raises(UserError, match="not in this data"):
        thumbnails(data, [5])


def test_boxes_are_drawn_true_green_and_predicted_orange():
    import numpy as np

    from transferlab.test_images import PREDICTED_COLOUR, TRUE_COLOUR, draw_boxes

    image = np.zeros((100, 100, 3), np.uint8)
    drawn = draw_boxes(image, true_boxes=[[0.1, 0.1, 0.5, 0.5]], predicted_boxes=[[0.6, 0.6, 0.9, 0.9, 1, 0.8]])
    assert tuple(drawn[10, 30]) == TRUE_COLOUR and tuple(drawn[30, 10]) == TRUE_COLOUR  # top edge, left edge
    assert tuple(drawn[60, 75]) == PREDICTED_COLOUR and tuple(drawn[89, 75]) == PREDICTED_COLOUR
    assert tuple(drawn[30, 30]) == (0, 0, 0) and not image.any()  # inside untouched; the input is not drawn on


# ------------------------------------------------------------------------------------------ export

def test_export_offers_only_the_formats_available_here_for_a_kept_model(app_env):
    from transferlab.export import available_formats

    store, runs = _runs()
    kept = [r for r in runs["run_id"] if store.model(r) is not None]
    assert kept, "the best run of each group keeps its model"
    at = _page({"run": kept[0]})
    formats = available_formats()
    chooser = at.multiselect(key=f"export-formats-{kept[0]}")
    assert chooser.options == [f for f, why in formats.items() if why is None] and chooser.value == ["keras"]
    for name, why in formats.items():
        if why is not None:
            assert any(f"{name}: {why}" in c.value for c in at.caption)
    assert at.button(key=f"export-{kept[0]}").label == "Build the export" and not at.download_button


@pytest.mark.slow
def test_the_export_button_builds_a_downloadable_archive(app_env):
    store, runs = _runs()
    kept = next(r for r in runs["run_id"] if store.model(r) is not None)
    at = _page({"run": kept})
    at.button(key=f"export-{kept}").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    download = at.download_button[0]
    assert download.label.startswith("Download ") and download.label.endswith(".zip") and kept in download.label


# ------------------------------------------------------------------------------------------ detection

@pytest.mark.slow
def test_a_detection_run_shows_its_canvases_with_true_and_predicted_boxes(tl_home):
    from transferlab.executor import run_jobs
    from transferlab.jobs import make_job
    from transferlab.registry import load_registry
    from transferlab.store import Store

    registry = load_registry()
    job = make_job(registry, task="animal_detection", backbone="small_cnn", strategy="scratch", examples_per_class=5,
                   input_size=32, epochs=1, batch_size=32)
    assert run_jobs([job], Store(), workers=0, registry=registry) == {"succeeded": 1}
    at = _page({"run": job.job_id})
    assert any("green = true objects, orange = predicted" in c.value for c in at.caption)
    captions = [image.caption for image in at.image[0].proto.imgs]
    assert captions and all(re.fullmatch(r"\d+ missed, \d+ false( · top score [01]\.\d\d)?", c) for c in captions)
    assert not any(s.value == "Compare with another run" for s in at.subheader)
