"""Start a run's slow parts early: the data load in a thread, JAX's autotuning and compiling ahead.

On a fresh GPU machine the train step's first compilation takes ~25 s, ~23 s of it XLA autotuning
the convolutions (timing each candidate algorithm on the GPU), and the test step's ~4 s more; by
default both happen in ``fit``, after the images are decoded and the model is built. Here instead:

1. :class:`BackgroundLoad` loads the dataset in a thread and hands over its
   :class:`~keras_softmax.data.sources.Outline` (classes, split sizes) as soon as the class folders
   are listed, so the model is built while the images decode (always).
2. :class:`ConvolutionWarmup` (``autotune_ahead = true``, the default on a JAX GPU) needs neither
   the model nor the data: from the moment the backend starts, a thread compiles a small program
   holding the backbone's convolutions at the train batch's shape, forward and backward
   (:func:`convolution_program`). XLA keeps what autotuning chose, per convolution instruction,
   for the rest of the process, so the model's steps compiled later find every convolution tuned
   (tests/training/test_ahead.py checks that the instructions are the model's own).
3. With ``compile_ahead = true``, :func:`lower_steps` lowers the compiled model's ``train_step``
   and ``test_step`` for batches shaped like the real ones, and the same thread compiles them
   behind the convolutions; ``fit`` then finds them in JAX's persistent compilation cache.

:class:`Compiling` runs one program at a time: two XLA autotunings side by side on one H200 took
50.7 s and 42.8 s instead of 20.4 s and 3.1 s in turn (bench/RESULTS.md section 5). Nothing here
changes what is computed: the programs are the ones ``fit`` would have compiled.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time

import keras
import numpy as np

from keras_softmax.data.sources import Outline, outline_of


class BackgroundLoad:
    """``load(**kwargs, on_outline=...)`` (e.g. ``load_dataset``) running in a daemon thread.

    >>> loading = BackgroundLoad(load_dataset, source="digits", val_split=0.1)
    >>> outline = loading.outline()      # as soon as the source knows its classes
    >>> data = loading.result()          # the Dataset; re-raises the loader's error
    """

    def __init__(self, load, **kwargs):
        self._outline = concurrent.futures.Future()
        self._result = concurrent.futures.Future()

        def run():
            try:
                self._result.set_result(load(**kwargs, on_outline=self._set_outline))
            except BaseException as error:  # handed to the caller's thread by result()
                self._result.set_exception(error)

        # A daemon: an interrupted run does not wait for its images to finish decoding.
        threading.Thread(target=run, name="keras-softmax-load", daemon=True).start()

    def _set_outline(self, outline: Outline) -> None:
        if not self._outline.done():
            self._outline.set_result(outline)

    def outline(self) -> Outline:
        """The dataset's outline: early where the source gives it early, else once it has loaded."""
        concurrent.futures.wait([self._outline, self._result], return_when=concurrent.futures.FIRST_COMPLETED)
        if self._outline.done():
            return self._outline.result()
        return outline_of(self._result.result())

    def result(self):
        """The loaded dataset (waits for it); raises what the loader raised."""
        return self._result.result()


#: The compile thread's name prefix. XLA cannot be stopped mid-compilation, and Python waits for an
#: executor's threads at exit, so an interrupted process asks :func:`compiling_in_background` first.
COMPILE_THREAD_PREFIX = "keras-softmax-compile"


def compiling_in_background() -> bool:
    """True while a :class:`Compiling` thread is still compiling a program."""
    return any(thread.name.startswith(COMPILE_THREAD_PREFIX) and thread.is_alive()
               for thread in threading.enumerate())


class Compiling:
    """Programs compiling in a thread, one at a time, in the order queued; :meth:`wait` before ``fit``."""

    def __init__(self):
        self.started = time.perf_counter()
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=COMPILE_THREAD_PREFIX)
        self._futures = {}

    def add(self, name: str, compile_program) -> None:
        """Queue ``compile_program()`` (e.g. a lowered program's ``.compile``) behind the others."""
        self._futures[name] = self._pool.submit(compile_program)

    def done(self) -> bool:
        """Whether every program queued so far has finished compiling (or failed)."""
        return all(future.done() for future in self._futures.values())

    def wait(self) -> str:
        """Wait for every program; one line saying what was compiled (or why not) and how long it took."""
        failed = []
        for name, future in self._futures.items():
            try:
                future.result()
            except Exception as error:  # fit compiles it again itself: slower, never wrong
                failed.append(f"{name} ({type(error).__name__}: {str(error).strip().splitlines()[0][:200]})")
        self._pool.shutdown(wait=False)
        seconds = time.perf_counter() - self.started
        if failed:
            return f"compiled ahead in {seconds:.1f}s except {', '.join(failed)}"
        return f"{' and '.join(self._futures)} compiled ahead in {seconds:.1f}s"


def can_compile_ahead(model) -> bool:
    """True where :func:`compile_ahead` applies: JAX, compiled with XLA, on one device."""
    return (keras.backend.backend() == "jax" and bool(getattr(model, "jit_compile", False))
            and not model.run_eagerly and keras.distribution.distribution() is None)


