"""Sweeps: grids of jobs, from flags or a TOML file, counted and checked before they are made.

:func:`plan_sweep` validates one job per (task, backbone, weights, strategy, source) cell and counts the
jobs as that times the sizes and seeds, so a grid of a million combinations is sized in milliseconds and
refused or confirmed before any job exists; :func:`expand_plan` then makes the jobs.
"""
from __future__ import annotations

import itertools
import math
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from transferlab.errors import UserError
from transferlab.jobs import JOB_OPTIONS, JobFieldError, JobSpec, backbone_offers, check_field, literal, make_job
from transferlab.registry import Registry

AXES = ("tasks", "backbones", "weights", "strategies", "examples_per_class", "seeds", "sources")
#: the job field each sweep axis sets
AXIS_FIELDS = {"tasks": "task", "backbones": "backbone", "weights": "weights", "strategies": "strategy",
               "examples_per_class": "examples_per_class", "seeds": "seed", "sources": "source"}
SOURCE_PRETRAIN_EPOCHS = 5
#: a sweep with more jobs than this runs only when confirmed (``--yes``, or a checkbox in the dashboard)
SWEEP_CONFIRM_LIMIT = 2000
#: how a sweep treats a combination that does not fit: refuse the sweep, skip a (backbone, weights) pair
#: the backbone does not offer (and fine-tuning from random init, see :func:`untrained_batchnorm`), or skip
#: any combination that does not fit (the dashboard's grid)
SKIP_MODES = ("none", "weights", "unfit")


def untrained_batchnorm(strategy: Any) -> bool:
    """Whether ``strategy``, started from random init, trains the base with BatchNorm in inference mode.

    Its BatchNorm layers then normalise with statistics never estimated (mean 0, variance 1), so activations
    are not normalised at all: in EfficientNet-Lite0 they shrink to 1e-11 and the gradients reaching the base
    to 1e-14, and the run ends with ``no_learning_signal`` in its fine-tuning phase. A sweep that may skip
    combinations skips these (the strategy that declares random init is the random-init baseline); a single
    job asked for by name still runs. The test reads the strategy only, so a backbone without BatchNorm is
    skipped too: knowing would mean building every backbone of the grid (TensorFlow, seconds each) while the
    plan is sized in milliseconds, and the skip reason says so.
    """
    return (not strategy.random_init and not strategy.cached_features
            and any(p.trains_base and strategy.batchnorm_of(p) == "inference" for p in strategy.phases))


def _untrained_batchnorm_reason(registry: Registry, strategies: list[str]) -> str:
    baselines = ", ".join(s.name for s in registry.select("strategy", random_init=True)) or "a random-init strategy"
    return (f"{', '.join(strategies)} from random init (weights 'none'): fine-tuning with BatchNorm in inference "
            f"mode on statistics never estimated, little or no learning signal reaches the base ({baselines} is "
            "the random-init baseline); skipped for every backbone of the grid, with BatchNorm or not (the plan "
            "does not build backbones to look): `transferlab run` one by name to train it anyway")


def parse_source(registry: Registry, source: str) -> tuple[str, bool]:
    """``"digits"`` or ``"animal_mnist:shuffled"`` -> (source task, shuffled labels)."""
    check_field("source", source)
    task, _, modifier = source.partition(":")
    if modifier not in ("", "shuffled"):
        raise JobFieldError("source", source, "A {source} is TASK or TASK:shuffled.")
    registry.task(task)
    return task, modifier == "shuffled"


def pretrain_job(registry: Registry, target: JobSpec, source: str, pretrain_epochs: int) -> JobSpec:
    """The job that pretrains ``target``'s backbone from random weights on the source task (all its pool),
    with the first registered strategy that declares random init."""
    task, shuffled = parse_source(registry, source)
    baselines = registry.select("strategy", random_init=True)
    if not baselines:
        raise UserError(f"Pretraining on source {source!r} needs a strategy that declares random_init=True, and none "
                        "is registered. Install or enable a plugin that provides one (the built-in strategies do).")
    return make_job(
        registry,
        kind="pretrain",
        task=task,
        backbone=target.backbone,
        strategy=baselines[0].name,
        seed=target.seed,
        input_size=target.input_size,
        epochs=pretrain_epochs,
        batch_size=target.batch_size,
        learning_rate=target.learning_rate,
        shuffled_labels=shuffled,
    )


