"""The ``transferlab`` command line. User errors print one message and exit with status 2."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Sequence

from transferlab.errors import TransferlabError, UserError

TABLE_STRATEGY_CLASSES = 10
#: what a reused phase is, under `transferlab runs` and on the Inspect page
REUSED_NOTE = ("reused: trained once by an identical run prefix (same backbone, weights, data, subset, seed, head, "
               "epochs, learning rate) and loaded, not trained again.")
#: what `transferlab predict --help` says about folders from elsewhere
PREDICT_TRUST = ("export.json's sha256 shows the files are intact, not who made them; a SavedModel runs its graph: "
                 "prefer tflite or keras for files from others.")


def _positive_int(text: str) -> int:
    """argparse type: an int >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1. Received: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1. Received: {value}")
    return value


def _csv_list(text: str | None, cast=str) -> list[Any] | None:
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    try:
        return [cast(t) for t in items]
    except ValueError:
        raise UserError(f"Expected a comma-separated list of {cast.__name__}s. Received: {text!r}") from None


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """``rows`` as a plain-text table of ``columns`` (a header, a rule, one line per row, each column as wide as
    its widest cell; a missing value reads ``-``), for the commands that print tables."""
    rows = [{k: ("-" if v is None else v) for k, v in r.items()} for r in rows]
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) if rows else len(c) for c in columns}
    line = "  ".join(c.ljust(widths[c]) for c in columns)
    out = [line, "  ".join("-" * widths[c] for c in columns)]
    out += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(out)


def _registry():
    from transferlab.registry import get_registry

    return get_registry()


# -------------------------------------------------------------------------------------------- commands

def cmd_plugins(args) -> int:
    health = _registry().health()
    if args.json:
        print(json.dumps(health, indent=2))
        return 0

    def one_line(text: str, width: int = 60) -> str:  # a table cell; --json has the output whole
        flat = " | ".join(line.strip() for line in text.splitlines() if line.strip())
        return flat if len(flat) <= width else flat[: width - 3] + "..."

    rows = [dict(name=h["name"], version=h["version"], hooks=",".join(h["hooks"]),
                 registered="; ".join(f"{k}: {', '.join(v)}" for k, v in h["registered"].items()),
                 status=h["status"], error=h["error"] or "", output=one_line(h["output"])) for h in health]
    print(table(rows, ["name", "version", "hooks", "registered", "status", "error", "output"]))
    return 0


def cmd_tasks(args) -> int:
    from transferlab.registry import availability_label

    reg = _registry()
    rows = [dict(name=t.name, kind=t.kind, classes=t.num_classes or "from data", offline=availability_label(t, "yes", "no"),
                 stub="STUB" if t.stub else "", plugin=reg.owner[("task", t.name)], description=t.description)
            for t in reg.tasks.values()]
    print(table(rows, ["name", "kind", "classes", "offline", "stub", "plugin", "description"]))
    return 0


def cmd_strategies(args) -> int:
    reg = _registry()
    rows = [dict(name=s.name, phases=" -> ".join(p.describe() for p in s.phases),
                 batchnorm=s.batchnorm, baseline="random init" if s.random_init else "",
                 plugin=reg.owner[("strategy", s.name)], description=s.description)
            for s in reg.strategies.values()]
    print(table(rows, ["name", "phases", "batchnorm", "baseline", "plugin", "description"]))
    return 0


