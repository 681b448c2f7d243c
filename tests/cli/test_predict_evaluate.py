"""``predict``, ``evaluate``, ``compare``, ``export`` and ``heads`` on finished runs."""

from __future__ import annotations

import json
import shutil

import keras
import numpy as np
import pytest

from keras_softmax.heads import list_heads

from .helpers import assert_ok, invoke, is_png, run_cli, strict_json


def _model_sources(run):
    return {"run": run.path, "keras": run.path / "model.keras", "saved_model": run.path / "saved_model"}


def _parse_text(output: str) -> dict:
    """``{image: [(probability, class), ...]}`` from predict's text output."""
    results, current = {}, None
    for line in output.splitlines():
        if not line.startswith(" "):
            current = results.setdefault(line, [])
        else:
            percent, name = line.split()
            current.append((float(percent.rstrip("%")) / 100, name))
    return results


@pytest.mark.parametrize("source", ["run", "keras", "saved_model"])
def test_predict_top_k_text(shared_run, digit_pngs, source):
    paths, _, _ = digit_pngs
    result = assert_ok(invoke("predict", _model_sources(shared_run)[source], *paths, "--top-k", "3"))
    parsed = _parse_text(result.stdout)
    assert list(parsed) == [str(p) for p in paths]
    for predictions in parsed.values():
        assert len(predictions) == 3
        probabilities = [p for p, _ in predictions]
        assert probabilities == sorted(probabilities, reverse=True)
        assert 0 < sum(probabilities) <= 1 + 1e-3  # percentages printed with two decimals
        assert all(name in [str(i) for i in range(10)] for _, name in predictions)
        assert len({name for _, name in predictions}) == 3


@pytest.mark.parametrize("source", ["run", "keras", "saved_model"])
def test_predict_json_matches_the_model(shared_run, digit_pngs, source):
    paths, images, _ = digit_pngs
    result = assert_ok(invoke("predict", _model_sources(shared_run)[source], *paths, "--json", "--top-k", "10"))
    results = strict_json(result.stdout)
    outputs = keras.saving.load_model(str(shared_run.path / "model.keras")).predict(images, verbose=0)
    assert [r["image"] for r in results] == [str(p) for p in paths]
    for result_row, output in zip(results, outputs):
        predictions = result_row["predictions"]
        assert len(predictions) == 10
        assert predictions[0]["index"] == int(np.argmax(output))
        assert predictions[0]["class"] == str(int(np.argmax(output)))
        # The log head's output is turned into probabilities: they sum to 1 over all classes.
        assert sum(p["probability"] for p in predictions) == pytest.approx(1.0, abs=1e-5)
        by_index = {p["index"]: p["probability"] for p in predictions}
        np.testing.assert_allclose([by_index[i] for i in range(10)], np.exp(output), atol=1e-5)


def test_predict_in_a_fresh_process(shared_run, digit_pngs, tmp_path, cache_dir):
    """A new process must be able to read model.keras (the custom layers register on import)."""
    paths, images, _ = digit_pngs
    process = run_cli("predict", shared_run.path / "model.keras", paths[0], "--json", "--top-k", "1",
                      cwd=tmp_path, cache_dir=cache_dir)
    assert process.returncode == 0, process.stderr[-3000:]
    top = strict_json(process.stdout)[0]["predictions"][0]
    expected = keras.saving.load_model(str(shared_run.path / "model.keras")).predict(images[:1], verbose=0)
    assert top["index"] == int(np.argmax(expected[0]))


def test_evaluate_val_reproduces_the_training_report(shared_run):
    result = assert_ok(invoke("evaluate", shared_run.path, "--split", "val"))
    where = shared_run.path / "evaluations" / "digits-val"
    report = strict_json((where / "report.json").read_text())
    trained = json.loads((shared_run.path / "report.json").read_text())
    assert report["accuracy"] == trained["accuracy"]
    assert report["top5_accuracy"] == trained["top5_accuracy"]
    assert report["loss"] == pytest.approx(trained["loss"], rel=1e-4)
    assert (report["split"], report["dataset"], report["head"]) == ("val", "digits", "log_softmax")
    assert report["split_sizes"] == trained["split_sizes"]
    assert report["epoch_seconds"] == trained["epoch_seconds"]
    assert (where / "report.md").is_file() and is_png(where / "plots" / "confusion_matrix.png")
    assert f"val accuracy {100 * trained['accuracy']:.2f}%" in result.stdout
    assert f"report: {where / 'report.md'}" in result.stdout


