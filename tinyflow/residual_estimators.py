"""log det(I + J_g) of an InvertibleResidual layer, three ways: exactly, by i-ResNet's truncated
power series, and by Residual Flows' Russian roulette, with its Neumann-series gradient.

The series. With Lip(g) <= c < 1 every eigenvalue of J = J_g(x) has |lambda| <= c, and

    log det(I + J) = tr log(I + J) = sum_{k>=1} (-1)^(k+1) tr(J^k) / k.

Hutchinson (1989): tr(A) = E[v^T A v] for probes with E[v v^T] = I; Rademacher probes (+-1
entries) have the least variance of probes with independent entries. Each term needs J^k v, k products J_g v
(residual.jvp), not the Jacobian: O(n) products per point whatever D is.

    exact:      log det(I + J) by slogdet (residual.py); D products J_g e_j.
    truncated:  sum_{k=1}^{n} (-1)^(k+1) v^T J^k v / k            (Behrmann et al. 2019)
                Biased: it drops the tail, at most D (-log(1 - c) - sum_{k<=n} c^k / k) in size,
                which grows with c: the more expressive g, the more terms it needs. Its gradient
                is autograd's, through all n products (memory grows with n).
    roulette:   sum_{k=1}^{n_exact + R} (-1)^(k+1) v^T J^k v / (k P(R >= k - n_exact))   (Chen et al. 2019)
                R ~ Geometric(p) on {1, 2, ...}, one draw per call (shared by the batch, as in the
                papers' code), P(R >= m) = (1 - p)^(m - 1), and the first n_exact terms always
                taken (weight 1). Term k is kept with probability P(R >= k - n_exact) and divided
                by it, so its expectation is the full series: unbiased, with n_exact + 1/p terms
                on average. Its variance is finite only if the terms shrink faster than the
                weights grow, rho(J)^2 < 1 - p (rho(J) < 0.71 at p = 0.5); beyond that it is
                still unbiased, but heavy-tailed.

The roulette gradient (Chen et al. 2019): d log det(I + J) = tr((I + J)^-1 dJ), and
(I + J)^-1 = sum_{k>=0} (-J)^k, so with the same probes and the same R

    d log det(I + J) ~ v^T dJ w,   w = sum_{k=0}^{n_exact + R - 1} (-1)^k J^k v / P(R >= k + 1 - n_exact),

unbiased again. w is built from numbers the value already computed, outside autograd, and only
the one product v^T J w is differentiated: memory independent of n, which is the point of it.
The function returns value + s - s_value, with s = v^T J w traced and s_value its number: the
value is the log-det estimate and the gradient is the Neumann estimate.

Probes and R come from the Generator passed in, so the same seed gives the same probes for
every n (common random numbers, for comparing n). Shapes: x (N, D); estimates (N,).

estimate_log_det(layer, params, x, rng, estimator) gives one layer's estimate at x;
estimated_log_prob(flow, params, x, rng, estimator) is Flow.log_prob with every residual layer's
log-det estimated (the loss for training with an estimator: Flow has no way to pass probes).

Copy with: residual_estimators.py, fixed_point.py, invert.py, leaves.py, lipschitz.py, residual.py,
residual_backprop.py, validate.py (and an empty __init__.py).
"""
import autograd.numpy as np
import numpy as onp
from autograd.tracer import getval

from .invert import Invert
from .leaves import read_leaves
from .residual import InvertibleResidual, jvp, log_det_exact, network
from .validate import check_count, check_points, check_rng

ESTIMATORS = ("exact", "truncated", "roulette")


def probes(rng, n, dim):
    """Rademacher probes (n, dim): entries +-1 with probability 1/2."""
    return 2.0 * check_rng(rng).integers(0, 2, (n, dim)) - 1.0


def roulette_weights(n_exact, num_draw, p):
    """1 / P(R >= k - n_exact) for k = 1 .. n_exact + num_draw: 1 for the first n_exact terms."""
    k = onp.arange(1, n_exact + num_draw + 1)
    return (1 - p) ** -onp.maximum(k - n_exact - 1, 0)


def _terms(weights, slopes, v, num_terms):
    """[J v, J^2 v, ..., J^num_terms v] for each point: num_terms products."""
    powers = [v]
    for _ in range(num_terms):
        powers.append(jvp(weights, slopes, powers[-1]))
    return powers[1:]


