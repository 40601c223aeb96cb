"""``transferlab models`` (the kept models and the disk they take) and ``transferlab gc`` (remove the ones no
page needs)."""
from __future__ import annotations

from typing import Any


def megabytes(size: Any) -> str:
    """Bytes as ``12.3 MB`` (decimal megabytes, as disks are sold)."""
    return f"{int(size or 0) / 1e6:,.1f} MB"


def run_label(row: Any) -> str:
    """A kept model's run as ``task/backbone/weights/strategy/size/seed`` (the job's own label), or ``-`` for a
    run that is not in the store any more."""
    from transferlab.jobs import JobSpec

    spec = row.get("spec_json")
    if not isinstance(spec, str):
        return "-"
    try:
        return JobSpec.from_json(spec).label()
    except (TypeError, ValueError):
        return "-"


def _score(row: Any) -> str:
    score, metric = row["score"], row["metric"]
    if score is None or score != score:  # None or NaN
        return "-"
    return f"{score:.3f} {metric if isinstance(metric, str) else ''}".strip()


def cmd_models(args) -> int:
    """List the kept models: run, label, reason, score, size, and the total."""
    from transferlab.models import kept_frame
    from transferlab.store import Store

    frame = kept_frame(Store())
    if frame.empty:
        print("No kept models. The best run of each task, data version and size keeps its model when it finishes; "
              "`transferlab run --keep-models` or `sweep --keep-models` keeps every run's.")
        return 0
    rows = [dict(run_id=row["run_id"], run=run_label(row), reason=row["reason"], score=_score(row),
                 size=megabytes(row["bytes"])) for _, row in frame.iterrows()]
    from transferlab.cli import table

    print(table(rows, ["run_id", "run", "reason", "score", "size"]))
    print(f"{_count(len(rows), 'kept model')}, {megabytes(frame['bytes'].sum())} in all. `transferlab gc` removes those no page "
          "needs (neither the best of their group nor asked for).")
    return 0


def cmd_gc(args) -> int:
    """Remove the kept models :func:`transferlab.models.needed` does not name (``--dry-run``: only list them)."""
    from transferlab.models import gc
    from transferlab.store import Store

    report = gc(Store(), dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for run_id in report["removed"]:
        print(f"{verb} kept model {run_id} (neither the best of its group nor asked for)")
    for run_id in report["missing"]:
        print(f"{'would forget' if args.dry_run else 'forgot'} kept model {run_id}: its files were gone")
    for name in report["leftovers"]:
        print(f"{verb} {name}: left by an interrupted keep")
    count, stay = len(report["removed"]) + len(report["leftovers"]), len(report["kept"])
    print(f"{'Would free' if args.dry_run else 'Freed'} {megabytes(report['freed_bytes'])} ({_count(count, 'folder')}); "
          f"{_count(stay, 'kept model')} {'stays' if stay == 1 else 'stay'} ({megabytes(report['kept_bytes'])})."
          + (" Run without --dry-run to remove them." if args.dry_run and count else ""))
    return 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
