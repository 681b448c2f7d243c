"""report.json / report.md / plots: the GUIDE §6 contract, human-readable content, atomic writes."""

import json
from pathlib import Path

import numpy as np
import pytest

from keras_softmax.evaluation import plots as plots_module
from keras_softmax.evaluation.metrics import compute_metrics
from keras_softmax.evaluation.report import REQUIRED_KEYS, read_report, write_report

# The keys GUIDE §6 promises to other tools, spelled out independently of REQUIRED_KEYS.
GUIDE_KEYS = {
    "accuracy", "top5_accuracy", "precision_macro", "recall_macro", "f1_macro", "loss", "ece", "epoch_seconds",
    "train_seconds", "images_per_second", "num_params", "head", "head_params", "dataset", "split", "seed",
}
NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
HISTORY = {
    "loss": [2.1, 1.5, 1.2, 1.0],
    "val_loss": [2.0, 1.6, 1.4, 1.3],
    "accuracy": [0.2, 0.45, 0.6, 0.66],
    "val_accuracy": [0.22, 0.41, 0.52, 0.55],
}


def make_report(seed=0, **overrides):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, size=400)
    logits = rng.normal(size=(400, 10))
    logits[np.arange(400), y] += 2.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    report = compute_metrics(y, probs, class_names=NAMES)
    report.update({
        "loss": np.float32(1.2345678),
        "epoch_seconds": np.array([30.0, 2.0, 4.0, 3.0]),  # steady state: mean 3.00, median 3.00
        "train_seconds": 39.5,
        "images_per_second": np.float64(15000.4),
        "num_params": np.int64(12_345_678),
        "head": "log_gumbel",
        "head_params": {"temperature": 3.0},
        "dataset": "cifar10",
        "split": "test",
        "seed": np.int64(42),
        "compile_seconds": 27.25,
        "backend": "jax",
        "device": "NVIDIA H100",
        "versions": {"keras": "3.15.1", "jax": "0.10.2"},
    })
    report.update(overrides)
    return report


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "log_gumbel_cifar10"
    report = make_report()
    returned = write_report(run_dir, report, history=HISTORY)
    return run_dir, report, returned


def temp_files(directory):
    return [p for p in Path(directory).rglob(".*") if p.is_file()]


def test_required_keys_match_the_guide():
    assert set(REQUIRED_KEYS) == GUIDE_KEYS
    assert len(REQUIRED_KEYS) == len(GUIDE_KEYS)


def test_files_and_schema(written):
    run_dir, report, returned = written
    assert (run_dir / "report.json").is_file() and (run_dir / "report.md").is_file()
    for name in ("loss_curve", "accuracy_curve", "confusion_matrix", "reliability"):
        assert (run_dir / "plots" / f"{name}.png").is_file()
    assert returned["plots"] == {
        "loss_curve": "plots/loss_curve.png",
        "accuracy_curve": "plots/accuracy_curve.png",
        "confusion_matrix": "plots/confusion_matrix.png",
        "reliability": "plots/reliability.png",
    }
    # Strict JSON (no NaN), numpy scalars converted, and identical to what write_report returned.
    text = (run_dir / "report.json").read_text()
    on_disk = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert on_disk == returned == read_report(run_dir)
    assert GUIDE_KEYS <= set(on_disk)
    assert on_disk["epoch_seconds"] == [30.0, 2.0, 4.0, 3.0]
    assert on_disk["seed"] == 42 and on_disk["num_params"] == 12_345_678
    assert on_disk["loss"] == pytest.approx(1.2345678, rel=1e-6)
    assert on_disk["accuracy"] == report["accuracy"]
    assert temp_files(run_dir) == []


def test_input_not_modified(written):
    _, report, _ = written
    assert "plots" not in report
    assert isinstance(report["seed"], np.integer)


def test_markdown_content(written):
    run_dir, report, _ = written
    md = (run_dir / "report.md").read_text()
    assert md.startswith("# `log_gumbel` on cifar10")
    for key in ("accuracy", "top5_accuracy", "precision_macro", "recall_macro", "f1_macro", "ece"):
        assert f"{100 * report[key]:.2f}%" in md, key
    assert "1.2346" in md  # loss
    assert "`temperature=3.0`" in md
    assert "12,345,678" in md
    # Timing: steady state excludes the first (compiling) epoch.
    assert "epochs 2–4), mean | 3.00 s" in md
    assert "median | 3.00 s" in md
    assert "30.00 s" in md and "27.25 s" in md and "15,000" in md and "39.5 s" in md
    # Environment.
    assert "| backend | jax |" in md and "NVIDIA H100" in md and "| keras | 3.15.1 |" in md
    # Plots inlined with relative links.
    for link in ("![loss](plots/loss_curve.png)", "![accuracy](plots/accuracy_curve.png)",
                 "![confusion matrix](plots/confusion_matrix.png)", "![reliability diagram](plots/reliability.png)"):
        assert link in md


