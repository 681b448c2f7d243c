"""The benchmark module behind `keras-softmax bench`: tiny runs on the CPU (real figures: bench/)."""

import json

import keras
import pytest
from click.testing import CliRunner

from keras_softmax import benchmark
from keras_softmax.cli import main


def test_hierarchy_is_balanced_and_uses_cifar_map_at_100():
    from keras_softmax.cifar100 import FINE_TO_COARSE

    assert benchmark.hierarchy(100) == list(FINE_TO_COARSE)
    groups = benchmark.hierarchy(1000)
    assert len(groups) == 1000 and sorted(set(groups)) == list(range(32))


@pytest.mark.skipif(keras.backend.backend() == "jax", reason="checks the non-JAX error")
def test_bench_heads_needs_jax():
    result = CliRunner().invoke(main, ["bench", "heads", "--classes", "10"])
    assert result.exit_code != 0
    assert "needs KERAS_BACKEND=jax" in result.output and "Traceback" not in result.output


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="jitted timing runs on JAX")
def test_bench_heads_rows(tmp_path):
    out = tmp_path / "rows.json"
    result = CliRunner().invoke(main, ["bench", "heads", "--classes", "10", "--head", "sparsemax",
                                       "--batch", "4", "--repeats", "2", "--json", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["rows"]
    assert [r["head"] for r in rows] == ["dense_softmax_baseline", "sparsemax"]
    assert all(r["head_ms"] > 0 and r["dense_plus_head_ms"] > 0 for r in rows)


def test_bench_heads_measures_base2_by_default(monkeypatch):
    """The study's claims table wants base-2's cost (2^z against e^z): it is among the default heads,
    beside softmax and the Dense + softmax baseline; the heads that own their projection are not."""
    measured = []
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")  # the list only: nothing is timed
    monkeypatch.setattr(benchmark, "measure", lambda name, n, *args: measured.append(name) or {"head": name})
    benchmark.head_cost_rows(classes=(10,), log=lambda *a: None)
    assert measured[0] == "dense_softmax_baseline" and {"base2", "softmax"} <= set(measured)
    assert not {"adaptive", "sampled"} & set(measured)


def test_bench_throughput_compares_pipeline_with_synthetic(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_SOFTMAX_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "tp.json"
    result = CliRunner().invoke(main, ["bench", "throughput", "--epochs", "2", "--set", "widths=[4, 4, 4, 4]",
                                       "--set", "limit=200", "--set", "batch_size=50", "--json", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["rows"]
    assert [r["run"] for r in rows] == ["pipeline", "synthetic", "ratio"]
    assert rows[0]["images_per_second"] > 0 and rows[2]["pipeline_over_synthetic"] > 0
