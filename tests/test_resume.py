"""Resume inside a run: an interrupted run continues after its last backed-up epoch (Keras BackupAndRestore, here
every epoch; by default at most every 10 s), finished phases are not trained again, and the store keeps the whole
curve."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from transferlab.jobs import make_job
from transferlab.runner import Runner, checkpoint_dir, has_checkpoint
from transferlab.store import Store


@pytest.fixture(autouse=True)
def backup_every_epoch(monkeypatch):
    """These epochs take milliseconds: back up every one, so a kill at epoch 2 has a backup to resume from."""
    monkeypatch.setenv("TRANSFERLAB_BACKUP_SECONDS", "0")


class Interrupted(Exception):
    """Stands in for a crash: raised from the epoch logger after an epoch was backed up."""


def _interrupt_at(epoch_to_stop: int, seen: list[int]):
    def log(epoch, phase, metrics, seconds):
        seen.append(epoch)
        if epoch == epoch_to_stop:
            raise Interrupted()

    return log


def test_interrupted_at_epoch_2_continues_at_epoch_3(registry):
    job = make_job(registry, task="digits", backbone="tiny", strategy="scratch", examples_per_class=10,
                   input_size=16, epochs=5, batch_size=16)
    first: list[int] = []
    with pytest.raises(Interrupted):
        Runner(registry, log_epoch=_interrupt_at(2, first)).run(job)
    assert first == [1, 2] and has_checkpoint(job)

    second: list[int] = []
    result = Runner(registry, log_epoch=lambda e, p, m, s: second.append(e)).run(job)
    assert second == [3, 4, 5]
    assert result.phases[0]["epochs"] == 5 and result.phases[0]["verified"]
    assert not checkpoint_dir(job).exists()  # cleaned up once the run is done


def test_by_default_a_phase_shorter_than_the_backup_interval_writes_no_backup_and_starts_over(registry,
                                                                                                monkeypatch):
    from transferlab.runner import checkpoints

    monkeypatch.delenv("TRANSFERLAB_BACKUP_SECONDS")
    assert checkpoints.backup_seconds() == checkpoints.BACKUP_SECONDS == 10.0
    job = make_job(registry, task="digits", backbone="tiny", strategy="scratch", examples_per_class=10,
                   input_size=16, epochs=5, batch_size=16)
    with pytest.raises(Interrupted):
        Runner(registry, log_epoch=_interrupt_at(2, [])).run(job)
    assert not list(checkpoint_dir(job).rglob("*.weights.h5"))  # two short epochs: nothing written yet
    seen: list[int] = []
    Runner(registry, log_epoch=lambda e, p, m, s: seen.append(e)).run(job)
    assert seen == [1, 2, 3, 4, 5]


def test_a_backup_is_written_once_the_interval_has_passed(registry, monkeypatch):
    from transferlab.runner import checkpoints

    clock = iter(range(0, 1000, 4))  # each reading of the clock 4 s later: every other epoch end passes 6 s
    monkeypatch.setattr(checkpoints, "_clock", lambda: float(next(clock)))
    monkeypatch.setenv("TRANSFERLAB_BACKUP_SECONDS", "6")
    job = make_job(registry, task="digits", backbone="tiny", strategy="scratch", examples_per_class=10,
                   input_size=16, epochs=5, batch_size=16)
    with pytest.raises(Interrupted):
        Runner(registry, log_epoch=_interrupt_at(3, [])).run(job)
    seen: list[int] = []
    Runner(registry, log_epoch=lambda e, p, m, s: seen.append(e)).run(job)
    assert seen == [3, 4, 5]  # began 0; epoch 1 ends at 4 (no), epoch 2 at 8 (backup, clock 12), epoch 3 at 16 (no)


@pytest.mark.parametrize("value", ["soon", "-1", "nan"])
def test_a_bad_backup_interval_is_named(value, monkeypatch):
    from transferlab.errors import UserError
    from transferlab.runner import checkpoints

    monkeypatch.setenv("TRANSFERLAB_BACKUP_SECONDS", value)
    with pytest.raises(UserError, match=f"TRANSFERLAB_BACKUP_SECONDS={value!r}"):
        checkpoints.backup_seconds()


def test_a_finished_phase_is_not_trained_again(registry):
    job = make_job(registry, task="digits", backbone="tiny", strategy="lp_ft", examples_per_class=10,
                   input_size=16, epochs=2, fine_tune_epochs=3, batch_size=16, fine_tune_learning_rate=1e-3)
    first: list[int] = []
    with pytest.raises(Interrupted):
        Runner(registry, log_epoch=_interrupt_at(4, first)).run(job)  # epoch 2 of the fine-tune phase
    second: list[tuple[int, str]] = []
    result = Runner(registry, log_epoch=lambda e, p, m, s: second.append((e, p))).run(job)
    assert [e for e, _ in second] == [5]
    head, fine_tune = result.phases
    assert head.get("resumed") and not fine_tune.get("resumed")
    assert fine_tune["changed_params"] > head["changed_params"]


def test_interrupted_in_the_first_phase_the_next_phase_keeps_its_own_epochs(registry):
    job = make_job(registry, task="digits", backbone="tiny", strategy="lp_ft", examples_per_class=10,
                   input_size=16, epochs=3, fine_tune_epochs=3, batch_size=16, fine_tune_learning_rate=1e-3)
    with pytest.raises(Interrupted):
        Runner(registry, log_epoch=_interrupt_at(2, [])).run(job)  # inside the head phase
    seen: list[tuple[int, str]] = []
    result = Runner(registry, log_epoch=lambda e, p, m, s: seen.append((e, p))).run(job)
    assert seen == [(3, "head"), (4, "fine_tune"), (5, "fine_tune"), (6, "fine_tune")]
    assert [p["epochs"] for p in result.phases] == [3, 3]


def test_a_checkpoint_of_other_data_is_not_resumed(registry):
    job = make_job(registry, task="digits", backbone="tiny", strategy="scratch", examples_per_class=10,
                   input_size=16, epochs=4, batch_size=16)
    with pytest.raises(Interrupted):
        Runner(registry, log_epoch=_interrupt_at(2, [])).run(job)
    for path in checkpoint_dir(job).rglob("*.json"):  # as if the dataset had changed between attempts
        path.write_text(path.read_text().replace('"identity": "', '"identity": "other-'))
    seen: list[int] = []
    Runner(registry, log_epoch=lambda e, p, m, s: seen.append(e)).run(job)
    assert seen == [1, 2, 3, 4]


def test_a_corrupt_phase_checkpoint_is_trained_again(registry):
    job = make_job(registry, task="digits", backbone="tiny", strategy="lp_ft", examples_per_class=10,
                   input_size=16, epochs=2, fine_tune_epochs=2, batch_size=16)
    with pytest.raises(Interrupted):
        Runner(registry, log_epoch=_interrupt_at(3, [])).run(job)
    weights = checkpoint_dir(job) / "phase-0.weights.h5"
    weights.write_bytes(weights.read_bytes()[:-100] + b"x" * 100)  # altered: fails its hash check
    seen: list[int] = []
    result = Runner(registry, log_epoch=lambda e, p, m, s: seen.append(e)).run(job)
    assert seen[:2] == [1, 2] and not result.phases[0].get("resumed")


def test_a_torn_epoch_backup_starts_the_phase_over(registry):
    job = make_job(registry, task="digits", backbone="tiny", strategy="scratch", examples_per_class=10,
                   input_size=16, epochs=4, batch_size=16)
    with pytest.raises(Interrupted):
        Runner(registry, log_epoch=_interrupt_at(2, [])).run(job)
    backups = list(checkpoint_dir(job).rglob("*.weights.h5"))
    assert backups
    for path in backups:  # as if killed in the middle of writing it
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    seen: list[int] = []
    result = Runner(registry, log_epoch=lambda e, p, m, s: seen.append(e)).run(job)
    assert seen == [1, 2, 3, 4] and result.phases[0]["verified"]


def test_a_final_failure_leaves_no_checkpoint(registry):
    job = make_job(registry, task="digits", backbone="nan_net", strategy="scratch", examples_per_class=5,
                   input_size=16, epochs=2, batch_size=8)
    from transferlab.errors import NaNLossError

    with pytest.raises(NaNLossError):
        Runner(registry).run(job)
    assert not checkpoint_dir(job).exists()


CRASH_AT_EPOCH_2 = textwrap.dedent("""
    import os, signal, sys
    from transferlab.store import Store
    original = Store.log_epoch
    def log_epoch(self, run_id, epoch, phase, metrics, seconds):
        original(self, run_id, epoch, phase, metrics, seconds)
        with open(sys.argv[2], "a") as fh:
            fh.write(f"{epoch}\\n")
        if epoch == 2 and os.environ.get("CRASH") == "1":
            os.kill(os.getpid(), signal.SIGKILL)
    Store.log_epoch = log_epoch
    from transferlab.cli import main
    sys.exit(main(["sweep", "--jobs", sys.argv[1], "--workers", "0"]))
