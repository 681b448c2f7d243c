"""Independent float64 numpy references for every head and for the score-space losses.

Nothing here imports ``keras_softmax`` code paths that compute outputs: the formulas are written
from their definitions (sparsemax and 1.5-entmax by bisection on the threshold, not by the sorted
closed forms the library uses), so a shared mistake cannot hide.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from scipy import special


def _f64(z):
    return np.asarray(z, dtype=np.float64)


# --------------------------------------------------------------------------- softmax family
def n_dropped(fraction: float, n: int) -> int:
    """How many of ``n`` logits ``drop_lowest=fraction`` removes: floor(f * n), computed exactly
    from the decimal the user wrote (``0.29`` of 100 is 29, not 28)."""
    return math.floor(Fraction(str(fraction)) * n)


def keep_mask(s, fraction: float):
    """Boolean mask of the logits that survive ``drop_lowest``: everything >= the (k+1)-th smallest."""
    s = _f64(s)
    k = n_dropped(fraction, s.shape[-1])
    if k == 0:
        return np.ones(s.shape, dtype=bool)
    threshold = np.sort(s, axis=-1)[..., k : k + 1]
    return s >= threshold


def log_softmax(z, temperature=1.0, drop_lowest=0.0):
    """log softmax(z / T) over the kept logits; dropped logits get -inf."""
    s = _f64(z) / temperature
    keep = keep_mask(s, drop_lowest)
    s = np.where(keep, s, -np.inf)
    return s - special.logsumexp(s, axis=-1, keepdims=True)


def softmax(z, temperature=1.0, drop_lowest=0.0):
    return np.exp(log_softmax(z, temperature, drop_lowest))


def gumbel_inference(z, temperature=1.0, drop_lowest=0.0):
    """Gumbel-softmax with the noise off is softmax(z / tau)."""
    return softmax(z, temperature, drop_lowest)


# --------------------------------------------------------------------------- sparse maps
def _bisect_threshold(excess, lo, hi, iterations=200):
    """Root of the non-increasing function ``excess(tau)`` in [lo, hi] (per row)."""
    lo = np.array(lo, dtype=np.float64)
    hi = np.array(hi, dtype=np.float64)
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        too_low = excess(mid) > 0  # mass > 1: the threshold must rise
        lo = np.where(too_low, mid, lo)
        hi = np.where(too_low, hi, mid)
    return 0.5 * (lo + hi)


def sparsemax(z):
    """Euclidean projection onto the simplex: p = max(z - tau, 0), tau solving sum p = 1.

    Bisection finds the support; tau is then recomputed exactly from it as
    (sum_S z - 1) / |S|."""
    z = _f64(z)
    top = z.max(axis=-1, keepdims=True)
    tau = _bisect_threshold(lambda t: np.maximum(z - t, 0).sum(-1, keepdims=True) - 1, top - 1, top)
    support = z > tau
    tau = (np.where(support, z, 0).sum(-1, keepdims=True) - 1) / support.sum(-1, keepdims=True)
    return np.maximum(z - tau, 0)


def entmax15(z):
    """1.5-entmax: p = max(z/2 - tau, 0)^2 with tau solving sum p = 1, by bisection."""
    x = _f64(z) / 2
    top = x.max(axis=-1, keepdims=True)
    tau = _bisect_threshold(
        lambda t: np.square(np.maximum(x - t, 0)).sum(-1, keepdims=True) - 1, top - 1, top
    )
    p = np.square(np.maximum(x - tau, 0))
    return p / p.sum(-1, keepdims=True)  # removes the last ~1e-16 of bisection error


def sparsemax_loss(y, z):
    """Sparsemax loss on scores, from its definition: max_p <p,z> - ||p||^2/2 + ||q||^2/2 - <q,z>."""
    z = _f64(z)
    q = as_target(y, z.shape[-1])
    p = sparsemax(z)
    conjugate = (p * z).sum(-1) - 0.5 * np.square(p).sum(-1)
    return conjugate + 0.5 * np.square(q).sum(-1) - (q * z).sum(-1)


def entmax15_loss(y, z):
    """1.5-entmax Fenchel-Young loss on scores with Omega(p) = (4/3) (sum p^1.5 - 1)."""
    z = _f64(z)
    q = as_target(y, z.shape[-1])
    p = entmax15(z)

    def omega(r):
        return (4.0 / 3.0) * (np.power(r, 1.5).sum(-1) - 1.0)

    return (p * z).sum(-1) - omega(p) + omega(q) - (q * z).sum(-1)


def entmax_alpha(z, alpha=1.5):
    """alpha-entmax: p = [(alpha - 1) z - tau]_+^(1/(alpha - 1)), sum p = 1, tau by float64 bisection."""
    z = _f64(z)
    x = (alpha - 1.0) * (z - z.max(axis=-1, keepdims=True))
    k = 1.0 / (alpha - 1.0)

    def mass(t):
        return np.power(np.maximum(x - t, 0.0), k).sum(-1, keepdims=True) - 1

    tau = _bisect_threshold(mass, np.full(x.shape[:-1] + (1,), -1.0), np.zeros(x.shape[:-1] + (1,)))
    p = np.power(np.maximum(x - tau, 0.0), k)
    return p / p.sum(-1, keepdims=True)


def tsallis_omega(r, alpha):
    """(sum r^alpha - 1) / (alpha (alpha - 1)), with 0^alpha = 0."""
    r = _f64(r)
    return (np.where(r > 0, np.power(np.maximum(r, 1e-300), alpha), 0.0).sum(-1) - 1.0) / (alpha * (alpha - 1.0))


def entmax_alpha_loss(y, z, alpha=1.5):
    """alpha-entmax Fenchel-Young loss on scores: <p, z> - Omega(p) + Omega(q) - <q, z>."""
    z = _f64(z)
    q = as_target(y, z.shape[-1])
    p = entmax_alpha(z, alpha)
    return (p * z).sum(-1) - tsallis_omega(p, alpha) + tsallis_omega(q, alpha) - (q * z).sum(-1)


def nll_softmax(y, z):
    """-log softmax(z)_y (q-weighted for distributions)."""
    q = as_target(y, np.shape(z)[-1])
    return -(q * log_softmax(z)).sum(-1)


def as_target(y, n):
    """One-hot rows for integer labels, or the given target distributions."""
    y = np.asarray(y)
    if y.ndim >= 1 and y.shape[-1] == n and y.dtype.kind == "f":
        return y.astype(np.float64)
    return np.eye(n)[y.reshape(-1).astype(int)]


# --------------------------------------------------------------------------- kernel heads
def taylor_poly(z, order):
    """1 + z + z^2/2 + ... + z^k/k!, term by term in float64."""
    z = _f64(z)
    return sum(z**j / math.factorial(j) for j in range(order + 1))


def taylor(z, order=2):
    f = taylor_poly(z, order)
    return f / f.sum(-1, keepdims=True)


def log_taylor(z, order=2):
    f = taylor_poly(z, order)
    return np.log(f) - np.log(f.sum(-1, keepdims=True))


def _normalise_positive(log_f):
    log_f = log_f - log_f.max(-1, keepdims=True)
    f = np.exp(log_f)
    return f / f.sum(-1, keepdims=True)


def base2(z):
    """2^z_i / sum_j 2^z_j."""
    return _normalise_positive(_f64(z) * np.log(2.0))


def exp_sin(z):
    return _normalise_positive(np.sin(_f64(z)))


def normal_cdf(z):
    return _normalise_positive(special.ndtr(_f64(z)))


# --------------------------------------------------------------------------- hierarchical
def hierarchical_log(z, fine_to_coarse):
    """log p(f) = log p(c(f)) + log p(f | c(f)) from F fine logits followed by C coarse logits."""
    z = _f64(z)
    groups = np.asarray(fine_to_coarse)
    num_fine, num_coarse = len(groups), int(groups.max()) + 1
    assert z.shape[-1] == num_fine + num_coarse
    z_fine, z_coarse = z[..., :num_fine], z[..., num_fine:]
    log_p_coarse = z_coarse - special.logsumexp(z_coarse, axis=-1, keepdims=True)
    out = np.empty(z_fine.shape)
    for c in range(num_coarse):
        members = np.flatnonzero(groups == c)
        lse = special.logsumexp(z_fine[..., members], axis=-1, keepdims=True)
        out[..., members] = log_p_coarse[..., c : c + 1] + z_fine[..., members] - lse
    return out


def hierarchical(z, fine_to_coarse):
    return np.exp(hierarchical_log(z, fine_to_coarse))


# --------------------------------------------------------------------------- dispatch
def reference(name, z, params=None):
    """The reference *probabilities* of head ``name`` (log heads: exp of their output)."""
    params = dict(params or {})
    if name in ("softmax", "log_softmax", "gumbel", "log_gumbel"):
        params.pop("hard", None)
        params.pop("seed", None)
        return softmax(z, params.get("temperature", 1.0), params.get("drop_lowest", 0.0))
    if name == "sparsemax":
        return sparsemax(z)
    if name == "entmax15":
        return entmax15(z)
    if name in ("taylor", "log_taylor"):
        return taylor(z, params.get("order", 2))
    if name == "base2":
        return base2(z)
    if name == "exp_sin":
        return exp_sin(z)
    if name == "normal_cdf":
        return normal_cdf(z)
    if name == "hierarchical":
        from keras_softmax.cifar100 import FINE_TO_COARSE  # a table, not code under test

        return hierarchical(z, params.get("fine_to_coarse") or FINE_TO_COARSE)
    if name == "entmax_alpha":
        return entmax_alpha(z, params.get("alpha", 1.5))
    raise KeyError(name)


def reference_log(name, z, params=None):
    """The reference *log-probabilities* (computed directly where a direct form exists)."""
    params = dict(params or {})
    if name in ("log_softmax", "log_gumbel", "softmax", "gumbel"):
        return log_softmax(z, params.get("temperature", 1.0), params.get("drop_lowest", 0.0))
    if name in ("taylor", "log_taylor"):
        return log_taylor(z, params.get("order", 2))
    if name == "hierarchical":
        from keras_softmax.cifar100 import FINE_TO_COARSE

        return hierarchical_log(z, params.get("fine_to_coarse") or FINE_TO_COARSE)
    with np.errstate(divide="ignore"):
        return np.log(reference(name, z, params))


# --------------------------------------------------------------------------- heads with a projection
def adaptive_log(h, head_kernel, head_bias, tails, cutoffs, num_classes, class_order=None):
    """Adaptive softmax log-probabilities written out class by class (float64).

    ``tails``: one ``(projection, kernel, bias)`` per tail cluster; classes in rank order unless
    ``class_order`` (rank -> class id) is given, in which case the output is in class-id order."""
    h = _f64(h)
    head_logits = h @ _f64(head_kernel) + _f64(head_bias)
    head_log = head_logits - special.logsumexp(head_logits, axis=-1, keepdims=True)
    first = cutoffs[0] if cutoffs else num_classes
    bounds = list(cutoffs) + [num_classes]
    by_rank = np.empty((h.shape[0], num_classes))
    for rank in range(num_classes):
        if rank < first:
            by_rank[:, rank] = head_log[:, rank]
            continue
        i = max(j for j in range(len(cutoffs)) if bounds[j] <= rank)  # 0-based tail cluster
        projection, kernel, bias = (_f64(w) for w in tails[i])
        logits = (h @ projection) @ kernel + bias
        local = rank - bounds[i]
        by_rank[:, rank] = head_log[:, first + i] + logits[:, local] - special.logsumexp(logits, axis=-1)
    if class_order is None:
        return by_rank
    out = np.empty_like(by_rank)
    out[:, np.asarray(class_order)] = by_rank
    return out


def sampled_softmax_loss(h, labels, kernel, bias, sampled, log_expected_sampled, log_expected_true,
                         remove_accidental_hits=True):
    """Per-row sampled softmax loss from its definition (float64); kernel is (N, d)."""
    h, kernel, bias = _f64(h), _f64(kernel), _f64(bias)
    out = []
    for b, y in enumerate(np.asarray(labels).reshape(-1)):
        true = h[b] @ kernel[y] + bias[y] - log_expected_true[b]
        scores = [true]
        for j, c in enumerate(sampled):
            if remove_accidental_hits and c == y:
                continue
            scores.append(h[b] @ kernel[c] + bias[c] - log_expected_sampled[j])
        out.append(special.logsumexp(scores) - true)
    return np.array(out)
