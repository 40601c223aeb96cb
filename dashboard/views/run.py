"""Run: build a sweep, see its size and estimated time, launch it in the background, follow it, cancel it."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from transferlab.dashboard.common import (data_path_input, get_store, guarded, load_runs, public_text, read_only,
                                         session_registry)
from transferlab.dashboard.live import live_view
from transferlab.errors import TransferlabError, UserError


def _ints(text: str, what: str) -> list[int]:
    try:
        values = [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise UserError(f"{what} must be comma-separated whole numbers. Received: {text!r}") from None
    if not values:
        raise UserError(f"Give at least one value for {what}.")
    return values


def _preselected(registry, runnable: list[str]) -> tuple[list[str], list[str]]:
    """The form's first tasks and strategies: the embedded demo's task and the baseline (the strategies that
    declare random init), as far as they are registered."""
    from transferlab.demo import TASK

    tasks = [TASK] if TASK in runnable else runnable[:1]
    return tasks, [spec.name for spec in registry.select("strategy", random_init=True)][:1]


def _fallback_backbones(registry, tasks: list[str]) -> list[str]:
    """Backbones to preselect when the tasks name no default: the one the demo trains from random init,
    else the first that fits the tasks' modality."""
    from transferlab.demo import demo_jobs

    modalities = {registry.tasks[t].modality for t in tasks}
    fitting = [spec.name for spec in registry.select("backbone") if spec.modality in modalities]
    try:
        baseline = [j.backbone for j in demo_jobs(registry) if j.strategy in registry.baseline_strategies()]
    except TransferlabError:  # a plugin the demo needs is not loaded
        baseline = []
    return [b for b in baseline if b in fitting][:1] or fitting[:1]


def data_field(registry):
    """The path field: your data as a task (registered, and preselected below), with its data version, the
    runs the store holds of it, and its test, validation and training split sizes per class. None while the
    field is empty or the data is refused (one error box says why)."""
    from transferlab.data import load_task_data, make_splits
    from transferlab.errors import UserError
    from transferlab.userdata import resolve_data, split_table

    text = data_path_input()
    if not text:
        return None
    try:
        task = resolve_data(registry, text)
        data = load_task_data(registry, task.name)
        table = split_table(data)
    except UserError as exc:
        st.error(public_text(str(exc)))
        return None
    version = data.provenance.get("data_version")
    st.markdown(f"**{task.name}** · {len(data):,} examples in {len(table)} classes"
                + (f" · data version `{version}`" if version else ""))
    runs = load_runs()
    if not runs.empty:
        mine = runs[(runs["task"] == task.name) & (runs["kind"] == "train")]
        same = int((mine["data_version"] == version).sum()) if version else len(mine)
        older = sorted(set(mine["data_version"].dropna()) - {version})
        if len(mine):
            st.caption(f"Runs of {task.name} in the store: {same} on this data version"
                       + (f", {len(mine) - same} on other versions ({', '.join(older[:3])}"
                          + ("…" if len(older) > 3 else "") + "), never reused for this one" if older else ""))
    st.caption(f"Splits (fixed for every job on this data): {make_splits(data).method}.")
    st.dataframe(table, hide_index=True, height=min(38 + 35 * len(table), 300))
    return task


