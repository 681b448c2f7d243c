"""The offset between two GPU kinds: train recorded runs again, same ``config.toml`` and seed, and compare.

A study's rows may come from different GPU kinds (the lent machines are H100s or H200s). Its report
names every comparison that crosses kinds, and cannot say by how much a kind moves a figure. This
measures it: each named run of a records folder (``zoo/study_records.py pack``) is trained again on this
machine from its recorded ``config.toml`` and scored on the test split as the study scores it, then set
beside its record, pair by pair (repeat − record, in points), with a paired 95 % interval and the
same-kind repeat noise of ``--repeats`` beside it: top-1, and superclass top-1 where the runs record it.

    python bench/gpu_kinds.py run zoo/results/cifar100-study5-records log_softmax-seed0 softmax-seed0 \\
        --dataset .data/cifar100-train-jpg.tar.gz --test-dataset .data/cifar100-test-jpg.tar.gz \\
        --out runs/kinds --parallel 4
    python bench/gpu_kinds.py compare zoo/results/cifar100-study5-records runs/kinds \\
        --repeats zoo/results/cifar100-study-repeats.json --json bench/results/gpu_kinds.json

``run`` skips a run whose repeat already has its figures, so it can be called again after a cut-off
call. ``--parallel N`` trains N runs side by side, each with 1/N of the GPU's memory (as the study's
``--runs-per-device``); the figures do not depend on it, the wall times do.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import time
from pathlib import Path

RUNS = "runs"  # a record's paths: runs/<name>/<file>


def recorded_files(records: Path, name: str) -> dict[str, str]:
    """``{file name: text}`` of run ``name`` in the records folder (or single records file), read as
    ``zoo/study_records.py`` reads them."""
    prefix = f"{RUNS}/{name}/"
    found = {}
    for line in _study_records().record_lines(records):
        if line.strip():
            entry = json.loads(line)
            if entry["path"].startswith(prefix):
                found[entry["path"][len(prefix):]] = entry["text"]
    if "config.toml" not in found:
        raise SystemExit(f"no run {name!r} with a config.toml in {records}")
    return found


def _study_records():
    """``zoo/study_records.py``, the one reader of the records' layout (a script, not a package module)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("study_records", Path(__file__).resolve().parents[1] / "zoo" /
                                                  "study_records.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _finished(run: Path, scored: bool) -> bool:
    return (run / "report.json").is_file() and (not scored or (run / "test.json").is_file())


def run(records: Path, names: list[str], dataset: str, test_dataset: str | None, out: Path, parallel: int) -> None:
    """Train (and score) every run of ``names`` again under ``out/<name>``, ``parallel`` at a time."""
    configs = out / "_configs"
    configs.mkdir(parents=True, exist_ok=True)
    pending = []
    for name in names:
        (configs / f"{name}.toml").write_text(recorded_files(records, name)["config.toml"], encoding="utf-8")
        if _finished(out / name, test_dataset is not None):
            print(f"{name}: done before, kept")
        else:
            pending.append(name)
    env = dict(os.environ)
    if parallel > 1:
        env.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", f"{0.9 / parallel:.2f}")

    def train_and_score(name: str) -> str:
        started = time.monotonic()
        trained = (out / name / "report.json").is_file() and (out / name / "model.keras").is_file()
        steps = [] if trained else [["-m", "keras_softmax_cli", "train", "--config", str(configs / f"{name}.toml"),
                                     "--dataset", dataset, "--out", str(out / name),
                                     *(["--overwrite"] if (out / name).exists() else [])]]
        if test_dataset is not None:  # scored once it has trained, as the study scores its runs
            steps.append(["-m", "keras_softmax.study.testsplit", str(out / name), test_dataset])
        with open(out / f"{name}.log", "a", encoding="utf-8") as log:
            for step in steps:
                code = subprocess.run([sys.executable, *step], stdout=log, stderr=subprocess.STDOUT, env=env).returncode
                if code != 0:
                    return f"{name}: failed (exit {code}) after {time.monotonic() - started:.0f}s; see {out / name}.log"
        return f"{name}: finished in {time.monotonic() - started:.0f}s"

    lines = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as pool:
        for done in concurrent.futures.as_completed([pool.submit(train_and_score, name) for name in pending]):
            lines.append(done.result())
            print(f"{lines[-1]} ({len(pending) - len(lines)} to go)", flush=True)
    failed = [line.split(":")[0] for line in lines if ": failed" in line]
    if failed:
        raise SystemExit(f"{len(failed)} run(s) failed: {', '.join(failed)}")


def _gpu(report: dict) -> str:
    device = str(report.get("device") or "unknown")
    return device.removeprefix("gpu: ")


