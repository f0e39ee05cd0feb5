"""Lower bounds on log p(x) for a latent-variable model p(x, z) = p(z) p(x | z), from an
approximate posterior q(z | x): the ELBO and the importance-weighted bound (Burda, Grosse &
Salakhutdinov 2016, "Importance weighted autoencoders").

    log w_j = log p(x, z_j) - log q(z_j | x),    z_1, ..., z_k ~ q(. | x) independently

    ELBO = E log w                      = log p(x) - KL(q(z | x) || p(z | x))
    L_k  = E log (1/k) sum_j w_j        = E [logsumexp_j(log w_j) - log k]

Each w_j has mean p(x), so by Jensen (log is concave) L_k <= log p(x); L_1 is the ELBO; and
L_k <= L_{k+1} (Burda et al.'s Theorem 1: the mean of k + 1 weights is the average of the means
of its k-subsets, and log of an average >= the average of the logs). The gap shrinks roughly like
Var(w / p(x)) / 2k (the delta method; Maddison et al. 2017, Nowozin 2018), so it closes fastest
where q is already close to p(z | x). If q is the true posterior, w_j = p(x) p(z_j | x) / q(z_j | x)
= p(x) for every draw: then L_k = log p(x) exactly, for every k and every sample, with no variance.

Log-sum-exp: w_j = exp(log w_j) underflows to 0 in float64 once log w_j < -745, and an 8 x 8
image's log p(x, z) is already tens of nats below 0 (hundreds for MNIST). Shifting by the largest
log-weight m, logsumexp(a) = m + log sum_j exp(a_j - m), makes the largest term exp(0) = 1: no
underflow of the sum, no overflow. m is held constant under autograd; the gradient is the
softmax of the log-weights either way (the terms in dm cancel), with one node fewer.

Shapes: log_w (k, N), row j = draw j, column i = data point i; the bounds are (N,), one per point.
log_weights draws them through a flow q (Flow, with the encoder's output as context): eps
(k, N, D) noise, one (N, D) slab per draw; log_joint(z) takes z (k, N, D) and returns log p(x_i,
z[j, i]) as (k, N). Only q's forward direction runs (sample_from_noise), and the bound is a
differentiable function of every parameter in q and in log_joint: -mean(iwae_bound(...)) is the
IWAE training loss, -mean(elbo(...)) the VAE's.

Copy with: bounds.py, validate.py (and an empty __init__.py).
"""
import autograd.numpy as np
import numpy as onp

from .validate import getval, isbox


def log_mean_exp(a, axis=0):
    """log (1/k) sum_j exp(a_j) along axis, shifted by the max (see above). -inf entries (a draw
    where p(x, z) = 0) are fine; NaN propagates, so a training loop can skip the step."""
    m = onp.max(getval(a), axis=axis, keepdims=True)
    m = onp.where(onp.isfinite(m), m, 0.0)               # all -inf: log(0) = -inf, not NaN from -inf - -inf
    return np.squeeze(m, axis=axis) + np.log(np.mean(np.exp(a - m), axis=axis))


def _check_log_w(log_w):
    value = getval(log_w)
    if not isbox(log_w):
        if isinstance(value, (str, bytes)) or value is None:
            raise TypeError(f"log_w must be an array of log-weights, shape (k, N), got {type(value).__name__}")
        value = log_w = onp.asarray(value, dtype=float)
    if value.ndim != 2 or value.shape[0] < 1 or value.shape[1] < 1:
        raise ValueError(f"log_w must have shape (k, N), k >= 1 draws for each of N >= 1 points, "
                         f"got shape {value.shape}")
    return log_w


def elbo(log_w):
    """The ELBO of each point, estimated from k draws: mean_j log w_j. (k, N) -> (N,)."""
    return np.mean(_check_log_w(log_w), axis=0)


def iwae_bound(log_w):
    """The importance-weighted bound L_k of each point: log (1/k) sum_j w_j. (k, N) -> (N,).
    With k = 1 it is the ELBO; it rises (in expectation) towards log p(x) as k grows."""
    return log_mean_exp(_check_log_w(log_w), axis=0)


def log_weights(q, params, log_joint, eps, context=None):
    """log w[j, i] = log p(x_i, z_ji) - log q(z_ji | x_i), z_ji the flow q pushed from eps[j, i].
    q: a Flow (anything with dim and sample_from_noise); eps (k, N, D); context: q's context per
    point (N, C), a single row, or None for an unconditional q; log_joint: z (k, N, D) -> (k, N).
    Returns (k, N)."""
    if not (hasattr(q, "dim") and callable(getattr(q, "sample_from_noise", None))):
        raise TypeError(f"q must be a flow with dim and sample_from_noise (a Flow), got {type(q).__name__}")
    if not callable(log_joint):
        raise TypeError(f"log_joint must be a function z (k, N, D) -> log p(x, z) (k, N), "
                        f"got {type(log_joint).__name__}")
    k, n, d = _check_eps(eps, q.dim)
    if context is not None and onp.ndim(getval(context)) == 2:
        rows = onp.shape(getval(context))[0]
        if rows not in (1, n):
            raise ValueError(f"context must have one row per data point ({n}) or a single row, "
                             f"got shape {onp.shape(getval(context))}")
        if rows == n and k > 1:
            context = np.tile(context, (k, 1))           # row j N + i: point i's context, for draw j
    z, log_q = q.sample_from_noise(params, np.reshape(eps, (k * n, d)), context)
    log_p = log_joint(np.reshape(z, (k, n, d)))
    if onp.shape(getval(log_p)) != (k, n):
        raise ValueError(f"log_joint must return one log p(x, z) per draw and point, shape ({k}, {n}), "
                         f"got shape {onp.shape(getval(log_p))}")
    return log_p - np.reshape(log_q, (k, n))


def _check_eps(eps, dim):
    """(k, N, D) of the noise, or a clear error: the draws come as one (N, D) slab per draw."""
    value = getval(eps)
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"eps must be an array of shape (k, N, {dim}), got {type(value).__name__}")
    value = onp.asarray(value)
    if value.dtype.kind not in "iuf":
        raise TypeError(f"eps must hold real numbers (float64), got dtype {value.dtype}")
    if value.ndim != 3 or value.shape[2] != dim or min(value.shape) < 1:
        raise ValueError(f"eps must have shape (k, N, {dim}): k >= 1 draws of N >= 1 points in q's "
                         f"dimension {dim}, got shape {value.shape}")
    if not onp.isfinite(value).all():
        raise ValueError(f"eps must be finite, got {int((~onp.isfinite(value)).sum())} NaN/inf entries")
    return value.shape