def test_evaluate_predicts_with_a_batch_that_divides_the_split(shared_run, monkeypatch):
    """270 training images at the run's batch 32 would end in a batch of 14, a second compiled program
    (seconds on a GPU); 30 divides them."""
    from keras_softmax.evaluation import evaluate

    sizes = []
    original = evaluate.predict_probabilities
    monkeypatch.setattr(evaluate, "predict_probabilities",
                        lambda *args, **kwargs: sizes.append(kwargs["batch_size"]) or original(*args, **kwargs))
    assert_ok(invoke("evaluate", shared_run.path, "--split", "train"))
    assert sizes == [30]


def test_compare_two_runs(shared_run, tmp_path):
    # A second run of the same name elsewhere: the labels take the parent folder to tell them apart.
    other = tmp_path / "other" / shared_run.path.name
    shutil.copytree(shared_run.path, other)
    report = json.loads((other / "report.json").read_text())
    report.update(head="sparsemax", accuracy=0.125, epoch_seconds=[1.0])
    (other / "report.json").write_text(json.dumps(report))
    plot = tmp_path / "compare.png"
    result = assert_ok(invoke("compare", shared_run.path, other, "--plot", plot))
    lines = result.stdout.splitlines()
    assert lines[0].startswith("| run") and "accuracy" in lines[0]
    rows = [line for line in lines[2:] if line.startswith("|")]
    assert len(rows) == 2
    assert f"{shared_run.path.parent.name}/{shared_run.path.name}" in rows[0] and "log_softmax" in rows[0]
    assert f"other/{shared_run.path.name}" in rows[1] and "sparsemax" in rows[1] and "12.50%" in rows[1]
    trained = json.loads((shared_run.path / "report.json").read_text())
    assert f"{100 * trained['accuracy']:.2f}%" in rows[0]
    assert is_png(plot)
    assert f"plot: {plot}" in result.stdout


def test_export_saved_model_rewrites_it(shared_run, digit_pngs, tmp_path):
    _, images, _ = digit_pngs
    run = tmp_path / "run"
    shutil.copytree(shared_run.path, run)
    shutil.rmtree(run / "saved_model")
    result = assert_ok(invoke("export", run, "--format", "saved_model"))
    assert result.stdout.strip() == f"wrote {run / 'saved_model'}"
    assert (run / "saved_model" / "saved_model.pb").is_file()
    assert json.loads((run / "saved_model" / "assets.extra" / "model_info.json").read_text()) == json.loads(
        (run / "model_info.json").read_text())
    import tensorflow as tf

    loaded = tf.saved_model.load(str(run / "saved_model"))
    expected = keras.saving.load_model(str(run / "model.keras")).predict(images, verbose=0)
    np.testing.assert_allclose(loaded.serve(tf.constant(images)).numpy(), expected, atol=1e-5)
    assert not (run / ".saved_model.tmp").exists()
    assert assert_ok(invoke("export", run, "--format", "keras")).stdout.strip() == f"wrote {run / 'model.keras'}"


def test_heads_lists_every_head():
    result = assert_ok(invoke("heads"))
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "LAYER", "LOSS", "OUTPUT", "PARAMETERS", "(defaults)"]  # issue 22
    names = [line.split()[0] for line in lines[1:] if line and not line.startswith(" ")]
    assert names == list_heads()
    assert len(names) == 15  # GUIDE §3's twelve, plus adaptive, sampled and entmax_alpha


def test_heads_json():
    rows = strict_json(assert_ok(invoke("heads", "--json")).stdout)
    assert [row["name"] for row in rows] == list_heads()
    for row in rows:
        assert {"name", "layer", "loss", "output", "summary", "parameters"} <= set(row)
        assert row["output"] in ("probabilities", "log_probabilities")
    by_name = {row["name"]: row for row in rows}
    assert "temperature" in by_name["log_gumbel"]["parameters"]