def compare(records: Path, out: Path, repeats: Path | None = None, earlier: Path | None = None) -> dict:
    """Each repeat under ``out`` beside its record: validation and test top-1 (and superclass top-1 where the
    record has it) and the kinds, with the paired offset of each; with ``earlier`` (a JSON this wrote before),
    its pairs of runs not under ``out`` count too."""
    from keras_softmax.study.stats import paired_interval, repeat_sd
    from keras_softmax.study.verdicts import OFFSET_METRICS

    pairs = []
    for run_dir in sorted(p for p in out.iterdir() if (p / "report.json").is_file()):
        recorded = recorded_files(records, run_dir.name)
        before, after = json.loads(recorded["report.json"]), json.loads((run_dir / "report.json").read_text())
        test_before = json.loads(recorded["test.json"]) if "test.json" in recorded else {}
        test_after = (json.loads((run_dir / "test.json").read_text()) if (run_dir / "test.json").is_file() else {})
        pair = {"run": run_dir.name, "kinds": [_gpu(before), _gpu(after)]}
        for metric in OFFSET_METRICS:  # top-1 always; superclass top-1 where the runs have it
            if metric == "accuracy" or metric in before:
                pair[metric] = [before.get(metric), after.get(metric)]
                pair[f"test_{metric}"] = [test_before.get(metric), test_after.get(metric)]
        pairs.append(pair)
    if not pairs:
        raise SystemExit(f"no finished repeat in {out} (a run directory with report.json): run `run` first")
    if earlier is not None:
        kept = [p for p in json.loads(earlier.read_text(encoding="utf-8"))["pairs"]
                if p["run"] not in {q["run"] for q in pairs}]
        kinds = {tuple(p["kinds"]) for p in kept + pairs}
        if len(kinds) > 1:
            raise SystemExit(f"{earlier} and {out} pair different kinds ({sorted(kinds)}): one offset needs one "
                             "record kind and one repeat kind")
        pairs = kept + pairs
    summary = {"pairs": pairs, "kinds": sorted({kind for p in pairs for kind in p["kinds"]})}
    for key in (f"{prefix}{metric}" for metric in OFFSET_METRICS for prefix in ("", "test_")):
        found = [p[key] for p in pairs if key in p]
        d = paired_interval([after for _, after in found], [before for before, _ in found])
        summary[f"{key}_offset"] = None if d is None else {
            "points": 100 * d.difference, "ci95": [100 * d.low, 100 * d.high], "pairs": d.n_a, "p_value": d.p_value}
    if repeats is not None:
        same_kind = [pair["accuracy"] for pair in json.loads(repeats.read_text(encoding="utf-8"))["pairs"]]
        summary["same_kind_repeat_sd_points"] = 100 * repeat_sd(same_kind)
        summary["across_kinds_repeat_sd_points"] = 100 * repeat_sd([p["accuracy"] for p in pairs])
    return summary


def _print(summary: dict) -> None:
    def pct(value):
        return "–" if value is None else f"{100 * value:.2f} %"

    print("| run | kinds (record → repeat) | val top-1 | test top-1 |")
    print("|---|---|---:|---:|")
    for p in summary["pairs"]:
        val, test = p["accuracy"], p["test_accuracy"]
        print(f"| {p['run']} | {' → '.join(p['kinds'])} | {pct(val[0])} → {pct(val[1])} | "
              f"{pct(test[0])} → {pct(test[1])} |")
    for key, label in (("accuracy", "validation"), ("test_accuracy", "test"),
                       ("coarse_accuracy", "superclass, validation"), ("test_coarse_accuracy", "superclass, test")):
        offset = summary.get(f"{key}_offset")
        if offset is not None:
            print(f"{label} offset (repeat − record): {offset['points']:+.2f} points, 95 % CI "
                  f"[{offset['ci95'][0]:+.2f}, {offset['ci95'][1]:+.2f}] over {offset['pairs']} pairs")
    if summary.get("same_kind_repeat_sd_points") is not None:
        print(f"one run's σ from repeats: {summary['across_kinds_repeat_sd_points']:.2f} points across kinds, "
              f"{summary['same_kind_repeat_sd_points']:.2f} on one kind")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("run", help="train recorded runs again on this machine")
    train.add_argument("records", type=Path)
    train.add_argument("names", nargs="+", help="run names as in the records, e.g. softmax-seed0")
    train.add_argument("--dataset", required=True)
    train.add_argument("--test-dataset", help="score each run on this test split once it has trained")
    train.add_argument("--out", type=Path, required=True)
    train.add_argument("--parallel", type=int, default=1)
    report = commands.add_parser("compare", help="each repeat beside its record")
    report.add_argument("records", type=Path)
    report.add_argument("out", type=Path)
    report.add_argument("--repeats", type=Path, help="same-kind repeat pairs (the study's repeats file)")
    report.add_argument("--json", type=Path, help="also write the pairs and the offsets here")
    report.add_argument("--with", dest="earlier", type=Path,
                        help="an earlier --json of the same two kinds: its pairs of other runs count too")
    args = parser.parse_args(argv)
    if args.command == "run":
        run(args.records, args.names, args.dataset, args.test_dataset, args.out, max(1, args.parallel))
        return
    summary = compare(args.records, args.out, args.repeats, args.earlier)
    _print(summary)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
