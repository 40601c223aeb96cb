"""Charts for the dashboard: pure functions from a comparison frame (``transferlab.compare``) to a plotly Figure.

No Streamlit here, so every chart is unit-tested on its data. Each builder answers empty or unsuitable
input with :func:`empty_figure` and a message that says what is missing, rather than an empty plot.

A configuration (or strategy) has one colour on every chart: :func:`label_colours` derives it from the label
alone, and pages pass :func:`store_colours` (worked out once over the whole store) to every builder. Intervals
come from ``transferlab.compare`` and never leave the range their quantity can take; titles wrap rather than
being cut.
"""
from __future__ import annotations

import hashlib
import math
import re
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from transferlab.analysis import metric_label, run_labels
from transferlab.compare import GAIN_RANGE, bounded_interval, gain_correlations, score_intervals

TEMPLATE = "plotly_white"
FACET_COLUMNS = 3
FACET_HEIGHT = 260
GREY = "#7f7f7f"
FACET_TITLE_WIDTH = 44  # characters per line of a facet title (a third of a wide page)
TITLE_WIDTH = 64  # characters per line of a chart title (half a wide page: Data efficiency shows two side by side)


def _distinct_palette() -> list[str]:
    """Plotly's, D3's and Dark24's qualitative colours without greys and near-black: grey marks totals and
    the line-style legend, so a configuration must never be grey."""
    palette: list[str] = []
    for colour in plotly.colors.qualitative.Plotly + plotly.colors.qualitative.D3 + plotly.colors.qualitative.Dark24:
        channels = plotly.colors.hex_to_rgb(colour)
        if max(channels) - min(channels) >= 24 and colour.lower() not in palette:
            palette.append(colour.lower())
    return palette


PALETTE = _distinct_palette()


def empty_figure(message: str) -> go.Figure:
    """A blank figure with hidden axes and ``message`` in the middle: the chart's answer to missing data."""
    fig = go.Figure()
    fig.add_annotation(text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                       font=dict(size=15, color=GREY))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(template=TEMPLATE, height=300, margin=dict(l=20, r=20, t=40, b=20))
    return fig


# ---------------------------------------------------------------------------------------- helpers

def _missing(frame: pd.DataFrame | None, columns: Iterable[str]) -> bool:
    return frame is None or not isinstance(frame, pd.DataFrame) or frame.empty or not set(columns) <= set(frame)


def _slot(label: str) -> int:
    # sha256, not hash(): Python salts str hashes per process, and the colour must survive a server restart.
    return int.from_bytes(hashlib.sha256(label.encode()).digest()[:8], "big") % len(PALETTE)


def label_colours(labels: Iterable[str], fixed: Mapping[str, str] | None = None) -> dict[str, str]:
    """A colour per label that depends on the label, not on which other labels are drawn beside it.

    Labels in ``fixed`` keep the colour given there (pass :func:`store_colours`). Every other label takes the
    palette colour its sha256 points at; where two labels on one chart point at the same colour, the later
    one in sorted order takes the next colour not yet used. So a label has the same colour on every chart
    given the same ``fixed`` map, and across maps whenever its colour is not contested.
    """
    names = sorted(set(map(str, labels)))
    fixed = fixed or {}
    result = {label: fixed[label] for label in names if label in fixed}
    taken = set(result.values())
    for label in names:
        if label in result:
            continue
        start = _slot(label)
        free = (PALETTE[(start + step) % len(PALETTE)] for step in range(len(PALETTE)))
        colour = next((c for c in free if c not in taken), PALETTE[start])  # more labels than colours: reuse
        result[label] = colour
        taken.add(colour)
    return result


def store_colours(runs: pd.DataFrame) -> dict[str, str]:
    """The colour of every configuration label and every strategy among the training runs of ``runs`` (the
    whole store): worked out once per page and passed to every chart, so that a configuration keeps its
    colour from page to page whatever the page's filters leave on screen."""
    if runs is None or runs.empty or "kind" not in runs:
        return {}
    train = runs[runs["kind"] == "train"]
    if train.empty:
        return {}
    # Two namespaces: a label always holds " · ", a strategy name never does.
    return {**label_colours(run_labels(train)), **label_colours(train["strategy"].astype(str))}


def _rgba(colour: str, alpha: float) -> str:
    red, green, blue = plotly.colors.hex_to_rgb(colour)
    return f"rgba({red},{green},{blue},{alpha})"


def _si(value: float) -> str:
    """1234567 -> '1.2M': parameter counts short enough for a bar label."""
    if not np.isfinite(value):
        return ""
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.0f}"


def _short_labels(labels: Sequence[str]) -> dict[str, str]:
    """Drop the ' · ' parts every label shares (the backbone when only one is compared, say)."""
    parts = {label: str(label).split(" · ") for label in labels}
    common = set.intersection(*(set(p) for p in parts.values())) if len(parts) > 1 else set()
    return {label: " · ".join(p for p in split if p not in common) or str(label) for label, split in parts.items()}


