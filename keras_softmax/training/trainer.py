"""``train``: data → model (backbone + head) → fit, into a run directory's history and checkpoints.

Training only. Evaluating, exporting and reporting the trained model is the job's
(:mod:`keras_softmax.job`), one level up, so that every import here points downward.
"""

from __future__ import annotations

import dataclasses
import time

import keras
import numpy as np

from keras_softmax import environment, io
from keras_softmax.data import Dataset, even_batch_size, load_dataset, make_batches
from keras_softmax.data.sources import IMAGE_SHAPE, DatasetError, outline_of
from keras_softmax.data.pipeline import steps_per_epoch as batches_per_epoch
from keras_softmax.heads import HeadWithLoss, get_head, unpaired_params
from keras_softmax.heads import projection
from keras_softmax.heads.registry import complete_params, head_spec
from keras_softmax.mismatch import mismatched_loss
from keras_softmax.models import SparseRowsModel, build_model
from keras_softmax.models.augment import CIFAR100_MEAN, CIFAR100_STD
from keras_softmax.training import distribute, sharpness_aware
from keras_softmax.training.ahead import (BackgroundLoad, Compiling, ConvolutionWarmup, can_compile_ahead,
                                          can_warm_convolutions, lower_steps)
from keras_softmax.training.averaging import WeightAverage
from keras_softmax.training.batchnorm import recompute_batchnorm_statistics
from keras_softmax.training.callbacks import EpochSeeds, RunRecorder, StepProgress, TrainingDiverged
from keras_softmax.training.config import (
    BATCHNORM_PASSES, ConfigError, TrainConfig, first_sam_epoch, resolve, to_toml,
)
from keras_softmax.training.metrics import training_metrics
from keras_softmax.training.optim import learning_rate_reader, learning_rate_schedule, make_optimizer
from keras_softmax.training.rundir import RunDirectory, RunDirError


@dataclasses.dataclass
class TrainedRun:
    """What :func:`train` leaves for evaluation and export: the trained model and its context."""

    config: TrainConfig  # as resolved for this run (precision "auto" replaced by the policy used)
    run_dir: RunDirectory
    dataset: Dataset
    head: HeadWithLoss
    model: keras.Model
    history: list[dict]  # one row per epoch, as in history.csv
    train_seconds: float  # inside model.fit
    images_per_epoch: int  # full batches only
    batch_size: int
    started: float  # time.perf_counter() when train() began
    # The devices it trained on; several (or several processes): the model lives in a distribution,
    # and distribute.local_copy gives the one-device model to evaluate and export.
    placement: distribute.Placement = dataclasses.field(default_factory=distribute.Placement)


def head_params_for(config: TrainConfig, dataset) -> dict:
    """The head's parameters, completed from the dataset where the head needs it.

    hierarchical: the number of classes and the superclass map. Heads that own their projection
    (adaptive, sampled): the number of classes and ``class_order``, the class ids from most to least
    frequent among the training labels (ties in class-id order).
    """
    return complete_params(config.head, config.head_params, dataset.num_classes,
                           fine_to_coarse=getattr(dataset, "fine_to_coarse", None),
                           labels=getattr(dataset, "y_train", None))


frequency_order = projection.frequency_order  # moved to the heads (complete_params uses it)


def check_head_options(config: TrainConfig) -> None:
    """Options a head cannot honour, refused before any work (``ConfigError``)."""
    spec = head_spec(config.head)
    if not spec.owns_projection:
        return
    if config.sam_rho and hasattr(spec.layer_class, "row_variables"):
        raise ConfigError(f"sam_rho is not available with the {config.head} head: its class rows train sparsely, "
                          "in a train step of its own (set sam_rho = 0)")
    if config.cutmix:
        raise ConfigError(f"the {config.head} head trains on integer labels: cutmix must be 0 (got {config.cutmix!r})")
    if config.loss != "matched":
        raise ConfigError(f"the {config.head} head has no mismatched variant: loss must be matched")
    try:
        spec.loss_class(label_smoothing=config.label_smoothing)
    except ValueError as error:
        raise ConfigError(f"{error} (e.g. --set label_smoothing=0)") from None


def setup_backend(config: TrainConfig) -> None:
    """Seed every generator, set the global dtype policy, and enable the compilation cache."""
    keras.utils.set_random_seed(config.seed)
    keras.config.set_dtype_policy(environment.resolve_precision(config.precision))
    if config.compile_cache:
        environment.enable_compilation_cache()


