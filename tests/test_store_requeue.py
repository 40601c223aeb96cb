"""Re-queueing a run takes the submitter's spec: the job id leaves out where the data lies, so the same
content found at another path re-queues the old run, and the claimed job must read the new path."""
from __future__ import annotations

import dataclasses

import pytest

from transferlab.jobs import make_job


def _job(registry, data):
    job = make_job(registry, task="digits", backbone="tiny", strategy="scratch", examples_per_class=5, seed=0,
                   input_size=16)
    return dataclasses.replace(job, data=data, data_version="0123456789ab")


@pytest.mark.parametrize("left", ["failed", "queued"])
def test_requeued_run_is_claimed_with_the_new_data_location(registry, store, left):
    old, new = _job(registry, "folder:/a/birds"), _job(registry, "folder:/b/birds")
    assert old.job_id == new.job_id  # same content, another path: one run
    store.submit([old])
    if left == "failed":
        assert store.claim("w").data == "folder:/a/birds"
        store.finish(old.job_id, "failed", error="boom")
    assert store.submit([new]) == ({"queued": 1, "kept": 0} if left == "failed" else {"queued": 0, "kept": 1})
    claimed = store.claim("w")
    assert claimed.job_id == new.job_id and claimed.data == "folder:/b/birds"


def test_csv_columns_carry_the_data_version(registry, store):
    """The runs CSV (CLI and Share page both take CSV_COLUMNS) says which data version each run read."""
    from transferlab.store import CSV_COLUMNS

    store.submit([_job(registry, "folder:/a/birds")])
    table = store.runs_frame().reindex(columns=CSV_COLUMNS)
    assert table["data_version"].tolist() == ["0123456789ab"]


@pytest.mark.parametrize("left", ["queued", "failed"])
def test_a_resubmit_without_keep_model_keeps_the_stored_wish_to_keep_it(registry, store, left):
    """A sweep submitted again without --keep-models takes the new spec (its data location) but never withdraws
    what the earlier one asked for: the run still keeps its model when it runs."""
    old = dataclasses.replace(_job(registry, "folder:/a/birds"), keep_model=True)
    new = _job(registry, "folder:/b/birds")
    store.submit([old])
    if left == "failed":
        store.claim("w")
        store.finish(old.job_id, "failed", error="boom")
    store.submit([new])
    claimed = store.claim("w")
    assert claimed.data == "folder:/b/birds" and claimed.keep_model is True
    store.finish(old.job_id, "failed", error="again")
    store.submit([dataclasses.replace(new, keep_model=True)])  # asked again: asked, of course
    assert store.claim("w").keep_model is True
