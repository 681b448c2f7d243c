"""Evaluation: metrics from predicted probabilities, plots, the run report, and run comparison.

Pure numpy / scikit-learn / matplotlib: nothing here imports Keras or TensorFlow, so reports can be
computed, re-rendered and compared on any machine.

>>> from keras_softmax.evaluation import compute_metrics, write_report  # doctest: +SKIP
>>> metrics = compute_metrics(y_true, probs, class_names=names)  # doctest: +SKIP
>>> write_report("runs/demo", {**metrics, **run_facts}, history=history)  # doctest: +SKIP
"""

from keras_softmax.evaluation.calibration import calibrate, fit_temperature
from keras_softmax.evaluation.compare import compare_runs, format_table
from keras_softmax.evaluation.metrics import (
    compute_metrics,
    expected_calibration_error,
    reliability_bins,
    top_k_accuracy,
)
from keras_softmax.evaluation.plots import (
    plot_comparison,
    plot_confusion_matrix,
    plot_curve,
    plot_curves,
    plot_reliability,
)
from keras_softmax.evaluation.report import REQUIRED_KEYS, read_report, render_markdown, write_report

__all__ = [
    "REQUIRED_KEYS", "calibrate", "compare_runs", "compute_metrics", "expected_calibration_error", "fit_temperature",
    "format_table", "plot_comparison", "plot_confusion_matrix", "plot_curve", "plot_curves", "plot_reliability",
    "read_report", "reliability_bins", "render_markdown", "top_k_accuracy", "write_report",
]
