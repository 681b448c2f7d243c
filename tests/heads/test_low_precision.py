"""No NaN or Inf for logits in [-1e4, 1e4], in float32 and under mixed_bfloat16 / mixed_float16.

Heads compute in float32 whatever the global dtype policy, and their output is float32 (GUIDE §3).
"""

import keras
import numpy as np
import pytest
from keras import ops

from .helpers import HEADS, grad, is_log, make_head, to_np

POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")

#: Extreme rows of 9 logits: ±1e4, huge next to tiny, all equal (three ways), alternating extremes.
EXTREME = np.array([
    [1e4, -1e4, 0.0, 1e-30, -1e-30, 5.0, 1e4, -3.0, 2.0],
    [1e4] * 9,
    [-1e4] * 9,
    [0.0] * 9,
    [-1e4, 1e4, -1e4, 1e4, 1e-3, -1e-3, 7e3, -7e3, 1.0],
    [1e-4, 2e-4, -1e-4, 0.0, 1e4, 9999.0, 9998.5, -1e4, -9999.0],
], dtype="float32")


def check_distribution(head, out, where):
    assert keras.backend.standardize_dtype(out.dtype) == "float32", where
    out = to_np(out)
    assert np.all(np.isfinite(out)), (where, out)
    p = np.exp(out.astype(np.float64)) if is_log(head) else out.astype(np.float64)
    assert np.all(p >= 0), where
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-5, err_msg=str(where))


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("name", HEADS)
def test_extreme_logits_finite_under_every_policy(name, policy):
    keras.config.set_dtype_policy(policy)  # the conftest fixture restores float32
    head = make_head(name)
    assert head.layer.compute_dtype == "float32"
    for dtype in ("float32", "bfloat16", "float16"):  # also low-precision tensors passed directly
        z = ops.cast(EXTREME, dtype)
        for training in (False, True):
            out = head.layer(z, training=training)
            check_distribution(head, out, (name, policy, dtype, training))
    # the matching loss of the extreme outputs is finite too (a label at every position)
    labels = np.arange(EXTREME.shape[0]) % (6 if name == "hierarchical" else 9)
    out = head.layer(EXTREME, training=True)
    assert np.isfinite(to_np(head.loss(labels, out)))


@pytest.mark.parametrize("name", ["gumbel", "log_gumbel"])
@pytest.mark.parametrize("policy", POLICIES)
def test_hard_gumbel_extreme_logits(name, policy):
    keras.config.set_dtype_policy(policy)
    head = make_head(name, hard=True, seed=0, temperature=0.1)
    out = head.layer(ops.cast(EXTREME, "bfloat16"), training=True)
    check_distribution(head, out, (name, policy))


@pytest.mark.parametrize("name", HEADS)
def test_matched_loss_gradient_finite_for_extreme_logits(name):
    head = make_head(name)
    labels = np.arange(EXTREME.shape[0]) % (6 if name == "hierarchical" else 9)
    g = grad(lambda z: head.loss(labels, head.layer(z, training=True)), EXTREME)
    assert np.all(np.isfinite(g)), (name, g)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_heads_inside_mixed_precision_model_output_float32(policy):
    """Input -> Dense (bf16/fp16 compute) -> head: the Dense logits arrive in low precision."""
    keras.config.set_dtype_policy(policy)
    x = np.array([[1.0, -1.0, 0.5, 2.0], [0.0, 0.0, 0.0, 0.0]], dtype="float32")
    for name in HEADS:
        head = make_head(name)
        width = head.num_logits(6) if name == "hierarchical" else 9
        inputs = keras.Input((4,))
        dense = keras.layers.Dense(width)
        logits = dense(inputs)
        model = keras.Model(inputs, head.layer(logits))
        # kernel entries of ±2500 make logits of magnitude up to ~1e4 (still finite in float16)
        sign = np.where(np.arange(4 * width).reshape(4, width) % 2, 1.0, -1.0)
        dense.set_weights([2500.0 * sign, np.zeros(width)])
        assert keras.backend.standardize_dtype(dense.compute_dtype) != "float32"
        out = model(x, training=False)
        check_distribution(head, out, (name, policy))