def _truncated(weights, slopes, v, n_terms):
    terms = _terms(weights, slopes, v, n_terms)
    return sum((-1) ** (k + 1) / k * np.sum(v * term, axis=1) for k, term in enumerate(terms, start=1))


def _roulette(weights, slopes, v, rng, p, n_exact):
    num_terms = n_exact + int(rng.geometric(p))
    scale = roulette_weights(n_exact, num_terms - n_exact, p)
    plain_weights = [(getval(W), getval(b)) for W, b in weights]
    plain_terms = _terms(plain_weights, [getval(s) for s in slopes], v, num_terms)     # J^k v, numbers
    value = sum((-1) ** (k + 1) / k * scale[k - 1] * onp.sum(v * term, axis=1)
                for k, term in enumerate(plain_terms, start=1))
    w = v + sum((-1) ** k * scale[k] * plain_terms[k - 1] for k in range(1, num_terms))    # ~ (I + J)^-1 v
    surrogate = np.sum(v * jvp(weights, slopes, w), axis=1)                               # v^T J w, traced
    return value + surrogate - getval(surrogate)


def _check(estimator, n_terms, p, n_exact):
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    check_count(n_terms, "n_terms")
    if isinstance(p, bool) or not isinstance(p, (float, int, onp.floating, onp.integer)) or not 0 < p < 1:
        raise ValueError(f"p (the geometric distribution's stopping probability) must be in (0, 1), got {p!r}")
    if isinstance(n_exact, bool) or not isinstance(n_exact, (int, onp.integer)) or n_exact < 0:
        raise ValueError(f"n_exact (terms always taken) must be an int >= 0, got {n_exact!r}")


def _estimate(layer, params, x, rng, estimator, n_terms, p, n_exact):
    """(g(x), the estimate of log det(I + J_g(x)))."""
    weights, betas = layer.weights(params)
    g, slopes = network(weights, betas, x, layer.activation)
    if estimator == "exact":
        return g, log_det_exact(weights, slopes, x.shape[1])
    v = probes(rng, *x.shape)
    if estimator == "truncated":
        return g, _truncated(weights, slopes, v, n_terms)
    return g, _roulette(weights, slopes, v, rng, p, n_exact)


def estimate_log_det(layer, params, x, rng=None, estimator="roulette", n_terms=10, p=0.5, n_exact=2):
    """log det(I + J_g(x)) (N,) of an InvertibleResidual at x: "exact"; "truncated" after
    n_terms terms; or "roulette" with R ~ Geometric(p) terms after n_exact. rng: a Generator
    for the probes and R (not used by "exact")."""
    if not isinstance(layer, InvertibleResidual):
        raise TypeError(f"layer must be an InvertibleResidual, got {type(layer).__name__}")
    _check(estimator, n_terms, p, n_exact)
    if estimator != "exact":
        check_rng(rng)
    return _estimate(layer, params, check_points(x, params[0]["W"].shape[0]), rng, estimator, n_terms, p, n_exact)[1]


def estimated_log_prob(flow, params, x, rng=None, estimator="roulette", n_terms=10, p=0.5, n_exact=2):
    """flow.log_prob(params, x) with every residual layer's log-det estimated (fresh probes and R
    from rng for each layer); other layers as in flow.log_prob. Invert(InvertibleResidual) maps
    x -> x + g(x) here; a plain InvertibleResidual is solved for its fixed point z and counts
    -log det(I + J_g(z)). Unconditional flows only."""
    _check(estimator, n_terms, p, n_exact)
    if estimator != "exact":
        check_rng(rng)
    z = check_points(x, flow.dim)
    params = read_leaves(params)
    total = np.zeros(len(z))
    for layer, layer_params in reversed(list(zip(flow.layers, params["layers"]))):
        if isinstance(layer, Invert) and isinstance(layer.layer, InvertibleResidual):
            g, estimate = _estimate(layer.layer, layer_params, z, rng, estimator, n_terms, p, n_exact)
            z, total = z + g, total + estimate
        elif isinstance(layer, InvertibleResidual):
            z = layer.preimage(layer_params, z)
            total = total - _estimate(layer, layer_params, z, rng, estimator, n_terms, p, n_exact)[1]
        else:
            z, log_det_k = layer.inverse(layer_params, z)
            total = total + log_det_k
    return flow.base.log_prob(params["base"], z) + total