def sweep_form(registry, data_task=None):
    """The sweep builder; returns (grid, options, workers). ``data_task``, the task of the path field, is
    offered and chosen first."""
    runnable = [spec.name for spec in registry.select("task", stub=False) if spec.data is None]
    default_tasks, default_strategies = _preselected(registry, runnable)
    if data_task is not None:
        runnable, default_tasks = [data_task.name, *runnable], [data_task.name]
    c1, c2, c3 = st.columns(3)
    with c1:
        tasks = st.multiselect("Tasks", runnable, default=default_tasks)
        # The chosen tasks' own default backbones are preselected (a task names the backbone that suits it).
        suggested = sorted({registry.tasks[t].default_backbone for t in tasks} & set(registry.backbones))
        backbones = st.multiselect("Backbones", list(registry.backbones),
                                   default=suggested or _fallback_backbones(registry, tasks))
        weight_names = sorted({"none", *(w.name for b in registry.backbones.values() for w in b.weight_sources)})
        weights = st.multiselect("Weights", weight_names, default=["none"],
                                 help="Each backbone only takes the weights it offers; a strategy that trains from "
                                      "random init always starts from none.")
    with c2:
        strategies = st.multiselect("Strategies", list(registry.strategies), default=default_strategies)
        sizes = st.text_input("Labelled examples per class", "5,20")
        seeds = st.text_input("Seeds", "0")
        sources = st.multiselect("Pretrain on a source first",
                                 ["none"] + [f"{t}{m}" for t in runnable for m in ("", ":shuffled")], default=["none"])
    augmenting = _tasks_defaulting(registry, "augment", True)
    balancing = _tasks_defaulting(registry, "class_weight", "balanced")
    with c3:
        input_size = st.number_input("Input size (px, or tokens for text; 0 = the task's or backbone's default)",
                                     0, 512, 32, step=8)
        epochs = st.number_input("Epochs (head stage)", 1, 500, 10)
        fine_tune_epochs = st.number_input("Fine-tune epochs", 1, 500, 5)
        fine_tune_lr = st.select_slider("Fine-tune learning rate", [1e-6, 1e-5, 1e-4, 1e-3], value=1e-5)
        workers = st.number_input("Worker processes", 1, 8, 1)
        augment = st.selectbox("Augment (rotation, shift, flip, zoom)", ["task default", "on", "off"],
                               help=(f"Tasks that augment by default: {augmenting}; the others do not." if augmenting
                                     else "No task augments by default."))
        balanced = st.selectbox("Class weights", ["task default", "balanced", "none"],
                                help=(f"Tasks that weight classes by inverse frequency by default: {balancing}."
                                      if balancing else "No task weights its classes by default."))
        keep_models = st.checkbox("Keep every trained model", value=False,
                                  help="By default only the best run of each task, data version and size keeps its "
                                       "trained model (to export or inspect). A run that succeeded before is not run "
                                       "again for it. `transferlab gc` removes models no page needs.")
        st.caption(kept_disk_text())
    valid_weights = [w for w in weights if w == "none" or any(b.weight_source(w) for b in
                                                              (registry.backbones[n] for n in backbones))]
    grid = dict(tasks=tasks, backbones=backbones, weights=valid_weights or ["none"], strategies=strategies,
                examples_per_class=_ints(sizes, "examples per class"), seeds=_ints(seeds, "seeds"),
                sources=sources or None)
    options = dict(epochs=int(epochs), fine_tune_epochs=int(fine_tune_epochs), fine_tune_learning_rate=fine_tune_lr)
    if augment != "task default":
        options["augment"] = augment == "on"
    if balanced != "task default":
        options["class_weight"] = balanced
    if input_size:
        options["input_size"] = int(input_size)
    if keep_models:
        options["keep_model"] = True
    return grid, options, int(workers)


def kept_disk_text() -> str:
    """How many models are kept now and the disk they take (the store's models table)."""
    from transferlab.models_cli import megabytes

    kept = get_store().models_frame()
    if kept.empty:
        return "Kept models now: none."
    return f"Kept models now: {len(kept)}, {megabytes(kept['bytes'].sum())} on disk."


def _tasks_defaulting(registry, option: str, value) -> str:
    """The runnable tasks whose ``job_defaults`` set ``option`` to ``value``, as text ("" for none)."""
    return ", ".join(spec.name for spec in registry.select("task", stub=False)
                     if spec.job_defaults.get(option) == value)


#: how the form's fields are called in messages (a message names what to change on this page)
FORM_NAMES = {"examples_per_class": "labelled examples per class", "seed": "seeds", "seeds": "seeds",
              "input_size": "input size", "epochs": "epochs (head stage)", "fine_tune_epochs": "fine-tune epochs",
              "batch_size": "batch size", "fine_tune_learning_rate": "fine-tune learning rate", "tasks": "tasks",
              "backbones": "backbones", "strategies": "strategies", "weights": "weights", "sources": "sources"}


def _plan(registry, grid, options):
    """The sweep's size and what it skips, without making its jobs: a cell that does not fit (a weight
    source the backbone lacks, a text task with an image backbone, cached features for detection, ...)
    is skipped rather than refusing the whole sweep."""
    from transferlab.jobs import JobFieldError
    from transferlab.sweeps import plan_sweep

    try:
        return plan_sweep(registry, grid, options, skip="unfit")
    except JobFieldError as exc:  # say it in the form's words
        raise UserError(exc.render(FORM_NAMES)) from None


