"""Start a run's slow parts early: the dataset loads in a thread, JAX's train and test steps compile ahead.

On a fresh GPU machine the train step's first compilation takes ~25 s (mostly XLA autotuning its
convolutions) and the test step's ~4 s more, one after the other, and only once the images are
decoded and the model is built. Here instead:

1. :class:`BackgroundLoad` loads the dataset in a thread and hands over its
   :class:`~keras_softmax.data.sources.Outline` (classes, split sizes) as soon as the class folders
   are listed, so the model is built while the images decode;
2. :func:`compile_ahead` lowers the compiled model's ``train_step`` and ``test_step`` for batches
   shaped like the real ones and compiles them, one after the other, in a thread (XLA releases the
   GIL), while the images still decode. Not side by side: two XLA autotunings at once on one H200
   took 50.7 s and 42.8 s instead of 20.4 s and 3.1 s in turn (bench/RESULTS.md).

``fit`` then traces its own steps as usual and finds the same programs in JAX's persistent
compilation cache (``compile_cache = true``, the default), so it loads them instead of compiling;
with the cache off it still finds XLA's autotuning results in this process. Nothing here changes
what is computed: the programs are the ones ``fit`` would have compiled.

The background load always runs; compiling ahead only with ``compile_ahead = true``: on one H200 the
images are decoded before the model is built, and compiling early made a cold start slower, not
faster (bench/RESULTS.md, "The first minute again").
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


class Compiling:
    """Programs compiling in a thread, in order; :meth:`wait` for them before ``fit``."""

    def __init__(self, lowered: dict):
        self.started = time.perf_counter()
        pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="keras-softmax-compile")
        self._futures = {name: pool.submit(program.compile) for name, program in lowered.items()}
        pool.shutdown(wait=False)

    def wait(self) -> str:
        """Wait for every program; one line saying what was compiled (or why not) and how long it took."""
        failed = []
        for name, future in self._futures.items():
            try:
                future.result()
            except Exception as error:  # fit compiles it again itself: slower, never wrong
                failed.append(f"{name} ({type(error).__name__}: {str(error).strip().splitlines()[0][:200]})")
        seconds = time.perf_counter() - self.started
        if failed:
            return f"compiled ahead in {seconds:.1f}s except {', '.join(failed)}"
        return f"{' and '.join(self._futures)} compiled ahead in {seconds:.1f}s"


def can_compile_ahead(model) -> bool:
    """True where :func:`compile_ahead` applies: JAX, compiled with XLA, on one device."""
    return (keras.backend.backend() == "jax" and bool(getattr(model, "jit_compile", False))
            and not model.run_eagerly and keras.distribution.distribution() is None)


def compile_ahead(model, train_batch, val_batch) -> Compiling:
    """Lower ``model``'s JAX train and test steps for batches like these and compile them in threads.

    ``train_batch`` / ``val_batch`` are one batch each, as the pipelines give them to ``fit``
    (``(images, targets)`` numpy arrays; only their shapes and dtypes are used). ``model`` must be
    compiled; its optimizer and metric variables are built here as ``fit`` would build them.
    Lowering traces the steps in this thread (Keras keeps its scopes per thread); compiling runs
    in another. Check :func:`can_compile_ahead` first.
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
    lowered = {
        "train step": jax.jit(model.train_step, donate_argnums=0).lower(abstract(train_state),
                                                                        abstract(tuple(train_batch))),
        "test step": jax.jit(model.test_step, donate_argnums=0).lower(abstract(test_state),
                                                                      abstract(tuple(val_batch))),
    }
    return Compiling(lowered)
