"""compare_runs / format_table over fake run directories."""

import pytest

from keras_softmax.evaluation.compare import compare_runs, format_table
from keras_softmax.evaluation.plots import plot_comparison
from keras_softmax.io import write_json


def fake_run(directory, **values):
    report = {
        "accuracy": 0.6123, "top5_accuracy": 0.8591, "precision_macro": 0.61, "recall_macro": 0.6123,
        "f1_macro": 0.6087, "loss": 1.41234, "ece": 0.0456, "epoch_seconds": [25.0, 1.0, 1.0],
        "train_seconds": 27.04, "images_per_second": 51234.6, "num_params": 12_000_000, "head": "softmax",
        "head_params": {}, "dataset": "cifar100", "split": "test", "seed": 0,
    }
    report.update(values)
    write_json(directory / "report.json", report)
    return directory


def test_rows_and_table(tmp_path):
    a = fake_run(tmp_path / "softmax_run")
    b = fake_run(tmp_path / "log_gumbel_t3", head="log_gumbel", accuracy=0.6251, f1_macro=None, ece=0.0123,
                 epoch_seconds=[20.0] * 30, images_per_second=64000.0)
    rows = compare_runs([a, b])
    assert [r["label"] for r in rows] == ["softmax_run", "log_gumbel_t3"]
    assert rows[0] == {
        "label": "softmax_run", "head": "softmax", "dataset": "cifar100", "split": "test", "accuracy": 0.6123,
        "top5_accuracy": 0.8591, "f1_macro": 0.6087, "ece": 0.0456, "loss": 1.41234, "train_seconds": 27.04,
        "images_per_second": 51234.6, "epochs": 3, "run_dir": str(a),
    }
    assert rows[1]["epochs"] == 30 and rows[1]["f1_macro"] is None

    table = format_table(rows)
    lines = table.splitlines()
    assert len(lines) == 4
    assert len({len(line) for line in lines}) == 1  # columns line up
    assert lines[0].startswith("| run ") and "accuracy" in lines[0] and "images/s" in lines[0]
    assert set(lines[1]) <= set("|-: ")
    assert "61.23%" in lines[2] and "85.91%" in lines[2] and "4.56%" in lines[2] and "1.4123" in lines[2]
    assert "51,235" in lines[2] and "27.0" in lines[2]
    assert "62.51%" in lines[3] and "n/a" in lines[3] and "64,000" in lines[3]
    assert lines[3].endswith(" 30 |")

    path = plot_comparison(rows, tmp_path / "comparison.png")
    assert path.stat().st_size > 1000


def test_duplicate_names_get_parent_in_label(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    rows = compare_runs([fake_run(tmp_path / "a" / "run"), fake_run(tmp_path / "b" / "run")])
    assert [r["label"] for r in rows] == ["a/run", "b/run"]


def test_missing_report_is_a_clear_error(tmp_path):
    (tmp_path / "unfinished").mkdir()
    with pytest.raises(FileNotFoundError, match="unfinished"):
        compare_runs([tmp_path / "unfinished"])


def test_empty_table_has_header():
    lines = format_table([]).splitlines()
    assert len(lines) == 2 and lines[0].startswith("| run")


def test_no_report_prints_minus_zero(tmp_path):
    """A perfect fit's loss is -log 1 = -0.0, and reports printed "-0.0000" (issue 22)."""
    from keras_softmax.evaluation.report import render_markdown

    run = fake_run(tmp_path / "perfect", loss=-0.0, ece=-1e-12, accuracy=1.0)
    table = format_table(compare_runs([run]))
    markdown = render_markdown({"accuracy": 1.0, "top5_accuracy": 1.0, "loss": -0.0, "ece": -1e-12,
                                "head": "log_softmax", "calibration": {"applicable": True, "temperature": 1.0,
                                                                       "nll_before": -0.0, "nll_after": -1e-9}})
    for text in (table, markdown):
        assert "-0.0" not in text and "0.0000" in text
