"""A self-contained static HTML report of every comparison plot (plotly.js inlined once).

The report is made to be passed on, so it never holds this machine's paths or secrets, in read-only mode
or not: its runs go through :func:`transferlab.redact.public_runs` first (a weights file shows as
``file:x.weights.h5 (sha256 1a2b3c4d)``).
"""
from __future__ import annotations

import contextlib
import html
from typing import Any, Iterator

import pandas as pd

from transferlab.analysis import run_labels, summarize
from transferlab.compare import crossovers, curves, gain_per_run, negative_transfer, score_intervals
from transferlab.dashboard import charts
from transferlab.redact import public_runs, redact_text


def report_figures(runs: pd.DataFrame, epochs: pd.DataFrame) -> list[tuple[str, object]]:
    """(title, figure) for every plot of the report, per task, coloured and bounded as on the pages (one
    colour per configuration from the whole store, Wilson intervals for single-seed accuracies)."""
    figures: list[tuple[str, object]] = []
    colours = charts.store_colours(runs)
    for task in sorted(runs["task"].unique()) if not runs.empty else []:
        part = runs[runs["task"] == task]
        summary = summarize(part)
        figures += [
            (f"{task}: data efficiency", charts.data_efficiency_chart(score_intervals(summary, part), crossovers(summary),
                                                                       colours=colours)),
            (f"{task}: gain over the random-init baseline", charts.gain_chart(summary, colours=colours)),
            (f"{task}: negative transfer", charts.negative_transfer_heatmap(negative_transfer(summary))),
            (f"{task}: gain vs transferability", charts.gain_vs_similarity_chart(gain_per_run(part), colours=colours)),
            (f"{task}: learning curves", charts.learning_curves_chart(
                curves(epochs[epochs["run_id"].isin(part["run_id"])], part), colours=colours)),
        ]
    return figures


def verdict_html(runs: pd.DataFrame) -> str:
    """The verdict panel of the report: a paragraph per task and the table per size (empty without runs)."""
    from transferlab.verdict import recommend

    recommendation = recommend(runs)
    verdicts = recommendation.verdicts
    if verdicts.empty:
        return ""
    parts = ["<h2>Verdict</h2>"]
    for (task, version), text in recommendation.summaries().items():
        name = task + (f" (data {version})" if version else "")
        parts.append(f"<p><b>{html.escape(name)}</b>: {html.escape(text)}</p>")
    table = verdicts.sort_values(["task", "data_version", "size_key", "fraction_key"])[
        ["task", "size", "outcome", "winner", "winner_mean", "winner_n", "runner_up", "runner_up_mean", "evidence",
         "gain_text", "wall_seconds", "trainable_params"]]
    whole = lambda v: "—" if pd.isna(v) else f"{v:,.0f}"  # noqa: E731 (seconds and parameters are counts here)
    parts.append(table.to_html(index=False, na_rep="—", float_format=lambda v: f"{v:.3f}",
                               formatters={"wall_seconds": whole, "trainable_params": whole}))
    parts.append("<p>Paired t-test over seeds where both configurations ran the same seeds, else Welch's; a lead "
                 "with one seed is not tested; a lead that is not significant is a tie. The gain is over the "
                 "strongest scratch configuration at the size, not claimed when it was still improving.</p>")
    return "\n".join(parts)


#: thumbnails of the winner's wrong test images in the report, per task
REPORT_GALLERY_SIZE = 12


def _png_base64(image) -> str:
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@contextlib.contextmanager
def _report_store(store) -> Iterator[Any]:
    """The store given, else the default one opened read-only (building a report never writes) and closed again
    once the report is made; None when there is none."""
    if store is not None:
        yield store
        return
    from transferlab.errors import StoreError
    from transferlab.store import Store

    try:
        opened = Store(read_only=True)
    except StoreError:
        yield None
        return
    try:
        yield opened
    finally:
        opened.engine.dispose()


GALLERY_TITLE = "<h2>What the winner gets wrong</h2>"


def gallery_html(runs: pd.DataFrame, store=None, registry=None) -> str:
    """Per task and data version, the verdict winner's wrong test images (worst first, at most
    :data:`REPORT_GALLERY_SIZE`, inline base64 PNG) with true and predicted class and confidence, where its
    test predictions are stored and its data is on this machine; a line saying why not otherwise, also when the
    winners cannot be told (the rest of the report never depends on this section). ``runs`` are public (labels
    only); the images are found through the stored job spec, which is never printed."""
    with _report_store(store) as opened:
        return _gallery_html(runs, opened, registry)


