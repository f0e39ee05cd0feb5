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
                which grows with c: the more expressive g, the more terms it needs. i-ResNet
                differentiates through all n products (memory grows with n); see below.
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

Computing it. The values are plain numbers: the products J^k v (residual.jvp) and, for the
truncated series, (J^T)^i v (residual.vjp), outside autograd. The gradient comes from one traced
product, as for the roulette: d(v^T J^k v) = sum_{i+j=k-1} ((J^T)^i v)^T dJ (J^j v), so

    d truncated = sum_{i=0}^{n-1} a_i^T dJ w_i,   a_i = (J^T)^i v,   w_i = sum_{j=0}^{n-1-i} c_{i+j+1} J^j v

(c_k = (-1)^(k+1) / k): the exact gradient of the truncated series, from n directions w_i pushed
once through residual_backprop.residual_jvp (one autograd node, backprop written out), instead
of autograd's tape through all n products. truncated_plain and roulette_plain are the readable
versions, autograd through every product, and the tests hold these to them (values and
gradients to 1e-12).

Probes and R come from the Generator passed in, so the same seed gives the same probes for
every n (common random numbers, for comparing n). Shapes: x (N, D); estimates (N,).

estimate_log_det(layer, params, x, rng, estimator) gives one layer's estimate at x;
estimated_log_prob(flow, params, x, rng, estimator) is Flow.log_prob with every residual layer's
log-det estimated (the loss for training with an estimator: Flow has no way to pass probes).

