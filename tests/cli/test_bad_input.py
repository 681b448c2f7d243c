"""Issue 22 item 7: the CLI walked through bad input, table-driven.

Every row must end with exactly one line on stderr, a non-zero exit status, no traceback, and no
file outside the run directory changed (the test's whole temporary folder is fingerprinted before
and after; the run directory, where there is one, may only be created). Rows run in-process
(Click's test runner): validation comes before any training, so a row costs milliseconds, apart
from a few that read a dataset.

Rows: a wrong type for every config key (from --set, and a few from a TOML file), bad paths, a file
where a folder should be, unreadable images and models, a truncated archive, an interrupted run,
a finished run with a user's file in it, and bad flag values.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import shutil
import tarfile

import pytest

from keras_softmax.training.config import TrainConfig, _toml_value

from .helpers import TINY, invoke

# --- the rows --------------------------------------------------------------------------------------


def _wrong_value(rule):
    for value in ("lots", 3, [1], True, 2.5, -1):
        if not rule(value):
            return value
    raise AssertionError(f"no wrong value for {rule}")


def _set_row(field):
    rule = field.metadata["rule"]
    value = _wrong_value(rule)
    text = "3" if value == 3 else _toml_value(value)
    # Nothing else on the line: a flag or another --set of the same key would win over this one.
    return pytest.param(lambda ctx, k=field.name, t=text: ["train", "--set", f"{k}={t}", "--out", ctx.out],
                        f"{field.name} must be {rule.expects}", id=f"set-{field.name}-{text}")


def _toml_row(key, text, expected):
    def args(ctx):
        preset = ctx.tmp / "preset.toml"
        preset.write_text(f"{key} = {text}\n")
        ctx.snapshot()
        return ["train", "--config", preset, "--out", ctx.out]  # nothing that could override the file

    return pytest.param(args, expected, id=f"toml-{key}")


def _archive(ctx, truncate: bool):
    """A .tar.gz of two class folders (real PNGs), cut short when ``truncate``."""
    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name in ("cat", "dog"):
            for i in range(3):
                image = io.BytesIO()
                Image.fromarray(np.full((32, 32, 3), 40 * i, dtype="uint8")).save(image, format="PNG")
                info = tarfile.TarInfo(f"train/{name}/{i}.png")
                info.size = len(image.getvalue())
                archive.addfile(info, io.BytesIO(image.getvalue()))
    data = buffer.getvalue()
    path = ctx.tmp / "data.tar.gz"
    path.write_bytes(data[: len(data) // 2] if truncate else data)
    ctx.snapshot()
    return path


def _unfinished_run(ctx, shared):
    from keras_softmax.training.rundir import RunDirectory

    run = RunDirectory(ctx.tmp / "interrupted")
    run.prepare(resume=False, overwrite=False)
    shutil.copy(shared.path / "config.toml", run.config)
    run.checkpoints.mkdir()
    (run.checkpoints / "epoch-0001.weights.h5").write_bytes(b"weights")
    run.state.write_text(json.dumps({"epoch": 1, "weights": "epoch-0001.weights.h5", "history": []}))
    ctx.snapshot()
    return run.path


def _finished_copy(ctx, shared, extra=None):
    run = ctx.tmp / "finished"
    shutil.copytree(shared.path, run)
    if extra:
        (run / extra).write_text("my notes")
    ctx.snapshot()
    return run


def _file(ctx, name="notes.txt", content="not what you think"):
    path = ctx.tmp / name
    path.write_text(content)
    ctx.snapshot()
    return path


def _words_dataset(ctx):
    import numpy as np
    from PIL import Image

    for name in ("zero", "one"):
        (ctx.tmp / "words" / "train" / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((32, 32, 3), 50 * i, dtype="uint8")).save(ctx.tmp / "words" / "train" / name / f"{i}.png")
    ctx.snapshot()
    return ctx.tmp / "words"


def _corrupt_image_dataset(ctx):
    (ctx.tmp / "faces" / "train" / "a").mkdir(parents=True)
    (ctx.tmp / "faces" / "train" / "a" / "0.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    ctx.snapshot()
    return ctx.tmp / "faces"


ROWS = [_set_row(field) for field in dataclasses.fields(TrainConfig)] + [
    _toml_row("label_smoothing", '"high"', "label_smoothing must be a number in [0, 1) (got 'high' from preset.toml)"),
    _toml_row("epochs", '"5"', "epochs must be a positive integer (got '5' from preset.toml)"),
    _toml_row("widths", "3", "widths must be four positive integers"),
    _toml_row("epochz", "3", "unknown setting 'epochz'"),
    _toml_row("epochs", "= 3", "not valid TOML"),
    pytest.param(lambda ctx: ["train", "--set", "garbage", "--out", ctx.out], "--set expects KEY=VALUE", id="set-no-equals"),
    pytest.param(lambda ctx: ["train", "--head-param", "garbage", "--out", ctx.out], "--head-param expects KEY=VALUE",
                 id="head-param-no-equals"),
    pytest.param(lambda ctx: ["train", "--set", "epochz=3", "--out", ctx.out], "unknown setting 'epochz'", id="set-unknown"),
    pytest.param(lambda ctx: ["train", "--head", "softmaxx", *TINY, "--out", ctx.out], "unknown head 'softmaxx'",
                 id="unknown-head"),
    pytest.param(lambda ctx: ["train", "--head", "softmax", "--head-param", "temperature=-1", *TINY, "--out", ctx.out],
                 "temperature", id="bad-head-param"),
    pytest.param(lambda ctx: ["train", "--epochs", "0", "--out", ctx.out], "--epochs", id="epochs-zero"),
    pytest.param(lambda ctx: ["train", "--epochs", "many", "--out", ctx.out], "--epochs", id="epochs-word"),
    pytest.param(lambda ctx: ["train", "--val-split", "1.5", "--out", ctx.out], "neither a fraction", id="val-split"),
    pytest.param(lambda ctx: ["train", "--precision", "float8", "--out", ctx.out], "--precision", id="precision"),
    pytest.param(lambda ctx: ["train", "--devices", "some", "--out", ctx.out], "devices", id="devices-word"),
    pytest.param(lambda ctx: ["train", "--resume"], "--resume needs --out", id="resume-without-out"),
    pytest.param(lambda ctx: ["train", "--config", ctx.tmp / "absent.toml", "--out", ctx.out], "config file not found",
                 id="config-missing"),
    pytest.param(lambda ctx: ["train", "--config", ctx.tmp, "--out", ctx.out], "is a directory",
                 id="config-is-a-folder"),
    pytest.param(lambda ctx: ["train", "--dataset", ctx.tmp / "absent.tar.gz", *TINY, "--out", ctx.out],
                 "dataset path not found", id="dataset-missing"),
    pytest.param(lambda ctx: ["train", "--dataset", _file(ctx), *TINY, "--out", ctx.out], "not a dataset",
                 id="dataset-is-a-text-file"),
    pytest.param(lambda ctx: ["train", "--dataset", _archive(ctx, truncate=True), *TINY, "--out", ctx.out],
                 "data.tar.gz", id="truncated-archive"),
    pytest.param(lambda ctx: ["train", "--dataset", _corrupt_image_dataset(ctx), *TINY, "--out", ctx.out],
                 "cannot decode image", id="unreadable-image-in-dataset"),
    pytest.param(lambda ctx: ["train", *TINY, "--out", _file(ctx)], "is a file", id="out-is-a-file"),
    pytest.param(lambda ctx: ["train", *TINY, "--out", _file(ctx) / "run"], "not a directory", id="out-below-a-file"),
    pytest.param(lambda ctx: ["train", *TINY, "--out", ctx.tmp / "nothing", "--resume"], "nothing to resume",
                 id="resume-nothing"),
    pytest.param(lambda ctx, shared: ["train", *TINY, "--out", _unfinished_run(ctx, shared)], "holds an unfinished run",
                 id="interrupted-run-without-resume"),
    pytest.param(lambda ctx, shared: ["train", *TINY, "--out", _finished_copy(ctx, shared)], "finished run",
                 id="finished-run-without-overwrite"),
    pytest.param(lambda ctx, shared: ["train", *TINY, "--out", _finished_copy(ctx, shared, "my_notes.txt"), "--overwrite"],
                 "my_notes.txt", id="overwrite-with-a-user-file"),
    pytest.param(lambda ctx, shared: ["predict", _unfinished_run(ctx, shared), shared.path / "report.json"],
                 "is an unfinished run", id="predict-interrupted-run"),
    pytest.param(lambda ctx, shared: ["predict", shared.path, _file(ctx, "photo.png")], "cannot read image",
                 id="predict-unreadable-image"),
    pytest.param(lambda ctx, shared: ["predict", shared.path, ctx.tmp / "absent.png"], "image not found",
                 id="predict-missing-image"),
    pytest.param(lambda ctx, shared: ["predict", shared.path, str(ctx.tmp / "*.jpg")], "no file matches",
                 id="predict-empty-glob"),
    pytest.param(lambda ctx, shared: ["predict", shared.path, ctx.tmp], "no images in folder", id="predict-empty-folder"),
    pytest.param(lambda ctx: ["predict", ctx.tmp / "absent", ctx.tmp / "x.png"], "model not found", id="predict-no-model"),
    pytest.param(lambda ctx: ["predict", _file(ctx, "model.keras", "not a zip"), ctx.tmp / "x.png"], "cannot load",
                 id="predict-corrupt-model"),
    pytest.param(lambda ctx: ["predict", _file(ctx), ctx.tmp / "x.png"], "expected a SavedModel directory",
                 id="predict-model-is-a-text-file"),
    pytest.param(lambda ctx: ["evaluate", ctx.tmp], "not a run directory", id="evaluate-not-a-run"),
    pytest.param(lambda ctx: ["evaluate", _file(ctx)], "is a file", id="evaluate-a-file"),
    pytest.param(lambda ctx, shared: ["evaluate", _unfinished_run(ctx, shared)], "model.keras is missing",
                 id="evaluate-interrupted-run"),
    pytest.param(lambda ctx, shared: ["evaluate", _finished_copy(ctx, shared), "--split", "test"], "no test split",
                 id="evaluate-missing-split"),
    pytest.param(lambda ctx, shared: ["evaluate", _finished_copy(ctx, shared), "--dataset", _words_dataset(ctx),
                                      "--split", "train"], "are not classes of the model", id="evaluate-unknown-classes"),
    pytest.param(lambda ctx: ["export", ctx.tmp], "model.keras is missing", id="export-no-model"),
    pytest.param(lambda ctx: ["export", _file(ctx)], "is a file", id="export-a-file"),
    pytest.param(lambda ctx, shared: ["export", _finished_copy(ctx, shared), "--format", "tflite"], "--format",
                 id="export-unknown-format"),
    pytest.param(lambda ctx, shared: ["compare", _unfinished_run(ctx, shared)], "no report.json",
                 id="compare-interrupted-run"),
    pytest.param(lambda ctx: ["compare", _file(ctx)], "is a file", id="compare-a-file"),
    pytest.param(lambda ctx: ["study", ctx.tmp / "absent.toml", "--out", ctx.out], "absent.toml", id="study-no-spec"),
    pytest.param(lambda ctx: ["bench", "heads", "--classes", "1"], "--classes", id="bench-one-class"),
]


# --- the walk --------------------------------------------------------------------------------------

@dataclasses.dataclass
class Context:
    tmp: object
    out: object
    before: dict = dataclasses.field(default_factory=dict)

    def snapshot(self):
        self.before = fingerprint(self.tmp, self.out)


def fingerprint(root, skip) -> dict:
    """``{relative path: (is_dir, size, mtime_ns, sha1)}`` of everything under ``root`` but ``skip``."""
    result = {}
    for path in sorted(root.rglob("*")):
        if path == skip or skip in path.parents:
            continue
        stat = path.stat()
        digest = hashlib.sha1(path.read_bytes()).hexdigest() if path.is_file() else ""
        result[str(path.relative_to(root))] = (path.is_dir(), stat.st_size, stat.st_mtime_ns, digest)
    return result


def test_the_table_is_big_enough():
    assert len(ROWS) >= 40 + len(dataclasses.fields(TrainConfig)) - 30


@pytest.mark.parametrize(("make_args", "expected"), ROWS)
def test_bad_input(make_args, expected, tmp_path, request):
    ctx = Context(tmp_path, tmp_path / "run")
    ctx.snapshot()
    if make_args.__code__.co_argcount - len(make_args.__defaults__ or ()) == 2:
        args = make_args(ctx, request.getfixturevalue("shared_run"))
    else:
        args = make_args(ctx)
    before = ctx.before
    result = invoke(*args)
    assert result.exit_code != 0, f"exit 0 for {args}:\n{result.output}"
    assert isinstance(result.exception, SystemExit), f"crashed with {result.exception!r}:\n{result.output}"
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    assert lines[0].startswith("Error: ") and expected in lines[0], lines[0]
    assert fingerprint(tmp_path, ctx.out) == before, "a file outside the run directory changed"
    if ctx.out.exists():
        assert not any(ctx.out.iterdir()), f"the run directory was written: {sorted(ctx.out.iterdir())}"
