"""The many-class benchmarks (keras_softmax.scale): tiny CPU runs of the GPU commands.

They need the JAX backend; under another backend the CLI runs in a subprocess with KERAS_BACKEND=jax.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from keras_softmax import scale
from keras_softmax.cli import main

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args, timeout=900):
    """``keras-softmax ARGS`` on the JAX backend (in a subprocess unless this run is JAX)."""
    args = [str(a) for a in args]
    if keras.backend.backend() == "jax":
        result = CliRunner().invoke(main, args, catch_exceptions=False)
        return result.exit_code, result.output
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-m", "keras_softmax.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout + done.stderr


def test_zipf_probabilities():
    p = scale.zipf_probabilities(1000, 1.0)
    assert p.shape == (1000,) and abs(p.sum() - 1) < 1e-12 and np.all(np.diff(p) < 0)
    np.testing.assert_allclose(p[0] / p[9], 10.0)
    np.testing.assert_allclose(scale.zipf_probabilities(5, 0.0), 0.2)


def test_zipf_task_is_seeded_and_follows_zipf():
    import jax

    a, b = scale.ZipfTask(num_classes=50, input_dim=8, seed=3), scale.ZipfTask(num_classes=50, input_dim=8, seed=3)
    np.testing.assert_array_equal(a.prototypes_np, b.prototypes_np)
    x1, y1 = a.held_out(400)
    x2, y2 = b.held_out(400)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    x, y = a.draw(jax.random.PRNGKey(0), 4000)
    assert x.shape == (4000, 8) and y.dtype == np.int32
    order = a.class_order_from(np.asarray(y))
    assert order[0] == int(a.class_of_rank_np[0])  # the most frequent class is rank 0's class id
    counts = np.bincount(np.asarray(y), minlength=50)[a.class_of_rank_np]  # counts by rank
    assert counts[0] > counts[5] > counts[40]


def test_tables_render_errors_and_ratios():
    rows = [{"head": scale.BASELINE, "classes": 10, "step_ms": 2.0, "grad_ms": 1.0, "params": 5, "peak_bytes": 2**31},
            {"head": "sampled", "classes": 10, "step_ms": 0.5, "grad_ms": 0.2, "params": 5, "peak_bytes": 2**30},
            {"head": "adaptive", "classes": 10, "error": "RuntimeError: out of memory"}]
    scale.add_ratios(rows)
    assert rows[1]["speedup"] == 4.0 and rows[1]["memory_ratio"] == 2.0
    table = scale.step_table(rows)
    assert "4.00×" in table and "out of memory" in table and "2.00" in table


@pytest.mark.skipif(keras.backend.backend() == "jax", reason="checks the non-JAX error")
def test_train_step_needs_jax():
    result = CliRunner().invoke(main, ["bench", "heads", "--train-step", "--classes", "10"])
    assert result.exit_code != 0 and "needs KERAS_BACKEND=jax" in result.output


@pytest.mark.slow
def test_bench_heads_train_step_cli(tmp_path):
    out = tmp_path / "steps.json"
    code, output = run_cli("bench", "heads", "--train-step", "--classes", "40", "--head", "adaptive",
                           "--head", "sampled", "--features", "8", "--batch", "4", "--repeats", "2", "--rounds", "2",
                           "--precision", "float32", "--head-param", "sampled:num_sampled=8",
                           "--head-param", "adaptive:cutoffs=[5,20]", "--no-isolate", "--json", out,
                           "--plot", tmp_path / "steps.png", "--table", tmp_path / "steps.md")
    assert code == 0, output
    data = json.loads(out.read_text())
    rows = data["rows"]
    assert [r["head"] for r in rows] == [scale.BASELINE, "adaptive", "sampled"]
    for row in rows:
        assert row["step_ms"] > 0 and row["grad_ms"] > 0 and row["classes"] == 40 and row["params"] > 0
        assert row["xla_temp_size_in_bytes"] >= 0
        if row["peak_bytes"] is not None:  # device memory stats: accelerators only
            assert row["peak_bytes"] > 0
    assert rows[0]["speedup"] == 1.0 and rows[1]["head_params"]["cutoffs"] == [5, 20]
    assert rows[2]["head_params"]["num_sampled"] == 8
    assert rows[1]["params"] < rows[0]["params"]  # adaptive's tail projections are smaller
    assert (tmp_path / "steps.png").stat().st_size > 0 and "| `adaptive` | 40 |" in (tmp_path / "steps.md").read_text()


@pytest.mark.slow
def test_bench_heads_train_step_isolated(tmp_path):
    """One configuration per fresh process (as on the GPU): the spawned worker's row comes back."""
    out = tmp_path / "steps.json"
    code, output = run_cli("bench", "heads", "--train-step", "--classes", "12", "--head", "sampled",
                           "--features", "4", "--batch", "2", "--repeats", "1", "--rounds", "1",
                           "--precision", "float32", "--json", out)
    assert code == 0, output
    rows = json.loads(out.read_text())["rows"]
    assert [r["head"] for r in rows] == [scale.BASELINE, "sampled"] and all("step_ms" in r for r in rows)


