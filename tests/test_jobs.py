"""Job specs: stable ids, validation messages, sweep grids with source pretraining, sweep files."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transferlab.errors import UnknownNameError, UserError
from transferlab.jobs import JobSpec, expand_grid, load_sweep_file, make_job
from transferlab.registry import load_registry

REG = load_registry()


def test_job_id_is_stable_and_ignores_how_defaults_were_given():
    a = make_job(REG, task="digits", backbone="small_cnn", strategy="scratch", examples_per_class=5)
    b = make_job(REG, examples_per_class=5, strategy="scratch", backbone="small_cnn", task="digits", input_size=32,
                 epochs=10)
    assert a.job_id == b.job_id and len(a.job_id) == 16
    c = make_job(REG, task="digits", backbone="small_cnn", strategy="scratch", examples_per_class=5, seed=1)
    assert c.job_id != a.job_id


# Computed once and never regenerated: stored runs are found again by these ids, so a change to
# the canonical JSON or the hash that turns it into an id must fail here rather than orphan every stored run.
PINNED_CANONICAL_JSON = (
    '{"augment":false,"backbone":"small_cnn","batch_size":32,"class_weight":"none","depends_on":[],"epochs":10,'
    '"examples_per_class":5,"fine_tune_epochs":5,"fine_tune_layers":20,"fine_tune_learning_rate":1e-05,'
    '"fraction":null,"input_size":32,"kind":"train","learning_rate":0.001,"seed":0,"shuffled_labels":false,'
    '"source":null,"strategy":"scratch","task":"digits","weights":"none","weights_sha256":null}'
)
PINNED_JOB_ID = "c16a606eb6fc927c"


def test_job_id_is_pinned_across_releases():
    job = JobSpec(task="digits", backbone="small_cnn", strategy="scratch", examples_per_class=5, input_size=32)
    assert job.canonical_json() == PINNED_CANONICAL_JSON
    assert job.job_id == PINNED_JOB_ID
    assert JobSpec.from_json(PINNED_CANONICAL_JSON) == job


def test_scratch_ignores_weights():
    a = make_job(REG, task="digits", backbone="efficientnet_lite0", strategy="scratch", weights="imagenet", input_size=32)
    assert a.weights == "none"


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 999), epc=st.one_of(st.none(), st.integers(1, 50)), epochs=st.integers(1, 20),
       lr=st.floats(1e-6, 1.0), augment=st.booleans())
def test_canonical_round_trip(seed, epc, epochs, lr, augment):
    job = make_job(REG, task="digits", backbone="small_cnn", strategy="feature_extraction", seed=seed,
                   examples_per_class=epc, epochs=epochs, learning_rate=lr, augment=augment)
    again = JobSpec.from_json(job.canonical_json())
    assert again == job and again.job_id == job.job_id


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(task="nope"), "Unknown task 'nope'. Valid tasks: animal_detection, animal_mnist"),
        (dict(backbone="resnet9000"), "Unknown backbone 'resnet9000'. Valid backbones:"),
        (dict(strategy="yolo"), "Unknown strategy 'yolo'. Valid strategies: discriminative_lr, feature_extraction"),
        (dict(backbone="inceptionv3", input_size=32), "needs inputs of at least 75 px. Received: input_size=32"),
        (dict(weights="imagenet"),
         "Unknown weight source 'imagenet' for backbone 'small_cnn'. Valid weight sources for backbone 'small_cnn': "),
        (dict(examples_per_class=0), "examples_per_class must be an integer >= 1"),
        (dict(epochs=0), "epochs must be an integer >= 1 and <= 2147483647. Received: epochs=0"),
        (dict(frobnicate=1), "Unknown job option(s) ['frobnicate']"),
    ],
)
def test_bad_job_fields(fields, message):
    base = dict(task="digits", backbone="small_cnn", strategy="feature_extraction")
    base.update(fields)
    with pytest.raises(UserError) as info:
        make_job(REG, **base)
    assert message in str(info.value)


def test_unknown_weight_source_lists_valid_sources():
    with pytest.raises(UnknownNameError, match="hed-edges"):
        make_job(REG, task="digits", backbone="vgg16", strategy="feature_extraction", weights="cifar", input_size=32)


def test_grid_with_source_adds_pretrain_dependency():
    jobs = expand_grid(REG, dict(tasks=["lfw_faces"], backbones=["small_cnn"], strategies=["scratch", "full_fine_tune"],
                                 examples_per_class=[5, 10], seeds=[0], sources=["none", "digits:shuffled"]))
    pretrains = [j for j in jobs if j.kind == "pretrain"]
    assert len(pretrains) == 1 and pretrains[0].task == "digits" and pretrains[0].shuffled_labels
    transfers = [j for j in jobs if j.source]
    assert len(transfers) == 2
    assert all(j.depends_on == (pretrains[0].job_id,) and j.weights == f"run:{pretrains[0].job_id}" for j in transfers)
    assert jobs.index(pretrains[0]) == 0
    # scratch with a source is skipped (random init); plain scratch and full_fine_tune from none remain
    assert len(jobs) == 1 + 2 + 4


def test_sweep_file_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[grid]\ntasks = ['digits']\nseeds = = 2\n")
    with pytest.raises(UserError, match=r"not valid TOML: .*line 3"):
        load_sweep_file(bad)
    unclosed = tmp_path / "unclosed.toml"
    unclosed.write_text("[grid]\ntasks = ['digits'\n")
    with pytest.raises(UserError, match=r"not valid TOML: .*line 2"):
        load_sweep_file(unclosed)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[grid]\ntasks=['digits']\n[optionz]\nepochs=2\n")
    with pytest.raises(UserError, match=r"unknown table\(s\) \['optionz'\]"):
        load_sweep_file(unknown)
    axis = tmp_path / "axis.toml"
    axis.write_text("[grid]\ntask=['digits']\nbackbones=['small_cnn']\nstrategies=['scratch']\n")
    with pytest.raises(UserError, match=r"axis.toml: unknown axis \['task'\] in \[grid\]"):
        load_sweep_file(axis)
    with pytest.raises(UserError, match=r"Unknown sweep axis \['task'\]"):
        expand_grid(REG, dict(task=["digits"], backbones=["small_cnn"], strategies=["scratch"]))


def test_documented_sweep_files_expand():
    from pathlib import Path

    for path in sorted((Path(__file__).resolve().parents[1] / "docs" / "sweeps").glob("*.toml")):
        grid, options = load_sweep_file(path)
        jobs = expand_grid(REG, grid, options)
        assert jobs, path.name
        assert all(j.task == "animal_mnist" for j in jobs if j.kind == "train")


def test_later_options_keep_old_ids_until_used():
    job = make_job(REG, task="digits", backbone="small_cnn", strategy="scratch", examples_per_class=5)
    assert "xla" not in job.canonical() and "mixed_precision" not in job.canonical()
    xla = make_job(REG, task="digits", backbone="small_cnn", strategy="scratch", examples_per_class=5, xla=True)
    assert xla.canonical()["xla"] is True and xla.job_id != job.job_id
    assert JobSpec.from_json(xla.canonical_json()) == xla


# --- field ranges and sweep plans -------------------------------------------------------------------

def test_field_error_is_worded_with_the_caller_s_names():
    from transferlab.jobs import JobFieldError, flag_names, literal

    with pytest.raises(JobFieldError) as info:
        make_job(REG, task="digits", backbone="inceptionv3", strategy="scratch", input_size=40)
    assert info.value.field == "input_size"
    assert str(info.value).endswith("Received: input_size=40. Use input_size 75 or more.")
    assert info.value.render(flag_names()).endswith("Received: --input-size=40. Use --input-size 75 or more.")
    braces = JobFieldError("weights", "x", "{weights} file " + literal("/a/{b}/c") + " is bad.")
    assert braces.render(flag_names()) == "--weights file /a/{b}/c is bad. Received: --weights='x'."


@pytest.mark.parametrize("name, value", [
    ("epochs", 2**31), ("seed", -1), ("seed", 2**31), ("batch_size", 0), ("learning_rate", float("inf")),
    ("learning_rate", float("nan")), ("fine_tune_learning_rate", 0.0), ("fraction", 0.0), ("fraction", 1.01),
    ("augment", "yes"), ("augment", 1), ("epochs", True), ("epochs", 3.0), ("class_weight", "heavy"),
])
def test_every_field_range_is_checked_by_make_job(name, value):
    from transferlab.jobs import JobFieldError

    with pytest.raises(JobFieldError) as info:
        make_job(REG, task="digits", backbone="small_cnn", strategy="feature_extraction", **{name: value})
    assert info.value.field == name and f"Received: {name}=" in str(info.value)


def test_one_and_one_point_zero_give_the_same_job():
    a = make_job(REG, task="digits", backbone="small_cnn", strategy="scratch", fraction=1, learning_rate=1)
    b = make_job(REG, task="digits", backbone="small_cnn", strategy="scratch", fraction=1.0, learning_rate=1.0)
    assert a.job_id == b.job_id and a.fraction == 1.0


POOL = dict(tasks=["digits", "lfw_faces"], backbones=["small_cnn", "efficientnet_lite0", "vgg16"],
            weights=["none", "imagenet", "hed-edges"], strategies=["scratch", "frozen_features", "lp_ft"],
            examples_per_class=[5, 10, 20], seeds=[0, 1, 2], sources=["none", "digits", "lfw_faces:shuffled"])


@settings(max_examples=25, deadline=None)
@given(st.fixed_dictionaries({axis: st.lists(st.sampled_from(values), min_size=1, max_size=3)
                              for axis, values in POOL.items()}))
def test_plan_counts_exactly_the_jobs_the_grid_makes(grid):
    from transferlab.errors import UserError as Refused
    from transferlab.sweeps import expand_plan, plan_sweep

    options = dict(input_size=32, epochs=1)
    try:
        plan = plan_sweep(REG, grid, options, skip="weights")
    except Refused as exc:  # every cell skipped
        assert "every combination" in str(exc)
        return
    jobs = expand_plan(REG, plan)
    assert plan.jobs == len(jobs) and len({j.job_id for j in jobs}) == len(jobs)
    assert plan.pretrain == sum(j.kind == "pretrain" for j in jobs)
    assert plan.combinations == np.prod([len(set(v)) for v in grid.values()])
    assert all(j.weights == "none" or j.weights.startswith("run:")
               or REG.backbone(j.backbone).weight_source(j.weights) for j in jobs)


def test_skip_modes():
    from transferlab.sweeps import plan_sweep

    grid = dict(tasks=["digits", "sentiment_tweets"], backbones=["small_cnn"], strategies=["scratch"],
                weights=["none", "imagenet"])
    with pytest.raises(UnknownNameError):
        plan_sweep(REG, dict(grid, tasks=["digits"]))
    with pytest.raises(UserError, match="takes text"):
        plan_sweep(REG, grid, skip="weights")  # a text task on an image backbone is not a weights question
    plan = plan_sweep(REG, grid, skip="unfit")
    assert plan.jobs == 1 and len(plan.skipped) == 2 and plan.skipped_combinations == 3
    with pytest.raises(UserError, match="examples_per_class must be"):  # a bad value is never skipped
        plan_sweep(REG, dict(grid, examples_per_class=[0]), skip="unfit")