def _gallery_html(runs: pd.DataFrame, store, registry) -> str:
    from transferlab.errors import TransferlabError
    from transferlab.run_diff import mistakes, winning_runs
    from transferlab.test_images import job_of, load_test_data, thumbnails

    if store is None or runs.empty:
        return ""
    try:
        winners = winning_runs(runs)
    except Exception as exc:  # one verdict that cannot be read costs this section, not the whole report
        return (f"{GALLERY_TITLE}\n<p>The gallery could not be made: the verdict's winners could not be told "
                f"({html.escape(type(exc).__name__)}: {html.escape(redact_text(str(exc))[:200])}).</p>")
    if not winners:
        return ""
    if registry is None:
        from transferlab.registry import get_registry

        registry = get_registry()
    labels = run_labels(runs).to_dict()
    by_id = {run_id: index for index, run_id in runs["run_id"].items()}
    parts = [GALLERY_TITLE]
    for (task, version), run_id in winners.items():
        name = task + (f" (data {version})" if version else "")
        label = labels.get(by_id.get(run_id), "")
        parts.append(f"<h3>{html.escape(name)}: {html.escape(label)} (run {html.escape(run_id)})</h3>")
        payload = getattr(store, "predictions", lambda _: None)(run_id)
        if payload is None or payload.get("kind") != "classification":
            parts.append("<p>No per-image predictions stored for this run (stored before predictions were kept, "
                         "or not a classification run).</p>")
            continue
        try:
            every = mistakes(payload)
        except TransferlabError as exc:  # predictions stored inconsistent: this run's part says so
            parts.append(f"<p>{html.escape(redact_text(str(exc)))}</p>")
            continue
        wrong = every.head(REPORT_GALLERY_SIZE)
        n = len(payload["indices"])
        parts.append(f"<p>{len(every)} of {n} test images wrong; the {len(wrong)} most confident "
                     "mistakes, true → predicted (confidence):</p>")
        if wrong.empty:
            continue
        try:
            stored = store.get(run_id) or {}
            images = thumbnails(load_test_data(registry, job_of(stored)), wrong["index"].tolist())
        except TransferlabError as exc:
            parts.append(f"<p>The test images are not available here: {html.escape(redact_text(str(exc)))}</p>")
            continue
        cells = [f"<figure style='display:inline-block;margin:4px;text-align:center'>"
                 f"<img src='data:image/png;base64,{_png_base64(image)}' width='112' "
                 f"style='image-rendering:pixelated'><figcaption style='font-size:11px'>"
                 f"{html.escape(f'{t} → {p} ({c:.2f})')}</figcaption></figure>"
                 for image, t, p, c in zip(images, wrong["true_name"], wrong["predicted_name"], wrong["confidence"])]
        parts.append("<div>" + "".join(cells) + "</div>")
    return "\n".join(parts)


def html_report(runs: pd.DataFrame, epochs: pd.DataFrame, store=None, registry=None) -> str:
    """One HTML page, openable offline: every figure plus the summary table, with the runs made public
    (no local paths or secrets, whoever builds it), and the gallery of each winning run's mistakes
    (:func:`gallery_html`; ``store`` and ``registry`` default to the default store, opened read-only, and
    the loaded plugins)."""
    runs = public_runs(runs)
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>transferlab report</title>",
             "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 6px;font-size:12px}</style></head><body>",
             "<h1>transferlab report</h1>",
             f"<p>{len(runs)} finished runs. Every number comes from a stored run.</p>", verdict_html(runs)]
    first = True
    for title, fig in report_figures(runs, epochs):
        parts.append(f"<h2>{html.escape(title)}</h2>")
        parts.append(fig.to_html(full_html=False, include_plotlyjs=True if first else False))
        first = False
    parts.append(gallery_html(runs, store, registry))
    if not runs.empty:
        parts.append("<h2>Summary</h2>")
        parts.append(summarize(runs).to_html(index=False, float_format=lambda v: f"{v:.3f}"))
    parts.append("</body></html>")
    return "\n".join(parts)