def build_for(config: TrainConfig, dataset):
    """The head and the model for ``config`` on ``dataset``.

    ``normalize = false`` keeps the model's normalisation layer with mean 0 and std 1: pixels / 255.
    ``augment_policy`` / ``random_erasing`` switch on TrivialAugment / random erasing in the model's
    augmentation layer (:class:`keras_softmax.models.RandomCropFlip`).
    The head is paired with its own loss (``get_head``), except under ``loss = "mismatched"``: a
    head trained with another loss than its own gets its bare layer's gradient
    (``unpaired_params``: e.g. the sparse heads' true Jacobian, not their Fenchel-Young path), as
    :func:`keras_softmax.mismatch.logit_gradients` computes it.
    """
    params = head_params_for(config, dataset)
    if config.loss == "mismatched":
        params = {**unpaired_params(config.head), **params}
    head = get_head(config.head, **params)
    model = build_model(
        head, num_classes=dataset.num_classes, widths=tuple(config.widths),
        input_shape=dataset.image_shape, augment=config.augment, crop_padding=config.crop_padding,
        flip=config.flip, dropout=config.dropout, drop_block=config.drop_block,
        drop_block_size=config.drop_block_size, seed=config.seed,
        mean=CIFAR100_MEAN if config.normalize else 0.0, std=CIFAR100_STD if config.normalize else 1.0,
    )
    if config.augment_policy != "none" or config.random_erasing:
        if not config.augment:
            raise ConfigError("augment_policy and random_erasing need augment = true (they run in the model's "
                              "augmentation layer)")
        # The factory builds the crop-and-flip layer; the stronger operations are switched on in it here,
        # before the model is compiled (they are part of its config, so a saved model keeps them).
        model.get_layer("augment").set_extra_augmentation(
            policy=config.augment_policy, erasing=config.random_erasing,
            mean=CIFAR100_MEAN if config.normalize else 0.0, std=CIFAR100_STD if config.normalize else 1.0,
        )
    return head, model


def check_composition(head, loss, num_classes: int) -> None:
    """Call ``loss`` once on the head layer's output of one row of zeros, so that a composition the
    loss refuses (``CompositionError``, e.g. a sparse head with fenchel_young_gradient = false under its
    own loss) is said before the run directory is claimed, not at the first training step."""
    if head.owns_projection:  # its layer takes features, and its loss finds the layer through its output
        return
    logits = np.zeros((1, head.num_logits(num_classes)), dtype="float32")
    loss(np.zeros((1,), dtype="int32"), head.layer(logits))


def training_loss(config: TrainConfig, head):
    """The head's matching loss, or the original study's mismatched one when asked for."""
    if config.loss == "mismatched":
        return mismatched_loss(config.label_smoothing)
    return head.make_loss(config.label_smoothing)


def train(config: TrainConfig | None, out, *, resume: bool = False, overwrite: bool = False,
          log=print, while_compiling=None) -> TrainedRun:
    """Train ``config`` into run directory ``out`` (config.toml, history.csv, checkpoints/).

    With ``resume``, continue the unfinished run in ``out`` from its last checkpoint using the
    config saved there (``config`` may then be None). Raises ``RunDirError``/``DatasetError``/
    ``ConfigError`` for user errors, before touching the directory where it can, and
    ``TrainingDiverged`` when the loss becomes NaN or infinite (the run directory then holds
    ``failed.json`` and its last good checkpoint).

    Every epoch's batches and random draws (shuffle, CutMix, augmentation, dropout, Gumbel noise)
    are a pure function of the seed and the epoch number, so a resumed run continues exactly as the
    uninterrupted run would have.

    With ``devices`` > 1 the model is built, compiled and trained inside the data-parallel
    distribution (:mod:`keras_softmax.training.distribute`); with 1, exactly as without it.

    ``while_compiling``: a function called once, in this thread, when the model and the data are
    ready but the programs compiled ahead (``autotune_ahead``, ``compile_ahead``) are not yet, just
    before the run waits for them: work for a wait that is otherwise idle (on a fresh GPU machine
    the convolutions' autotuning outlasts the data and the model by ~15 s). Not called when nothing
    compiles ahead or it has finished.
    """
    environment.configure_xla()  # before the first device query
    placement = distribute.plan_for(config, out, resume=resume)
    with distribute.scope(placement):
        return _train(config, out, resume=resume, overwrite=overwrite, log=log, placement=placement,
                      while_compiling=while_compiling)


