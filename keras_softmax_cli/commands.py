"""``keras-softmax``: a thin Click layer over the library (train, evaluate, predict, export, ...).

Every error a user can cause is reported as one line with a non-zero exit status. The library is
imported inside each command, not here: importing Keras and TensorFlow takes seconds, and
``keras-softmax --help``, ``keras-softmax COMMAND --help`` or a mistyped option answer at once
(``tests/cli/test_startup.py`` checks that they import neither).
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import re
import sys
from pathlib import Path

import click

from keras_softmax_cli import terminal_stderr


def _user_errors():
    """The exception types that mean "the user asked for something impossible": the library's own, bad
    values, and the file system's (a missing or read-only path, a full disk: ``OSError``)."""
    try:
        from keras_softmax.data import DatasetError
        from keras_softmax.export import ExportError
        from keras_softmax.predict import PredictError
        from keras_softmax.training.callbacks import TrainingDiverged
        from keras_softmax.training.config import ConfigError
        from keras_softmax.study.spec import StudyError
        from keras_softmax.training.rundir import RunDirError
    except Exception:  # the library itself does not import (e.g. Keras refused the backend): that error's own line
        return (ValueError, OSError)
    errors = (ConfigError, DatasetError, ExportError, PredictError, RunDirError, StudyError, TrainingDiverged,
              ValueError, OSError)
    tensorflow = sys.modules.get("tensorflow")
    errors_module = getattr(tensorflow, "errors", None)
    if errors_module is not None:  # TensorFlow's file errors (a SavedModel into a read-only directory)
        errors += (errors_module.PermissionDeniedError,)
    return errors


def friendly_errors(command):
    """Turn user errors into ``Error: <message>`` and exit status 1, without a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except click.ClickException:
            raise
        except KeyboardInterrupt:
            _warn("interrupted")
            _exit_interrupted()
        except _user_errors() as error:
            raise click.ClickException(str(error).strip().splitlines()[0] if str(error).strip() else repr(error))

    return wrapper


def _echo(line: str) -> None:
    click.echo(line)


def _warn(line: str) -> None:
    """A message of the command's own to stderr: always the terminal, even while library logs are not."""
    click.echo(line, file=terminal_stderr())


