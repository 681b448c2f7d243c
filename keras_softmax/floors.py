"""The probability floor every log in the package takes; no imports, so that any layer can share it.

The core's training metric (``keras_softmax.metrics``: ``val_nll``) and the evaluation
(``keras_softmax.evaluation.calibration``: NLL, temperature scaling) floor probabilities here before
any log: float32 outputs underflow to exactly 0 and sparse heads give exact zeros, so without it one
confidently wrong example would make an NLL infinite. The evaluation layer imports no Keras, so the
one definition lives in this module rather than in the Keras-based core.
"""

import math

PROBABILITY_FLOOR = 1e-12
#: ``log(PROBABILITY_FLOOR)``, the floor of log-probabilities.
LOG_PROBABILITY_FLOOR = math.log(PROBABILITY_FLOOR)