def _train(config, out, *, resume, overwrite, log, placement, while_compiling=None) -> TrainedRun:
    run_dir = RunDirectory(distribute.process_out(out, placement))
    if resume:
        state = run_dir.prepare(resume=True, overwrite=False)
        config = resolve(run_dir.config)
    else:
        config.validate()
        check_head_options(config)
        run_dir.check(resume=False, overwrite=overwrite)  # fail before any work is done
    if config.ema and keras.backend.backend() == "jax" and not environment.on_cpu():
        raise ConfigError("ema is not available on the JAX backend with an accelerator: Keras 3.15's "
                          "optimizer EMA leaves deleted arrays behind after fit (set ema = 0; swa_start averages "
                          "the weights on every backend)")
    if config.sam_rho and sharpness_aware.backend_reason():
        raise ConfigError(sharpness_aware.backend_reason())
    if config.swa_start and placement.num_processes > 1:
        raise ConfigError("swa_start is not available with several processes: the average is read and set "
                          "through each process's numpy copies, untested across hosts (set swa_start = 0)")
    config = dataclasses.replace(config, precision=environment.resolve_precision(config.precision))

    started = time.perf_counter()
    # The images decode in a thread while the backend starts and the model is built from the
    # dataset's outline (its classes and split sizes); with compile_ahead the steps compile meanwhile
    # too (training/ahead.py).
    loading = BackgroundLoad(load_dataset, source=config.dataset, val_split=config.val_split, seed=config.seed,
                             limit=config.limit or None, labels=config.labels)
    setup_backend(config)
    # The convolutions' autotuning (most of a GPU's first compile) needs only the batch's shape: start it now.
    warming = None
    if config.autotune_ahead and not resume and can_warm_convolutions(placement):
        warming = ConvolutionWarmup(IMAGE_SHAPE, config.widths, keras.config.dtype_policy().compute_dtype,
                                    config.batch_size)
    # Heads completed from the training labels (adaptive, sampled: class_order) wait for them.
    if head_spec(config.head).owns_projection:
        dataset = loading.result()
        outline = outline_of(dataset)
    else:
        dataset = outline = loading.outline()
    outline_seconds = time.perf_counter() - started
    head, model = build_for(config, dataset)
    model_seconds = time.perf_counter() - started - outline_seconds

    num_train = outline.num_train
    batch_size = min(config.batch_size, num_train)
    if placement.distributed:  # a whole number of images per device
        batch_size -= batch_size % placement.devices
    placement = dataclasses.replace(placement, global_batch=batch_size)
    # full batches only: no recompilation for a ragged tail
    steps_per_epoch = batches_per_epoch(num_train, batch_size, drop_remainder=True)
    distribute.prepare_model(model, placement)
    loss = training_loss(config, head)
    check_composition(head, loss, outline.num_classes)  # before the directory is claimed
    schedule = learning_rate_schedule(config, steps_per_epoch)
    model.compile(
        optimizer=make_optimizer(config, steps_per_epoch, model.trainable_variables, schedule=schedule),
        loss=loss,
        **distribute.metrics_argument(placement, training_metrics(head.output_kind)),
        jit_compile=config.jit_compile,
        steps_per_execution=config.steps_per_execution,
    )
    if config.sam_rho and not first_sam_epoch(config):
        sharpness_aware.install(model, config.sam_rho)  # every step: the program compiled ahead is SAM's
    val_batch_size = even_batch_size(outline.num_val, batch_size)
    if val_batch_size % placement.devices:  # a whole share per device (the tail is padded: batch_options)
        val_batch_size = batch_size
    # One compile thread, one program at a time (two XLA autotunings side by side each take twice as long):
    # the convolutions tuned ahead, then with compile_ahead the train and test steps, which the persistent
    # cache hands to fit; else the forward convolutions at the evaluation batch, for fit's test step.
    compiling = warming
    if config.compile_ahead and not resume and can_compile_ahead(model):
        steps = lower_steps(model, *(
            make_batches(np.zeros((size, *outline.image_shape), np.uint8), np.zeros(size, np.int32), size,
                         shuffle=training, seed=config.seed, drop_remainder=training,
                         cutmix=config.cutmix if training else 0.0, num_classes=outline.num_classes)[0]
            for size, training in ((batch_size, True), (val_batch_size, False))), validates=outline.num_val > 0)
        compiling = compiling or Compiling()
        for name, program in steps.items():
            compiling.add(name, program.compile)
    elif warming is not None and outline.num_val:
        warming.add_eval_batch(val_batch_size)
    dataset = loading.result()
    if not len(dataset.y_val) and dataset.y_test is None:  # before the directory is claimed: nothing lost
        raise DatasetError(f"val_split = 0 trains on every training image of {dataset.name} and leaves no "
                           "held-out images to report on: give a dataset with a test split (a folder or "
                           ".tar.gz holding train/ and test/), or hold out a validation split")
    data_seconds = time.perf_counter() - started
    if not resume:
        # Only now, with the data and model known good, is the directory claimed; the config is
        # written first so that an interrupted run can always be resumed.
        state = run_dir.prepare(resume=False, overwrite=overwrite)
        io.write_text(run_dir.config, to_toml(config))
    val_batches = make_batches(dataset.x_val, dataset.y_val, val_batch_size, shuffle=False,
                               **distribute.batch_options(placement, training=False)) if len(dataset.y_val) else None

    initial_epoch, history = 0, []
    averager = WeightAverage.for_config(config)  # None when swa_start = 0
    if state is not None:
        model.optimizer.build(model.trainable_variables)
        model.load_weights(str(run_dir.checkpoints / state["weights"]))
        initial_epoch, history = state["epoch"], state["history"]
        if averager is not None:
            try:
                averager.resume(run_dir.read_swa(state), after_epoch=initial_epoch)
            except ValueError as error:
                raise RunDirError(f"cannot resume {run_dir.path}: {error}") from None
        run_dir.write_history(history)
        log(f"resuming {run_dir.path} after epoch {initial_epoch}/{config.epochs}")

    if compiling is not None:  # fit's compilations start once every convolution is tuned, not beside it
        if while_compiling is not None and not compiling.done():
            while_compiling()
        compiled = compiling.wait()
    held_out = f"{len(dataset.y_val):,} val" if len(dataset.y_val) else "no val (val_split = 0)"
    log(f"training {config.head} on {dataset.name}: {num_train:,} train / {held_out} images, "
        f"{dataset.num_classes} classes, {model.count_params():,} parameters, backend "
        f"{keras.backend.backend()}, {config.precision} (data {data_seconds:.1f}s, model {model_seconds:.1f}s, "
        f"ready {time.perf_counter() - started:.1f}s)")
    if compiling is not None:
        log(compiled)
    if placement.distributed:
        log(placement.describe())
    if isinstance(model, SparseRowsModel):  # the sampled head: say whether its kernel trains row by row
        log(f"class-kernel updates: {model.row_update_rule()}")
    recorder = RunRecorder(run_dir, num_train=steps_per_epoch * batch_size, epochs=config.epochs,
                           history=history, checkpoint_every=config.checkpoint_every, log=log,
                           started=started, mixed_precision=config.precision != "float32", averager=averager,
                           learning_rate=learning_rate_reader(schedule))
    fit_started = time.perf_counter()
    # The averager before the recorder: a checkpoint keeps the average up to its own epoch.
    callbacks = [EpochSeeds(), *([averager] if averager is not None else []), recorder]
    if config.sam_rho and first_sam_epoch(config):  # SAM from a later epoch: a second program from there
        callbacks.insert(0, sharpness_aware.SharpnessAwareFrom(config.sam_rho, first_sam_epoch(config)))
    if environment.on_cpu():
        callbacks.append(StepProgress(batch_size, log=log, recorder=recorder))
    if initial_epoch < config.epochs:
        # The epochs still to run, as one stream: epoch e's order and CutMix draws depend on (seed, e)
        # only, so a resumed run sees the batches the uninterrupted one saw.
        train_batches = make_batches(
            dataset.x_train, dataset.y_train, batch_size, shuffle=True, seed=config.seed, drop_remainder=True,
            cutmix=config.cutmix, num_classes=dataset.num_classes, epochs=(initial_epoch, config.epochs),
            **distribute.batch_options(placement, training=True),
        )
        model.fit(
            train_batches, epochs=config.epochs, initial_epoch=initial_epoch, steps_per_epoch=steps_per_epoch,
            validation_data=val_batches, validation_freq=config.val_every, callbacks=callbacks, shuffle=False,
            verbose=0,
        )
        if recorder.diverged:
            raise TrainingDiverged(recorder.diverged)
    elif config.ema:
        # Resumed after its last checkpoint: no fit to end, so swap the EMA weights in as fit would.
        model.optimizer.finalize_variable_values(model.trainable_variables)
    elif averager is not None:
        averager.apply(model)  # resumed after its last checkpoint: set the average as on_train_end would
    if averager is not None:
        log(averager.describe())
        if config.swa_batchnorm in BATCHNORM_PASSES and averager.count:
            recomputing = time.perf_counter()
            augmentation = BATCHNORM_PASSES[config.swa_batchnorm]
            layers, images = recompute_batchnorm_statistics(model, dataset.x_train, batch_size, seed=config.seed,
                                                            augmentation=augmentation)
            seen = {"training": "augmented as in training", "crop_flip": "cropped and flipped only",
                    "none": "without augmentation"}[augmentation]
            log(f"BatchNorm statistics of the averaged weights recomputed: {layers} layers, one pass over "
                f"{images:,} training images in training mode, {seen} "
                f"({time.perf_counter() - recomputing:.1f}s)")
    return TrainedRun(
        config=config, run_dir=run_dir, dataset=dataset, head=head, model=model, history=recorder.rows,
        train_seconds=time.perf_counter() - fit_started, images_per_epoch=steps_per_epoch * batch_size,
        batch_size=batch_size, started=started, placement=placement,
    )
