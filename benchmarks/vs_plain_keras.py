"""One job through ``transferlab run`` against the same job as a plain Keras script, as whole processes.

For each mode, N pairs of whole processes, timed from spawn to exit and alternated (the first of each
pair swaps, so the machine's drift hits both alike): (a) ``transferlab run ...`` (the CLI; one job runs in
the command's own process by default) and (b) ``python benchmarks/plain_keras_job.py MODE ...``. Each process gets a
fresh, empty ``TRANSFERLAB_HOME``: no cached features and no converted Lite0 weights on either side (both
convert the packaged checkpoint once, about a second). Target: median transferlab / median plain <= 1.10,
same test accuracy.

The same on both sides: the Animal-MNIST images, the fixed split and the training subset (checked: the
run's manifest ``subset_indices_sha`` / ``test_indices_sha`` against the script's), input size,
preprocessing, model (backbone, Dropout 0.2 + Dense softmax head, features scaled to unit RMS for
``frozen``), Adam, batch size, learning rates, epochs (fixed: ``min_steps`` and ``early_stopping`` 0, the job
defaults; checked against each phase's ``epochs_run``), the seed (``keras.utils.set_random_seed``), a
validation pass each epoch and one pass over the test split.

Not the same, and part of what the ratio measures: transferlab also loads its plugins and checks the job
before queueing it, writes the run to its store, computes the LogME transferability of the starting
backbone's features over the training subset (for ``lp_ft`` and ``scratch`` an extra forward pass), writes
the feature cache, snapshots and checks which weights each phase changed (the freeze check), backs up each
epoch and checkpoints each phase, computes balanced accuracy, macro F1, the confusion matrix and the test
predictions, keeps the best run's model, and writes it all to its SQLite store. The data pipelines differ
in form (tf.data with a cache and a seeded shuffle, against numpy arrays shuffled by ``fit``), so the two
sides see the same images in different orders: accuracies agree up to that.

``TRANSFERLAB_REUSE`` and other ``TRANSFERLAB_*`` settings in this environment pass to the transferlab
processes (``TRANSFERLAB_REUSE=off`` for today's runner as a baseline).

Usage: ``python benchmarks/vs_plain_keras.py [--modes frozen,lp_ft,scratch] [--pairs 3] [--quick]``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _util import machine, report

HERE = Path(__file__).resolve().parent
PLAIN = HERE / "plain_keras_job.py"

#: per mode: transferlab's backbone, weights and strategy
STRATEGIES = {
    "frozen": ("efficientnet_lite0", "imagenet", "frozen_features"),
    "lp_ft": ("efficientnet_lite0", "imagenet", "lp_ft"),
    "scratch": ("small_cnn", "none", "scratch"),
}
_COMMON = dict(batch_size=32, learning_rate=1e-3, seed=0)
#: the issue's configurations (fine-tune fields are passed but unused by one-phase strategies)
CONFIGS = {
    "frozen": dict(examples_per_class=100, input_size=96, epochs=10, fine_tune_epochs=5,
                   fine_tune_learning_rate=1e-5, **_COMMON),
    "lp_ft": dict(examples_per_class=20, input_size=96, epochs=8, fine_tune_epochs=3,
                  fine_tune_learning_rate=1e-4, **_COMMON),
    "scratch": dict(examples_per_class=100, input_size=32, epochs=30, fine_tune_epochs=5,
                    fine_tune_learning_rate=1e-5, **_COMMON),
}
#: --quick: the same code paths at tiny sizes, to check the script end to end
QUICK = {
    "frozen": dict(CONFIGS["frozen"], examples_per_class=10, input_size=64, epochs=2),
    "lp_ft": dict(CONFIGS["lp_ft"], examples_per_class=5, input_size=64, epochs=2, fine_tune_epochs=1),
    "scratch": dict(CONFIGS["scratch"], examples_per_class=10, epochs=3),
}


def flags(config: dict) -> list[str]:
    """``config`` as command-line flags (``--examples-per-class 100 ...``), the same on both sides."""
    out = []
    for name, value in config.items():
        out += [f"--{name.replace('_', '-')}", str(value)]
    return out


def transferlab_command(mode: str, config: dict, workers: str | None) -> list[str]:
    """The ``transferlab run`` command line of ``mode``."""
    backbone, weights, strategy = STRATEGIES[mode]
    exe = Path(sys.executable).parent / "transferlab"
    cli = [str(exe)] if exe.is_file() else [sys.executable, "-c", "from transferlab.cli import main; main()"]
    command = [*cli, "run", "--task", "animal_mnist", "--backbone", backbone, "--weights", weights,
               "--strategy", strategy, *flags(config)]
    return command + (["--workers", workers] if workers is not None else [])


def timed_process(command: list[str], home: str) -> tuple[float, str]:
    """Run ``command`` with ``TRANSFERLAB_HOME=home``; its wall time from spawn to exit and its stdout."""
    env = {k: v for k, v in os.environ.items() if k != "TRANSFERLAB_STORE"}
    env.update(TRANSFERLAB_HOME=home, TRANSFERLAB_QUIET="1", TF_CPP_MIN_LOG_LEVEL="2")
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=HERE.parent, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])} ... failed (exit {done.returncode}):\n{done.stderr[-3000:]}"
                         f"\n{done.stdout[-2000:]}")
    return seconds, done.stdout


def stored_run(home: str) -> dict:
    """The one training run in the store of ``home``: score, wall seconds, manifest and phases."""
    from transferlab.store import Store

    store = Store(f"sqlite:///{Path(home) / 'runs.sqlite'}", read_only=True)
    try:
        frame = store.runs_frame()
        frame = frame[frame["kind"] == "train"]
        if len(frame) != 1 or frame.iloc[0]["status"] != "succeeded":
            raise SystemExit(f"Expected one succeeded run in the store; found: {frame[['run_id', 'status']].to_dict('records')}")
        row = store.get(frame.iloc[0]["run_id"])
    finally:
        store.engine.dispose()
    return dict(score=float(row["score"]), wall_seconds=float(row["wall_seconds"]),
                manifest=json.loads(row["manifest_json"] or "{}"), phases=json.loads(row["phases_json"] or "[]"))


def expected_epochs(mode: str, config: dict) -> list[int]:
    """The epochs each phase of ``mode`` must run (fixed: no early stopping)."""
    return [config["epochs"], config["fine_tune_epochs"]] if mode == "lp_ft" else [config["epochs"]]


def one_pair(mode: str, config: dict, plain_first: bool, workers: str | None) -> dict:
    """One transferlab process and one plain process of ``mode``, in the order given; their figures."""
    out: dict = {}
    for side in (("plain", "transferlab") if plain_first else ("transferlab", "plain")):
        home = tempfile.mkdtemp(prefix=f"transferlab-bench-plain-{side}-")
        try:
            if side == "plain":
                seconds, stdout = timed_process([sys.executable, str(PLAIN), mode, *flags(config)], home)
                line = json.loads(stdout.strip().splitlines()[-1])
                out["plain"] = dict(seconds=seconds, in_process=line["seconds_in_process"],
                                    accuracy=line["test_accuracy"], subset=line["subset_indices_sha"],
                                    test=line["test_indices_sha"])
            else:
                seconds, _ = timed_process(transferlab_command(mode, config, workers), home)
                run = stored_run(home)
                epochs_run = [p.get("epochs_run", p["epochs"]) for p in run["phases"]]
                if epochs_run != expected_epochs(mode, config):
                    raise SystemExit(f"{mode}: transferlab ran {epochs_run} epochs per phase, the plain script "
                                     f"{expected_epochs(mode, config)}: not the same work.")
                out["transferlab"] = dict(seconds=seconds, in_process=run["wall_seconds"], accuracy=run["score"],
                                          subset=run["manifest"].get("subset_indices_sha"),
                                          test=run["manifest"].get("test_indices_sha"),
                                          stages=run["manifest"].get("stage_seconds"),
                                          reused=[p["phase"] for p in run["phases"] if p.get("reused")],
                                          on_features=[p["phase"] for p in run["phases"] if p.get("on_features")])
        finally:
            shutil.rmtree(home, ignore_errors=True)
    tl, plain = out["transferlab"], out["plain"]
    if (tl["subset"], tl["test"]) != (plain["subset"], plain["test"]):
        raise SystemExit(f"{mode}: the two sides trained or tested on different images "
                         f"(subset {tl['subset']} vs {plain['subset']}, test {tl['test']} vs {plain['test']}).")
    return out


def describe(mode: str, config: dict) -> str:
    """One line naming the job of ``mode``."""
    backbone, weights, strategy = STRATEGIES[mode]
    phases = (f"{config['epochs']}+{config['fine_tune_epochs']} epochs, lr {config['learning_rate']:g} then "
              f"{config['fine_tune_learning_rate']:g}") if mode == "lp_ft" else \
        f"{config['epochs']} epochs, lr {config['learning_rate']:g}"
    return (f"{mode}: {backbone}/{weights}/{strategy}, Animal-MNIST {config['examples_per_class']}/class, "
            f"{config['input_size']} px, batch {config['batch_size']}, {phases}, seed {config['seed']}")


def main(argv: list[str] | None = None) -> None:
    """Parse the flags, run the pairs, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default=",".join(CONFIGS), help="comma-separated, of frozen, lp_ft, scratch")
    parser.add_argument("--pairs", type=int, default=None, help="process pairs per mode (default 3; 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and epochs: checks the script end to end")
    parser.add_argument("--workers", default=None,
                        help="pass --workers to transferlab run (default: the CLI's own default)")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in CONFIGS]
    if unknown:
        parser.error(f"unknown mode(s) {unknown}; choose from {', '.join(CONFIGS)}")
    pairs = args.pairs if args.pairs is not None else (1 if args.quick else 3)
    configs = QUICK if args.quick else CONFIGS

    print(f"transferlab run vs plain Keras, whole processes, on {machine()}"
          + (" (--quick: tiny sizes, not the figures)" if args.quick else ""))
    for mode in modes:
        config = configs[mode]
        print(describe(mode, config), flush=True)
        results = [one_pair(mode, config, plain_first=bool(i % 2), workers=args.workers) for i in range(pairs)]
        for i, r in enumerate(results, 1):
            tl, plain = r["transferlab"], r["plain"]
            extra = ""
            if tl["stages"]:
                extra += "  stages " + ", ".join(f"{k} {v:.1f}" for k, v in tl["stages"].items())
            if tl["on_features"] or tl["reused"]:
                extra += f"  on_features {tl['on_features']} reused {tl['reused']}"
            print(f"  pair {i}: transferlab {tl['seconds']:.1f} s (run {tl['in_process']:.1f} s inside), "
                  f"plain {plain['seconds']:.1f} s ({plain['in_process']:.1f} s inside); "
                  f"accuracy {tl['accuracy']:.4f} vs {plain['accuracy']:.4f}{extra}")
        tl_s = statistics.median(r["transferlab"]["seconds"] for r in results)
        plain_s = statistics.median(r["plain"]["seconds"] for r in results)
        tl_acc = statistics.median(r["transferlab"]["accuracy"] for r in results)
        plain_acc = statistics.median(r["plain"]["accuracy"] for r in results)
        report(f"  {mode} whole process (median of {pairs})", tl_s, plain_s, "s", "<= 1.10")
        print(f"  {mode} test accuracy (median): transferlab {tl_acc:.4f}, plain {plain_acc:.4f} "
              f"(difference {tl_acc - plain_acc:+.4f})", flush=True)


if __name__ == "__main__":
    main()