Copy with: residual_estimators.py, fixed_point.py, invert.py, leaves.py, lipschitz.py, residual.py, residual_backprop.py, validate.py (and an empty __init__.py).
"""
import autograd.numpy as np
import numpy as onp
from autograd.tracer import getval, isbox

from .invert import Invert
from .leaves import read_leaves
from .residual import InvertibleResidual, block_leaves, jvp, vjp
from .residual_backprop import residual_jvp
from .validate import check_count, check_points, check_rng

ESTIMATORS = ("exact", "truncated", "roulette")


def probes(rng, n, dim):
    """Rademacher probes (n, dim): entries +-1 with probability 1/2."""
    return 2.0 * check_rng(rng).integers(0, 2, (n, dim)) - 1.0


def roulette_weights(n_exact, num_draw, p):
    """1 / P(R >= k - n_exact) for k = 1 .. n_exact + num_draw: 1 for the first n_exact terms."""
    k = onp.arange(1, n_exact + num_draw + 1)
    return (1 - p) ** -onp.maximum(k - n_exact - 1, 0)


def coefficients(num_terms):
    """c_k = (-1)^(k+1) / k for k = 1 .. num_terms: the series of log(1 + x)."""
    k = onp.arange(1, num_terms + 1)
    return (-1.0) ** (k + 1) / k


def _powers(product, weights, slopes, v, num_terms):
    """[v, P v, P^2 v, ..., P^num_terms v] for P = J_g (residual.jvp) or J_g^T (residual.vjp)."""
    powers = [v]
    for _ in range(num_terms):
        powers.append(product(weights, slopes, powers[-1]))
    return powers


def truncated_plain(weights, slopes, v, n_terms):
    """The truncated series written with autograd.numpy, autograd through all n_terms products:
    the reference for _truncated."""
    terms = _powers(jvp, weights, slopes, v, n_terms)[1:]
    return sum(c * np.sum(v * term, axis=1) for c, term in zip(coefficients(n_terms), terms))


def roulette_plain(weights, slopes, v, num_terms, p, n_exact):
    """The roulette estimate for a drawn num_terms = n_exact + R, with its Neumann gradient through
    one product v^T J w traced by autograd: the reference for _roulette."""
    plain_weights = [(getval(W), getval(b)) for W, b in weights]
    terms = _powers(jvp, plain_weights, [getval(s) for s in slopes], v, num_terms)
    scale = roulette_weights(n_exact, num_terms - n_exact, p)
    value = sum(c * k_scale * onp.sum(v * term, axis=1)
                for c, k_scale, term in zip(coefficients(num_terms), scale, terms[1:]))
    w = sum((-1) ** k * scale[k] * terms[k] for k in range(num_terms))            # ~ (I + J)^-1 v
    surrogate = np.sum(v * jvp(weights, slopes, w), axis=1)                       # v^T J w, traced
    return value + surrogate - getval(surrogate)


def _series(layer, params, x, plan):
    """(y, the estimate) from one pass of the block (residual_jvp). plan(weights, slopes, gradient)
    -> (value, V, A) runs inside that pass on its plain weights and slopes: value the estimate,
    and, if a gradient is wanted, directions V and weights A of the surrogate s = sum_k A[k] . J_g V[k]
    per point, whose gradient is the estimate's. Returned: value + s - (s's number)."""
    shapes, leaves = block_leaves(params)
    gradient = isbox(x) or any(isbox(leaf) for leaf in leaves)
    found = {}

    def directions(weights, slopes):
        found["value"], V, found["A"] = plan(weights, slopes, gradient)
        return V if gradient else onp.zeros((0,) + getval(x).shape)
    y, JV = residual_jvp(x, directions, layer.lipschitz, layer.activation, {}, shapes, *leaves)
    if not gradient:
        return y, found["value"]
    surrogate = np.sum(np.sum(found["A"] * JV, axis=2), axis=0)
    return y, found["value"] + surrogate - getval(surrogate)


def _truncated(layer, params, x, v, n_terms):
    """(y, truncated series at x): its value from plain products, its exact gradient from the
    surrogate sum_i a_i^T J w_i (module docstring)."""
    c = coefficients(n_terms)

    def plan(weights, slopes, gradient):
        b = _powers(jvp, weights, slopes, v, n_terms)                          # b_j = J^j v
        value = sum(c_k * onp.sum(v * b_k, axis=1) for c_k, b_k in zip(c, b[1:]))
        if not gradient:
            return value, None, None
        w = [sum(c[i + j] * b[j] for j in range(n_terms - i)) for i in range(n_terms)]
        return value, onp.stack(w), onp.stack(_powers(vjp, weights, slopes, v, n_terms - 1))   # a_i = (J^T)^i v
    return _series(layer, params, x, plan)


def _roulette(layer, params, x, v, rng, p, n_exact):
    """(y, roulette estimate at x) with the Neumann gradient v^T dJ w."""
    num_terms = n_exact + int(rng.geometric(p))
    scale = roulette_weights(n_exact, num_terms - n_exact, p)

    def plan(weights, slopes, gradient):
        b = _powers(jvp, weights, slopes, v, num_terms)
        value = sum(c_k * k_scale * onp.sum(v * b_k, axis=1)
                    for c_k, k_scale, b_k in zip(coefficients(num_terms), scale, b[1:]))
        if not gradient:
            return value, None, None
        w = sum((-1) ** k * scale[k] * b[k] for k in range(num_terms))        # ~ (I + J)^-1 v
        return value, w[None], v[None]
    return _series(layer, params, x, plan)


def _check(estimator, n_terms, p, n_exact):
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    check_count(n_terms, "n_terms")
    if isinstance(p, bool) or not isinstance(p, (float, int, onp.floating, onp.integer)) or not 0 < p < 1:
        raise ValueError(f"p (the geometric distribution's stopping probability) must be in (0, 1), got {p!r}")
    if isinstance(n_exact, bool) or not isinstance(n_exact, (int, onp.integer)) or n_exact < 0:
        raise ValueError(f"n_exact (terms always taken) must be an int >= 0, got {n_exact!r}")


def _estimate(layer, params, x, rng, estimator, n_terms, p, n_exact, v=None):
    """(y = x + g(x), the estimate of log det(I + J_g(x))), with probes v if given, else drawn."""
    if estimator == "exact":
        return layer.forward(params, x)
    v = probes(rng, *getval(x).shape) if v is None else v
    if estimator == "truncated":
        return _truncated(layer, params, x, v, n_terms)
    return _roulette(layer, params, x, v, rng, p, n_exact)


def estimate_log_det(layer, params, x, rng=None, estimator="roulette", n_terms=10, p=0.5, n_exact=2, v=None):
    """log det(I + J_g(x)) (N,) of an InvertibleResidual at x: "exact"; "truncated" after
    n_terms terms; or "roulette" with R ~ Geometric(p) terms after n_exact. rng: a Generator
    for the probes and R (not used by "exact", nor by "truncated" given v). v: probes (N, D) to
    use instead of drawing them (in 2D, the mean over v = (1, 1) and (1, -1) is the expectation
    over Rademacher probes, since v and -v give the same v^T A v)."""
    if not isinstance(layer, InvertibleResidual):
        raise TypeError(f"layer must be an InvertibleResidual, got {type(layer).__name__}")
    _check(estimator, n_terms, p, n_exact)
    x = check_points(x, params[0]["W"].shape[0])
    if v is not None:
        v = check_points(v, x.shape[1], "v")
        if v.shape != x.shape:
            raise ValueError(f"v must hold one probe per point, shape {x.shape}, got {v.shape}")
    if estimator == "roulette" or (estimator == "truncated" and v is None):
        check_rng(rng)
    return _estimate(layer, params, x, rng, estimator, n_terms, p, n_exact, v)[1]


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
            z, estimate = _estimate(layer.layer, layer_params, z, rng, estimator, n_terms, p, n_exact)
            total = total + estimate
        elif isinstance(layer, InvertibleResidual):
            z = layer.preimage(layer_params, z)
            total = total - _estimate(layer, layer_params, z, rng, estimator, n_terms, p, n_exact)[1]
        else:
            z, log_det_k = layer.inverse(layer_params, z)
            total = total + log_det_k
    return flow.base.log_prob(params["base"], z) + total