def backbone_table(registry, names: list[str] | None = None, fine_tune_layers: int = 20) -> list[dict[str, Any]]:
    """Parameter counts of each backbone (with a 10-class head) under every strategy, built with no weights.

    A backbone whose build (or count) raises gets a row of its own with the ``error`` and no counts, and the
    others are still built: one plugin's broken backbone does not take the table down.
    """
    import keras

    from transferlab.isolation import short_error
    from transferlab.registry import safe_available
    from transferlab.runner import count_params, freeze_for_phase, input_shape, model_inputs, model_weights

    def weight_label(source) -> str:
        available = safe_available(source)
        note = "" if available is True else " (online)" if available is False else f" (unknown: {available})"
        return source.name + note

    rows = []
    for spec in registry.backbones.values():
        if names and spec.name not in names:
            continue
        size = spec.default_input_size
        row = dict(backbone=spec.name, modality=spec.modality, total_params=None, min_input=spec.min_input_size,
                   default_input=size, imagenet_top1=spec.imagenet_top1, published_params=spec.published_params,
                   weights=",".join(["none"] + [weight_label(w) for w in spec.weight_sources]), error=None)
        trainable = [f"trainable:{strategy}" for strategy in registry.strategies]
        row.update(dict.fromkeys(trainable))
        try:
            base = spec.build(input_shape(spec, size), None)
            inputs = model_inputs(spec, base, size)
            blocks = spec.blocks(base) if spec.blocks is not None else None
            model = keras.Model(inputs, keras.layers.Dense(TABLE_STRATEGY_CLASSES)(base(inputs, training=False)))
            row["total_params"] = count_params(model_weights(model))
            for strategy in registry.strategies.values():
                phase = strategy.phases[-1]
                freeze_for_phase(base, phase, fine_tune_layers, strategy.batchnorm_of(phase), blocks)
                row[f"trainable:{strategy.name}"] = count_params(model.trainable_weights)
        except Exception as exc:  # plugin code: its failure belongs in its own row
            row.update(dict.fromkeys(["total_params", *trainable]), error=f"build failed: {short_error(exc)}")
        finally:
            keras.backend.clear_session()
        rows.append(row)
    return rows


def cmd_backbones(args) -> int:
    from transferlab.latency import latency_lookup, measure_latency, record_latencies
    from transferlab.progress import bar, import_tensorflow_quietly

    import_tensorflow_quietly()

    reg = _registry()
    names = _csv_list(args.only) or list(reg.backbones)
    for name in names:
        reg.backbone(name)  # an unknown name fails here, before anything is built
    with bar("building backbones", total=len(names), unit="model") as progress:
        rows = []
        for name in names:
            rows += backbone_table(reg, [name], args.fine_tune_layers)
            progress.update(1)
    if args.measure:
        built = {row["backbone"] for row in rows if row["error"] is None}  # a broken build has nothing to time
        image = [n for n in names if reg.backbone(n).modality == "image" and n in built]
        with bar("timing one-image forward passes", total=len(image), unit="model") as progress:
            measured = []
            for name in image:
                measured.append(measure_latency(reg.backbone(name), "none", repeats=args.repeats))
                progress.update(1)
        record_latencies(measured)
    latency = latency_lookup()
    for row in rows:
        row["latency_ms"] = round(latency[row["backbone"]], 1) if row["backbone"] in latency else None
    frozen = _frozen_accuracy_rows(reg)
    if args.json:
        print(json.dumps(dict(backbones=rows, frozen_accuracy=frozen), indent=2, default=str))
        return 0
    strategy_cols = [c for c in rows[0] if c.startswith("trainable:")] if rows else []
    print(f"Parameter counts with a {TABLE_STRATEGY_CLASSES}-class head; trainable under each strategy's last phase "
          f"(fine_tune_top_k: top {args.fine_tune_layers} layers). '(online)': downloads on first use. "
          "latency_ms: median CPU time of one image at the default input size, measured on this machine "
          + ("now." if args.measure else "(`--measure` to time them; '—': not measured here)."))
    print(table([{k: ("—" if v is None else v) for k, v in row.items()} for row in rows],
                ["backbone", "total_params", *strategy_cols, "min_input", "default_input", "imagenet_top1",
                 "latency_ms", "weights", *(["error"] if any(row["error"] for row in rows) else [])]))
    if frozen:
        print("\nFrozen-feature accuracy in the store (test score, mean ± 95 % CI over seeds; best frozen strategy):")
        print(table(frozen, list(frozen[0])))
    return 0


