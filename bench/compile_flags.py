"""Where a cold compile goes: the train step's compile under different XLA flags, and what reuses it.

    KERAS_BACKEND=jax python bench/compile_flags.py --config zoo/presets/cifar100-log_softmax-fast.toml \
        --flags "" --flags "--xla_gpu_autotune_level=1" --json OUT/flags.json

Each flag set runs in a fresh process with the compilation cache off and an empty ``CUDA_CACHE_PATH``
(as on a fresh machine): ``model.fit`` of the preset's model on synthetic in-memory batches for three
epochs, then ``evaluate`` at batch 512 (the train step's batch) and 500, and ``predict`` at 512. The
first epoch minus a steady one is the train step's compile time; the median of the others is the
steady epoch time, so a flag that compiles faster but trains slower shows both. Each evaluation's
first call minus its second is that step's compile: at the train step's batch, XLA finds the
convolutions' autotuning results in its in-process cache. With ``--twice`` the train step is
compiled a second time in the same process (``jax.clear_caches()``): what that costs is the compile
without autotuning. For XLA's own phase timers add ``TF_CPP_MIN_LOG_LEVEL=0
TF_CPP_VMODULE=gpu_compiler=1,nvptx_compiler=1`` to the environment.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time



def child(config_path: str, images: int, twice: bool) -> dict:
    """One fresh process's measurements (runs inside the subprocess)."""
    import numpy as np

    from keras_softmax import environment
    from keras_softmax.benchmark import epoch_timer
    from keras_softmax.data.sources import Dataset
    from keras_softmax.training.config import resolve
    from keras_softmax.training.metrics import training_metrics
    from keras_softmax.training.optim import make_optimizer
    from keras_softmax.training.trainer import build_for, setup_backend

    environment.configure_xla()
    config = resolve(config_path, {"dataset": "cifar100", "compile_cache": False})
    setup_backend(config)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(images, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 100, size=(images,)).astype("int32")
    began = time.perf_counter()
    head, model = build_for(config, Dataset("synthetic", [str(i) for i in range(100)], x, y, x[:10], y[:10]))
    build = time.perf_counter() - began
    model.compile(optimizer=make_optimizer(config, images // 512), loss=head.make_loss(config.label_smoothing),
                  metrics=training_metrics(head.output_kind), jit_compile=True)
    times = []
    model.fit(x, y, batch_size=512, epochs=3, shuffle=False, callbacks=[epoch_timer(times)], verbose=0)
    steady = sorted(times[1:])[len(times[1:]) // 2]
    row = {"build_seconds": round(build, 2), "epoch_seconds": [round(t, 3) for t in times],
           "train_step_compile_seconds": round(times[0] - steady, 2), "steady_epoch_seconds": round(steady, 3),
           "images_per_second": round(images / steady)}

    def first_minus_second(call) -> float:
        seconds = []
        for _ in range(2):
            began = time.perf_counter()
            call()
            seconds.append(time.perf_counter() - began)
        return round(seconds[0] - seconds[1], 2)

    for batch in (512, 500):
        row[f"test_step_compile_seconds_at_{batch}"] = first_minus_second(
            lambda: model.evaluate(x[: batch * 10], y[: batch * 10], batch_size=batch, verbose=0))
    row["predict_step_compile_seconds_at_512"] = first_minus_second(
        lambda: model.predict(x[:5120], batch_size=512, verbose=0))
    if twice:
        import jax

        jax.clear_caches()
        model.make_train_function(force=True)
        model.fit(x, y, batch_size=512, epochs=1, shuffle=False, callbacks=[epoch_timer(times)], verbose=0)
        row["second_train_step_compile_seconds"] = round(times[-1] - steady, 2)
    return row


def run(flags: str, config: str, images: int, twice: bool, timeout: float) -> dict:
    env = dict(os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " " + flags).strip(),
               CUDA_CACHE_PATH=tempfile.mkdtemp(prefix="cuda-cache-"))
    command = [sys.executable, __file__, "--child", config, "--images", str(images)] + (["--twice"] if twice else [])
    try:
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"flags": flags, "error": f"did not finish in {timeout:.0f} s"}
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    if result.returncode or not lines:
        return {"flags": flags, "error": (result.stderr or result.stdout).strip().splitlines()[-3:]}
    return {"flags": flags, **json.loads(lines[-1][len("RESULT "):])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config")
    parser.add_argument("--flags", action="append", default=[], help="an XLA_FLAGS set (repeatable)")
    parser.add_argument("--images", type=int, default=45056, help="synthetic images per epoch (multiple of 512)")
    parser.add_argument("--twice", action="store_true", help="also compile the train step a second time")
    parser.add_argument("--timeout", type=float, default=240)
    parser.add_argument("--json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args.child, args.images, args.twice)), flush=True)
        return
    if not args.config:
        parser.error("--config is required")
    rows = []
    for flags in args.flags or [""]:
        rows.append(run(flags, args.config, args.images, args.twice, args.timeout))
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
