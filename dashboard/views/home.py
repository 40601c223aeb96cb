"""Home: what is installed, what is in the store, and the demo as one click."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from transferlab.dashboard.common import get_registry, guarded, load_runs, public_text, read_only
from transferlab.dashboard.tables import show_table
from transferlab.errors import TransferlabError
from transferlab.registry import availability_label, safe_available


def _demo_description(jobs) -> str:
    """The demo sweep in one sentence, read from its jobs (tasks, sizes, seeds and configurations)."""
    from transferlab.analysis import config_label

    train = [j for j in jobs if j.kind != "pretrain"]
    tasks = ", ".join(f"`{t}`" for t in dict.fromkeys(j.task for j in train))
    sizes = sorted({j.examples_per_class for j in train if j.examples_per_class})
    seeds = len({j.seed for j in train})
    configs = dict.fromkeys(config_label(pd.Series(dict(backbone=j.backbone, weights=j.weights, source=j.source,
                                                         strategy=j.strategy))) for j in train)
    return (f"{len(train)} runs on {tasks} at {', '.join(map(str, sizes))} labelled examples per class, "
            f"{seeds} seed{'s' if seeds != 1 else ''}: " + "; ".join(configs) + ".")


@st.cache_data(max_entries=4, show_spinner=False)
def _summaries(state: int, _runs: pd.DataFrame, baselines: tuple[str, ...]) -> dict:
    """The verdict's paragraphs, computed once per store state (``state``; the frame itself is not hashed)."""
    from transferlab.latency import latency_lookup
    from transferlab.verdict import recommend

    return recommend(_runs, baselines=baselines, latency=latency_lookup()).summaries()


def store_state(runs: pd.DataFrame) -> int:
    """A cheap key that changes whenever a run is added, finishes or changes score: a hash of the few columns
    the verdict reads, so Home recomputes the verdict only then, not on every rerun."""
    columns = [c for c in ("run_id", "status", "score", "still_improving", "wall_seconds") if c in runs]
    if runs.empty or not columns:
        return 0
    return int(pd.util.hash_pandas_object(runs[columns].astype(str), index=False).sum())


def _verdict_panel(registry, runs: pd.DataFrame) -> None:
    """The verdict per task, one paragraph each (``transferlab recommend`` in the terminal)."""
    summaries = _summaries(store_state(runs), runs, tuple(sorted(registry.baseline_strategies())))
    if not summaries:
        return
    st.subheader("Verdict")
    for (task, version), text in summaries.items():
        st.markdown(public_text(f"**{task}**" + (f" (data {version})" if version else "") + f": {text}"))
    st.caption("Paired t-test over seeds where the seeds match, else Welch's; one seed is never called a win; "
               "ties are ties. The Verdict page has the costs, the Pareto fronts and more labels or another "
               "backbone.")


def _empty_store_text() -> str:
    """What an empty store says: the quick demo fills it, from the terminal or (not read-only) the first button."""
    from transferlab.demo import DEMOS

    quick = DEMOS["quick"]
    return (f"The store is empty. `{quick.command}` fills it with real runs in about {quick.minutes} minutes on 2 CPU "
            "cores" + ("." if read_only() else ", or the first button below."))


def render() -> None:
    st.title("transferlab")
    st.caption("Freeze, fine-tune or train from scratch — and with which backbone? Every number here comes "
               "from a run that really happened.")
    registry = get_registry()
    runs = load_runs()
    _verdict_panel(registry, runs)

    left, right = st.columns(2)
    with left:
        st.subheader("Installed")
        ok = sum(1 for p in registry.plugins if not p.errors)
        stubs = sum(1 for t in registry.tasks.values() if t.stub)
        st.markdown(f"**{len(registry.plugins)} plugins** ({ok} healthy) · **{len(registry.backbones)} backbones** · "
                    f"**{len(registry.tasks) - stubs} tasks**" + (f" (+ {stubs} stub)" if stubs else "")
                    + f" · **{len(registry.strategies)} strategies**")
        tasks = pd.DataFrame([dict(task=t.name + (" (stub)" if t.stub else ""), kind=t.kind,
                                   classes=str(t.num_classes) if t.num_classes else "from data",
                                   ready=("stub: not runnable" if t.stub
                                          else public_text(availability_label(t, "yes", "needs its data (see about)"))),
                                   about=t.description)
                              for t in registry.tasks.values()])
        show_table(tasks)  # columns as wide as their text: "needs its data (see about)" and the about itself
        sources = pd.DataFrame([dict(backbone=b.name, weights=w.name, pretrained_on=w.pretrained_on,
                                     available=public_text(availability_label(w, "offline", "downloads on first use")))
                                for b in registry.backbones.values() for w in b.weight_sources])
        st.markdown("**Pretrained weight sources** (every backbone also trains from random init)")
        show_table(sources)
    with right:
        st.subheader("In the store")
        if runs.empty:
            st.info(_empty_store_text())
        else:
            counts = runs[runs["kind"] == "train"]["status"].value_counts()
            shown = [("succeeded", "succeeded"), ("running", "running"), ("queued", "queued"), ("failed", "failed")]
            if counts.get("stale", 0):  # held by a worker that is gone: the next sweep takes them back
                shown.append(("stale", "running — worker lost"))
            cols = st.columns(len(shown))
            for col, (status, label) in zip(cols, shown):
                col.metric(label, int(counts.get(status, 0)))
            st.caption(f"{runs['task'].nunique()} tasks · {runs['backbone'].nunique()} backbones · "
                       f"{runs['strategy'].nunique()} strategies · {len(runs)} runs in all (with pretraining)")
        if not read_only():
            from transferlab.demo import DEMOS, demo_jobs

            st.subheader("Embedded demos")
            st.caption("Start with the quick one: one size, one seed, three configurations, real runs in minutes. "
                       "The full demos add sizes, seeds and configurations: intervals, crossovers and a verdict.")
            for demo in DEMOS.values():
                try:
                    jobs = demo_jobs(registry, which=demo.name)
                except TransferlabError as exc:  # a plugin the demo needs did not load: the rest of Home works
                    st.warning(f"The {demo.name} demo cannot run here: {public_text(str(exc))}")
                    continue
                missing = [name for name in demo.tasks if safe_available(registry.tasks[name]) is not True]
                if missing:  # e.g. ELPV without the noncommercial extra: say so instead of a launch that fails
                    about = "; ".join(public_text(registry.tasks[name].description) for name in missing)
                    st.warning(f"The {demo.name} demo needs the data of {', '.join(missing)}, not installed here. "
                               f"{about}")
                    continue
                st.markdown(f"**{demo.question}** " + _demo_description(jobs) + f" About {demo.minutes} minutes on 2 CPU "
                            f"cores, offline; finished runs are reused. In a terminal: `{demo.command}`.")
                if st.button(f"Run the {demo.name} demo", type="primary" if demo.name == "quick" else "secondary",
                             key=f"demo-{demo.name}"):
                    from transferlab.launch import launch

                    record = launch(jobs, workers=demo.workers)
                    st.success(f"Started {len(record.job_ids)} jobs in the background.")
            from transferlab.launch import launches

            if any(record.alive for record in launches()):
                from transferlab.dashboard.live import live_view

                st.markdown("**Running now**")
                live_view(limit=1)


guarded(render)
