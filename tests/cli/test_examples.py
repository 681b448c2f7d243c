"""The scripts in examples/ run as documented."""

from __future__ import annotations

import importlib.util

import pytest

from .helpers import ROOT


def _load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("head", ["sparsemax", "log_softmax"])
def test_head_in_your_model(head, capsys):
    accuracy = _load_example("head_in_your_model").main(head)
    assert accuracy > 0.8
    assert f"{head} (pair): validation accuracy" in capsys.readouterr().out


@pytest.mark.slow
def test_head_in_your_model_runs_for_every_listed_head(monkeypatch, capsys):
    """Every name ``keras-softmax heads`` lists (it crashed for adaptive, sampled, hierarchical), and
    pattern B (``from_logits``) for the heads that take logits. Few epochs: it must run, and learn."""
    import keras_softmax as ks

    example = _load_example("head_in_your_model")
    fit = example.keras.Model.fit

    def short_fit(self, *args, **kwargs):
        return fit(self, *args, **{**kwargs, "epochs": 2})

    monkeypatch.setattr(example.keras.Model, "fit", short_fit)
    for head in ks.list_heads():
        assert example.main(head) > 0.5, head
    for head in ("entmax15", "hierarchical"):
        assert example.main(head, from_logits=True) > 0.5, head
    assert "hierarchical (from_logits): validation accuracy" in capsys.readouterr().out


def test_classify_with_saved_model(shared_run, digit_pngs, capsys):
    pytest.importorskip("tensorflow")
    paths, _, _ = digit_pngs
    _load_example("classify_with_saved_model").main(str(shared_run.path / "saved_model"), *map(str, paths))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(paths)
    for line, path in zip(lines, paths):
        assert line.startswith(f"{path}: ")
        guesses = line.split(": ", 1)[1].split(", ")
        assert len(guesses) == 3
        for guess in guesses:
            name, percent = guess.split()
            assert name in [str(i) for i in range(10)] and percent.endswith("%")


def test_compare_heads_takes_any_head(tmp_path, capsys, cache_dir):
    """examples/compare_heads.py with the head digits cannot give its parameters (hierarchical needs
    superclasses; it crashed); the others go through the CLI's own path (test_many_class_heads)."""
    example = _load_example("compare_heads")
    with pytest.raises(SystemExit, match="unknown head softmaxx; choose from: softmax"):
        example.main("softmaxx", out=str(tmp_path))
    rows = example.main("hierarchical", out=str(tmp_path), epochs=1, limit=200, widths=[4, 8, 8, 8], jit_compile=False)
    assert [r["head"] for r in rows] == ["hierarchical"]
    assert (tmp_path / "compare.png").is_file()
    assert "plot:" in capsys.readouterr().out