""")


def test_kill_9_at_epoch_2_resumes_at_epoch_3_with_the_whole_curve(registry, tl_home, tmp_path):
    from transferlab.launch import write_jobs_file

    job = make_job(registry, task="digits", backbone="small_cnn", strategy="scratch", examples_per_class=10,
                   input_size=16, epochs=5, batch_size=16)
    jobs_file, log = tmp_path / "jobs.json", tmp_path / "epochs.log"
    write_jobs_file([job], jobs_file)
    script = tmp_path / "crash.py"
    script.write_text(CRASH_AT_EPOCH_2)
    env = dict(os.environ, TRANSFERLAB_HOME=str(tl_home), TRANSFERLAB_QUIET="1", TRANSFERLAB_HEARTBEAT_TIMEOUT="1",
               TRANSFERLAB_BACKUP_SECONDS="0")
    crashed = subprocess.run([sys.executable, str(script), str(jobs_file), str(log)], env=dict(env, CRASH="1"))
    assert crashed.returncode == -9
    assert log.read_text().split() == ["1", "2"]

    resumed = subprocess.run([sys.executable, str(script), str(jobs_file), str(log)], env=env, timeout=300)
    assert resumed.returncode == 0
    assert log.read_text().split() == ["1", "2", "3", "4", "5"]  # the second attempt began at epoch 3
    store = Store()
    assert store.get(job.job_id)["status"] == "succeeded"
    assert list(store.epochs_frame([job.job_id])["epoch"]) == [1, 2, 3, 4, 5]
