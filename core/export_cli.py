"""``transferlab export`` and ``transferlab predict``: the command-line side of :mod:`transferlab.export`
and :mod:`transferlab.predict` (the parsers live in :mod:`transferlab.cli`)."""
from __future__ import annotations

import dataclasses
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from transferlab.errors import UserError


def _registry():
    from transferlab.registry import get_registry

    return get_registry()


def rerun_and_keep(store: Any, registry: Any, run_id: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Train run ``run_id``'s job again, exactly as stored, in this process, and keep its model (reason
    ``asked``, marked ``rerun`` in model.json: not the stored run's own weights); the stored run's results stay
    as they are. Returns the kept model's record (model.json) and the re-run's compact test predictions (what
    its export is checked against)."""
    from transferlab.executor import weights_resolver
    from transferlab.jobs import JobSpec
    from transferlab.models import keep
    from transferlab.runner import Runner

    job = dataclasses.replace(JobSpec.from_json(store.get(run_id)["spec_json"]), keep_model=True)
    # a namespace of its own: a re-run trains from the start, never from a checkpoint an interrupted run left
    runner = Runner(registry, weights_file=weights_resolver(store),
                    checkpoint_namespace=f"rerun-{uuid.uuid4().hex[:8]}")
    result = runner.run(job)
    return keep(store, registry, job, result, "asked", rerun=True), result.predictions


def cmd_export(args) -> int:
    """``transferlab export RUN_ID --format F ... --out DIR [--rerun]``. Every refusal (run, formats, --out,
    a model not kept without --rerun) comes before TensorFlow is imported."""
    from transferlab.export import check_export, export_run, format_files
    from transferlab.models import load_kept
    from transferlab.models_cli import megabytes
    from transferlab.store import Store

    registry = _registry()
    store = Store()
    run, _, formats = check_export(store, registry, args.run_id, args.format, args.out)
    rerun = bool(getattr(args, "rerun", False))
    if rerun and store.model(args.run_id) is not None:
        print(f"Run {args.run_id}'s model is kept; exporting it (nothing is re-run).")
        rerun = False
    if not rerun and store.model(args.run_id) is None:
        load_kept(store, args.run_id)  # raises NotKeptError, which offers --rerun
    from transferlab.progress import import_tensorflow_quietly

    import_tensorflow_quietly()
    expected = None
    if rerun:
        print(f"Re-running run {args.run_id} ({run['task']} · {run['backbone']} · {run['strategy']}) to keep its "
              "weights; the stored run is not changed.")
        start = time.perf_counter()
        kept, expected = rerun_and_keep(store, registry, args.run_id)
        print(f"  re-run finished in {time.perf_counter() - start:.0f} s: score of these weights {kept['score']:.3f} "
              f"(stored run: {run['score']:.3f}, {run.get('metric') or 'accuracy'})")
    record = export_run(store, registry, args.run_id, formats, args.out, expected=expected)
    if args.format and "all" in args.format:
        from transferlab.export import available_formats

        skipped = [f"{name} ({why})" for name, why in available_formats().items() if why is not None]
        if skipped:
            print("Skipped with --format all: " + "; ".join(skipped))
    out = Path(args.out)
    print(f"Exported run {args.run_id} to {out}:")
    for name in record["formats"]:
        size = sum(record["files"][path]["bytes"] for path in format_files(record, name))
        print(f"  {name:<12} {record['format_files'][name]:<14} {megabytes(size):>9}  "
              f"{record['export_seconds'][name]:6.1f} s")
    print("  + labels.txt, model-card.md, export.json (sha256 of every file)")
    check = record["reproduction"]
    if check.get("checked") and check.get("agreement") is not None:
        print(f"Checked on {check['images']} test images at their own size: accuracy {check['accuracy']:.3f}, "
              f"the trained model's top class on {check['agreement']:.1%}.")
    elif check.get("checked"):
        from transferlab.model_card import check_text

        print(f"Checked on all {check['images']} test images at their own size: {check_text(check)}.")
    else:
        print(f"Not checked on test images: {check.get('why')}")
    print(f"Try it: transferlab predict {out} IMAGE...")
    return 0


def cmd_predict(args) -> int:
    """``transferlab predict MODEL_DIR IMAGE... [--top 3] [--json] [--format F]``."""
    from transferlab.predict import load_export, read_images, top_k

    top = int(getattr(args, "top", 3) or 3)
    if top < 1:
        raise UserError(f"--top must be a whole number >= 1. Received: --top={top}")
    if not args.images:
        raise UserError("Give one or more image files to predict.")
    images = read_images(args.images)  # all decoded before anything is predicted or printed
    if "tensorflow" not in sys.modules:
        from transferlab.progress import import_tensorflow_quietly

        import_tensorflow_quietly()
    model = load_export(args.model_dir, getattr(args, "format", None), registry=None)
    rows = top_k(model.probabilities(images), model.class_names, top)
    notes = trust_notes(model.format)
    if getattr(args, "json", False):
        print(json.dumps({"model": str(args.model_dir), "run_id": model.record.get("run_id"), "format": model.format,
                          "predictions": [{"image": str(path), "top": row} for path, row in zip(args.images, rows)],
                          "notes": notes}, indent=2))
        return 0
    k = len(rows[0]) if rows else top
    cells = [[str(path)] + [f"{c['label']} {c['probability']:.3f}" for c in row] for path, row in zip(args.images, rows)]
    header = ["image"] + [f"top {i}" for i in range(1, k + 1)]
    widths = [max(len(r[i]) for r in [header, *cells]) for i in range(len(header))]
    print(f"run {model.record.get('run_id')} · {model.format}")
    for line in [header, ["-" * w for w in widths], *cells]:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())
    for note in notes:
        print(f"note: {note}")
    return 0


def trust_notes(format_name: str) -> list[str]:
    """What ``predict`` tells about trusting the files it ran: the sha256 check proves them intact, not their
    maker; a SavedModel runs its own TensorFlow graph ops."""
    notes = [f"the {format_name} files match their sha256 in export.json: they are intact as exported; that does not "
             "show who exported them."]
    if format_name == "saved_model":
        notes.append("a SavedModel runs the TensorFlow graph ops it contains (they can read and write files): "
                     "for an export from someone else, prefer --format tflite or keras.")
    return notes
