"""Splits and training subsets: fixed test split, deterministic, stratified and nested subsets."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transferlab.data import TaskData, make_splits, max_examples_per_class, sample_subset
from transferlab.errors import UserError


def _task(n_per_class=(30, 40, 50)):
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(n_per_class)])
    images = np.zeros((len(labels), 4, 4, 1), np.uint8)
    return TaskData(images=images, labels=labels, class_names=tuple(str(c) for c in range(len(n_per_class))))


def test_splits_are_fixed_disjoint_and_stratified():
    data = _task()
    a, b = make_splits(data), make_splits(data)
    assert np.array_equal(a.test, b.test) and np.array_equal(a.val, b.val)
    assert not set(a.test) & set(a.pool) and not set(a.val) & set(a.pool) and not set(a.test) & set(a.val)
    assert len(a.test) + len(a.val) + len(a.pool) == len(data.labels)
    assert np.bincount(data.labels[a.test]).tolist() == [6, 8, 10]


def test_official_test_split_is_used():
    data = _task()
    data.test_indices = np.arange(10)
    assert make_splits(data).test.tolist() == list(range(10))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), small=st.integers(1, 8), extra=st.integers(0, 10))
def test_subsets_deterministic_stratified_nested(seed, small, extra):
    data = _task()
    splits = make_splits(data)
    a = sample_subset(data.labels, splits.pool, seed, small)
    assert np.array_equal(a, sample_subset(data.labels, splits.pool, seed, small))
    assert np.bincount(data.labels[a]).tolist() == [small] * 3
    bigger = sample_subset(data.labels, splits.pool, seed, small + extra)
    assert set(a) <= set(bigger)
    assert set(a) <= set(splits.pool)


def test_different_seeds_give_different_subsets():
    data = _task()
    splits = make_splits(data)
    assert set(sample_subset(data.labels, splits.pool, 0, 5)) != set(sample_subset(data.labels, splits.pool, 1, 5))


def test_too_many_examples_per_class_says_the_maximum():
    data = _task()
    splits = make_splits(data)
    most = max_examples_per_class(data.labels, splits.pool)
    with pytest.raises(UserError, match=f"only {most} labelled training examples.*examples_per_class={most + 1}"):
        sample_subset(data.labels, splits.pool, 0, most + 1, task_name="toy")


def test_fraction_subset():
    data = _task()
    splits = make_splits(data)
    sub = sample_subset(data.labels, splits.pool, 0, fraction=0.5)
    pool_counts = np.bincount(data.labels[splits.pool])
    assert np.bincount(data.labels[sub]).tolist() == [int(round(c / 2)) for c in pool_counts]


def test_task_data_rejects_bad_arrays():
    with pytest.raises(UserError, match="uint8"):
        TaskData(images=np.zeros((4, 4, 4, 3), np.float32), labels=[0, 1, 0, 1], class_names=("a", "b"))
    with pytest.raises(UserError, match="at least 2 classes"):
        TaskData(images=np.zeros((4, 4, 4, 3), np.uint8), labels=[0, 0, 0, 0], class_names=("a", "b"))


@pytest.mark.parametrize("counts, named", [((30, 2), "'1' has 2 examples (none left for validation)"),
                                           ((30, 1), "'1' has 1 example (none left for test or validation)")])
def test_a_class_too_small_for_every_split_is_refused_with_its_count(counts, named):
    data = _task(counts)
    with pytest.raises(UserError, match="at least 3 examples") as info:
        make_splits(data)
    assert named in str(info.value) and "'0'" not in str(info.value)
    enough = _task((30, 3))
    splits = make_splits(enough)
    for part in (splits.test, splits.val, splits.pool):  # 3 is enough: one each
        assert set(enough.labels[part]) == {0, 1}


def test_classes_are_counted_by_group_when_grouped_and_not_at_all_with_structured_targets():
    data = _task((30, 6))
    data.groups = np.array([f"g{i}" for i in range(30)] + ["x", "x", "x", "y", "y", "y"])
    with pytest.raises(UserError, match="'1' has 2 groups"):
        make_splits(data)
    data.groups, data.targets = None, [None] * len(data)  # labels of a detection task only stratify
    data.labels[-6:-1] = 0
    make_splits(data)


def test_the_split_check_counts_once_per_split_not_once_per_class():
    """Thousands of classes: the check that every class reaches every split costs a few counts, not a pass
    over the labels per class (which took seconds here)."""
    import dataclasses
    import time

    from transferlab.data import Splits, _refuse_classes_missing_a_split

    labels = np.repeat(np.arange(4000), 50)
    data = TaskData(images=np.zeros((len(labels), 1, 1, 1), np.uint8), labels=labels,
                    class_names=tuple(str(c) for c in range(4000)))
    order = np.arange(len(labels))
    splits = Splits(test=order[0::50], val=order[1::50], pool=np.setdiff1d(order, order[0::25]), method="by hand")
    start = time.perf_counter()
    _refuse_classes_missing_a_split(data, splits)
    assert time.perf_counter() - start < 0.5
    splits = dataclasses.replace(splits, val=splits.val[:-1])  # the last class has none left for validation
    with pytest.raises(UserError, match="'3999' has 50 examples \\(none left for validation\\)"):
        _refuse_classes_missing_a_split(data, splits)


def test_the_folder_scan_refuses_small_classes_by_the_splits_own_minimum(tmp_path, monkeypatch):
    """One rule, one number: the scan's "too few images" follows the minimum the splits need."""
    from PIL import Image

    from transferlab import data as data_module
    from transferlab.image_files import scan_class_folders

    for cls in ("cats", "dogs"):
        (tmp_path / cls).mkdir()
        for i in range(4):
            Image.fromarray(np.full((4, 4, 3), 50 * i, np.uint8)).save(tmp_path / cls / f"{i}.png")
    assert len(scan_class_folders(tmp_path).paths) == 8
    monkeypatch.setattr(data_module, "MIN_EXAMPLES_PER_CLASS", 5)
    with pytest.raises(UserError, match="fewer than 5 usable images: 'cats' \\(4\\), 'dogs' \\(4\\)"):
        scan_class_folders(tmp_path)


def test_data_that_changes_while_it_is_read_is_refused_not_labelled_with_the_old_version():
    """Features are cached under the loaded data's version: data whose files changed during load() must not
    pass as the version checked before it."""
    import functools
    import itertools

    from transferlab.data import _TASK_DATA, load_task_data
    from transferlab.specs import TaskSpec

    edits = itertools.count()
    state = {"version": "aaaaaaaaaaaa"}

    def load():  # someone edits the folder while it is read
        state["version"] = f"{next(edits) + 1:012x}"
        return _task((5, 5, 5))

    spec = TaskSpec(name="data.moving", description="d", load=load, num_classes=None,
                    fingerprint=functools.partial(state.get, "version"), data="folder:/x/moving")

    class Registry:
        def task(self, name):
            return spec

    _TASK_DATA.pop("data.moving", None)
    with pytest.raises(UserError, match="changed since this job was queued \\(data version aaaaaaaaaaaa, now "
                                        "000000000001\\)"):
        load_task_data(Registry(), "data.moving", "aaaaaaaaaaaa")
    assert "data.moving" not in _TASK_DATA
    spec = TaskSpec(name="data.moving", description="d", load=lambda: _task((5, 5, 5)), num_classes=None,
                    fingerprint=functools.partial(state.get, "version"), data="folder:/x/moving")
    data = load_task_data(Registry(), "data.moving", "000000000001")  # still data: its version is kept
    assert data.provenance["data_version"] == "000000000001"
    _TASK_DATA.pop("data.moving", None)