@dataclass(frozen=True)
class SweepPlan:
    """What a sweep grid makes, worked out without making every job.

    ``axes``: each axis's values, duplicates removed; ``combinations``: the product of the axis lengths;
    ``cells``: the (task, backbone, weights, strategy, source) cells that fit; ``skipped``: one line per
    reason a cell was left out, and ``skipped_combinations`` how many combinations that removed; ``jobs``
    (``pretrain`` of them source pretraining): the jobs the grid makes, duplicates merged (a strategy that
    trains from random init ignores the weights axis and the sources).
    """

    axes: dict[str, list[Any]]
    options: dict[str, Any]
    pretrain_epochs: int
    cells: tuple[tuple[Any, ...], ...]
    skipped: tuple[str, ...]
    skipped_combinations: int
    jobs: int
    pretrain: int

    @property
    def combinations(self) -> int:
        """The product of the axis lengths."""
        return math.prod(len(values) for values in self.axes.values())

    def describe(self) -> str:
        """One paragraph: the grid's size, what was skipped and why, and the jobs it makes."""
        sizes = " × ".join(f"{len(v)} {_AXIS_WORDS[axis][len(v) != 1]}" for axis, v in self.axes.items())
        text = f"{self.combinations:,} combinations ({sizes})"
        if self.skipped:
            text += f", {self.skipped_combinations:,} skipped: " + "; ".join(self.skipped)
        pretrain = f" ({self.pretrain:,} source pretraining)" if self.pretrain else ""
        return text + f". {self.jobs:,} jobs{pretrain}."


_AXIS_WORDS = {"tasks": ("task", "tasks"), "backbones": ("backbone", "backbones"), "weights": ("weights", "weights"),
               "strategies": ("strategy", "strategies"), "examples_per_class": ("size", "sizes"),
               "seeds": ("seed", "seeds"), "sources": ("source", "sources")}


def _axes(grid: Any) -> dict[str, list[Any]]:
    """The grid's axes as lists with duplicates removed and defaults filled in; bad shapes refused."""
    if not isinstance(grid, Mapping):
        raise UserError(f"A sweep grid must be a table of axes {list(AXES)}. Received: grid={grid!r}")
    unknown = sorted(set(grid) - set(AXES))
    if unknown:
        raise UserError(f"Unknown sweep axis {unknown}. Valid axes: {list(AXES)}")
    for axis, values in grid.items():
        if values is not None and not isinstance(values, (list, tuple)):
            example = literal(repr(values))
            raise JobFieldError(axis, values, f"Sweep axis {{{axis}}} must be a list, e.g. {axis} = [{example}].")
    axes = {}
    for axis in AXES:
        if grid.get(axis) is not None and len(grid[axis]) == 0:
            default = {"weights": " ['none']", "seeds": " [0]", "sources": " ['none']",
                       "examples_per_class": " (the whole pool, or the task's cap)"}.get(axis, "")
            raise JobFieldError(axis, [], f"Sweep axis {{{axis}}} is empty. Give at least one value, or leave the axis "
                                          f"out for its default{literal(default)}.")
        values = list(grid.get(axis) or [])
        for value in values:
            if value is None and axis == "examples_per_class":
                continue
            if isinstance(value, (list, tuple, dict)):
                raise JobFieldError(axis, values, f"Sweep axis {{{axis}}} must be a flat list of values.")
            check_field(AXIS_FIELDS[axis], value)
        axes[axis] = list(dict.fromkeys(values))  # duplicates would only repeat jobs
    for axis in ("tasks", "backbones", "strategies"):
        if not axes[axis]:
            raise JobFieldError(axis, list(grid.get(axis) or []), f"A sweep needs at least one entry in {{{axis}}}.")
    axes["weights"] = axes["weights"] or ["none"]
    axes["examples_per_class"] = axes["examples_per_class"] or [None]
    axes["seeds"] = axes["seeds"] or [0]
    axes["sources"] = axes["sources"] or ["none"]
    return axes