@pytest.mark.slow
def test_bench_many_classes_cli(tmp_path):
    out = tmp_path / "many.json"
    code, output = run_cli("bench", "many-classes", "--classes", "1000", "--steps", "30", "--batch", "32",
                           "--hidden", "16", "--input-dim", "16", "--eval-every", "10", "--test-size", "300",
                           "--precision", "float32", "--head-param", "sampled:num_sampled=64", "--no-isolate",
                           "--json", out, "--plot", tmp_path / "many.png", "--table", tmp_path / "many.md")
    assert code == 0, output
    data = json.loads(out.read_text())
    assert data["task"]["num_classes"] == 1000 and data["steps"] == 30
    rows = {r["head"]: r for r in data["rows"]}
    assert list(rows) == [scale.BASELINE, "adaptive", "sampled"]
    for row in rows.values():
        assert 0 <= row["top1"] <= row["top5"] <= 1 and row["ms_per_step"] > 0
        assert [p["step"] for p in row["history"]] == [10, 20, 30]
        assert row["history"][-1]["train_seconds"] == pytest.approx(row["train_seconds"])
        for key in ("top1_gap_points", "step_speedup", "seconds_to_softmax_top1", "seconds_to_softmax_top1_minus_1pt"):
            assert key in row
    assert rows[scale.BASELINE]["top1_gap_points"] == 0 and rows[scale.BASELINE]["seconds_to_softmax_top1"] is not None
    assert rows["adaptive"]["head_params"]["class_order"] == "<1000 entries>"  # learnt from the labels
    assert rows["sampled"]["head_params"]["num_sampled"] == 64
    for row in rows.values():  # top-1 by band of frequency ranks (adaptive's default clusters: [200])
        assert [b["ranks"] for b in row["bands"]] == [[0, 200], [200, 1000]]
        assert sum(b["share"] for b in row["bands"]) == pytest.approx(1.0)
        assert sum(b["share"] * b["top1"] for b in row["bands"]) == pytest.approx(row["top1"])
    table = (tmp_path / "many.md").read_text()
    assert "| `sampled` |" in table and "ranks 200-1,000" in table and (tmp_path / "many.png").stat().st_size > 0


def test_time_to_accuracy():
    history = [{"step": 10, "train_seconds": 1.0, "top1": 0.2}, {"step": 20, "train_seconds": 2.0, "top1": 0.5}]
    assert scale.time_to_accuracy(history, 0.5) == (2.0, 20)
    assert scale.time_to_accuracy(history, 0.1) == (1.0, 10)
    assert scale.time_to_accuracy(history, 0.6) == (None, None)


def test_frequency_bands_against_a_direct_count():
    """Bands of true frequency ranks: share, top-1, predicted share and staying in the band, counted by
    hand for six rows of a 10-class task whose classes are ranked by a known permutation."""
    pytest.importorskip("jax")
    task = scale.ZipfTask(num_classes=10, input_dim=4, seed=3)
    rank_of = np.argsort(task.class_of_rank_np)  # class id -> rank
    by_rank = task.class_of_rank_np  # rank -> class id
    labels = by_rank[[0, 1, 2, 5, 7, 9]]
    predictions = by_rank[[0, 3, 2, 8, 7, 1]]  # right, head->tail, right, tail->tail, right, tail->head
    assert list(rank_of[labels]) == [0, 1, 2, 5, 7, 9]
    bands = scale.frequency_bands(task, labels, predictions, cutoffs=[3])
    assert [b["ranks"] for b in bands] == [[0, 3], [3, 10]]
    head, tail = bands
    assert head["share"] == pytest.approx(3 / 6) and tail["share"] == pytest.approx(3 / 6)
    assert head["top1"] == pytest.approx(2 / 3) and tail["top1"] == pytest.approx(1 / 3)
    # predicted ranks 0, 3, 2, 8, 7, 1: three in the head band, three in the tail band
    assert head["predicted_share"] == pytest.approx(3 / 6) and tail["predicted_share"] == pytest.approx(3 / 6)
    assert head["in_band"] == pytest.approx(2 / 3) and tail["in_band"] == pytest.approx(2 / 3)
    empty = scale.frequency_bands(task, labels[:3], predictions[:3], cutoffs=[3])[1]
    assert empty["share"] == 0 and empty["top1"] is None and empty["predicted_share"] == pytest.approx(1 / 3)
    assert [b["ranks"] for b in scale.frequency_bands(task, labels, predictions)] == [[0, 2], [2, 10]]
