"""Plots: valid PNGs of a sensible size, written atomically, readable at 100 classes."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_softmax.evaluation.metrics import compute_metrics
from keras_softmax.evaluation.plots import plot_comparison, plot_confusion_matrix, plot_curves, plot_reliability

HISTORY = {
    "loss": [2.3, 1.7, 1.2, 0.9, 0.8],
    "val_loss": [2.2, 1.8, 1.4, 1.3, 1.35],
    "accuracy": [0.1, 0.35, 0.55, 0.68, 0.72],
    "val_accuracy": [0.12, 0.33, 0.5, 0.58, 0.57],
}


def png_size(path) -> tuple[int, int]:
    """Open with Pillow, check it is a complete PNG, and return (width, height)."""
    path = Path(path)
    assert path.is_file(), path
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()
    with Image.open(path) as image:
        image.load()  # decodes every pixel: fails on a truncated file
        return image.size


def no_temp_files(directory) -> bool:
    return not [p for p in Path(directory).rglob(".*") if p.is_file()]


def test_plot_curves(tmp_path):
    loss, acc = plot_curves(HISTORY, tmp_path / "plots" / "loss_curve.png", tmp_path / "plots" / "acc.png")
    assert loss == tmp_path / "plots" / "loss_curve.png" and acc == tmp_path / "plots" / "acc.png"
    for path in (loss, acc):
        width, height = png_size(path)
        assert 400 <= width <= 1500 and 300 <= height <= 1200
    assert no_temp_files(tmp_path)


def test_plot_curves_optional_validation_and_gaps(tmp_path):
    history = {"loss": [1.0, 0.5, 0.4], "accuracy": [0.2, 0.5, 0.6]}
    plot_curves(history, tmp_path / "l.png", tmp_path / "a.png")
    gaps = {"loss": [1.0, 0.5], "val_loss": [None, 0.7], "accuracy": [0.2, 0.5], "val_accuracy": [None, 0.4]}
    plot_curves(gaps, tmp_path / "l2.png", tmp_path / "a2.png")
    only_val = {"val_loss": np.array([1.0, 0.9]), "val_accuracy": np.array([0.3, 0.4], np.float32)}
    plot_curves(only_val, tmp_path / "l3.png", tmp_path / "a3.png")
    for name in ("l", "a", "l2", "a2", "l3", "a3"):
        png_size(tmp_path / f"{name}.png")


def test_plot_curves_missing_series_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="neither 'accuracy' nor 'val_accuracy'"):
        plot_curves({"loss": [1.0, 0.5]}, tmp_path / "l.png", tmp_path / "a.png")
    assert list(tmp_path.iterdir()) == []


def test_confusion_matrix_100_classes_renders_large(tmp_path):
    rng = np.random.default_rng(0)
    c = 100
    cm = rng.integers(0, 3, size=(c, c)) + np.diag(rng.integers(20, 60, size=c))
    cm[7] = 0  # a class with no examples must not break the row normalisation
    names = [f"class_{i:03d}" for i in range(c)]
    path = plot_confusion_matrix(cm.tolist(), names, tmp_path / "confusion_matrix.png")
    width, height = png_size(path)
    assert width >= 1500 and height >= 1500  # ~20 in at 100 dpi: 100 rows of labels fit
    assert width <= 3000 and height <= 3000
    assert no_temp_files(tmp_path)


@pytest.mark.parametrize("normalize", [True, False])
def test_confusion_matrix_small_annotated(tmp_path, normalize):
    cm = [[5, 1, 0], [2, 3, 1], [0, 0, 4]]
    path = plot_confusion_matrix(cm, None, tmp_path / "cm.png", normalize=normalize)
    width, height = png_size(path)
    assert 400 <= width <= 1500 and 400 <= height <= 1500


def test_confusion_matrix_validation(tmp_path):
    with pytest.raises(ValueError, match="square"):
        plot_confusion_matrix([[1, 2, 3]], None, tmp_path / "cm.png")
    with pytest.raises(ValueError, match="class_names has 2 names"):
        plot_confusion_matrix(np.eye(3), ["a", "b"], tmp_path / "cm.png")
    assert not (tmp_path / "cm.png").exists()


def test_reliability(tmp_path):
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(10) * 0.3, size=500)
    y = rng.integers(0, 10, size=500)
    metrics = compute_metrics(y, probs)
    path = plot_reliability(metrics["reliability"], tmp_path / "reliability.png", title="softmax on digits")
    width, height = png_size(path)
    assert 400 <= width <= 1500 and 500 <= height <= 1500
    # Bins as they come back from report.json, with empty bins (None) included.
    sparse = compute_metrics(np.array([0, 1]), np.array([[0.95, 0.05], [0.55, 0.45]]))["reliability"]
    assert any(b["count"] == 0 for b in sparse)
    png_size(plot_reliability(sparse, tmp_path / "sparse.png"))
    with pytest.raises(ValueError, match="empty"):
        plot_reliability([], tmp_path / "empty.png")
    assert no_temp_files(tmp_path)


def test_comparison(tmp_path):
    rows = [
        {"label": "softmax", "accuracy": 0.612, "f1_macro": 0.605},
        {"label": "log_gumbel_t3_long_run_name", "accuracy": 0.623, "f1_macro": None},
        {"label": "sparsemax", "accuracy": 0.58, "f1_macro": 0.57},
    ]
    width, height = png_size(plot_comparison(rows, tmp_path / "comparison.png"))
    assert 500 <= width <= 1500 and 200 <= height <= 1500
    with pytest.raises(ValueError, match="no runs"):
        plot_comparison([], tmp_path / "none.png")


# --------------------------------------------------------------------------- what the figures show
@pytest.fixture
def figures(monkeypatch):
    """The matplotlib Figures the plot functions save, in order (they are still written to disk)."""
    from keras_softmax.evaluation import plots

    captured = []
    real_save = plots._save

    def save(fig, path):
        captured.append(fig)
        return real_save(fig, path)

    monkeypatch.setattr(plots, "_save", save)
    return captured


def _lines(ax) -> dict:
    return {line.get_label(): line for line in ax.get_lines()}


def test_curves_show_the_history_and_mark_the_best_epoch(tmp_path, figures):
    """Train and validation series against epochs 1..n; the marker sits on the lowest validation
    loss and on the highest validation accuracy; accuracy is drawn in percent."""
    plot_curves(HISTORY, tmp_path / "l.png", tmp_path / "a.png")
    loss_ax, acc_ax = figures[0].axes[0], figures[1].axes[0]
    for ax, key in ((loss_ax, "loss"), (acc_ax, "accuracy")):
        lines = _lines(ax)
        np.testing.assert_array_equal(lines["train"].get_xdata(), [1, 2, 3, 4, 5])
        np.testing.assert_allclose(lines["train"].get_ydata(), HISTORY[key])
        np.testing.assert_allclose(lines["validation"].get_ydata(), HISTORY[f"val_{key}"])
    (best_loss,) = loss_ax.collections[0].get_offsets()
    np.testing.assert_allclose(best_loss, [4, 1.3])  # min of val_loss, not of loss, not the last
    assert "epoch 4" in loss_ax.collections[0].get_label()
    (best_acc,) = acc_ax.collections[0].get_offsets()
    np.testing.assert_allclose(best_acc, [4, 0.58])  # max of val_accuracy
    assert "58.00%" in acc_ax.collections[0].get_label()
    assert acc_ax.yaxis.get_major_formatter().format_pct(0.5, 1.0).startswith("50")


def test_confusion_matrix_shows_rows_as_true_classes(tmp_path, figures):
    """Row-normalised counts with rows = true class (not transposed), per-cell percentages at the
    right place, and the accuracy in the title."""
    cm = np.array([[5, 1, 0], [2, 3, 1], [0, 0, 4]])
    plot_confusion_matrix(cm.tolist(), ["a", "b", "c"], tmp_path / "cm.png")
    ax = figures[0].axes[0]
    shown = np.asarray(ax.images[0].get_array())
    np.testing.assert_allclose(shown, cm / cm.sum(axis=1, keepdims=True))
    texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
    assert texts[(0, 1)] == "17" and texts[(1, 0)] == "33" and texts[(2, 2)] == "100"
    assert (0, 2) not in texts  # an empty cell carries no number
    assert ax.get_ylabel() == "true class" and ax.get_xlabel() == "predicted class"
    assert f"accuracy {100 * 12 / 16:.2f}%" in " ".join(t.get_text() for t in figures[0].texts)  # the title


def test_reliability_bars_are_the_bins_accuracy_and_title_the_ece(tmp_path, figures):
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(5) * 0.5, size=400)
    y = rng.integers(0, 5, size=400)
    metrics = compute_metrics(y, probs)
    plot_reliability(metrics["reliability"], tmp_path / "r.png")
    top, bottom = figures[0].axes[:2]
    filled = [b for b in metrics["reliability"] if b["count"]]
    accuracy_bars = top.containers[0]
    np.testing.assert_allclose([bar.get_height() for bar in accuracy_bars], [b["accuracy"] for b in filled])
    np.testing.assert_allclose([bar.get_x() + bar.get_width() / 2 for bar in accuracy_bars],
                               [(b["lower"] + b["upper"]) / 2 for b in filled])
    np.testing.assert_array_equal([bar.get_height() for bar in bottom.containers[0]],
                                  [b["count"] for b in metrics["reliability"]])
    assert f"ECE = {100 * metrics['ece']:.2f}%" in top.get_title()


def test_comparison_bars_are_each_runs_metrics(tmp_path, figures):
    rows = [{"label": "a", "accuracy": 0.61, "f1_macro": 0.6}, {"label": "b", "accuracy": 0.7, "f1_macro": None}]
    plot_comparison(rows, tmp_path / "c.png")
    ax = figures[0].axes[0]
    accuracy, f1 = ax.containers[:2]
    np.testing.assert_allclose([bar.get_width() for bar in accuracy], [0.61, 0.7])
    np.testing.assert_allclose([bar.get_width() for bar in f1], [0.6, 0.0])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    assert "n/a" in [t.get_text() for t in ax.texts]


def test_comparison_legend_covers_no_bar_label():
    """examples/compare_heads.py's plot: the legend (lower right, inside the axes) covered the label
    of a bar near 100 % (issue 22)."""
    from keras_softmax.evaluation.plots import comparison_figure

    rows = [{"label": f"run{i}", "accuracy": a, "f1_macro": f} for i, (a, f) in
            enumerate([(1.0, 0.99), (0.97, 1.0), (0.5, 0.45), (1.0, 1.0)])]
    fig = comparison_figure(rows)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    legends = fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert len(legends) == 1
    legend_box = legends[0].get_window_extent(renderer)
    labels = [t for ax in fig.axes for t in ax.texts]
    assert len(labels) == 8
    for text in labels:
        assert not legend_box.overlaps(text.get_window_extent(renderer)), text.get_text()
    for ax in fig.axes:
        for bar in ax.patches:
            assert not legend_box.overlaps(bar.get_window_extent(renderer))


@pytest.mark.parametrize("c, name", [(3, "{i}"), (10, "digit {i}"), (100, "a_rather_long_class_name_{i:03d}")])
def test_confusion_matrix_every_label_and_the_title_lie_inside_the_figure(tmp_path, monkeypatch, c, name):
    """The matrix is laid out from the labels' measured sizes (no layout engine): nothing may be cut."""
    from keras_softmax.evaluation import plots

    figures = []
    real = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path: (figures.append(fig), real(fig, path))[1])
    rng = np.random.default_rng(c)
    cm = rng.integers(0, 5, size=(c, c)) + np.eye(c, dtype=int) * 40
    plot_confusion_matrix(cm, [name.format(i=i) for i in range(c)], tmp_path / "cm.png")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = figures[0]
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    box = fig.bbox
    texts = [t for ax in fig.axes for t in (*ax.get_xticklabels(), *ax.get_yticklabels(), ax.xaxis.label,
                                            ax.yaxis.label) if t.get_text()] + list(fig.texts)
    assert len(texts) >= 2 * c + 3
    for text in texts:
        extent = text.get_window_extent(renderer)
        assert (extent.x0 >= box.x0 - 0.5 and extent.x1 <= box.x1 + 0.5 and extent.y0 >= box.y0 - 0.5
                and extent.y1 <= box.y1 + 0.5), (text.get_text(), extent, box)
    # The matrix's cells are square, and the labels do not overlap it.
    ax = fig.axes[0]
    matrix = ax.get_window_extent(renderer)
    assert abs(matrix.width - matrix.height) <= 2
    assert all(t.get_window_extent(renderer).x1 <= matrix.x0 for t in ax.get_yticklabels())
    assert all(t.get_window_extent(renderer).y0 >= 0 and t.get_window_extent(renderer).y1 <= matrix.y0
               for t in ax.get_xticklabels())