def _cell_jobs(registry: Registry, cell: tuple[Any, ...], options: dict[str, Any], pretrain_epochs: int,
               epc: Any, seed: Any) -> tuple[JobSpec, JobSpec | None]:
    """The job of one cell at one size and seed, and its pretrain job (or None)."""
    task, backbone, weights, strategy, source = cell
    fields = dict(options, task=task, backbone=backbone, strategy=strategy, examples_per_class=epc, seed=seed)
    if source in (None, "none") or registry.strategy(strategy).random_init:
        # a random-init strategy has no use for a source: it runs as the plain job
        return make_job(registry, weights=weights, **fields), None
    base = make_job(registry, **fields)
    pre = pretrain_job(registry, base, source, pretrain_epochs)
    return make_job(registry, weights=f"run:{pre.job_id}", source=source, depends_on=(pre.job_id,), **fields), pre


def plan_sweep(registry: Registry, grid: Mapping[str, Any], options: Mapping[str, Any] | None = None,
               skip: str = "none") -> SweepPlan:
    """Check a sweep grid and count its jobs without making them all: one job per (task, backbone, weights,
    strategy, source) cell is made and validated, and the count is that times the sizes and seeds.

    ``skip`` (:data:`SKIP_MODES`): ``none`` refuses the sweep at the first cell that does not fit;
    ``weights`` skips (backbone, weights) pairs the backbone does not offer and strategies that would fine-tune
    from random init with untrained BatchNorm statistics (:func:`untrained_batchnorm`; the command line);
    ``unfit`` skips those and every other cell that does not fit (the dashboard's grid). Skipped cells are
    listed once per reason.
    """
    if skip not in SKIP_MODES:
        raise ValueError(f"skip must be one of {SKIP_MODES}. Received: skip={skip!r}")
    options = dict(options or {})
    pretrain_epochs = check_field("pretrain_epochs", options.pop("pretrain_epochs", SOURCE_PRETRAIN_EPOCHS))
    axes = _axes(grid)
    epc0, seed0 = axes["examples_per_class"][0], axes["seeds"][0]
    per_cell = len(axes["examples_per_class"]) * len(axes["seeds"])
    cells, skipped, skipped_cells, trains, pretrains = [], {}, 0, set(), set()
    untrained: dict[str, None] = {}  # strategies skipped from random init, in grid order
    for cell in itertools.product(*(axes[a] for a in ("tasks", "backbones", "weights", "strategies", "sources"))):
        task, backbone, weights, strategy, source = cell
        uses_weights = source in (None, "none") or registry.strategy(strategy).random_init
        if skip != "none" and uses_weights and not backbone_offers(registry, backbone, weights):
            offered = ", ".join(["none"] + [w.name for w in registry.backbone(backbone).weight_sources])
            skipped.setdefault(f"backbone {backbone} has no weight source {weights!r} (it offers {offered})", 0)
            skipped_cells += per_cell
            continue
        if (skip != "none" and source in (None, "none") and weights in (None, "none")
                and untrained_batchnorm(registry.strategy(strategy))):
            untrained.setdefault(strategy)
            skipped_cells += per_cell
            continue
        try:
            job, pre = _cell_jobs(registry, cell, options, pretrain_epochs, epc0, seed0)
        except UserError as exc:
            if skip != "unfit" or isinstance(exc, JobFieldError):
                raise  # a field out of range is wrong for every cell: say so, never skip it
            skipped.setdefault(f"{task} × {backbone} × {strategy}: {exc}", 0)
            skipped_cells += per_cell
            continue
        cells.append(cell)
        trains.add(job.job_id)
        if pre is not None:
            pretrains.add(pre.job_id)
    if untrained:
        skipped.setdefault(_untrained_batchnorm_reason(registry, list(untrained)), 0)
    if not cells:
        raise UserError("Nothing to run: every combination of the sweep was skipped: " + "; ".join(skipped) + ".")
    n_seeds = len(axes["seeds"])
    return SweepPlan(axes=axes, options=options, pretrain_epochs=pretrain_epochs, cells=tuple(cells),
                     skipped=tuple(skipped), skipped_combinations=skipped_cells,
                     jobs=len(trains) * per_cell + len(pretrains) * n_seeds, pretrain=len(pretrains) * n_seeds)