def _frozen_accuracy_rows(registry) -> list[dict[str, Any]]:
    """The store's frozen-feature results as rows for the backbones table (empty when there are none)."""
    from transferlab.analysis import summarize
    from transferlab.backbone_study import frozen_accuracy, frozen_accuracy_table
    from transferlab.errors import StoreError
    from transferlab.paths import default_store_url
    from transferlab.store import Store

    try:  # read only: listing backbones never creates a store, and a store it cannot open costs only this section
        runs = Store(read_only=True).runs_frame()
    except StoreError as exc:
        from transferlab.progress import say
        from transferlab.redact import redact_url

        say(f"(frozen-feature accuracy left out: the store at {redact_url(default_store_url())} cannot be read: "
            f"{str(exc).splitlines()[0][:200]})")
        return []
    if runs.empty:
        return []
    summary = summarize(runs, baselines=registry.baseline_strategies())
    frozen = frozen_accuracy_table(frozen_accuracy(summary, registry.frozen_strategies()))
    return frozen.to_dict("records")


def _job_options(args) -> dict[str, Any]:
    """The job options given as flags, converted and range-checked by :func:`transferlab.jobs.parse_field`
    (a bad value raises :class:`~transferlab.jobs.JobFieldError` naming the field)."""
    from transferlab.jobs import parse_field

    options = {}
    for name in ("input_size", "epochs", "fine_tune_epochs", "batch_size", "learning_rate", "fine_tune_learning_rate",
                 "fine_tune_layers", "class_weight", "fraction", "min_steps", "early_stopping"):
        value = getattr(args, name, None)
        if value is not None:
            options[name] = parse_field(name, value)
    if getattr(args, "augment", None) is not None:
        options["augment"] = args.augment  # --no-augment overrides a task's default (medical images augment)
    for flag in ("mixed_precision", "xla"):
        if getattr(args, flag, False):
            options[flag] = True
    if getattr(args, "keep_models", False):
        options["keep_model"] = True
    return options


