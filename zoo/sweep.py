"""Train every head with one preset and record a row per run (the zoo's results table).

    python zoo/sweep.py --config zoo/presets/cifar100-heads.toml --dataset PATH --heads softmax log_softmax ... \
        --runs runs/zoo --jsonl zoo/results/cifar100-heads.jsonl
    python zoo/sweep.py --markdown zoo/results/cifar100-heads.jsonl      # print the table

Each run is the CLI (``keras-softmax train``) in a subprocess; the row records the exact command,
its wall time (process start to exit, compilation included) and the headline metrics of its report.
``HEAD:mismatched`` trains HEAD with the original study's mismatched loss; ``HEAD+KEY=VALUE`` adds
``--set KEY=VALUE`` (repeatable), e.g. ``sampled+label_smoothing=0`` (sampled softmax has no label
smoothing, which the recipe sets to 0.1).

Independent runs go one per GPU: ``--parallel N`` runs N at once, each with ``CUDA_VISIBLE_DEVICES``
set to a GPU no other running run has (default N: the visible GPUs, as ``keras-softmax study``
counts them, else 1). Each run trains on one device; for one run over several GPUs use
``--set devices=all`` instead.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import queue
import shlex
import subprocess
import sys
import time
from pathlib import Path


def run_all(specs, args, parallel: int, gpus: list, on_row) -> None:
    """Run every head, ``parallel`` at a time, each pinned to a free GPU of ``gpus`` (ids) if any."""
    free = queue.Queue()
    for slot in range(parallel):
        free.put(gpus[slot % len(gpus)] if gpus else None)

    def pinned(spec):
        gpu = free.get()
        try:
            return run_head(spec, args, gpu=gpu if parallel > 1 else None)
        finally:
            free.put(gpu)

    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        for future in concurrent.futures.as_completed([pool.submit(pinned, spec) for spec in specs]):
            on_row(future.result())


def run_head(spec: str, args, gpu=None) -> dict:
    spec, *settings = spec.split("+")
    head, _, loss = spec.partition(":")
    name = f"{head}-{loss}" if loss else head
    out = Path(args.runs) / name
    command = ["keras-softmax", "train", "--config", args.config, "--dataset", args.dataset, "--head", head,
               "--out", str(out), "--overwrite"]
    if loss:
        command += ["--set", f"loss={loss}"]
    for setting in settings:
        command += ["--set", setting]
    env = dict(os.environ)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "keras_softmax_cli", *command[1:]], capture_output=True,
                            text=True, env=env)
    wall = time.perf_counter() - start
    row = {"run": name, "head": head, "pairing": loss or "matched", "command": shlex.join(command),
           "wall_seconds": round(wall, 1), "exit": result.returncode}
    if gpu is not None:
        row["gpu"] = gpu
    if result.returncode == 0:
        report = json.loads((out / "report.json").read_text())
        for key in ("accuracy", "top5_accuracy", "f1_macro", "ece", "epochs", "train_seconds",
                    "compile_seconds", "images_per_second", "device", "backend"):
            row[key] = report.get(key)
    else:
        row["error"] = (result.stderr or result.stdout).strip().splitlines()[-1:]
    return row


def markdown(rows: list[dict]) -> str:
    lines = ["| head | loss pairing | val top-1 | val top-5 | macro F1 | ECE | epochs | img/s | wall s | command |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if r.get("exit"):
            lines.append(f"| {r['head']} | {r['pairing']} | failed | | | | | | | `{r['command']}` |")
            continue
        lines.append(
            f"| `{r['head']}` | {r['pairing']} | {100 * r['accuracy']:.2f}% | {100 * r['top5_accuracy']:.2f}% | "
            f"{100 * r['f1_macro']:.2f}% | {r['ece']:.3f} | {r['epochs']} | {r['images_per_second']:,.0f} | "
            f"{r['wall_seconds']:.1f} | `{r['command']}` |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config")
    parser.add_argument("--dataset")
    parser.add_argument("--heads", nargs="*", default=[])
    parser.add_argument("--runs", default="runs/zoo")
    parser.add_argument("--jsonl")
    parser.add_argument("--markdown", metavar="JSONL", help="print the results table of a JSONL file")
    parser.add_argument("--parallel", type=int, metavar="N",
                        help="runs at once, one GPU each (default: the number of GPUs, else 1)")
    args = parser.parse_args()
    if args.markdown:
        rows = [json.loads(line) for line in Path(args.markdown).read_text().splitlines() if line.strip()]
        print(markdown(rows))
        return
    from keras_softmax.study.runner import visible_gpus  # CUDA_VISIBLE_DEVICES, else nvidia-smi -L

    gpus = visible_gpus()
    parallel = args.parallel or max(1, len(gpus))

    def record(row):
        print(json.dumps(row), flush=True)
        if args.jsonl:
            with open(args.jsonl, "a") as handle:
                handle.write(json.dumps(row) + "\n")

    run_all(args.heads, args, parallel, gpus, record)


if __name__ == "__main__":
    main()