def expand_plan(registry: Registry, plan: SweepPlan) -> list[JobSpec]:
    """All jobs of a planned sweep, pretrain jobs first, duplicates removed (in a stable order)."""
    jobs: dict[str, JobSpec] = {}
    pretrains: dict[str, JobSpec] = {}
    fitting = set(plan.cells)
    # The order of the axes, as before plans existed: the same grid lists its jobs in the same order.
    for task, backbone, weights, strategy, epc, seed, source in itertools.product(*(plan.axes[a] for a in AXES)):
        cell = (task, backbone, weights, strategy, source)
        if cell not in fitting:
            continue
        job, pre = _cell_jobs(registry, cell, plan.options, plan.pretrain_epochs, epc, seed)
        if pre is not None:
            pretrains[pre.job_id] = pre
        jobs.setdefault(job.job_id, job)
    return list(pretrains.values()) + list(jobs.values())


def expand_grid(registry: Registry, grid: dict[str, Any], options: dict[str, Any] | None = None,
                skip: str = "none") -> list[JobSpec]:
    """All jobs of a sweep grid, pretrain jobs first, duplicates removed (in a stable order).

    ``grid`` maps the axes in :data:`AXES` to lists; ``options`` holds the hyper-parameters shared by
    every job. A source other than ``none`` adds a pretrain job per (backbone, seed) and makes the
    transfer job depend on it and start from its weights. ``skip``: see :func:`plan_sweep`.
    """
    return expand_plan(registry, plan_sweep(registry, grid, options, skip))


def load_sweep_file(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a sweep TOML file: a ``[grid]`` table of axes and an optional ``[options]`` table."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"Sweep file {path} does not exist.") from None
    except IsADirectoryError:
        raise UserError(f"Sweep file {path} is a folder; give the path of a .toml file.") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"Sweep file {path} is not UTF-8 text (byte {exc.start}); a TOML file is UTF-8.") from None
    except OSError as exc:
        raise UserError(f"Sweep file {path} cannot be read ({exc.strerror or exc}).") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        where = str(exc)
        if "line" not in where:  # e.g. "Unclosed array (at end of document)": point at the last line
            where += f" (line {len(text.splitlines())})"
        raise UserError(f"Sweep file {path} is not valid TOML: {where}. Fix that line and try again.") from None
    unknown = sorted(set(data) - {"grid", "options"})
    if unknown:
        raise UserError(f"Sweep file {path}: unknown table(s) {unknown}. Valid tables: ['grid', 'options']")
    for table in ("grid", "options"):
        if not isinstance(data.get(table, {}), dict):
            raise UserError(f"Sweep file {path}: {table} must be a table ([{table}]). "
                            f"Received: {table}={data[table]!r}")
    axes = sorted(set(data.get("grid", {})) - set(AXES))
    if axes:
        raise UserError(f"Sweep file {path}: unknown axis {axes} in [grid]. Valid axes: {list(AXES)}")
    options = data.get("options", {})
    valid = (JOB_OPTIONS - {"weights", "seed", "examples_per_class", "source"}) | {"pretrain_epochs"}  # not [grid]'s
    bad = sorted(set(options) - valid)
    if bad:
        raise UserError(f"Sweep file {path}: unknown option(s) {bad} in [options]. Valid options: {sorted(valid)}")
    return data.get("grid", {}), options
