"""Conditional flow matching (Lipman et al. 2023; rectified flow, Liu et al. 2023): a continuous
flow's vector field trained by regression, without solving the ODE.

Pair a base draw x0 with a data point x1 and a time t ~ U[0, 1], and move along the straight line
between them, x_t = (1 - t) x0 + t x1, at the constant velocity x1 - x0. The loss

    loss = mean_n || v(x_t, t) - (x1 - x0) ||^2

is minimised over all fields by the conditional mean u(x, t) = E[x1 - x0 | x_t = x], and u's flow
carries the base at t = 0 to the data at t = 1 (it moves the distribution of x_t, the straight
lines' mixture, exactly as the lines do). The loss never reaches zero: lines cross, so one (x, t)
asks for several velocities and the floor is their variance, E || x1 - x0 - u(x_t, t) ||^2.
Example: data = base = N(0, I) drawn independently gives u(x, t) = (2t - 1) x / ((1 - t)^2 + t^2),
not 0 (tests/test_flow_matching.py checks that minimum).

Every draw is made outside the loss, so loss(params, batch) is a plain function, as fit needs:
flow_matching_batches builds the sampler that draws batch = (x1, x0, t). The base is not trained
(x0 is drawn from params["base"] as given).

That floor is noise in every gradient. average=True removes most of it (the "stable target field"
of Xu et al. 2023): the line through x_t could have come from any data point x1_j of the batch,
starting at x0_j = (x_t - t x1_j) / (1 - t), and how likely it is to have come from x1_j is
proportional to the base's density at that start, so (line_weights computes the w_j)

    target = sum_j w_j (x1_j - x0_j),   w_j = p_base(x0_j) / sum_k p_base(x0_k)

(the factor (1 - t)^-D of the change of variables is the same for every j). That is E[x1 - x0 | x_t]
with the data replaced by the batch: biased by O(1 / batch size), but far less noisy. Since
x1_j - x0_j = (x1_j - x_t) / (1 - t), the same weights over many data points give the ideal field
itself, u(x, t) = (sum_j w_j x1_j - x) / (1 - t) (chapter 14 draws it). The sampler
then returns the pair (x1', x0') = (x_t + (1 - t) target, x_t - t target), which has the same x_t and
velocity x1' - x0' = target, so the loss is unchanged.

    fit(flow_matching_loss(flow), params, flow_matching_batches(flow, params, data), rng, ...)

Shapes: x1, x0 (N, D); t (N,) (or (N, 1)); the loss is a scalar.

Copy with: flow_matching.py, distributions.py, validate.py (and an empty __init__.py).
"""
import autograd.numpy as np
import numpy as onp

from .distributions import DiagNormal, StandardNormal
from .validate import check_points, check_rng


def flow_matching_loss(flow):
    """loss(params, batch) = mean ||v(x_t, t) - (x1 - x0)||^2, batch = (x1, x0, t). flow: anything with
    velocity(params, x, t) and dim (ContinuousFlow)."""
    if not callable(getattr(flow, "velocity", None)) or not hasattr(flow, "dim"):
        raise TypeError(f"flow must have velocity(params, x, t) and dim, like ContinuousFlow; "
                        f"got {type(flow).__name__}")

    def loss(params, batch):
        x1, x0, t = _checked(batch, flow.dim)
        x_t = (1 - t)[:, None] * x0 + t[:, None] * x1
        return np.mean(np.sum((flow.velocity(params, x_t, t) - (x1 - x0)) ** 2, axis=1))
    return loss


def flow_matching_batches(flow, params, data, average=False):
    """sampler(rng, n) -> (x1, x0, t): x1 n rows of the data (a sampler data(rng, n), or an (M, D)
    array whose rows are drawn with replacement), x0 n draws of the flow's base with params["base"],
    t n draws of U[0, 1]. average=True: each pair's velocity averaged over the batch (see above)."""
    if not callable(data):
        data = check_points(data, flow.dim, "data")
    if not isinstance(average, bool):
        raise TypeError(f"average must be True or False, got {average!r}")
    base_params = params["base"]

    def sampler(rng, n):
        check_rng(rng)
        x1 = data(rng, n) if callable(data) else data[rng.integers(0, len(data), n)]
        x0, t = flow.base.sample(base_params, rng, n), rng.uniform(0.0, 1.0, n)
        return averaged_pair(flow.base, base_params, x1, x0, t) if average else (x1, x0, t)
    return sampler