def test_per_class_table_sorted_by_f1(written):
    run_dir, report, _ = written
    md = (run_dir / "report.md").read_text()
    section = md.split("## Per-class results")[1].splitlines()
    rows = [line for line in section if line.startswith("| ")]
    assert rows[0].startswith("| class | precision | recall | F1 | support |")
    names_in_md = [row.split("|")[1].strip() for row in rows[2:]]  # skip the header and the rule line
    expected = [row["name"] for row in sorted(report["per_class"], key=lambda r: -r["f1"])]
    assert names_in_md == expected
    best = max(report["per_class"], key=lambda r: r["f1"])
    assert f"| {best['name']} | {100 * best['precision']:.2f}% | {100 * best['recall']:.2f}% | " \
           f"{100 * best['f1']:.2f}% | {best['support']} |" in md


def test_missing_keys_error_lists_them_and_writes_nothing(tmp_path):
    report = make_report()
    del report["ece"], report["seed"]
    with pytest.raises(ValueError, match="missing required keys: ece, seed"):
        write_report(tmp_path / "run", report, history=HISTORY)
    assert not (tmp_path / "run").exists()


def test_optional_parts_absent(tmp_path):
    report = {key: make_report()[key] for key in REQUIRED_KEYS}
    report["loss"] = float("nan")  # a diverged run: written as null, shown as n/a
    report["epoch_seconds"] = [12.5]
    report["split"] = {"train": 45000, "val": 5000}
    returned = write_report(tmp_path / "run", report)
    assert returned["plots"] == {}
    assert returned["loss"] is None
    md = (tmp_path / "run" / "report.md").read_text()
    assert "![" not in md and "## Per-class" not in md and "## Environment" not in md
    assert "| loss | n/a |" in md
    assert "one epoch, includes compilation" in md and "12.50 s" in md
    assert "train 45,000, val 5,000" in md
    assert read_report(tmp_path / "run")["loss"] is None


def test_history_without_data_skips_curves_instead_of_failing(tmp_path):
    report = make_report()
    empty = {"loss": [], "val_loss": [], "accuracy": [], "val_accuracy": []}
    assert "loss_curve" not in write_report(tmp_path / "a", report, history=empty)["plots"]
    # Validation every other epoch (gaps), and no accuracy metric tracked at all.
    partial = {"loss": [1.0, 0.8, 0.7], "val_loss": [None, 0.9, None], "accuracy": [None, None, None]}
    plots = write_report(tmp_path / "b", report, history=partial)["plots"]
    assert "loss_curve" in plots and "accuracy_curve" not in plots
    assert (tmp_path / "b" / "plots" / "loss_curve.png").is_file()
    assert not (tmp_path / "b" / "plots" / "accuracy_curve.png").exists()
    md = (tmp_path / "b" / "report.md").read_text()
    assert "![loss](plots/loss_curve.png)" in md and "accuracy_curve" not in md
    with pytest.raises(ValueError, match="history must be a dict"):
        write_report(tmp_path / "c", report, history=[1.0, 0.5])


def test_evaluation_of_an_unfinished_run(tmp_path):
    """As ``evaluate`` writes it for a run without timings: None timings, split sizes."""
    report = make_report(epoch_seconds=None, train_seconds=None, images_per_second=None, split="val",
                         split_sizes={"train": 45000, "val": 5000})
    returned = write_report(tmp_path / "eval", report)
    assert returned["epoch_seconds"] is None
    md = (tmp_path / "eval" / "report.md").read_text()
    assert "| epochs | 0 |" in md and "| split sizes | train 45,000, val 5,000 |" in md
    with pytest.raises(ValueError, match="epoch_seconds"):
        write_report(tmp_path / "eval2", make_report(epoch_seconds=3.5))


def test_class_names_argument(tmp_path):
    report = make_report()
    names = [f"c{i}" for i in range(10)]
    returned = write_report(tmp_path / "run", report, class_names=names)
    assert [row["name"] for row in returned["per_class"]] == names
    assert "| c0 |" in (tmp_path / "run" / "report.md").read_text()
    with pytest.raises(ValueError, match="class_names has 3 names"):
        write_report(tmp_path / "run2", report, class_names=["a", "b", "c"])


def test_failure_keeps_previous_report_and_leaves_no_temp_files(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    write_report(run_dir, make_report(seed=0))
    before = (run_dir / "report.json").read_bytes(), (run_dir / "report.md").read_bytes()

    def broken(*args, **kwargs):
        raise RuntimeError("disk full while plotting")

    monkeypatch.setattr(plots_module, "plot_reliability", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        write_report(run_dir, make_report(seed=1))
    assert ((run_dir / "report.json").read_bytes(), (run_dir / "report.md").read_bytes()) == before
    assert temp_files(run_dir) == []

    monkeypatch.undo()
    with pytest.raises(TypeError, match="cannot be written as JSON"):
        write_report(run_dir, make_report(seed=1, extra=object()))
    assert (run_dir / "report.json").read_bytes() == before[0]
    assert temp_files(run_dir) == []


def test_read_report_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no report.json in .*nowhere"):
        read_report(tmp_path / "nowhere")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "report.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_report(tmp_path / "broken")
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "report.json").write_text('{"accuracy": 0.5}')
    assert read_report(tmp_path / "ok" / "report.json") == {"accuracy": 0.5}
