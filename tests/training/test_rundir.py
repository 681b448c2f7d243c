"""Run-directory rules: finished work is never replaced without overwrite; atomic, consistent state."""

import pytest

from keras_softmax.training.config import TrainConfig, to_toml
from keras_softmax.training.rundir import MARKER, RunDirectory, RunDirError


def test_fresh_directory_is_created(tmp_path):
    run = RunDirectory(tmp_path / "run")
    assert run.prepare(resume=False, overwrite=False) is None
    assert run.path.is_dir()


def test_finished_run_is_protected(tmp_path):
    run = RunDirectory(tmp_path)
    run.prepare(resume=False, overwrite=False)
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
    run.prepare(resume=False, overwrite=False)
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


def _precious_folder(path):
    path.mkdir(exist_ok=True)
    (path / "precious.txt").write_text("years of work")
    (path / "sub").mkdir()
    (path / "sub" / "notes.md").write_text("more")
    return {p.relative_to(path): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def _contents(path):
    return {p.relative_to(path): p.read_bytes() for p in path.rglob("*") if p.is_file()}


@pytest.mark.parametrize("resume,overwrite", [(False, True), (False, False), (True, False)])
def test_a_folder_that_is_not_a_run_is_never_touched(tmp_path, resume, overwrite):
    """--overwrite used to empty any non-empty directory (``train --out . --overwrite`` wiped the
    working directory). Only a recognisable run is replaced; anything else is refused in one line."""
    before = _precious_folder(tmp_path / "work")
    run = RunDirectory(tmp_path / "work")
    assert not run.is_run
    with pytest.raises(RunDirError, match="is not empty and is not a keras-softmax run") as error:
        run.prepare(resume=resume, overwrite=overwrite)
    assert "\n" not in str(error.value)
    assert _contents(tmp_path / "work") == before


def test_a_config_toml_alone_does_not_make_a_run(tmp_path):
    """A project folder with a config.toml (even one of our presets) is not a run."""
    before = _precious_folder(tmp_path / "project")
    (tmp_path / "project" / "config.toml").write_text('head = "softmax"\ndataset = "digits"\nseed = 0\n')
    with pytest.raises(RunDirError, match="not a keras-softmax run"):
        RunDirectory(tmp_path / "project").prepare(resume=False, overwrite=True)
    after = _contents(tmp_path / "project")
    assert {k: after[k] for k in before} == before and len(after) == len(before) + 1


def test_overwrite_replaces_a_run_completely_and_marks_it(tmp_path):
    run = RunDirectory(tmp_path / "run")
    run.prepare(resume=False, overwrite=False)
    assert run.marker.is_file() and run.marker.name == MARKER and run.is_run
    run.report.write_text("{}")
    (run.path / "plots").mkdir()
    (run.path / "plots" / "loss_curve.png").write_bytes(b"png")
    (run.path / ".report.json.abc123.json").write_text("{")  # an interrupted atomic write
    run.prepare(resume=False, overwrite=True)
    assert sorted(p.name for p in run.path.iterdir()) == [MARKER]


@pytest.mark.parametrize("user_file", ["my_notes.txt", "plots/my_figure.svg", "checkpoints/keep.txt", "data/"])
def test_overwrite_never_deletes_a_file_the_run_did_not_write(tmp_path, user_file):
    """``--overwrite`` deleted ``my_notes.txt`` that a user had put into a finished run (issue 22):
    now it refuses in one line that names the file, and removes nothing."""
    run = RunDirectory(tmp_path / "run")
    run.prepare(resume=False, overwrite=False)
    run.report.write_text("{}")
    (run.path / "plots").mkdir()
    (run.path / "plots" / "loss_curve.png").write_bytes(b"png")
    (run.path / "checkpoints").mkdir()
    target = run.path / user_file.rstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if user_file.endswith("/"):
        target.mkdir()
    else:
        target.write_text("mine")
    before = sorted(str(p.relative_to(run.path)) for p in run.path.rglob("*"))
    with pytest.raises(RunDirError, match="did not write") as error:
        run.prepare(resume=False, overwrite=True)
    assert user_file in str(error.value) and "\n" not in str(error.value)
    assert sorted(str(p.relative_to(run.path)) for p in run.path.rglob("*")) == before


def test_a_run_made_before_the_marker_is_still_recognised(tmp_path):
    run = RunDirectory(tmp_path / "old")
    run.path.mkdir()
    run.config.write_text(to_toml(TrainConfig()))
    assert not run.is_run  # settings alone: could be anyone's file
    run.history.write_text("epoch,loss\n1,2.0\n")
    assert run.is_run
    run.prepare(resume=False, overwrite=True)
    assert sorted(p.name for p in run.path.iterdir()) == [MARKER]


def test_a_file_is_not_a_run_directory(tmp_path):
    """A file (or a path below one) is refused with the package's error, not NotADirectoryError."""
    afile = tmp_path / "notes.txt"
    afile.write_text("keep")
    for path in (afile, afile / "run"):
        for resume, overwrite in ((False, False), (False, True), (True, False)):
            with pytest.raises(RunDirError, match="not a directory"):
                RunDirectory(path).prepare(resume=resume, overwrite=overwrite)
    assert afile.read_text() == "keep"


def test_a_diverged_epoch_is_not_recorded_and_the_run_resumes_from_its_last_good_checkpoint(tmp_path):
    """RunRecorder at the end of an epoch whose loss is NaN: no history row, no checkpoint over the
    last good one, failed.json with the reason; --resume then starts from the good checkpoint."""
    import keras

    from keras_softmax.training.callbacks import RunRecorder

    run = RunDirectory(tmp_path / "run")
    run.prepare(resume=False, overwrite=False)
    run.config.write_text(to_toml(TrainConfig(epochs=3)))
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    good = [{"epoch": 1, "loss": 0.5, "epoch_seconds": 1.0, "elapsed_seconds": 1.0}]
    run.save_checkpoint(model, 1, good)
    lines = []
    recorder = RunRecorder(run, num_train=10, epochs=3, history=good, log=lines.append)
    recorder.set_model(model)
    recorder.on_epoch_begin(1)
    recorder.on_epoch_end(1, {"loss": float("nan"), "accuracy": 0.1})
    assert model.stop_training and lines == []
    assert "epoch 2" in recorder.diverged and "learning rate 0.5" in recorder.diverged
    assert "last good checkpoint (epoch 1)" in recorder.diverged and "--resume" in recorder.diverged
    assert [r["epoch"] for r in recorder.rows] == [1]
    assert run.read_state()["epoch"] == 1
    assert run.failed["epoch"] == 2 and run.failed["last_checkpoint_epoch"] == 1
    with pytest.raises(RunDirError, match="holds a run that failed at epoch 2"):
        run.check(resume=False, overwrite=False)
    state = run.prepare(resume=True, overwrite=False)
    assert state["epoch"] == 1 and run.failed is None