def averaged_pair(base, base_params, x1, x0, t):
    """(x1', x0', t): x_t kept, x1' - x0' = sum_j w_j (x1_j - x0_j), the velocity averaged over the
    batch's data points, each weighted by the base density of the start its line through x_t needs."""
    s = (1 - t)[:, None]                                              # 1 - t >= 2^-53: U[0, 1) never gives 1
    x_t = s * x0 + t[:, None] * x1
    w = line_weights(base, base_params, x_t, t, x1)
    # x1_j - x0_j = (x1 - x0) + (x1_j - x1) / (1 - t), relative to the point's own pair: as t -> 1 the
    # other weights vanish faster than 1 / (1 - t) grows, and the own velocity stays exact.
    target = (x1 - x0) + (w @ x1 - x1) / s
    return x_t + s * target, x_t - t[:, None] * target, t


def line_weights(base, base_params, x_t, t, x1):
    """w (N, M), rows summing to 1: w[n, j] = p_base(x0_nj) / sum_k p_base(x0_nk), with
    x0_nj = (x_t[n] - t_n x1[j]) / (1 - t_n) the start from which the straight line to data point
    x1[j] passes through x_t[n] at time t_n. x_t (N, D); t a number or (N,), each in [0, 1);
    x1 (M, D). base: StandardNormal or DiagNormal (z = loc + scale eps) with base_params."""
    if not isinstance(base, (StandardNormal, DiagNormal)):
        raise TypeError("line_weights (and so average=True) needs a Gaussian base (StandardNormal, DiagNormal), "
                        f"got {type(base).__name__}")
    loc = onp.asarray(base.from_noise(base_params, onp.zeros(x1.shape[1])))
    scale = onp.asarray(base.from_noise(base_params, onp.ones(x1.shape[1]))) - loc
    t = onp.broadcast_to(onp.asarray(t, dtype=float), (len(x_t),))[:, None]
    # log p_base(x0_j) = -|(x0_j - loc) / scale|^2 / 2 + const, and (x0_j - loc) / scale = (a - t b_j) / (1 - t)
    # with a = (x_t - (1 - t) loc) / scale, b_j = x1_j / scale. |a|^2 is the same for every j: dropped, so
    # log w_j = c (a . b_j - t |b_j|^2 / 2) + const with c = t / (1 - t)^2 (c folded in before the (N, M) product).
    a, b = (x_t - (1 - t) * loc) / scale, x1 / scale
    c = t / (1 - t) ** 2
    log_w = (c * a) @ b.T - (0.5 * t * c) * onp.sum(b ** 2, axis=1)
    log_w -= log_w.max(axis=1, keepdims=True)          # the largest weight is exp(0): no overflow
    w = onp.exp(log_w, out=log_w)
    w /= w.sum(axis=1, keepdims=True)
    return w


def _checked(batch, dim):
    """batch = (x1, x0, t) with shapes (N, D), (N, D), (N,) and t in [0, 1], or an error saying what was expected."""
    if not isinstance(batch, (tuple, list)) or len(batch) != 3:
        got = (f"a {type(batch).__name__} of {len(batch)} items" if isinstance(batch, (tuple, list))
               else type(batch).__name__)
        raise TypeError("batch must be a tuple (x1, x0, t) of 3 items: data points x1 (N, D), base draws x0 (N, D) "
                        f"and times t (N,) in [0, 1], as flow_matching_batches draws it; got {got}")
    x1, x0 = check_points(batch[0], dim, "x1"), check_points(batch[1], dim, "x0")
    t = onp.asarray(batch[2], dtype=float)
    if t.shape == (len(x1), 1):                     # a column, as fit's tuple data keeps arrays 2D
        t = t[:, 0]
    if x0.shape != x1.shape or t.shape != (len(x1),):
        raise ValueError(f"x1, x0 and t must have shapes (N, {dim}), (N, {dim}) and (N,) (or (N, 1)), got "
                         f"{onp.shape(x1)}, {onp.shape(x0)} and {t.shape}")
    if not onp.all((t >= 0) & (t <= 1)):           # also refuses NaN
        outside = t[~((t >= 0) & (t <= 1))]
        raise ValueError(f"t must be times in [0, 1] (the straight line runs from x0 at t = 0 to x1 at t = 1), "
                         f"got {len(outside)} of {len(t)} outside, e.g. {outside[0]!r}")
    return x1, x0, t
