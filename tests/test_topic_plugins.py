"""The five topic plugins end to end: medical (HAM10000 + class folders), road signs (GTSRB), object
detection (composed canvases + VOC folders), NLP sentiment (MiniLM on tweets), and the multimodal stub."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from transferlab.data import ImageFiles, load_task_data, make_splits, _TASK_DATA
from transferlab.errors import DatasetUnavailableError, UserError
from transferlab.jobs import make_job
from transferlab.runner import Runner


@pytest.fixture(autouse=True)
def fresh_task_data():
    """Task data is cached per process; these tests point tasks at different folders."""
    _TASK_DATA.clear()
    yield
    _TASK_DATA.clear()


# ------------------------------------------------------------------------------------------ medical

@pytest.fixture
def ham_dir(tmp_path, monkeypatch):
    from support_datasets import write_ham10000_fixture

    root = write_ham10000_fixture(tmp_path / "ham", per_class=(6, 6, 8, 6, 8, 24, 6), seed=3, size=48)
    monkeypatch.setenv("TRANSFERLAB_HAM10000_DIR", str(root))
    return root


def test_skin_lesions_split_by_lesion_and_streamed(registry, ham_dir):
    data = load_task_data(registry, "skin_lesions")
    assert isinstance(data.images, ImageFiles) and data.groups is not None
    splits = make_splits(data)
    test_lesions = set(data.groups[splits.test])
    assert test_lesions and not test_lesions & set(data.groups[splits.pool])
    assert not set(data.groups[splits.val]) & set(data.groups[splits.pool])
    assert "by group" in splits.method


def test_skin_lesions_train_through_the_runner_with_imbalance_metrics(registry, ham_dir):
    job = make_job(registry, task="skin_lesions", backbone="small_cnn", strategy="scratch", fraction=1.0,
                   input_size=32, epochs=2, batch_size=16)
    # the medical defaults: slide augmentation and balanced class weights
    assert job.augment is True and job.class_weight == "balanced"
    result = Runner(registry).run(job)
    assert 0.0 <= result.score <= 1.0
    assert result.balanced_accuracy is not None
    assert np.array(result.confusion).shape == (7, 7)
    recall = result.metrics["per_class_recall"]
    assert set(recall) <= {"akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"} and len(recall) >= 2
    assert 0.0 <= result.metrics["macro_f1"] <= 1.0
    assert "by group" in result.manifest["split"]


def test_cached_features_strategy_skips_the_augment_default(registry, ham_dir):
    job = make_job(registry, task="skin_lesions", backbone="small_cnn", strategy="frozen_features", fraction=1.0)
    assert job.augment is False and job.class_weight == "balanced"
    with pytest.raises(UserError, match="cannot be augmented"):
        make_job(registry, task="skin_lesions", backbone="small_cnn", strategy="frozen_features", augment=True)


def test_missing_ham10000_says_url_layout_and_setting(registry, monkeypatch):
    monkeypatch.delenv("TRANSFERLAB_HAM10000_DIR", raising=False)
    with pytest.raises(DatasetUnavailableError) as err:
        load_task_data(registry, "skin_lesions")
    text = str(err.value)
    assert "https://doi.org/10.7910/DVN/DBW86T" in text
    assert "HAM10000_metadata.csv" in text and "HAM10000_images_part_1" in text
    assert "TRANSFERLAB_HAM10000_DIR" in text


def test_cli_missing_dataset_exits_2_with_one_message(monkeypatch, capsys):
    from transferlab.cli import main

    monkeypatch.delenv("TRANSFERLAB_HAM10000_DIR", raising=False)
    code = main(["run", "--task", "skin_lesions", "--backbone", "small_cnn", "--strategy", "scratch"])
    err = capsys.readouterr().err
    assert code == 2
    assert "TRANSFERLAB_HAM10000_DIR" in err and "Traceback" not in err


def _mode_images(folder, n, colour_shift):
    """One image per Pillow mode the pipeline must handle, plus plain RGB JPEGs."""
    rng = np.random.default_rng(colour_shift)
    folder.mkdir(parents=True)
    for i in range(n):
        rgb = np.clip(rng.normal(120 + colour_shift, 30, (24, 24, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(rgb).save(folder / f"rgb_{i}.jpg")
    base = Image.fromarray(np.clip(rng.normal(120 + colour_shift, 30, (24, 24, 3)), 0, 255).astype(np.uint8))
    base.convert("L").save(folder / "grey.png")
    base.convert("P").save(folder / "palette.png")
    base.convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray((np.asarray(base.convert("L"), dtype=np.uint16) * 257)).save(folder / "sixteen.png")


def test_medical_folder_streams_every_image_mode_and_skips_a_corrupt_file(registry, tmp_path, monkeypatch):
    root = tmp_path / "derm"
    _mode_images(root / "benign", 40, 0)
    _mode_images(root / "malignant", 40, 60)
    (root / "malignant" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    monkeypatch.setenv("TRANSFERLAB_MEDICAL_DIR", str(root))
    data = load_task_data(registry, "medical_folder")
    assert data.class_names == ("benign", "malignant")
    assert data.provenance["skipped"] == 1 and len(data) == 2 * 44
    job = make_job(registry, task="medical_folder", backbone="small_cnn", strategy="scratch", fraction=1.0,
                   input_size=16, epochs=1, augment=False)
    result = Runner(registry).run(job)
    assert result.manifest["n_train"] + result.manifest["n_val"] + result.manifest["n_test"] == len(data)


# ------------------------------------------------------------------------------------------ road signs

@pytest.fixture
def gtsrb_dir(tmp_path, monkeypatch):
    from support_datasets import write_gtsrb_fixture

    root = write_gtsrb_fixture(tmp_path / "gtsrb", classes=range(6), per_class=12, n_test=30, seed=1)
    monkeypatch.setenv("TRANSFERLAB_GTSRB_DIR", str(root))
    return root


def test_road_signs_crop_to_roi_or_keep_the_frame(registry, gtsrb_dir):
    cropped = load_task_data(registry, "road_signs")
    _TASK_DATA.clear()
    full = load_task_data(registry, "road_signs_full")
    assert isinstance(cropped.images, ImageFiles) and cropped.images.rois is not None
    assert full.images.rois is None
    assert np.array_equal(cropped.images.paths, full.images.paths)
    assert len(cropped.test_indices) == 30 and len(cropped.class_names) == 43


def test_road_signs_train_streaming_through_the_runner(registry, gtsrb_dir):
    job = make_job(registry, task="road_signs", backbone="small_cnn", strategy="scratch", fraction=1.0,
                   input_size=24, epochs=3, batch_size=16)
    result = Runner(registry).run(job)
    assert result.manifest["n_test"] == 30
    assert result.manifest["provenance"]["crop"] == "sign box"
    assert np.array(result.confusion).sum() == 30


def test_gtsrb_download_extracts_the_three_official_archives_and_checks_them(registry, tmp_path, monkeypatch):
    import zipfile

    import keras

    from support_datasets import write_gtsrb_fixture

    src = write_gtsrb_fixture(tmp_path / "src", classes=range(3), per_class=4, n_test=6)
    cache = tmp_path / "keras-cache"
    cache.mkdir()
    layout = {"GTSRB_Final_Training_Images.zip": ("Final_Training", "GTSRB/"),
              "GTSRB_Final_Test_Images.zip": ("Final_Test", "GTSRB/"), "GTSRB_Final_Test_GT.zip": ("GT-final_test.csv", "")}
    for archive, (member, prefix) in layout.items():  # the official archives' layout
        with zipfile.ZipFile(cache / archive, "w") as bundle:
            paths = [src / member] if (src / member).is_file() else sorted((src / member).rglob("*"))
            for path in paths:
                bundle.write(path, prefix + str(path.relative_to(src)))
    fetched = []

    def fake_get_file(fname, origin, cache_subdir):  # what keras.utils.get_file returns after a download
        fetched.append(origin)
        return str(cache / fname)

    monkeypatch.setattr(keras.utils, "get_file", fake_get_file)
    monkeypatch.delenv("TRANSFERLAB_GTSRB_DIR", raising=False)
    data = load_task_data(registry, "road_signs")
    assert len(fetched) == 3 and len(data.test_indices) == 6 and len(data) == 3 * 4 + 6
    assert (cache / "GTSRB_Final_Test_GT.zip.sha256").is_file()
    _TASK_DATA.clear()
    with zipfile.ZipFile(cache / "GTSRB_Final_Test_GT.zip", "a") as bundle:  # altered after the download
        bundle.writestr("extra.txt", "x")
    with pytest.raises(UserError, match="changed since it was downloaded"):
        load_task_data(registry, "road_signs")


def test_missing_gtsrb_says_urls_layout_and_setting(registry, tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_GTSRB_DIR", str(tmp_path / "nothing-here"))
    with pytest.raises(DatasetUnavailableError) as err:
        load_task_data(registry, "road_signs")
    text = str(err.value)
    assert "GTSRB_Final_Training_Images.zip" in text and "GTSRB_Final_Test_GT.zip" in text
    assert "Final_Training/Images" in text and "TRANSFERLAB_GTSRB_DIR" in text


# ------------------------------------------------------------------------------------------ detection

def test_detection_canvases_are_deterministic_with_boxes(registry):
    data = load_task_data(registry, "animal_detection")
    assert data.images.shape[1:] == (128, 128, 3) and len(data.targets) == len(data)
    boxes, classes = data.targets[0]
    assert boxes.shape[1] == 4 and 1 <= len(classes) <= 4 and data.labels[0] == classes[0]
    _TASK_DATA.clear()
    again = load_task_data(registry, "animal_detection")
    assert np.array_equal(again.images[:20], data.images[:20])
    assert len(data.test_indices) == len(data) // 5 and "no training canvas uses" in data.provenance["test"]


def test_shuffled_labels_are_refused_for_detection(registry):
    with pytest.raises(UserError, match="no labels to shuffle"):
        make_job(registry, task="animal_detection", backbone="small_cnn", strategy="scratch", shuffled_labels=True)


@pytest.mark.slow  # a learning check (about a minute on 2 cores); CI's fast set keeps the plugin's smoke runs
def test_detection_map_rises_above_the_untrained_model(registry):
    import keras

    from transferlab.runner import feature_map

    task = registry.task("animal_detection")
    head = task.task_head
    job = make_job(registry, task="animal_detection", backbone="small_cnn", strategy="scratch",
                   examples_per_class=30, input_size=64, epochs=6, batch_size=32)
    data = load_task_data(registry, "animal_detection")
    splits = make_splits(data)

    keras.utils.set_random_seed(0)
    base = registry.backbone("small_cnn").build((64, 64, 3), None)
    inputs = keras.Input((64, 64, 3))
    untrained = keras.Model(inputs, head.outputs(feature_map(base, "small_cnn")(inputs), 10, job))
    images = np.asarray(keras.ops.image.resize(data.images[splits.test].astype("float32"), (64, 64))) / 255.0
    before, _ = head.score(untrained.predict(images, verbose=0), data, splits.test, job)

    epochs = []
    result = Runner(registry, log_epoch=lambda e, p, m, s: epochs.append(m)).run(job)
    assert result.manifest["metric"] == "map50" and "ap_per_class" in result.metrics
    assert all("val_map50" in m for m in epochs)
    assert result.score > before + 0.05, (before, result.score)


def test_detection_refuses_what_it_cannot_do(registry):
    with pytest.raises(UserError, match="feature_extraction"):
        make_job(registry, task="animal_detection", backbone="small_cnn", strategy="frozen_features")
    with pytest.raises(UserError, match="augment"):
        make_job(registry, task="animal_detection", backbone="small_cnn", strategy="scratch", augment=True)


def _voc_fixture(root):
    base = root / "VOC2007"
    (base / "Annotations").mkdir(parents=True)
    (base / "JPEGImages").mkdir()
    (base / "ImageSets" / "Main").mkdir(parents=True)
    objects = {"000001": [("dog", (48, 240, 195, 371), 0), ("person", (8, 12, 352, 498), 1)],
               "000002": [("train", (139, 200, 207, 301), 0)],
               "000003": [("cat", (10, 10, 100, 100), 0), ("car", (120, 30, 200, 90), 0)]}
    for name, objs in objects.items():
        Image.new("RGB", (353, 500), (90, 90, 90)).save(base / "JPEGImages" / f"{name}.jpg")
        xml = "".join(
            f"<object><name>{c}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
            f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for c, b, d in objs)
        (base / "Annotations" / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.jpg</filename><size><width>353</width><height>500</height>"
            f"<depth>3</depth></size>{xml}</annotation>")
    (base / "ImageSets" / "Main" / "test.txt").write_text("000003\n")
    return root


def test_voc_folder_reads_boxes_normalised_without_difficult(tmp_path):
    from transferlab.plugins.object_detection import VOC_CLASSES, read_voc_folder

    data = read_voc_folder(_voc_fixture(tmp_path / "VOCdevkit"))
    assert len(data) == 3 and list(data.test_indices) == [2]
    boxes, classes = data.targets[0]
    assert [VOC_CLASSES[c] for c in classes] == ["dog"]  # the difficult person is left out
    assert np.allclose(boxes[0], [47 / 353, 239 / 500, 195 / 353, 371 / 500])
    assert isinstance(data.images, ImageFiles)


def test_voc_folder_with_an_unknown_class_names_it(tmp_path):
    from transferlab.plugins.object_detection import read_voc_folder

    root = _voc_fixture(tmp_path / "VOCdevkit")
    path = root / "VOC2007" / "Annotations" / "000002.xml"
    path.write_text(path.read_text().replace("<name>train</name>", "<name>unicorn</name>"))
    with pytest.raises(UserError, match="unicorn"):
        read_voc_folder(root)


# ------------------------------------------------------------------------------------------ NLP

def test_tweets_load_from_the_installed_csv(registry):
    data = load_task_data(registry, "sentiment_tweets")
    assert data.modality == "text" and data.class_names == ("negative", "neutral", "positive")
    assert 36_000 < len(data) < 38_158  # duplicates dropped
    assert len(set(data.texts)) == len(data)
    assert len(data.test_indices) == 1500
    assert np.bincount(data.labels).min() > 5000


@pytest.mark.parametrize("content, message", [
    ("label,text\npositive,great\n", "lacks column"),
    ("sentiment,text\npositive,great\nvery happy,meh\n", "unknown label"),
])
def test_tweet_csv_errors(tmp_path, content, message):
    from transferlab.plugins.text_sentiment import read_sentiment_csv

    path = tmp_path / "t.csv"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        read_sentiment_csv(path)


def test_text_task_refuses_an_image_backbone(registry):
    with pytest.raises(UserError, match="minilm-l6"):
        make_job(registry, task="sentiment_tweets", backbone="vgg16", strategy="scratch")


def test_tokenizer_pads_and_masks():
    from transferlab.plugins.text_sentiment import tokenize

    out = tokenize("minilm-l6", ["good", "a much longer sentence than the first one"], 8)
    assert out["token_ids"].shape == (2, 8) and out["token_ids"].dtype == np.int32
    assert out["padding_mask"][0].sum() == 3 and out["padding_mask"][1].sum() == 8  # [CLS] good [SEP]


@pytest.mark.slow  # a learning check (about a minute on 2 cores); CI's fast set keeps the plugin's smoke runs
def test_frozen_minilm_learns_sentiment(registry):
    job = make_job(registry, task="sentiment_tweets", backbone="minilm-l6", weights="sentence-pairs",
                   strategy="frozen_features", examples_per_class=30, input_size=48)
    result = Runner(registry).run(job)
    assert result.phases[0]["trainable_params"] == 384 * 3 + 3
    assert result.balanced_accuracy > 0.45  # chance is 1/3


@pytest.mark.slow  # builds MiniLM twice (about 50 s on 2 cores); the freeze of top-k layers is tested fast on the tiny backbone
def test_fine_tune_top_k_trains_only_the_top_transformer_layers(registry):
    job = make_job(registry, task="sentiment_tweets", backbone="minilm-l6", weights="sentence-pairs",
                   strategy="fine_tune_top_k", fine_tune_layers=1, examples_per_class=4, input_size=16, epochs=1,
                   fine_tune_epochs=1)
    result = Runner(registry).run(job)
    head, top = result.phases
    layer_params = 4 * (384 * 384 + 384) + 2 * 384 * 2 + (384 * 1536 + 1536) + (1536 * 384 + 384)
    assert top["trainable_params"] - head["trainable_params"] == layer_params
    assert top["changed_params"] == top["trainable_params"]  # the freeze check saw exactly these change


# ------------------------------------------------------------------------------------------ multimodal stub

def test_stub_is_listed_as_stub_and_refuses_to_run(registry):
    task = registry.task("multimodal_stub")
    assert task.stub and not task.available()
    with pytest.raises(UserError, match="stub") as err:
        make_job(registry, task="multimodal_stub", backbone="small_cnn", strategy="scratch")
    assert "paired image-text dataset" in str(err.value)
    health = {h["name"]: h for h in registry.health()}
    assert health["transferlab.plugins.multimodal_stub"]["registered"] == {"task": ["multimodal_stub (stub)"]}


def test_stub_joint_model_builds_from_registered_encoders(registry):
    from transferlab.plugins.multimodal_stub import build_joint_model

    image = registry.backbone("tiny").build((16, 16, 3), None)
    text = registry.backbone("minilm-l6").build((8,), None)
    model = build_joint_model(image, text, num_classes=4, image_size=16, sequence_length=8)
    out = model({"image": np.zeros((2, 16, 16, 3), "float32"), "token_ids": np.ones((2, 8), "int32"),
                 "padding_mask": np.ones((2, 8), "int32")})
    assert tuple(out.shape) == (2, 4)


@pytest.mark.slow
def test_frozen_minilm_beats_tfidf_at_100_tweets_per_class(registry):
    from transferlab.data import sample_subset
    from transferlab.plugins.text_sentiment import tfidf_baseline

    data = load_task_data(registry, "sentiment_tweets")
    splits = make_splits(data)
    encoder, baseline = [], []
    for seed in (0, 1, 2):
        train = sample_subset(data.labels, splits.pool, seed, 100)
        baseline.append(tfidf_baseline(data, train, splits.test, seed)["accuracy"])
        job = make_job(registry, task="sentiment_tweets", backbone="minilm-l6", weights="sentence-pairs",
                       strategy="frozen_features", examples_per_class=100, seed=seed)
        encoder.append(Runner(registry).run(job).score)
    assert np.mean(encoder) > np.mean(baseline), (encoder, baseline)


def test_fashion_detection_composes_canvases_from_fashion_mnist(registry, monkeypatch):
    from transferlab.data import TaskData
    from transferlab.plugins import image_tasks

    rng = np.random.default_rng(0)
    garments = np.zeros((200, 28, 28), np.uint8)
    garments[:, 6:22, 8:20] = rng.integers(60, 255, (200, 16, 12))  # bright garments on black, as in the set
    fake = TaskData(images=garments, labels=np.arange(200) % 10, class_names=image_tasks.FASHION_MNIST_CLASSES,
                    provenance={"source": "test"})
    monkeypatch.setattr(image_tasks, "load_fashion_mnist", lambda: fake)
    data = load_task_data(registry, "fashion_detection")
    assert data.class_names == image_tasks.FASHION_MNIST_CLASSES and len(data.targets) == len(data)
    assert "garments no training canvas uses" in data.provenance["test"]