class OneLineErrors(click.Group):
    """Click's group, except that a usage error (a mistyped option, a bad value) is one line too:
    ``Error: <what> (see 'keras-softmax train --help')`` instead of usage, hint and error."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except getattr(click.exceptions, "NoArgsIsHelpError", ()) as error:  # bare `keras-softmax`: help, not an error
            click.echo(error.ctx.get_help())
            sys.exit(0)
        except click.UsageError as error:
            hint = f" (see '{error.ctx.command_path} --help')" if error.ctx is not None else ""
            _warn(f"Error: {error.format_message()}{hint}")
            sys.exit(error.exit_code)
        except click.ClickException as error:
            error.show(file=terminal_stderr())
            sys.exit(error.exit_code)
        except click.Abort as abort:
            if isinstance(abort.__cause__, KeyboardInterrupt):  # Ctrl-C in a command without friendly_errors
                _warn("interrupted")
                _exit_interrupted()
            _warn("Aborted!")
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="keras-softmax")
@click.option("--verbose", is_flag=True,
              help="Show the library's and backend's own logs (TensorFlow, absl, warnings); also "
                   "KERAS_SOFTMAX_VERBOSE=1. Without it they go to ~/.cache/keras_softmax/logs/last-command.log.")
def main(verbose):
    """Softmax-variant output heads for Keras: train, evaluate, export and compare them."""


#: A validation split of fewer images (a count given as --val-split N) gets a note.
SMALL_VALIDATION = 100
#: The Keras backends a model trains on (numpy and openvino only run inference).
TRAINING_BACKENDS = ("jax", "tensorflow", "torch")


def _default_out(head: str, dataset: str) -> Path:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(dataset).name.split(".")[0] or "data")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{head}-{stem}-{stamp}"


@main.command()
@click.option("--head", help="Head name (see `keras-softmax heads`). Default: log_softmax.")
@click.option("--head-param", "head_params", multiple=True, metavar="KEY=VALUE",
              help="A head parameter, e.g. temperature=3.0 (repeatable).")
@click.option("--dataset", help="digits (default, bundled), cifar100 (downloads), or a class-folder path / .tar.gz.")
@click.option("--epochs", type=click.IntRange(min=1))
@click.option("--batch-size", type=click.IntRange(min=1))
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Peak learning rate.")
@click.option("--seed", type=click.IntRange(min=0))
@click.option("--precision", type=click.Choice(["auto", "float32", "mixed_bfloat16", "mixed_float16"]),
              help="Dtype policy. Default auto: mixed_bfloat16 on GPUs/TPUs with native bf16, else float32.")
@click.option("--val-split", type=float, help="Validation fraction (<1) or image count (>=1). Default 0.1. "
              "0: none, every training image trains (settings chosen on a validation split before) and the "
              "report is on the dataset's test split.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="A TOML preset (e.g. zoo/presets/*.toml).")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Any other setting of the config, e.g. weight_decay=1e-4 (repeatable).")
@click.option("--devices", metavar="N|all",
              help="Data-parallel devices (config key devices; default 1): all = every visible GPU. "
                   "--batch-size stays the global batch.")
@click.option("--coordinator", metavar="HOST:PORT",
              help="Several hosts: process 0's address (JAX backend; or $KERAS_DISTRIBUTION_JOB_ADDRESSES).")
@click.option("--num-processes", type=click.IntRange(min=1),
              help="Several hosts: how many processes (or $KERAS_DISTRIBUTION_NUM_PROCESSES).")
@click.option("--process-id", type=click.IntRange(min=0),
              help="Several hosts: this process's id, 0 to N-1 (or $KERAS_DISTRIBUTION_PROCESS_ID).")
@click.option("--out", type=click.Path(file_okay=False), help="Run directory. Default: runs/<head>-<dataset>-<time>.")
@click.option("--resume", is_flag=True, help="Continue the unfinished run in --out from its last checkpoint.")
@click.option("--overwrite", is_flag=True,
              help="Replace the keras-softmax run in --out (a directory that is not a run is refused).")
@friendly_errors
def train(head, head_params, dataset, epochs, batch_size, lr, seed, precision, val_split, config_file, settings,
          devices, coordinator, num_processes, process_id, out, resume, overwrite):
    """Train a ResNet-12 with a softmax-variant head and write a run directory.

    Several hosts: start the same command once per host with --devices all and the
    --coordinator / --num-processes / --process-id of the cluster (JAX backend).
    """
    import keras

    from keras_softmax.training import distribute
    from keras_softmax.training.config import ConfigError, parse_head_param, resolve
    from keras_softmax.job import run_job as run_training

    if keras.backend.backend() not in TRAINING_BACKENDS:  # before a run directory is claimed
        raise ConfigError(f"Keras's {keras.backend.backend()} backend cannot train; set KERAS_BACKEND to "
                          f"{', '.join(TRAINING_BACKENDS)}")

    # Before anything touches a device: every process must see the cluster's devices.
    distribute.initialize(coordinator, num_processes, process_id)
    if resume:
        if not out:
            raise ConfigError("--resume needs --out RUN_DIR (the run to continue)")
        if overwrite:
            raise ConfigError("--resume and --overwrite exclude each other")
        given = [name for name, value in (("--head", head), ("--dataset", dataset), ("--epochs", epochs),
                                          ("--batch-size", batch_size), ("--lr", lr), ("--seed", seed),
                                          ("--precision", precision), ("--val-split", val_split),
                                          ("--config", config_file), ("--devices", devices)) if value is not None]
        given += list(settings) + list(head_params)
        from keras_softmax.training.rundir import RunDirectory

        if not distribute.cluster_settings(coordinator, num_processes, process_id):  # (process k resumes OUT.processk)
            RunDirectory(out).check(resume=True, overwrite=False)  # nothing to resume: that line alone
        if given:
            _warn(f"note: --resume continues with {out}/config.toml; ignoring {', '.join(given)}")
        _train_or_explain(run_training, None, Path(out), resume=True)
        return
    overrides = dict(parse_head_param(s, "--set") for s in settings)
    flags = dict(head=head, dataset=dataset, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                 precision=precision, val_split=_val_split(val_split),
                 devices=None if devices is None else distribute.parse_devices(devices))
    overrides.update({k: v for k, v in flags.items() if v is not None})  # an unset flag keeps a --set value
    if head_params:
        overrides["head_params"] = dict(parse_head_param(p) for p in head_params)
    config = resolve(config_file, overrides, origin="the command line")
    if not out and distribute.cluster_settings(coordinator, num_processes, process_id):
        raise ConfigError("several processes need one --out RUN_DIR, the same on every host")
    out = Path(out) if out else _default_out(config.head, config.dataset)
    if isinstance(config.val_split, int) and 0 < config.val_split < SMALL_VALIDATION:
        _warn(f"note: val_split = {config.val_split} holds out {config.val_split} image(s) (a count, not a "
              "fraction): the validation figures, and a temperature fit on them, rest on that alone")
    if keras.backend.backend() == "torch" and config.jit_compile:  # asked for: the default is off on torch
        _warn("note: on PyTorch jit_compile = true means torch.compile, which can spend minutes compiling before "
              "it pays off (on a CPU it rarely does)")
    _train_or_explain(run_training, config, out, overwrite=overwrite)


def _check_outputs(json_path=None, plot=None, table_path=None):
    """Before the work: the output paths given are new files or outputs of their own kind."""
    from keras_softmax.io import check_replaceable

    for path, kind in ((json_path, "JSON result"), (plot, "PNG"), (table_path, "Markdown table")):
        if path:
            check_replaceable(path, kind)


def _val_split(value):
    """A fraction below 1 stays a float; 1 or more must be a whole number of images."""
    if value is None or value < 1:
        return value
    if value != int(value):
        raise click.BadParameter(f"{value} is neither a fraction below 1 nor a whole image count",
                                 param_hint="'--val-split'")
    return int(value)


def _train_or_explain(run_training, config, out: Path, **options):
    """Run training; on Ctrl-C say how to continue, since the run directory is resumable."""
    from keras_softmax.training.rundir import RunDirectory

    try:
        run_training(config, out, log=_echo, **options)
    except KeyboardInterrupt:
        if RunDirectory(out).config.is_file():
            _warn(f"\ninterrupted; continue with: keras-softmax train --resume --out {out}")
        else:
            _warn("\ninterrupted before the run directory was made: nothing was written; run the same command "
                  "again")
        _exit_interrupted()


def _exit_interrupted():
    """Exit with status 130 now. A program still compiling ahead (training/ahead.py) cannot be stopped,
    and the interpreter would wait for its thread (up to ~30 s of a GPU's autotuning): then leave at
    once with ``os._exit``, after flushing. The run directory is consistent at any moment (its files
    are written atomically), and nothing in the compile thread writes to it. (JAX's persistent
    compilation cache writes an entry in one plain write; an exit inside that write, a few milliseconds,
    would leave a truncated entry, which a later run reports and compiles again.)"""
    ahead = sys.modules.get("keras_softmax.training.ahead")  # loaded only where a run was set up
    if ahead is not None and ahead.compiling_in_background():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    sys.exit(130)


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--dataset", help="Evaluate on another dataset (default: the run's).")
@click.option("--split", type=click.Choice(["val", "test", "train"]), default="val", show_default=True)
@click.option("--tta-flip/--no-tta-flip", default=None, help="Average with horizontally flipped images.")
@click.option("--calibrate", is_flag=True,
              help="Fit one temperature on the split by NLL (temperature scaling) and report ECE and NLL "
                   "before and after.")
@friendly_errors
def evaluate(run_dir, dataset, split, tta_flip, calibrate):
    """Recompute the report of RUN_DIR on a split (written under RUN_DIR/evaluations/)."""
    from keras_softmax.evaluation.numbers import fixed as f
    from keras_softmax.job import evaluate_run

    report, where = evaluate_run(run_dir, dataset=dataset, split=split, tta_flip=tta_flip, calibrate=calibrate)
    if "classes_scored" in report:
        scored = report["classes_scored"]
        click.echo(f"scored on the dataset's {scored['dataset']} classes, matched by name to the model's "
                   f"{scored['model']} (probabilities renormalised over them)")
    click.echo(f"{split} accuracy {f(100 * report['accuracy'], 2)}%  top-5 {f(100 * report['top5_accuracy'], 2)}%  "
               f"F1 {f(100 * report['f1_macro'], 2)}%  ECE {f(100 * report['ece'], 2)}%  loss {f(report['loss'])}")
    if calibrate:
        c = report["calibration"]
        if c.get("applicable"):
            click.echo(f"temperature {f(c['temperature'], 3)} (fit on {split} by NLL): "
                       f"NLL {f(c['nll_before'])} -> {f(c['nll_after'])}  ECE ({c['num_bins']} bins) "
                       f"{f(100 * c['ece_before'], 2)}% -> {f(100 * c['ece_after'], 2)}% "
                       f"(2-fold cross-fitted {f(100 * c['ece_after_crossfit'], 2)}%)")
        else:
            click.echo(f"temperature scaling not applicable: {c['reason']}")
    click.echo(f"report: {where / 'report.md'}")


@main.command()
@click.argument("model", type=click.Path())
@click.argument("images", nargs=-1, required=True)
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@friendly_errors
def predict(model, images, top_k, as_json):
    """Classify IMAGES with MODEL (a SavedModel directory, a .keras file or a run directory).

    IMAGES are files, folders (every image in them) and globs ('photos/*.jpg'). An image that cannot
    be read gets its own "Error:" line; the others are still classified, and the exit status is 1.
    """
    from keras_softmax.predict import predict_files

    results = predict_files(model, images, top_k=top_k)
    failed = [r for r in results if "error" in r]
    if as_json:
        click.echo(json.dumps(results, indent=2))
    else:
        for result in results:
            if "predictions" in result:
                click.echo(result["image"])
                for p in result["predictions"]:
                    click.echo(f"  {p['probability']:7.2%}  {p['class']}")
    for result in failed:
        _warn(f"Error: {result['error']}")
    if failed:
        sys.exit(1)


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["saved_model", "keras", "onnx"]), default="saved_model",
              show_default=True)
@friendly_errors
def export(run_dir, fmt):
    """Export the trained model of RUN_DIR."""
    from keras_softmax.export import export_run

    click.echo(f"wrote {export_run(run_dir, fmt)}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def heads(as_json):
    """List the heads, their matching losses and their parameters."""
    from keras_softmax.heads import describe_heads

    rows = describe_heads()
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    table = [("NAME", "LAYER", "LOSS", "OUTPUT", "PARAMETERS (defaults)")]
    table += [(row["name"], row["layer"], row["loss"], row["output"],
               ", ".join(f"{k}={v!r}" for k, v in row["parameters"].items()) or "-") for row in rows]
    widths = [max(len(str(r[i])) for r in table) for i in range(4)]

    def line(cells):
        return "  ".join(f"{cell:<{w}}" for cell, w in zip(cells[:4], widths)) + "  " + cells[4]

    click.echo(line(table[0]))
    for row, cells in zip(rows, table[1:]):
        click.echo(line(cells))
        click.echo(f"{'':<{widths[0]}}  {row['summary']}")


@main.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--plot", type=click.Path(dir_okay=False), help="Also write a bar chart (PNG) here.")
@friendly_errors
def compare(run_dirs, plot):
    """Compare finished runs side by side."""
    from keras_softmax.evaluation.compare import compare_runs, format_table

    _check_outputs(plot=plot)
    rows = compare_runs(run_dirs)
    click.echo(format_table(rows))
    scored_on = sorted({f"{row.get('dataset')} ({row.get('split')})" for row in rows})
    if len(scored_on) > 1:
        _warn(f"note: these runs are scored on different data: {', '.join(scored_on)}; their figures do not "
              "compare directly")
    if plot:
        from keras_softmax.evaluation.plots import plot_comparison

        click.echo(f"plot: {plot_comparison(rows, plot)}")


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="The study directory (runs/, results.jsonl, STUDY.md, plots/). Re-running continues it.")
@click.option("--dataset", help="The dataset of every run, e.g. ../shared/data/cifar100-train-jpg.tar.gz.")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="A train setting laid over every run, e.g. epochs=1 (repeatable).")
@click.option("--devices", metavar="N|all",
              help="Runs at the same time, one per GPU. Default: every GPU `nvidia-smi -L` lists, else 1.")
@click.option("--runs-per-device", type=click.IntRange(min=1), default=1, show_default=True,
              help="Runs trained at the same time on each GPU: one run's start-up and evaluation overlap "
                   "another's training.")
@click.option("--budget", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Start runs only during this many seconds; the runs in flight finish and the same command "
                   "continues with the rest (for machines lent by the hour).")
@click.option("--report-only", is_flag=True,
              help="Train nothing; rebuild results.jsonl and STUDY.md from what exists (the data need not be here).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False),
              help="Write the report here instead of OUT/STUDY.md (e.g. zoo/STUDY.md).")
@click.option("--plots-dir", type=click.Path(file_okay=False),
              help="Write the report's plots here instead of OUT/plots (e.g. docs/study).")
@click.option("--test-dataset", type=click.Path(),  # checked where it is read: a report needs no data
              help="Score every finished run once on this test split (test/<class>/*.jpg or a .tar.gz of it, "
                   "e.g. ../shared/data/cifar100-test-jpg.tar.gz); nothing is chosen by it.")
@friendly_errors
def study(spec, out, dataset, settings, devices, runs_per_device, budget, report_only, report_path, plots_dir,
          test_dataset):
    """Train every head (and variant) of SPEC on every seed, then write results.jsonl and STUDY.md.

    Finished runs are never trained again and an interrupted one is resumed, so the same command
    continues a study after a time limit or a crash.
    """
    from keras_softmax.study import run_study

    try:
        outcome = run_study(spec, out, dataset=dataset, settings=settings, devices=devices,
                            runs_per_device=runs_per_device, budget=budget, report_only=report_only,
                            report_path=report_path, plots_dir=plots_dir, test_dataset=test_dataset, log=_echo)
    except KeyboardInterrupt:
        _warn(f"\ninterrupted; the same command continues the study in {out}")
        _exit_interrupted()
    if outcome.failed:
        raise click.ClickException(f"{len(outcome.failed)} of {outcome.planned} runs failed "
                                   f"({', '.join(run for run, _ in outcome.failed)}); see {out}/logs/")


@main.group()
def bench():
    """GPU benchmarks: head cost against the number of classes, many-class heads, pipeline throughput."""


def _head_params_by_head(values) -> dict:
    """``HEAD:KEY=VALUE`` options -> ``{head: {key: value}}`` (values read as TOML where they can be)."""
    from keras_softmax.heads.registry import head_spec
    from keras_softmax.training.config import ConfigError, parse_head_param

    out: dict = {}
    for text in values:
        name, sep, rest = text.partition(":")
        if not sep or not name.strip():
            raise ConfigError(f"--head-param expects HEAD:KEY=VALUE, e.g. sampled:num_sampled=4096 (got {text!r})")
        head_spec(name.strip())
        key, value = parse_head_param(rest)
        out.setdefault(name.strip(), {})[key] = value
    return out


@bench.command("heads")
@click.option("--classes", "classes", multiple=True, type=click.IntRange(min=2),
              help="Class counts (repeatable). Default: 100 1000 10000 100000; with --train-step 10000 100000 1000000.")
@click.option("--head", "heads", multiple=True,
              help="Heads to measure (repeatable). Default: every head that takes logits; with --train-step "
                   "adaptive and sampled. dense_softmax_baseline is always measured too.")
@click.option("--batch", type=click.IntRange(min=1), default=512, show_default=True)
@click.option("--repeats", type=click.IntRange(min=1), default=30, show_default=True,
              help="Calls per measurement (--train-step: steps per timed round).")
@click.option("--train-step", is_flag=True,
              help="Time a whole training step (forward + backward + optimizer update of projection + head + "
                   "loss, Keras's train_step under jit) and its peak memory, each configuration in a fresh "
                   "process; heads that own their projection (adaptive, sampled) need this mode.")
@click.option("--features", type=click.IntRange(min=1), default=640, show_default=True,
              help="--train-step: feature size d of the projection.")
@click.option("--precision", type=click.Choice(["float32", "mixed_bfloat16", "mixed_float16"]),
              default="mixed_bfloat16", show_default=True, help="--train-step: dtype policy.")
@click.option("--optimizer", type=click.Choice(["sgd", "momentum", "adam"]), default="sgd", show_default=True,
              help="--train-step: the update in the step (plain SGD, SGD with momentum 0.9, Adam).")
@click.option("--rounds", type=click.IntRange(min=1), default=5, show_default=True,
              help="--train-step: timed rounds (the median is reported).")
@click.option("--head-param", "head_params", multiple=True, metavar="HEAD:KEY=VALUE",
              help="--train-step: a head parameter, e.g. sampled:num_sampled=4096 (repeatable).")
@click.option("--isolate/--no-isolate", default=True, show_default=True,
              help="--train-step: one fresh process per configuration (a peak memory of its own).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the rows here.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write the plot (PNG) here.")
@click.option("--table", "table_path", type=click.Path(dir_okay=False),
              help="--train-step: also write the Markdown table here.")
@friendly_errors
def bench_heads(classes, heads, batch, repeats, train_step, features, precision, optimizer, rounds, head_params,
                isolate, json_path, plot, table_path):
    """Head cost against the number of classes (KERAS_BACKEND=jax).

    Default: forward + backward of each head with its loss, alone and behind Dense(640 -> N).
    --train-step: a full training step and peak memory, beside Dense + softmax cross-entropy.
    """
    from keras_softmax import benchmark, environment, io
    from keras_softmax.heads.registry import head_spec

    for name in heads:
        head_spec(name)
    _check_outputs(json_path, plot, table_path)
    if not train_step:
        rows = benchmark.head_cost_rows(classes or (100, 1000, 10000, 100000), heads or None, batch=batch,
                                        repeats=repeats, log=_echo)
        if json_path:
            io.write_json(json_path, {"environment": environment.describe(), "rows": rows})
        if plot:
            benchmark.plot_head_cost(rows, plot)
        return
    from keras_softmax import scale

    settings = {"features": features, "batch": batch, "precision": precision, "optimizer": optimizer,
                "repeats": repeats, "rounds": rounds, "isolate": isolate}
    params = _head_params_by_head(head_params)
    rows = scale.train_step_rows(classes or (10_000, 100_000, 1_000_000), heads or ("adaptive", "sampled"),
                                 head_params=params, log=_echo, **settings)
    table = scale.step_table(rows)
    click.echo(table)
    if json_path:
        io.write_json(json_path, {"environment": environment.describe(), "settings": settings,
                                  "head_params": params, "rows": rows})
    if table_path:
        io.write_text(table_path, table + "\n")
    if plot:
        scale.plot_train_steps(rows, plot)


@bench.command("many-classes")
@click.option("--classes", "num_classes", type=click.IntRange(min=2), default=100_000, show_default=True)
@click.option("--head", "heads", multiple=True,
              help="Heads to compare with the full softmax (repeatable). Default: adaptive, sampled.")
@click.option("--steps", type=click.IntRange(min=2), default=5000, show_default=True)
@click.option("--batch", type=click.IntRange(min=1), default=512, show_default=True)
@click.option("--hidden", type=click.IntRange(min=0), default=640, show_default=True,
              help="Width of the Dense(relu) layer before the head's projection (0: none, a linear model).")
@click.option("--input-dim", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--zipf", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Exponent s of the class frequencies, p(rank r) ∝ 1/(r+1)^s.")
@click.option("--noise", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="Input noise relative to the class prototypes.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the task.")
@click.option("--precision", type=click.Choice(["float32", "mixed_bfloat16", "mixed_float16"]),
              default="mixed_bfloat16", show_default=True)
@click.option("--optimizer", type=click.Choice(["sgd", "momentum", "adam"]), default="adam", show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True)
@click.option("--eval-every", type=click.IntRange(min=1), default=250, show_default=True)
@click.option("--test-size", type=click.IntRange(min=1), default=20_000, show_default=True)
@click.option("--head-param", "head_params", multiple=True, metavar="HEAD:KEY=VALUE",
              help="A head parameter, e.g. adaptive:cutoffs=[2000,10000] (repeatable).")
@click.option("--isolate/--no-isolate", default=True, show_default=True,
              help="One fresh process per head (its own peak memory).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the result here.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write top-1 against training time (PNG) here.")
@click.option("--table", "table_path", type=click.Path(dir_okay=False), help="Also write the Markdown table here.")
@friendly_errors
def bench_many_classes(num_classes, heads, steps, batch, hidden, input_dim, zipf, noise, seed, precision, optimizer,
                       lr, eval_every, test_size, head_params, isolate, json_path, plot, table_path):
    """Accuracy and time of adaptive / sampled softmax against the full softmax on a synthetic
    Zipf-distributed task with many classes (KERAS_BACKEND=jax)."""
    from keras_softmax import environment, io, scale
    from keras_softmax.heads.registry import head_spec

    for name in heads:
        head_spec(name)
    _check_outputs(json_path, plot, table_path)
    result = scale.many_classes_rows(
        heads or ("adaptive", "sampled"), num_classes=num_classes, input_dim=input_dim, zipf=zipf, noise=noise,
        task_seed=seed, steps=steps, batch=batch, hidden=hidden, precision=precision, optimizer=optimizer,
        learning_rate=lr, eval_every=eval_every, test_size=test_size, head_params=_head_params_by_head(head_params),
        isolate=isolate, log=_echo)
    table = scale.many_classes_table(result)
    click.echo(table)
    if json_path:
        io.write_json(json_path, {"environment": environment.describe(), **result})
    if table_path:
        io.write_text(table_path, table + "\n")
    if plot:
        scale.plot_many_classes(result, plot)


@bench.command("throughput")
@click.option("--dataset", default="digits", show_default=True)
@click.option("--config", "config_file", type=click.Path(dir_okay=False))
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE")
@click.option("--epochs", type=click.IntRange(min=2), default=4, show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the result here.")
@friendly_errors
def bench_throughput(dataset, config_file, settings, epochs, json_path):
    """The real pipeline's images/s against the same model on synthetic in-memory data."""
    from keras_softmax import benchmark, io
    from keras_softmax.training.config import parse_head_param, resolve

    overrides = dict(parse_head_param(s, "--set") for s in settings)
    overrides["dataset"] = dataset
    _check_outputs(json_path)
    result = benchmark.throughput_rows(resolve(config_file, overrides), epochs, log=_echo)
    for row in result["rows"]:
        click.echo(json.dumps(row))
    if json_path:
        io.write_json(json_path, result)

