"""Run-directory rules: finished work is never replaced without overwrite; atomic, consistent state."""

import pytest

from keras_softmax.training.rundir import RunDirectory, RunDirError


def test_fresh_directory_is_created(tmp_path):
    run = RunDirectory(tmp_path / "run")
    assert run.prepare(resume=False, overwrite=False) is None
    assert run.path.is_dir()


def test_finished_run_is_protected(tmp_path):
    run = RunDirectory(tmp_path)
    run.report.write_text("{}")
    with pytest.raises(RunDirError, match="finished run; pass --overwrite"):
        run.prepare(resume=False, overwrite=False)
    with pytest.raises(RunDirError, match="finished run"):
        run.prepare(resume=True, overwrite=False)
    assert run.report.read_text() == "{}"
    run.prepare(resume=False, overwrite=True)
    assert not run.report.exists()


def test_unfinished_run_needs_resume_or_overwrite(tmp_path):
    run = RunDirectory(tmp_path)
    run.config.write_text("epochs = 3\n")
    with pytest.raises(RunDirError, match="unfinished run; pass --resume"):
        run.check(resume=False, overwrite=False)
    assert run.check(resume=True, overwrite=False) == "resume"
    assert run.prepare(resume=True, overwrite=False) is None  # no checkpoint yet: start from epoch 0


def test_resume_without_a_run_and_conflicting_flags(tmp_path):
    with pytest.raises(RunDirError, match="nothing to resume"):
        RunDirectory(tmp_path / "none").check(resume=True, overwrite=False)
    with pytest.raises(RunDirError, match="exclude each other"):
        RunDirectory(tmp_path).check(resume=True, overwrite=True)


def test_history_round_trip_with_missing_values(tmp_path):
    run = RunDirectory(tmp_path)
    rows = [{"epoch": 1, "loss": 2.5, "val_loss": None, "accuracy": 0.25, "val_accuracy": None, "lr": 0.1,
             "epoch_seconds": 3.0, "images_per_second": 100.0}]
    run.write_history(rows)
    back = run.read_history()
    assert back[0]["epoch"] == 1 and back[0]["loss"] == 2.5 and back[0]["val_loss"] is None
    assert not list(tmp_path.glob(".history.csv*")), "temporary file left behind"


class _FakeModel:
    def __init__(self):
        self.saved = []

    def save_weights(self, path):
        assert path.endswith(".weights.h5")
        with open(path, "w") as handle:
            handle.write("w")
        self.saved.append(path)


def test_checkpoint_keeps_one_consistent_pair(tmp_path):
    run = RunDirectory(tmp_path)
    model = _FakeModel()
    run.save_checkpoint(model, 1, [{"epoch": 1}])
    run.save_checkpoint(model, 2, [{"epoch": 1}, {"epoch": 2}])
    state = run.read_state()
    assert state["epoch"] == 2 and state["weights"] == "epoch-0002.weights.h5"
    assert [p.name for p in run.checkpoints.glob("*.weights.h5")] == ["epoch-0002.weights.h5"]
    # The weights of a state that a crash left without its file are never used.
    (run.checkpoints / state["weights"]).unlink()
    assert run.read_state() is None