def _facets(titles: Sequence[str], shared_y: bool = True, y_title: str = "",
            x_title: str = "") -> tuple[go.Figure, list[tuple[int, int]]]:
    """Small multiples wrapped at FACET_COLUMNS, with axis titles on the outer facets only."""
    count = max(len(titles), 1)
    cols = min(count, FACET_COLUMNS)
    rows = math.ceil(count / cols)
    height = FACET_HEIGHT * rows + 140
    # Cells past the last facet get no axes at all, rather than empty gridded boxes.
    specs = [[{} if r * cols + c < count else None for c in range(cols)] for r in range(rows)]
    fig = make_subplots(rows=rows, cols=cols, specs=specs, subplot_titles=[_wrap(t, FACET_TITLE_WIDTH) for t in titles],
                        shared_xaxes="all", shared_yaxes="all" if shared_y else False,
                        horizontal_spacing=0.06 if shared_y else 0.09, vertical_spacing=90 / height)
    positions = [(i // cols + 1, i % cols + 1) for i in range(count)]
    # One layout update instead of one per facet (plotly's row/col lookups dominate the cost otherwise).
    # make_subplots numbers axes row by row from the top left: facet i has xaxis{i+1} ("xaxis" for i = 0).
    axes: dict[str, dict] = {}
    for index, (_row, col) in enumerate(positions):
        suffix = "" if index == 0 else str(index + 1)
        # A facet shows x ticks and title when no facet sits below it (the last row may be short).
        bottom = index + cols >= count
        axes[f"xaxis{suffix}"] = dict(showticklabels=True, automargin=True, title_text=x_title if bottom else "")
        axes[f"yaxis{suffix}"] = dict(automargin=True, title_text=y_title if col == 1 else "")
    fig.update_layout(template=TEMPLATE, height=height, margin=dict(l=60, r=20, t=80, b=60), **axes)
    fig.update_annotations(font_size=12)
    return fig, positions


_TAG = re.compile(r"<[^>]+>")


def _wrap(text: str, width: int) -> str:
    """``text`` broken into plotly lines (``<br>``) of about ``width`` characters, at ' · ' between a label's
    parts where it can, else at spaces; nothing is cut. Lines already broken, or holding markup, are kept."""
    lines = []
    for line in str(text).split("<br>"):
        if len(line) <= width or _TAG.search(line):
            lines.append(line)
            continue
        current = ""
        for part in re.split(r"(?<= · )|(?<= )", line):
            if current and len(current) + len(part.rstrip()) > width:
                lines.append(current.rstrip())
                current = ""
            current += part
        lines.append(current.rstrip())
    return "<br>".join(line for line in lines if line)


def finish_figure(fig: go.Figure, title: str, subtitle: str = "") -> go.Figure:
    """Give ``fig`` the house title: ``title`` and a smaller ``subtitle`` (what the bars or bands are), wrapped,
    with the top margin grown to hold them above the facet titles; hover labels show whole configuration names
    (plotly cuts trace names in hover boxes at 15 characters by default). Every chart module ends with it;
    returns ``fig``."""
    title = _wrap(title, TITLE_WIDTH)
    if subtitle:  # <sup> is about 70 % of the title's size, so more characters fit on a line
        title += "".join(f"<br><sup>{line}</sup>" for line in _wrap(subtitle, TITLE_WIDTH * 4 // 3).split("<br>"))
    lines = title.count("<br>") + 1
    facet_lines = max((str(a.text or "").count("<br>") + 1 for a in fig.layout.annotations
                       if a.xref == "paper" and a.yref == "paper" and a.showarrow is False), default=0)
    needed = 36 + 24 * lines + 16 * facet_lines
    margin_top = fig.layout.margin.t if fig.layout.margin.t is not None else 80
    extra = max(0, needed - margin_top)
    fig.update_layout(title=dict(text=title), hoverlabel=dict(namelength=-1),
                      margin=dict(t=margin_top + extra), height=(fig.layout.height or 450) + extra)
    return fig


def _size_axes(fig: go.Figure, sizes: Iterable[float]) -> None:
    """A log x axis with ticks at the measured sizes, so '5 20 100' reads off directly."""
    sizes = sorted({float(s) for s in sizes})
    ticks = dict(tickvals=sizes, ticktext=[f"{s:g}" for s in sizes]) if len(sizes) <= 12 else {}
    fig.update_xaxes(type="log", tickangle=0, **ticks)


def _task_metric_labels(table: pd.DataFrame) -> dict[str, str]:
    """Each task's score as its task head names it (``test accuracy``, ``test mAP@0.5``), from the summary."""
    return {str(task): metric_label(rows) for task, rows in table.groupby(table["task"].astype(str))}


def score_label(table: pd.DataFrame) -> str:
    """The one name of the score in ``table`` (``test accuracy``), or ``test score`` when tasks differ."""
    labels = set(_task_metric_labels(table).values())
    return labels.pop() if len(labels) == 1 else "test score"


def _task_facets(table: pd.DataFrame, y_title: str) -> tuple[go.Figure, dict[str, tuple[int, int]]]:
    """One facet per task; ``y_title`` may hold ``{score}``, filled with the tasks' score name. Where tasks are
    scored differently, each facet names its own score and the axis says ``test score``."""
    tasks = sorted(table["task"].astype(str).unique())
    labels = _task_metric_labels(table)
    shared = score_label(table)
    y_title = y_title.format(score=shared)
    if len(set(labels.values())) > 1:
        titles = [f"{t} ({labels[t].removeprefix('test ')})" for t in tasks]
    else:
        titles = tasks if len(tasks) > 1 else [""]
    fig, positions = _facets(titles, y_title=y_title, x_title="examples per class (log)")
    return fig, dict(zip(tasks, positions))


_INTERVAL_NAMES = {"t": "95% CI over seeds", "wilson": "Wilson 95% over test examples (one seed)",
                   "welch": "Welch 95% CI"}


def _interval_text(low: float, high: float, kind: str, number: str) -> str:
    """``[0.412, 0.588] 95% CI over seeds`` for a hover box; ``no interval (one seed)`` where there is none."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "no interval (one seed)"
    return f"[{low:{number}}, {high:{number}}] {_INTERVAL_NAMES.get(kind, kind)}"


def _label_lines(fig: go.Figure, table: pd.DataFrame, y: str, where: dict[str, tuple[int, int]], hover: str,
                 colours: Mapping[str, str], number: str = ".3f") -> None:
    """One line per task and label over examples per class; ``low`` and ``high`` (already inside the range
    of ``y``) drawn as error bars, which may be asymmetric where a bound cut the interval. In ``hover``,
    ``customdata[0]`` is the seed count and ``customdata[1]`` the interval as text (numbers in ``number``)."""
    shown: set[str] = set()
    for (task, label), rows in table.groupby(["task", "label"], sort=True):
        rows = rows.sort_values("examples_per_class")
        row, col = where[str(task)]
        centre = rows[y].to_numpy(dtype=float)
        low, high = rows["low"].to_numpy(dtype=float), rows["high"].to_numpy(dtype=float)
        texts = [_interval_text(a, b, str(kind), number) for a, b, kind in zip(low, high, rows["interval"])]
        fig.add_trace(go.Scatter(
            x=rows["examples_per_class"].to_numpy(dtype=float), y=centre,
            error_y=dict(type="data", symmetric=False, array=high - centre, arrayminus=centre - low, visible=True,
                         thickness=1.2, width=4),
            customdata=np.column_stack([rows["n"].to_numpy(dtype=float) if "n" in rows else np.full(len(rows), np.nan),
                                        np.array(texts, dtype=object)]),
            mode="lines+markers", name=label, legendgroup=label, showlegend=label not in shown,
            line=dict(color=colours[label]), marker=dict(size=7), hovertemplate=hover + f"<extra>{label}</extra>",
        ), row=row, col=col)
        shown.add(label)


def _legend_below(fig: go.Figure) -> None:
    """A horizontal legend under the x axis title: labels are too long for a legend at the side."""
    plot_height = max((fig.layout.height or 450) - 140, 100)
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-100 / plot_height, xanchor="left", x=0,
                                  font=dict(size=11)))


def _sized(summary: pd.DataFrame) -> pd.DataFrame:
    sizes = pd.to_numeric(summary["examples_per_class"], errors="coerce")
    table = summary[sizes > 0].copy()
    table["examples_per_class"] = pd.to_numeric(table["examples_per_class"], errors="coerce").astype(float)
    return table


# ---------------------------------------------------------------------------------------- charts

def parameter_chart(table: pd.DataFrame, colours: Mapping[str, str] | None = None) -> go.Figure:
    """Trainable parameters per backbone, one bar per strategy, next to the model's total (log scale).
    ``colours`` maps strategies to colours (:func:`store_colours`); others get :func:`label_colours`'s."""
    if _missing(table, ["backbone", "strategy", "trainable_params", "total_params"]):
        return empty_figure("No parameter counts yet: they are measured by succeeded runs.")
    table = table.copy()
    for column in ("trainable_params", "total_params"):
        table[column] = pd.to_numeric(table[column], errors="coerce").astype(float)
    backbones = sorted(table["backbone"].astype(str).unique())
    colours = label_colours(table["strategy"], colours)
    fig = go.Figure()

    def add_bars(name: str, values: pd.Series, colour: str, pattern: str = "") -> None:
        values = values.reindex(backbones).astype(float)
        shown = values.where(values > 0)  # zero has no place on a log axis
        fig.add_trace(go.Bar(x=backbones, y=shown.to_numpy(), name=name, marker=dict(color=colour,
                             pattern_shape=pattern), text=[_si(v) for v in shown], textposition="outside",
                             cliponaxis=False, hovertemplate="%{x}<br>" + name + ": %{y:,.0f}<extra></extra>"))

    for strategy, rows in table.groupby("strategy", sort=True):
        add_bars(f"trainable · {strategy}", rows.groupby("backbone")["trainable_params"].median(),
                 colours[str(strategy)])
    add_bars("total", table.groupby("backbone")["total_params"].max(), GREY, "/")
    if "published_params" in table:
        published = pd.to_numeric(table["published_params"], errors="coerce").groupby(table["backbone"]).max()
        if published.notna().any():
            add_bars("published", published, "#c9c9c9", ".")
    # One tick per decade: plotly's default minor labels (2, 3, ... 9) crowd a log axis.
    fig.update_yaxes(type="log", dtick=1, title_text="parameters (log)", automargin=True)
    fig.update_xaxes(title_text="backbone", tickangle=-30 if len(backbones) > 4 else 0, automargin=True)
    fig.update_layout(template=TEMPLATE, height=460, barmode="group",
                      uniformtext=dict(minsize=8, mode="hide"), margin=dict(l=60, r=20, t=60, b=60))
    _legend_below(fig)
    return finish_figure(fig, "Trainable vs total parameters")


MAX_FACETS = 24


def learning_curves_chart(curves_frame: pd.DataFrame, shared_y: bool = True, metric: str | None = None,
                          max_facets: int = MAX_FACETS, colours: Mapping[str, str] | None = None) -> go.Figure:
    """Learning curves as small multiples, one facet per group of seeds: the mean as a line, the band
    (min–max, or the 95 % CI clipped to the metric's range by ``compare.curves``) shaded; validation solid,
    training dashed; one colour per label (``colours``, see :func:`store_colours`). ``metric`` names the y
    axis; by default it is read from the frame's ``attrs``, which ``compare.curves`` sets."""
    needed = ["group", "task", "label", "examples_per_class", "epoch", "split", "mean", "low", "high"]
    if _missing(curves_frame, needed):
        return empty_figure("No learning curves yet: they appear once runs have logged an epoch.")
    frame = curves_frame.copy()
    frame["examples_per_class"] = pd.to_numeric(frame["examples_per_class"], errors="coerce").astype(float)
    groups = (frame[["group", "task", "label", "examples_per_class"]].drop_duplicates("group")
              .sort_values(["task", "label", "examples_per_class"], na_position="last"))
    # More small multiples than this are unreadable (and slow to draw): the first ones are shown and
    # the title says how many were left out; the page's filters narrow the choice.
    hidden = max(0, len(groups) - max_facets)
    groups = groups.head(max_facets)
    short = _short_labels(list(groups["label"].astype(str).unique()))
    several_tasks = groups["task"].nunique() > 1
    titles = []
    for group, task, label, size in groups.itertuples(index=False):
        # The size goes first, so it reads the same in every facet however the label wraps.
        parts = ["all examples" if not np.isfinite(size) else f"{size:g}/class"]
        parts += ["pretrain"] if str(group).startswith("pretrain · ") else []
        parts += [str(task)] if several_tasks else []
        parts += [short[str(label)]]
        titles.append(" · ".join(parts))
    metric = metric or curves_frame.attrs.get("metric", "")
    band_name = {"minmax": "min–max band", "ci95": "95% CI band (clipped to the metric's range)"}.get(
        curves_frame.attrs.get("band"), "band")
    fig, positions = _facets(titles, shared_y=shared_y, y_title=metric, x_title="epoch")
    colours = label_colours(frame["label"].astype(str), colours)
    shown: set[str] = set()
    traces, rows_at, cols_at = [], [], []  # added in one call: plotly's per-call overhead adds up over facets
    for (group, _task, label, _size), (row, col) in zip(groups.itertuples(index=False), positions):
        label = str(label)
        for split, dash in (("train", "dash"), ("val", "solid")):
            rows = frame[(frame["group"] == group) & (frame["split"] == split)].sort_values("epoch")
            if rows.empty:
                continue
            epochs = rows["epoch"].to_numpy(dtype=float)
            band = dict(mode="lines", line=dict(width=0), hoverinfo="skip", showlegend=False, legendgroup=label)
            traces += [
                go.Scatter(x=epochs, y=rows["high"].to_numpy(dtype=float), name=f"{split} high", **band),
                go.Scatter(x=epochs, y=rows["low"].to_numpy(dtype=float), name=f"{split} low", fill="tonexty",
                           fillcolor=_rgba(colours[label], 0.12 if split == "train" else 0.22), **band),
                go.Scatter(x=epochs, y=rows["mean"].to_numpy(dtype=float), mode="lines", name=label,
                           legendgroup=label, showlegend=split == "val" and label not in shown,
                           line=dict(color=colours[label], dash=dash, width=2),
                           customdata=rows[["low", "high"]].to_numpy(dtype=float),
                           hovertemplate=f"{split} epoch %{{x}}: %{{y:.3f}} (%{{customdata[0]:.3f}}–"
                                         f"%{{customdata[1]:.3f}})<extra>{label}</extra>"),
            ]
            rows_at += [row] * 3
            cols_at += [col] * 3
            if split == "val":
                shown.add(label)
    if traces:
        fig.add_traces(traces, rows=rows_at, cols=cols_at)
    # Epochs are whole numbers: without a tick step plotly labels 1, 1.5, 2 on short runs.
    last_epoch = float(frame["epoch"].max()) if len(frame) else 1.0
    fig.update_xaxes(tick0=1, dtick=max(1, math.ceil(last_epoch / 8)))
    for split, dash in (("train", "dash"), ("val", "solid")):  # legend entries that explain the line styles
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=f"{split} ({dash})",
                                 line=dict(color=GREY, dash=dash), legendgroup=f"_{split}"))
    more = f" — first {max_facets} groups shown, {hidden} more: filter to see them" if hidden else ""
    _legend_below(fig)
    return finish_figure(fig, f"Learning curves{f' ({metric})' if metric else ''}",
                         f"mean over seeds with {band_name}{more}")


def data_efficiency_chart(summary: pd.DataFrame, crossovers: pd.DataFrame | None = None,
                          colours: Mapping[str, str] | None = None) -> go.Figure:
    """Test score against examples per class (log x), one line per configuration with 95 % error bars that
    stay inside [0, 1]: pass ``compare.score_intervals(summary, runs)`` for Wilson intervals of single-seed
    accuracies; a plain summary gets its t-intervals clipped. Stars mark where one configuration overtakes
    another (pass ``compare.crossovers(summary)``); ``colours`` as for every chart (:func:`store_colours`)."""
    if _missing(summary, ["task", "label", "examples_per_class", "mean", "ci95"]):
        return empty_figure("No succeeded training runs to compare yet.")
    table = _sized(summary if {"low", "high", "interval"} <= set(summary) else score_intervals(summary))
    if table.empty:
        return empty_figure("Every run used all examples: sweep examples per class to see data efficiency.")
    fig, where = _task_facets(table, "{score}")
    _label_lines(fig, table, "mean", where,
                 "%{x:g}/class: %{y:.3f} %{customdata[1]} (n=%{customdata[0]:.0f})",
                 label_colours(table["label"].astype(str), colours))
    if not _missing(crossovers, ["task", "leader_before", "leader_after", "x", "y"]):
        marks = crossovers[crossovers["task"].astype(str).isin(where)]
        for index, (task, rows) in enumerate(marks.groupby("task", sort=True)):
            row, col = where[str(task)]
            text = [f"{after} overtakes {before}<br>between {low:g} and {high:g}/class"
                    for before, after, low, high in rows[["leader_before", "leader_after", "between_low",
                                                          "between_high"]].itertuples(index=False)]
            fig.add_trace(go.Scatter(
                x=rows["x"].to_numpy(dtype=float), y=rows["y"].to_numpy(dtype=float), mode="markers",
                name="crossover", legendgroup="crossover", showlegend=index == 0, hovertext=text,
                hoverinfo="text", marker=dict(symbol="star", size=15, color="gold", line=dict(color="black", width=1)),
            ), row=row, col=col)
    _size_axes(fig, table["examples_per_class"])
    wilson = "; one seed: Wilson 95% over the test set" if (table["interval"] == "wilson").any() else ""
    _legend_below(fig)
    return finish_figure(fig, f"Data efficiency: {score_label(table)}",
                         f"mean and 95% CI over seeds, within [0, 1]{wilson}")


def gain_chart(summary: pd.DataFrame, colours: Mapping[str, str] | None = None) -> go.Figure:
    """Gain in test score over the random-init baseline against examples per class (log x), with Welch 95 %
    CI error bars clipped to [-1, 1] (a gain is a difference of two scores) and a line at zero: above it the
    starting point helped. ``colours`` as for every chart (:func:`store_colours`)."""
    if _missing(summary, ["task", "label", "is_baseline", "examples_per_class", "gain_vs_baseline", "gain_ci95"]):
        return empty_figure("No succeeded training runs to compare yet.")
    table = _sized(summary)
    table = table[~table["is_baseline"].astype(bool)
                  & np.isfinite(pd.to_numeric(table["gain_vs_baseline"], errors="coerce").astype(float))]
    if table.empty:
        return empty_figure("No gains to show: a gain needs runs of a random-init baseline strategy at the same "
                            "task and examples per class.")
    low, high = bounded_interval(table["gain_vs_baseline"], table["gain_ci95"], GAIN_RANGE)
    table = table.assign(low=low, high=high, interval=np.where(np.isfinite(low), "welch", ""))
    fig, where = _task_facets(table, "gain in {score}")
    _label_lines(fig, table, "gain_vs_baseline", where,
                 "%{x:g}/class: %{y:+.3f} %{customdata[1]} (n=%{customdata[0]:.0f})",
                 label_colours(table["label"].astype(str), colours), number="+.3f")
    fig.add_hline(y=0, line=dict(color="black", width=1, dash="dot"), row="all", col="all")
    _size_axes(fig, table["examples_per_class"])
    _legend_below(fig)
    return finish_figure(fig, f"Gain over the random-init baseline, {score_label(table)}",
                         "mean and Welch 95% CI, within [-1, 1]")


def negative_transfer_heatmap(neg: pd.DataFrame) -> go.Figure:
    """Gain over the random-init baseline as a heatmap: rows are starting points, columns examples per class;
    red is worse than the baseline, blue better. ▼ marks a gain whose whole 95 % CI is below zero (▲ above zero)."""
    if _missing(neg, ["task", "starting_point", "examples_per_class", "gain", "gain_ci95", "significant_negative"]):
        return empty_figure("No gains over a random-init baseline yet: they need baseline and transfer runs at the "
                            "same size.")
    frame = neg.copy()
    frame["examples_per_class"] = pd.to_numeric(frame["examples_per_class"], errors="coerce").astype(float)
    several_tasks = frame["task"].nunique() > 1
    frame["row"] = [f"{task} · {start}" if several_tasks else str(start)
                    for task, start in zip(frame["task"], frame["starting_point"])]
    sizes = sorted(frame["examples_per_class"].dropna().unique()) + (
        [float("nan")] if frame["examples_per_class"].isna().any() else [])
    columns = ["all" if not np.isfinite(s) else f"{s:g}" for s in sizes]
    rows = sorted(frame["row"].unique())
    z = np.full((len(rows), len(columns)), np.nan)
    text = [["" for _ in columns] for _ in rows]
    positive = frame["significant_positive"] if "significant_positive" in frame else pd.Series(False, frame.index)
    for (row, size, gain, ci, negative, plus) in zip(frame["row"], frame["examples_per_class"], frame["gain"],
                                                      frame["gain_ci95"], frame["significant_negative"], positive):
        i, j = rows.index(row), columns.index("all" if not np.isfinite(size) else f"{size:g}")
        z[i, j] = float(gain)
        cell = f"{gain:+.3f}" + (f" ± {ci:.3f}" if np.isfinite(ci) else "")
        text[i][j] = cell + (" ▼" if bool(negative) else " ▲" if bool(plus) else "")
    finite = np.abs(z[np.isfinite(z)])
    limit = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    fig = go.Figure(go.Heatmap(
        z=z, x=columns, y=rows, text=text, texttemplate="%{text}", textfont=dict(size=11),
        colorscale="RdBu", zmid=0, zmin=-limit, zmax=limit, xgap=2, ygap=2,
        colorbar=dict(title=dict(text="gain vs<br>baseline")),
        hovertemplate="%{y}<br>%{x}/class: %{text}<extra></extra>"))
    fig.update_xaxes(title_text="examples per class", type="category", side="bottom", automargin=True)
    fig.update_yaxes(automargin=True, autorange="reversed")
    fig.update_layout(template=TEMPLATE, height=max(300, 140 + 44 * len(rows)), margin=dict(l=60, r=20, t=60, b=60))
    return finish_figure(fig, "Negative transfer: gain over the random-init baseline",
                         "▼ whole 95% CI below 0, ▲ whole 95% CI above 0")


def _size_title(size: float) -> str:
    return "all examples" if not np.isfinite(size) else f"{size:g}/class"


def gain_vs_similarity_chart(gain_frame: pd.DataFrame, colours: Mapping[str, str] | None = None) -> go.Figure:
    """Each run's gain over the random-init baseline against the transferability (LogME) of its starting
    features, measured before training: one facet per training-set size (and task), each titled with its own
    Spearman ρ (``compare.gain_correlations``), never one pooled over sizes, since both LogME and the gain
    move with the size. One colour per configuration (``colours``, see :func:`store_colours`). A rising
    cloud within a facet means LogME predicts what helps at that size."""
    if _missing(gain_frame, ["gain", "transferability", "label"]):
        return empty_figure("No transfer runs with a random-init baseline reference yet.")
    frame = gain_frame.copy()
    frame["transferability"] = pd.to_numeric(frame["transferability"], errors="coerce").astype(float)
    frame["gain"] = pd.to_numeric(frame["gain"], errors="coerce").astype(float)
    frame = frame[np.isfinite(frame["transferability"]) & np.isfinite(frame["gain"])]
    if frame.empty:
        return empty_figure("No transferability scores: LogME is computed before training only where the "
                            "starting features can be scored (not for random init), so these runs have none.")
    if "task" not in frame:
        frame["task"] = ""
    if "examples_per_class" not in frame:
        frame["examples_per_class"] = np.nan
    frame["examples_per_class"] = pd.to_numeric(frame["examples_per_class"], errors="coerce").astype(float)
    correlations = gain_correlations(frame)
    several_tasks = frame["task"].nunique() > 1
    titles, keys = [], []
    for task, size, n, rho, p_value in correlations[["task", "examples_per_class", "n", "spearman",
                                                     "spearman_p"]].itertuples(index=False):
        reading = (f"Spearman ρ = {rho:+.2f} (p = {p_value:.2g}, {n} runs)" if np.isfinite(rho)
                   else f"{n} run{'s' if n != 1 else ''}: too few or no spread for ρ")
        titles.append(" · ".join([*([str(task)] if several_tasks else []), _size_title(size)]) + "<br>" + reading)
        keys.append((str(task), -1.0 if not np.isfinite(size) else float(size)))
    fig, positions = _facets(titles, y_title="gain over baseline", x_title="LogME (higher = better features)")
    where = dict(zip(keys, positions))
    colours = label_colours(frame["label"].astype(str), colours)
    shown: set[str] = set()
    frame["facet"] = list(zip(frame["task"].astype(str), frame["examples_per_class"].fillna(-1.0)))
    for (facet, label), rows in frame.groupby(["facet", "label"], sort=True):
        label = str(label)
        row, col = where[facet]
        custom = np.column_stack([rows["examples_per_class"].to_numpy(dtype=float),
                                  rows["seed"].to_numpy(dtype=float) if "seed" in rows else np.full(len(rows), np.nan)])
        fig.add_trace(go.Scatter(
            x=rows["transferability"].to_numpy(dtype=float), y=rows["gain"].to_numpy(dtype=float), mode="markers",
            name=label, legendgroup=label, showlegend=label not in shown,
            marker=dict(color=colours[label], size=9, opacity=0.85), customdata=custom,
            hovertemplate="LogME %{x:.3f}, gain %{y:+.3f}<br>%{customdata[0]:g}/class, seed %{customdata[1]:.0f}"
                          f"<extra>{label}</extra>"), row=row, col=col)
        shown.add(label)
    fig.add_hline(y=0, line=dict(color="black", width=1, dash="dot"), row="all", col="all")
    _legend_below(fig)
    return finish_figure(fig, "Gain over the random-init baseline vs transferability (LogME, before training)",
                         "one facet and one Spearman correlation per training-set size, never pooled")


def imagenet_transfer_chart(points: pd.DataFrame, colours: Mapping[str, str] | None = None) -> go.Figure:
    """Kornblith et al.'s question on measured runs: published ImageNet top-1 (x) against transfer score (y),
    one point per ImageNet backbone with its 95 % CI over seeds, one colour per strategy (``colours``, see
    :func:`store_colours`), one facet per task and training-set size (sizes are never pooled). Intervals are
    clipped to the score's range [0, 1]."""
    if _missing(points, ["task", "examples_per_class", "strategy", "backbone", "imagenet_top1", "mean", "ci95"]):
        return empty_figure("No runs of ImageNet-pretrained backbones yet: `transferlab demo --backbones` makes them.")
    frame = points.copy()
    frame["size"] = [f"{t} · {int(n)}/class" if pd.notna(n) else f"{t} · all data"
                     for t, n in zip(frame["task"], frame["examples_per_class"])]
    frame = frame.sort_values(["task", "examples_per_class"])
    facets = list(dict.fromkeys(frame["size"]))
    fig, positions = _facets(facets, shared_y=False, y_title=score_label(points),
                             x_title="published ImageNet top-1")
    where = dict(zip(facets, positions))
    colours = label_colours(frame["strategy"].astype(str), colours)
    shown: set[str] = set()
    for (facet, strategy), rows in frame.groupby(["size", "strategy"], sort=True):
        rows = rows.sort_values("imagenet_top1")
        mean = rows["mean"].to_numpy(dtype=float)
        ci = rows["ci95"].fillna(0.0).to_numpy(dtype=float)
        upper = np.minimum(mean + ci, 1.0) - mean
        lower = mean - np.maximum(mean - ci, 0.0)
        row, col = where[facet]
        fig.add_trace(go.Scatter(
            x=rows["imagenet_top1"].to_numpy(dtype=float), y=mean, mode="lines+markers+text",
            text=rows["backbone"].astype(str).str.replace("efficientnet_", "").tolist(), textposition="top center",
            textfont=dict(size=9, color=GREY),
            error_y=dict(type="data", array=upper, arrayminus=lower, visible=True, thickness=1.2, width=4),
            customdata=np.column_stack([rows["backbone"].astype(str), rows["weights"].astype(str),
                                        rows["n"].to_numpy(dtype=float)]),
            name=str(strategy), legendgroup=str(strategy), showlegend=strategy not in shown,
            line=dict(color=colours[str(strategy)], width=1, dash="dot"), marker=dict(size=8),
            hovertemplate="%{customdata[0]} (%{customdata[1]}): top-1 %{x:.3f}, score %{y:.3f}"
                          " over %{customdata[2]:.0f} seeds" f"<extra>{strategy}</extra>"), row=row, col=col)
        shown.add(strategy)
    fig.update_layout(title="Do better ImageNet models transfer better? (measured here; 95 % CI over seeds)")
    _legend_below(fig)
    return fig


# ---------------------------------------------------------------------------------------- verdict (Pareto)

PARETO_COSTS = {"wall_seconds": "training seconds (log)", "latency_ms": "latency per image, ms (log)"}


def pareto_chart(front: pd.DataFrame, cost: str = "wall_seconds", colours: Mapping[str, str] | None = None
                 ) -> go.Figure:
    """Mean score against a cost (``pareto.pareto_front``: training seconds or latency per image), one facet per
    task and training-set size, one colour per configuration (``colours``, see :func:`store_colours`). Filled
    markers are on the Pareto front (no other configuration scores higher for less); hollow ones are beaten on
    both. Only measured points are drawn: nothing joins them, so no line claims a score between runs."""
    if _missing(front, ["task", "size", "label", "mean", "cost", "on_front"]):
        what = "latency measured on this machine (`transferlab backbones --measure`)" if cost == "latency_ms" \
            else "training time recorded"
        return empty_figure(f"No configurations with {what} yet.")
    frame = front.sort_values(["task", "size_key", "fraction_key"] if "size_key" in front else ["task", "size"])
    several_tasks = frame["task"].nunique() > 1
    frame = frame.assign(facet=[f"{t} · {s}" if several_tasks else str(s) for t, s in zip(frame["task"], frame["size"])])
    facets = list(dict.fromkeys(frame["facet"]))
    fig, positions = _facets(facets, shared_y=False, y_title=score_label(front), x_title=PARETO_COSTS.get(cost, cost))
    where = dict(zip(facets, positions))
    colours = label_colours(frame["label"].astype(str), colours)
    shown: set[str] = set()
    unit = "s" if cost == "wall_seconds" else "ms/image"
    for (facet, label), rows in frame.groupby(["facet", "label"], sort=True):
        label = str(label)
        row, col = where[facet]
        on = rows["on_front"].astype(bool).to_numpy()
        fig.add_trace(go.Scatter(
            x=rows["cost"].to_numpy(dtype=float), y=rows["mean"].to_numpy(dtype=float), mode="markers",
            name=label, legendgroup=label, showlegend=label not in shown,
            marker=dict(color=colours[label], size=np.where(on, 12, 9).tolist(),
                        symbol=np.where(on, "circle", "circle-open").tolist(), line=dict(width=2)),
            customdata=np.where(on, "on the Pareto front", "beaten on both by another configuration"),
            hovertemplate=f"%{{y:.3f}} at %{{x:.3g}} {unit}<br>%{{customdata}}<extra>{label}</extra>"),
            row=row, col=col)
        shown.add(label)
    fig.update_xaxes(type="log")
    _legend_below(fig)
    # Plotly does not grow a figure for its legend: room below the axes for about two names per line, the
    # plot area kept as it was (the legend's place was set from it above).
    legend_lines = (len(shown) + 1) // 2
    fig.update_layout(height=(fig.layout.height or 450) + 22 * legend_lines,
                      margin=dict(b=(fig.layout.margin.b or 60) + 22 * legend_lines))
    return finish_figure(fig, f"Score against {PARETO_COSTS.get(cost, cost).removesuffix(' (log)')}",
                         "filled: on the Pareto front (nothing else scores higher for less); hollow: beaten on both")


# ---------------------------------------------------------------------------------------- ranking (rank page)

RANK_COLOURS = {"top": "#1f77b4", "tie": "#7fb2df", "below": "#c7c7c7"}
RANK_STANDING = {"top": "top pair", "tie": "tied with the top (fold-wise p ≥ 0.05)",
                 "below": "below the top (fold-wise p < 0.05)"}


def rank_chart(ranking: pd.DataFrame) -> go.Figure:
    """A stored ranking (``transferlab.ranking.ranking_frame``): probe accuracy per backbone/weights pair with its
    fold standard deviation, best at the top, coloured by its standing against the top pair (top, tied, below),
    beside what scoring the pair cost here (seconds; hover: LogME, k-NN, parameters, latency)."""
    if _missing(ranking, ["pair", "probe_mean", "probe_std", "vs_top", "seconds"]):
        return empty_figure("No ranking stored for this task yet: `transferlab rank` makes one.")
    frame = ranking[pd.notna(ranking["probe_mean"])].copy()
    if frame.empty:
        return empty_figure("No pair of this ranking could be scored.")
    frame = frame.iloc[::-1]  # plotly draws the first category at the bottom
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, column_widths=[0.7, 0.3], horizontal_spacing=0.03,
                        subplot_titles=["probe accuracy (± fold std)", "seconds to score here"])
    custom = np.column_stack([frame[c].astype(float).to_numpy() if c in frame else np.full(len(frame), np.nan)
                              for c in ("logme", "knn_mean", "params", "latency_ms")])
    shown: set[str] = set()
    for standing in ("top", "tie", "below"):
        rows = frame["vs_top"].astype(str) == standing
        if not rows.any():
            continue
        part = frame[rows]
        fig.add_trace(go.Bar(
            x=part["probe_mean"].astype(float), y=part["pair"], orientation="h", name=RANK_STANDING[standing],
            marker_color=RANK_COLOURS[standing], legendgroup=standing, showlegend=standing not in shown,
            error_x=dict(type="data", array=part["probe_std"].fillna(0.0).astype(float), visible=True, thickness=1.2),
            text=[f"{v:.3f}" for v in part["probe_mean"].astype(float)], textposition="inside",
            customdata=custom[rows.to_numpy()],
            hovertemplate="%{y}: probe %{x:.3f}<br>LogME %{customdata[0]:.3f} · k-NN %{customdata[1]:.3f}"
                          "<br>%{customdata[2]:,.0f} parameters · %{customdata[3]:.1f} ms/image<extra></extra>"),
            row=1, col=1)
        shown.add(standing)
    cached = frame["features_cached"].fillna(False).astype(bool) if "features_cached" in frame else \
        pd.Series(False, index=frame.index)
    fig.add_trace(go.Bar(
        x=frame["seconds"].astype(float), y=frame["pair"], orientation="h", showlegend=False, marker_color=GREY,
        text=[f"{s:.1f} s" + (" (cached)" if c else "") for s, c in zip(frame["seconds"].astype(float), cached)],
        textposition="auto", hovertemplate="%{y}: %{x:.1f} s<extra></extra>"), row=1, col=2)
    low = float(np.nanmin(frame["probe_mean"].astype(float) - frame["probe_std"].fillna(0.0).astype(float)))
    fig.update_xaxes(range=[max(0.0, low - 0.05), 1.0], row=1, col=1)
    fig.update_layout(template=TEMPLATE, height=140 + 34 * len(frame), margin=dict(l=20, r=20, t=80, b=40),
                      bargap=0.25)
    # the bars follow the ranking, best at the top (plotly would order categories by trace: top, tie, below)
    fig.update_yaxes(automargin=True, categoryorder="array", categoryarray=list(frame["pair"]))
    _legend_below(fig)
    return finish_figure(fig, "Backbones ranked before training",
                         "cross-validated logistic probe on frozen features of the training pool; tie = not separable "
                         "from the top pair fold by fold")


def rank_vs_realised_chart(points: pd.DataFrame, taus: pd.DataFrame | None = None) -> go.Figure:
    """How a ranking predicted the runs that followed (``transferlab.rank_check.rank_vs_realised``): probe accuracy
    before training (x) against each pair's best realised test score (y), one facet per training-set size, with
    the facet's weighted Kendall τ of the probe, of published ImageNet top-1 and of parameter count in its
    title (— where fewer than 3 pairs have it)."""
    if _missing(points, ["pair", "size", "probe_mean", "realised"]):
        return empty_figure("No runs of the ranked pairs on this task and data version yet.")
    frame = points.copy()
    frame["_order"] = pd.to_numeric(frame["examples_per_class"], errors="coerce").fillna(np.inf)
    frame = frame.sort_values(["_order", "probe_mean"])
    sizes = list(dict.fromkeys(frame["size"]))
    by_size = {} if taus is None or taus.empty else {row["size"]: row for _, row in taus.iterrows()}

    def tau(row, key):
        value = row.get(f"tau_{key}") if row is not None else None
        return "—" if value is None or not np.isfinite(value) else f"{value:+.2f}"

    titles = [f"{s}: τ probe {tau(by_size.get(s), 'probe_mean')} · top-1 {tau(by_size.get(s), 'imagenet_top1')}"
              f" · size {tau(by_size.get(s), 'params')}" for s in sizes]
    labels = set(frame["metric_label"].dropna().astype(str)) if "metric_label" in frame else set()
    y_title = f"best realised {labels.pop()}" if len(labels) == 1 else "best realised test score"
    fig, positions = _facets(titles, shared_y=False, y_title=y_title, x_title="probe accuracy (before training)")
    colours = label_colours(frame["pair"].astype(str))
    shown: set[str] = set()
    for (size, pair), rows in frame.groupby(["size", "pair"], sort=False):
        row, col = positions[sizes.index(size)]
        ci = rows["realised_ci95"].astype(float).fillna(0.0) if "realised_ci95" in rows else np.zeros(len(rows))
        fig.add_trace(go.Scatter(
            x=rows["probe_mean"].astype(float), y=rows["realised"].astype(float), mode="markers",
            error_y=dict(type="data", array=ci, visible=True, thickness=1.2, width=4),
            name=str(pair), legendgroup=str(pair), showlegend=pair not in shown,
            marker=dict(size=11, color=colours[str(pair)]),
            hovertemplate=f"{pair}<br>probe %{{x:.3f}} → realised %{{y:.3f}}<extra>{size}</extra>"), row=row, col=col)
        shown.add(pair)
    _legend_below(fig)
    return finish_figure(fig, "Did the ranking predict the runs?",
                         "weighted Kendall τ (top pairs weigh more; +1 same order) of the probe, of ImageNet top-1 "
                         "(ImageNet pairs only) and of parameter count against the best realised score per pair")