def _readiness(registry, grid) -> dict[str, bool]:
    """Whether each chosen task's data is here (``available()``), shown with the chosen weight sources that
    download on first use. A plugin whose check raises or hangs gets its own warning line and counts as not
    ready; the page goes on."""
    from transferlab.registry import safe_available

    ready, online = {}, []
    for name in grid["tasks"]:
        answer = safe_available(registry.tasks[name])
        if isinstance(answer, str):
            st.warning(f"Task {name!r}: could not check whether its data is here: {answer}. Its runs fetch the data "
                       "in the background, or fail with a message that says where to get it.")
        ready[name] = answer is True
    for backbone in grid["backbones"]:
        for weights in grid["weights"]:
            source = registry.backbones[backbone].weight_source(weights)
            if source is None:
                continue
            answer = safe_available(source)
            if isinstance(answer, str):
                st.warning(f"Weights {weights!r} of {backbone}: could not check whether they are here: {answer}.")
            elif not answer:
                online.append(f"{backbone} · {weights}")
    if online:
        st.caption("Downloads on first use: " + ", ".join(online))
    return ready


def render() -> None:
    st.title("Run a comparison")
    if read_only():
        st.error("This dashboard is read-only: training is disabled.")
        return
    from transferlab.sweeps import SWEEP_CONFIRM_LIMIT, expand_plan

    # Data versions are reused for a few seconds (fingerprints.VERSION_REUSE_S), so a rerun per keystroke does not
    # walk the whole tree again; launching checks the data fresh (check_jobs_fit_data).
    registry = session_registry()  # tasks made from the path field are this session's own
    grid, options, workers = sweep_form(registry, data_field(registry))
    plan = _plan(registry, grid, options) if all(grid[k] for k in ("tasks", "backbones", "strategies")) else None
    confirmed = plan is not None and plan.jobs <= SWEEP_CONFIRM_LIMIT
    if plan is not None and not confirmed:
        st.warning(f"This sweep makes **{plan.jobs:,} jobs**, more than the {SWEEP_CONFIRM_LIMIT:,} that launch "
                   "without confirmation.")
        confirmed = st.checkbox(f"Yes, build and launch all {plan.jobs:,} jobs")
    jobs = expand_plan(registry, plan) if confirmed else []
    from transferlab.launch import estimate_seconds

    seconds, covered = estimate_seconds(load_runs(), jobs, registry)
    runs = load_runs()
    finished = set(runs[runs["status"].isin(["succeeded", "nan"])]["run_id"]) if not runs.empty else set()
    new = [j for j in jobs if j.job_id not in finished]
    if seconds is None:
        estimate = "no measured runs to go on yet"
    else:
        seconds /= workers
        estimate = f"about {seconds:.0f} s" if seconds < 90 else f"about {seconds / 60:.0f} min"
    count = plan.jobs if plan is not None else 0
    st.markdown(f"**{count:,} jobs** ({len(jobs) - len(new)} already in the store) · estimated time {estimate}"
                + (f" (from {covered} comparable measurements)" if covered and covered < len(jobs) else ""))
    if plan is not None and plan.skipped:
        with st.expander(f"{plan.skipped_combinations:,} combinations skipped: they do not fit together"):
            st.markdown("\n".join(f"- {line}" for line in plan.skipped[:50]))
    if jobs:
        listed = pd.DataFrame([dict(job=j.label(), id=j.job_id, data_version=j.data_version) for j in jobs[:200]])
        if listed["data_version"].isna().all():
            listed = listed.drop(columns="data_version")
        st.dataframe(listed.fillna("—"), hide_index=True, height=160)
    ready = _readiness(registry, grid) if plan is not None else {}
    if st.button("Launch in the background", type="primary", disabled=not new):
        from transferlab.data import check_jobs_fit_data
        from transferlab.launch import launch

        # Data that is not here is fetched by the background sweep, never by this page's process.
        here = [j for j in jobs if ready.get(j.task)]
        check_jobs_fit_data(registry, here)
        record = launch(jobs, workers=workers)
        st.success(f"Launched {len(jobs)} jobs ({record.launch_id}).")
        away = sorted({j.task for j in jobs} - {j.task for j in here})
        if away:
            st.warning(f"Not ready on this machine: {', '.join(away)}. Their runs download the data in the background, "
                       "or fail with a message that says where to get it.")
    st.subheader("Running and recent")
    live_view()


guarded(render)