def _execute(jobs, workers: int, executor: str = "local", address: str | None = None) -> int:
    """Run jobs its caller has already put through ``check_before_queueing``, then print the summary."""
    from transferlab.analysis import format_summary, summarize
    from transferlab.store import Store

    store = Store()
    if executor == "ray":
        from transferlab.ray_executor import run_jobs_ray

        counts = run_jobs_ray(jobs, store, address=address, checked=True)
    else:
        from transferlab.executor import run_jobs

        counts = run_jobs(jobs, store, workers=workers, checked=True)
    from transferlab.executor import unfinished_report

    frame = store.runs_frame(run_id=[j.job_id for j in jobs])
    unfinished = unfinished_report(frame)
    if unfinished:  # never a table that looks complete while runs of this sweep are missing from it
        done = int((frame["status"] == "succeeded").sum())
        print(f"PARTIAL RESULTS: {done} of {len(frame)} runs succeeded; the others are listed below the table.")
    print(format_summary(summarize(frame)))
    print("status: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    for line in unfinished:
        print(line)
    for line in _keep_wish_lines(store, jobs, frame):
        print(line)
    return 1 if unfinished else 0


def _keep_wish_lines(store, jobs, frame) -> list[str]:
    """For jobs asked to keep their model (``--keep-models``) whose run succeeded: one kept already as the best
    of its group is kept as asked from now on (:func:`transferlab.models.mark_asked`: a better run or
    ``transferlab gc`` leaves it), and one that had succeeded before without it (a succeeded run is never run
    again, so its weights are gone) is named with how to get them. A line for each, when there are any."""
    from transferlab.models import mark_asked

    asked = {j.job_id for j in jobs if j.keep_model}
    done = set(frame.loc[frame["status"] == "succeeded", "run_id"]) & asked
    lines = []
    marked = mark_asked(store, done)
    if marked:
        lines.append(f"KEPT AS ASKED: {len(marked)} of the runs asked to keep their model had it kept already as the "
                     f"best of its group; now it is kept as asked, so a better run or `transferlab gc` leaves it: "
                     f"{_first_few(marked)}.")
    missing = sorted(run_id for run_id in done if store.model(run_id) is None)
    if missing:
        lines.append(f"NOT KEPT: {len(missing)} of the runs asked to keep their model had succeeded before without "
                     f"it (a succeeded run is not run again): {_first_few(missing)}. `transferlab export RUN_ID "
                     "--rerun` re-runs one with its model kept.")
    return lines


def _first_few(run_ids: list[str], shown: int = 5) -> str:
    """``a, b, c`` or ``a, ..., e and 3 more``."""
    more = len(run_ids) - shown
    return ", ".join(run_ids[:shown]) + (f" and {more} more" if more > 0 else "")


def _data_task(registry, data: str | None, tasks: Any, flag: str) -> str | None:
    """The task made from ``--data`` (registered in ``registry``), or None without it. ``tasks`` is what
    ``flag`` (``--task``, ``--tasks``, a sweep file's ``tasks``) gave: with --data it is not needed, and
    both at once is refused."""
    if data is None:
        return None
    if tasks:
        raise UserError(f"Give --data or {flag}, not both: --data makes its own task (e.g. data.my_images), so "
                        f"{flag} is not needed. Received: --data={data!r}, {flag}={tasks!r}.")
    from transferlab.userdata import resolve_data

    try:
        return resolve_data(registry, data).name
    except UserError as exc:
        raise UserError(f"--data: {exc}") from None


def _print_data_splits(registry, jobs) -> None:
    """For each task made from --data among ``jobs``: its version, size and per-class split sizes, before
    anything trains (the data is loaded already, by the checks)."""
    from transferlab.data import load_task_data
    from transferlab.userdata import describe_splits

    for name in dict.fromkeys(job.task for job in jobs):
        task = registry.task(name)
        if task.data is not None:
            print(describe_splits(task, load_task_data(registry, name)))


def cmd_run(args) -> int:
    from transferlab.jobs import JobFieldError, check_before_queueing, flag_names, parse_field, parse_workers
    from transferlab.sweeps import expand_grid

    registry = _registry()
    task = _data_task(registry, args.data, args.task, "--task") or args.task
    try:
        workers = parse_workers("1" if args.workers is None else args.workers, args.executor)
        grid = dict(tasks=[task], backbones=[args.backbone], strategies=[args.strategy], weights=[args.weights],
                    examples_per_class=(None if args.examples_per_class is None
                                        else [parse_field("examples_per_class", args.examples_per_class)]),
                    seeds=[parse_field("seed", args.seed)], sources=[args.source] if args.source else None)
        jobs = expand_grid(registry, grid, _job_options(args))
        check_before_queueing(registry, jobs)
    except JobFieldError as exc:
        raise UserError(exc.render(flag_names())) from None
    if args.workers is None and len(jobs) == 1:
        workers = 0  # one job: in this process, without a second TensorFlow import in a worker
    _print_data_splits(registry, jobs)
    return _execute(jobs, workers, args.executor, args.address)


def cmd_sweep(args) -> int:
    from transferlab.jobs import JobFieldError, check_before_queueing, flag_names, parse_field, parse_workers
    from transferlab.sweeps import AXIS_FIELDS, SWEEP_CONFIRM_LIMIT, expand_plan, load_sweep_file, plan_sweep

    registry = _registry()
    # A message names a value as it was given: --seeds for a flag, seeds in the sweep file.
    flags = flag_names()
    flags.update({name: "--" + axis.replace("_", "-") for axis, field in AXIS_FIELDS.items() for name in (axis, field)})
    from_file = {field: axis for axis, field in AXIS_FIELDS.items()}
    grid, options = load_sweep_file(args.file) if args.file else ({}, {})
    given = set()
    try:
        workers = parse_workers("1" if args.workers is None else args.workers, args.executor)
        if args.jobs:
            from transferlab.launch import read_jobs_file

            jobs = read_jobs_file(args.jobs)
            if args.keep_models:
                import dataclasses

                jobs = [dataclasses.replace(job, keep_model=True) for job in jobs]
            check_before_queueing(registry, jobs)
            _print_data_splits(registry, jobs)
            return _execute(jobs, workers, args.executor, args.address)
        listed = dict(tasks=args.tasks, backbones=args.backbones, weights=args.weights, strategies=args.strategies,
                      examples_per_class=args.examples_per_class, seeds=args.seeds, sources=args.sources)
        for axis, text in listed.items():
            if text is not None:
                given |= {axis, AXIS_FIELDS[axis]}
                grid[axis] = [parse_field(AXIS_FIELDS[axis], t.strip()) for t in text.split(",") if t.strip()]
        data_task = _data_task(registry, args.data, args.tasks or grid.get("tasks"),
                               "--tasks" if args.tasks else f"tasks in {args.file}")
        if data_task is not None:
            grid["tasks"] = [data_task]
            given |= {"tasks", "task"}
        given |= {name for name in flags if getattr(args, name, None) is not None}
        options.update(_job_options(args))
        plan = plan_sweep(registry, grid, options, skip="weights")
        print(plan.describe())
        if plan.jobs > SWEEP_CONFIRM_LIMIT and not args.yes:
            if args.dry_run:
                print(f"More than {SWEEP_CONFIRM_LIMIT:,} jobs: not listed. Add --yes to list them.")
                return 0
            raise UserError(f"This sweep makes {plan.jobs:,} jobs, more than the {SWEEP_CONFIRM_LIMIT:,} that run "
                            "without confirmation. Add --yes to run them all, or narrow the grid.")
        jobs = expand_plan(registry, plan)
        if args.dry_run:
            for job in jobs:
                print(job.job_id, job.label())
            print(f"{len(jobs)} jobs")
            return 0
        check_before_queueing(registry, jobs)
    except JobFieldError as exc:
        if args.file and exc.field not in given:
            raise UserError(f"Sweep file {args.file}: {exc.render(from_file)}") from None
        raise UserError(exc.render(flags)) from None
    _print_data_splits(registry, jobs)
    return _execute(jobs, workers, args.executor, args.address)


def cmd_runs(args) -> int:
    from transferlab.convergence import training_notes
    from transferlab.store import CSV_COLUMNS, Store

    store = Store()
    store.mark_stale()
    frame = store.runs_frame(task=args.task, status=args.status, strategy=args.strategy, backbone=args.backbone)
    if not args.all:
        frame = frame[frame["kind"] == "train"] if not frame.empty else frame
    reused = [reused_phases(p) for p in frame["phases_json"]] if "phases_json" in frame else [[]] * len(frame)
    if args.csv:
        table = frame.reindex(columns=CSV_COLUMNS)
        # the phases loaded from another run, space-separated (a column of its own, after the store's)
        table["reused"] = [" ".join(names) for names in reused]
        table.to_csv(sys.stdout, index=False)
        return 0
    if frame.empty and args.json:
        print("[]")
        return 0
    if frame.empty:
        from transferlab.demo import DEMOS

        print(f"No runs in the store yet. Try `transferlab demo --quick` (about {DEMOS['quick'].minutes} minutes).")
        return 0
    view = frame.reindex(columns=["run_id", "task", "data_version", "backbone", "weights", "strategy",
                                  "examples_per_class", "seed", "status", "score", "metric", "trainable_params",
                                  "wall_seconds"])
    view["metric"] = view["metric"].fillna("accuracy").where(view["status"] == "succeeded", "")
    view["trainable_params"] = view["trainable_params"].astype("Int64")  # counts, not floats (NaN while queued)
    view["training"] = training_notes(frame)  # ↗ still improving, converged, no learning signal
    view["data_version"] = view["data_version"].fillna("-")  # data without a fingerprint, or runs from before
    if args.json:
        view["reused"] = reused
        print(json.dumps(json.loads(view.to_json(orient="records")), indent=2))
        return 0
    view["reused"] = [",".join(names) for names in reused]
    print(view.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if any(reused):
        print(REUSED_NOTE)
    return 0


def reused_phases(phases_json: Any) -> list[str]:
    """The names of a run's phases whose trained head was reused from another run (``reused: true`` in its phase
    records), in order; empty for a run without phases, with unreadable ones, or from before reuse."""
    from transferlab.run_diff import parse_json

    phases = phases_json if isinstance(phases_json, list) else parse_json(phases_json, [])
    return [str(p.get("phase", "?")) for p in phases if isinstance(p, dict) and p.get("reused") is True]


def cmd_demo(args) -> int:
    from transferlab.demo import DEMOS, demo_jobs
    from transferlab.jobs import JobFieldError, check_before_queueing, flag_names, parse_field, parse_workers

    if args.quick and args.backbones:
        raise UserError("Give --quick or --backbones, not both: --quick is the short strategies demo (one size, one "
                        "seed, three configurations), --backbones the backbone demo. Received: --quick --backbones.")
    which = "quick" if args.quick else "backbones" if args.backbones else "strategies"
    demo = DEMOS[which]
    registry = _registry()
    names = dict(flag_names(), examples_per_class="--sizes", seed="--seeds", seeds="--seeds")
    try:  # the same checks as a sweep, before the store is opened: nothing is stored for a bad flag
        workers = parse_workers(demo.workers if args.workers is None else args.workers, args.executor)
        sizes = [parse_field("examples_per_class", t.strip()) for t in args.sizes.split(",") if t.strip()] \
            if args.sizes else None
        seeds = [parse_field("seed", t.strip()) for t in args.seeds.split(",") if t.strip()] if args.seeds else None
        jobs = demo_jobs(registry, sizes=sizes, seeds=seeds, which=which)
        check_before_queueing(registry, jobs)
    except JobFieldError as exc:
        raise UserError(exc.render(names)) from None
    print(demo_intro(demo, jobs))
    return _execute(jobs, workers, args.executor, args.address)


def demo_intro(demo, jobs) -> str:
    """The line ``transferlab demo`` prints before it starts: which demo (its flag), how many runs on which tasks,
    and its measured minutes on 2 CPU cores."""
    pretrains = len([j for j in jobs if j.kind == "pretrain"])
    return (f"{demo.command} ({demo.name}): {len([j for j in jobs if j.kind == 'train'])} runs on "
            f"{', '.join(demo.tasks)}" + (f" (+{pretrains} source pretraining jobs)" if pretrains else "")
            + f"; about {demo.minutes} minutes on 2 CPU cores at the default sizes and seeds")


def _lazy(module: str, name: str):
    """``module.name``, imported when the command runs (the parser stays free of TensorFlow and pandas)."""
    import importlib

    return getattr(importlib.import_module(module), name)


# -------------------------------------------------------------------------------------------- parser

def _add_job_options(p: argparse.ArgumentParser) -> None:
    # Numbers arrive as text and are converted and range-checked in transferlab.jobs, so that a bad value
    # gives one message naming the flag (argparse's own type errors print the usage first).
    p.add_argument("--input-size", dest="input_size",
                   help="pixels, or tokens for text (default: the task's, else the backbone's)")
    p.add_argument("--epochs", help="head-stage epochs (default 10)")
    p.add_argument("--fine-tune-epochs", dest="fine_tune_epochs", help="fine-tune-stage epochs (default 5)")
    p.add_argument("--batch-size", dest="batch_size", help="default 32")
    p.add_argument("--learning-rate", dest="learning_rate", help="head-stage learning rate (default 1e-3)")
    p.add_argument("--fine-tune-learning-rate", dest="fine_tune_learning_rate", help="default 1e-5")
    p.add_argument("--fine-tune-layers", dest="fine_tune_layers", help="top k layers for fine_tune_top_k (default 20)")
    p.add_argument("--class-weight", dest="class_weight", metavar="{none,balanced}",
                   help="balanced: weight classes by inverse frequency (default: the task's; none for most)")
    p.add_argument("--fraction", help="training-set size as a fraction of the pool (instead of examples per class)")
    p.add_argument("--min-steps", dest="min_steps",
                   help="each phase trains at least this many optimizer steps: its epochs are raised to fit "
                        "(default 0)")
    p.add_argument("--early-stopping", dest="early_stopping", metavar="PATIENCE",
                   help="stop a phase PATIENCE epochs after its best validation loss, once its --min-steps are done, "
                        "and keep that epoch's weights (default 0: off); where --min-steps needs as many epochs as "
                        "--epochs or more, the phase may run 10 x PATIENCE epochs past them")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="rotation, shift, flip and zoom augmentation (default: the task's; off for most)")
    p.add_argument("--mixed-precision", dest="mixed_precision", action="store_true",
                   help="float16 compute (for GPUs; slower on most CPUs)")
    p.add_argument("--xla", action="store_true", help="compile with XLA (for GPUs; off by default, slow on CPU)")
    p.add_argument("--keep-models", dest="keep_models", action="store_true",
                   help="keep every run's trained model (default: only the best run of each task, data version and "
                        "size keeps it); a run that succeeded before is not run again for it")
    p.add_argument("--workers", help="worker processes (default 1, and 0 for `run` of a single job: a worker would "
                                     "import TensorFlow a second time, about 5 s; 0 runs in this process)")
    p.add_argument("--executor", default="local", metavar="{local,ray}",
                   help="local worker processes (default) or a Ray cluster (pip install 'transferlab[ray]')")
    p.add_argument("--address", help="Ray cluster address (default: start a local Ray instance)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``transferlab`` command."""
    parser = argparse.ArgumentParser(prog="transferlab", description="Compare transfer-learning strategies and backbones.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("plugins", help="plugin health table")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plugins)
    sub.add_parser("tasks", help="registered tasks").set_defaults(func=cmd_tasks)
    sub.add_parser("strategies", help="registered strategies").set_defaults(func=cmd_strategies)

    p = sub.add_parser("backbones", help="backbones with parameter counts under each strategy")
    p.add_argument("--json", action="store_true")
    p.add_argument("--only", help="comma-separated backbone names")
    p.add_argument("--fine-tune-layers", dest="fine_tune_layers", type=int, default=20)
    p.add_argument("--measure", action="store_true",
                   help="time each image backbone on this machine (one image per call) and keep the figures")
    p.add_argument("--repeats", type=_positive_int, default=20, help="timed calls per backbone with --measure")
    p.set_defaults(func=cmd_backbones)

    p = sub.add_parser("run", help="run one job")
    source = p.add_mutually_exclusive_group(required=True)  # --data makes its own task: --task is not needed
    source.add_argument("--data", help="your data: a folder of class folders, a CSV of path,label, or "
                                       "tfds:NAME[:split] (instead of --task)")
    source.add_argument("--task", help="a registered task (see `transferlab tasks`)")
    p.add_argument("--backbone", required=True)
    p.add_argument("--strategy", required=True)
    p.add_argument("--weights", default="none", help="none, a weight source (e.g. imagenet) or PATH.weights.h5")
    p.add_argument("--examples-per-class", dest="examples_per_class")
    p.add_argument("--seed", default="0")
    p.add_argument("--source", help="pretrain the backbone on TASK or TASK:shuffled first, then transfer")
    _add_job_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("sweep", help="run a grid of jobs (flags or --file sweep.toml); resumable")
    p.add_argument("--file", help="TOML file with [grid] and [options] tables")
    p.add_argument("--jobs", help="JSON list of job specs (as the dashboard writes them)")
    p.add_argument("--data", help="your data: a folder of class folders, a CSV of path,label, or tfds:NAME[:split] "
                                  "(instead of --tasks)")
    for axis in ("tasks", "backbones", "weights", "strategies", "sources"):
        p.add_argument(f"--{axis}", help="comma-separated")
    p.add_argument("--examples-per-class", dest="examples_per_class", help="comma-separated ints")
    p.add_argument("--seeds", help="comma-separated ints")
    p.add_argument("--dry-run", action="store_true", help="list the jobs without running them")
    p.add_argument("--yes", action="store_true", help="run a sweep of more than 2,000 jobs without asking")
    _add_job_options(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("runs", help="list stored runs")
    listing = p.add_mutually_exclusive_group()
    listing.add_argument("--csv", action="store_true")
    listing.add_argument("--json", action="store_true", help="the table's rows as JSON (reused: a list of phases)")
    p.add_argument("--all", action="store_true", help="include source-pretraining runs")
    for column in ("task", "status", "strategy", "backbone"):
        p.add_argument(f"--{column}")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("rank", help="rank backbones by the transferability of their frozen features, before training",
                       epilog="Features are cached, so ranking again costs only the scores. A training run reuses "
                              "them only in a narrow case: a frozen run of the same pair at the ranking's input size "
                              "(64 px by default, below most training sizes), seed 0, and --examples-per-class equal "
                              "to max-images // classes; any other run extracts its own features.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="your data: a class-folder tree, a CSV of path,label, or tfds:NAME[:split]")
    source.add_argument("--task", help="a registered task instead of --data")
    p.add_argument("--backbones", help="comma-separated NAME (its offline weights) or NAME:WEIGHTS (none: random init) "
                                       "(default: every image backbone with weights available offline, and random "
                                       "init of the one with the fewest parameters as a control)")
    p.add_argument("--max-images", dest="max_images", default="1000",
                   help="training-pool images scored, stratified as a job's subset at seed 0 (default 1000)")
    p.add_argument("--input-size", dest="input_size",
                   help="pixels (default: the task's default input size, else the backbones' smallest, capped at 64)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=lambda args: _lazy("transferlab.ranking_text", "cmd_rank")(args))

    p = sub.add_parser("recommend", help="the verdict: which configuration wins per task and training-set size")
    p.add_argument("--task", help="one task (default: every task with runs)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=lambda args: _lazy("transferlab.verdict_text", "cmd_recommend")(args))

    formats = ["keras", "saved_model", "tflite", "onnx"]
    p = sub.add_parser("export", help="export a run's kept model with its preprocessing, labels and model card")
    p.add_argument("run_id", help="a run id (see `transferlab runs`)")
    p.add_argument("--format", action="append", choices=[*formats, "all"], default=None,
                   help="repeat for several; all: every format usable here (default: keras)")
    p.add_argument("--out", required=True, help="a folder that does not exist yet")
    p.add_argument("--rerun", action="store_true",
                   help="for a run whose model was not kept: re-run exactly that job with its model kept, then export")
    p.set_defaults(func=lambda args: _lazy("transferlab.export_cli", "cmd_export")(args))

    p = sub.add_parser("predict", help="run an exported model on image files: labels with probabilities",
                       epilog=PREDICT_TRUST)
    p.add_argument("model_dir", help="a folder written by `transferlab export`")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--top", type=_positive_int, default=3, help="labels shown per image (default 3)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--format", choices=formats, default=None,
                   help="which exported format to run (default: the first the folder holds)")
    p.set_defaults(func=lambda args: _lazy("transferlab.export_cli", "cmd_predict")(args))

    p = sub.add_parser("models", help="kept models: run, reason, score, size, and the disk they take")
    p.set_defaults(func=lambda args: _lazy("transferlab.models_cli", "cmd_models")(args))
    p = sub.add_parser("gc", help="remove kept models no page needs (neither the best of their group nor asked for)")
    p.add_argument("--dry-run", dest="dry_run", action="store_true", help="only list what would be removed")
    p.set_defaults(func=lambda args: _lazy("transferlab.models_cli", "cmd_gc")(args))

    p = sub.add_parser("demo", help="the embedded offline comparison on Animal-MNIST (~11 min on 2 cores; "
                                    "--quick: under 2 min)")
    p.add_argument("--workers", help="worker processes (default 2)")
    p.add_argument("--executor", choices=["local", "ray"], default="local")
    p.add_argument("--address", help="Ray cluster address")
    p.add_argument("--sizes", help="examples per class, comma-separated (default 5,20,100; 10,50 with --backbones; "
                                   "20 with --quick)")
    p.add_argument("--seeds", help="comma-separated (default 0,1,2; 0 with --quick)")
    p.add_argument("--quick", action="store_true",
                   help="the strategies demo in about 2 minutes on 2 cores: one size (20 per class), one seed, "
                        "scratch, frozen and head-then-fine-tune with smaller caps; real runs")
    p.add_argument("--backbones", action="store_true",
                   help="the backbone demo instead: the offline ImageNet ladder, a MedMNIST source and random init, "
                        "frozen and fine-tuned, on Animal-MNIST and ELPV solar cells (~33 min on 2 cores)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, run, and turn user errors into one message with exit status 2."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    from transferlab.fingerprints import forget_data_versions

    forget_data_versions()  # each command fingerprints the data as it is when it starts (in-process callers too)
    try:
        status = args.func(args)
        sys.stdout.flush()  # inside the try: a reader that left (`| head`) is caught below, not at exit
        return status
    except UserError as exc:
        print(f"transferlab: error: {exc}", file=sys.stderr)
        return 2
    except TransferlabError as exc:
        print(f"transferlab: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("transferlab: interrupted; finished runs are kept, `transferlab sweep` resumes.", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `transferlab runs | head`: the reader left; say nothing more (Python docs' recipe)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
