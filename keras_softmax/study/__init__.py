"""The study (GUIDE §9): every head (and named variant) × several seeds, then one report.

- :mod:`.spec` reads a study spec (TOML) and plans its runs;
- :mod:`.runner` trains the runs that are not finished, one process per run and per device;
- :mod:`.results` copies each finished run's report into ``results.jsonl``;
- :mod:`.stats`, :mod:`.plots` and :mod:`.report` turn those into ``STUDY.md``.

>>> from keras_softmax.study import run_study
>>> data = "../shared/data/cifar100-train-jpg.tar.gz"
>>> run_study("zoo/studies/cifar100.toml", "runs/study", dataset=data)  # doctest: +SKIP
"""

from keras_softmax.study.runner import StudyOutcome, run_study
from keras_softmax.study.spec import PlannedRun, Planner, StudyError, StudySpec, load_spec

__all__ = ["PlannedRun", "Planner", "StudyError", "StudyOutcome", "StudySpec", "load_spec", "run_study"]