def lower_steps(model, train_batch, val_batch, *, validates: bool = True) -> dict:
    """``model``'s JAX train and test steps lowered for batches like these, as ``fit`` would compile them.

    Check :func:`can_compile_ahead` first.

    ``train_batch`` / ``val_batch`` are one batch each, as the pipelines give them to ``fit``
    (``(images, targets)`` numpy arrays; only their shapes and dtypes are used). ``model`` must be
    compiled; its optimizer and metric variables are built here as ``fit`` would build them.
    Lowering traces the steps in this thread (Keras keeps its scopes per thread). Returns
    ``{"train step": lowered, "test step": lowered}``; without ``validates`` (a run with no validation
    split, whose ``fit`` never runs a test step) the train step alone.
    """
    import jax

    model._symbolic_build(data_batch=train_batch)  # optimizer and metric variables, as fit builds them

    def abstract(tree):
        return jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), jax.dtypes.canonicalize_dtype(a.dtype)),
                            tree)

    train_state = model._get_jax_state(trainable_variables=True, non_trainable_variables=True,
                                       optimizer_variables=True, metrics_variables=True,
                                       purge_model_variables=False)
    test_state = model._get_jax_state(trainable_variables=True, non_trainable_variables=True,
                                      metrics_variables=True, purge_model_variables=False)
    # The same functions and donation as Keras's make_train_function / make_test_function.
    steps = {"train step": jax.jit(model.train_step, donate_argnums=0).lower(abstract(train_state),
                                                                             abstract(tuple(train_batch)))}
    if validates:
        steps["test step"] = jax.jit(model.test_step, donate_argnums=0).lower(abstract(test_state),
                                                                              abstract(tuple(val_batch)))
    return steps


def can_warm_convolutions(placement) -> bool:
    """True where :class:`ConvolutionWarmup` helps: JAX on one accelerator (a GPU autotunes; a CPU does not)."""
    from keras_softmax import environment

    return keras.backend.backend() == "jax" and not environment.on_cpu() and not placement.distributed


def backbone_convolutions(images, kernels, compute_dtype):
    """ResNet-12's convolutions (models/resnet12.py) on ``images``, between stand-ins for its other layers.

    ``kernels`` holds per stage ``(shortcut 1x1, conv1, conv2, conv3)`` float32 kernels, cast to
    ``compute_dtype`` as a mixed-precision ``Conv2D`` casts its kernel. Each convolution is followed
    by what follows it in the model, a float32 batch normalisation (batch statistics, no affine part)
    and LeakyReLU, so XLA sees the same convolution instructions as in the model's train step and does
    not fuse an add or an activation into one of them. Returns the mean of the last feature map.
    """
    from keras import ops

    def conv_bn(x, kernel):
        y = ops.cast(ops.conv(x, ops.cast(kernel, compute_dtype), strides=1, padding="same",
                              data_format="channels_last"), "float32")
        mean, variance = ops.moments(y, axes=(0, 1, 2))
        return (y - mean) * ops.rsqrt(variance + 1e-5)

    x = ops.cast(images, compute_dtype)
    for shortcut_kernel, *main_kernels in kernels:
        shortcut = conv_bn(x, shortcut_kernel)
        y = x
        for k, kernel in enumerate(main_kernels):
            y = conv_bn(y, kernel)
            if k < 2:
                y = ops.cast(ops.leaky_relu(y, 0.1), compute_dtype)
        y = ops.cast(ops.leaky_relu(y + shortcut, 0.1), compute_dtype)
        x = ops.max_pool(y, 2, 2, padding="valid", data_format="channels_last")
    return ops.mean(ops.cast(x, "float32"))


def convolution_program(image_shape, widths, compute_dtype, batch: int, *, training: bool):
    """:func:`backbone_convolutions` at ``batch`` lowered with JAX: differentiated if ``training``.

    Training: the gradient with respect to the kernels, so each convolution runs forward and
    backward to its kernel and (but for the first stage's, whose input is the image) to its input,
    as in the model's train step; else forward only, as in its test and predict steps.
    """
    import jax

    channels = [image_shape[-1], *widths]
    kernels = [tuple(jax.ShapeDtypeStruct((size, size, cin, cout), "float32")
                     for size, cin in ((1, channels[s]), (3, channels[s]), (3, cout), (3, cout)))
               for s, cout in enumerate(widths)]
    images = jax.ShapeDtypeStruct((batch, *image_shape), compute_dtype)

    def forward(kernels, x):
        return backbone_convolutions(x, kernels, compute_dtype)

    return jax.jit(jax.grad(forward) if training else forward).lower(kernels, images)


class ConvolutionWarmup(Compiling):
    """Autotune the ResNet-12 convolutions of a train step at ``train_batch`` in a thread, starting now.

    A :class:`Compiling` whose first program is :func:`convolution_program` at the train batch.
    Nothing is kept but XLA's choice of algorithm for each convolution, which later compilations in
    this process reuse; ``wait()`` before compiling the model's steps, so that they do not tune the
    same ones beside it.
    """

    def __init__(self, image_shape, widths, compute_dtype, train_batch: int):
        super().__init__()
        self._program = (image_shape, widths, compute_dtype)
        self.train_batch = train_batch
        self.add(f"convolutions at batch {train_batch}", self._compiler(train_batch, training=True))

    def _compiler(self, batch: int, *, training: bool):
        return lambda: convolution_program(*self._program, batch, training=training).compile()

    def add_eval_batch(self, batch: int) -> None:
        """Queue the forward convolutions at the evaluation batch (none if it is the train batch)."""
        if batch != self.train_batch:  # the train step's forward convolutions are the test step's
            self.add(f"forward convolutions at batch {batch}", self._compiler(batch, training=False))

