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

    fit(flow_matching_loss(flow), params, flow_matching_batches(flow, params, data), rng, ...)

Shapes: x1, x0 (N, D); t (N,) (or (N, 1)); the loss is a scalar.

Copy with: flow_matching.py, validate.py (and an empty __init__.py).
"""
import autograd.numpy as np
import numpy as onp

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


def flow_matching_batches(flow, params, data):
    """sampler(rng, n) -> (x1, x0, t): x1 n rows of the data (a sampler data(rng, n), or an (M, D)
    array whose rows are drawn with replacement), x0 n draws of the flow's base with params["base"],
    t n draws of U[0, 1]."""
    if not callable(data):
        data = check_points(data, flow.dim, "data")
    base_params = params["base"]

    def sampler(rng, n):
        check_rng(rng)
        x1 = data(rng, n) if callable(data) else data[rng.integers(0, len(data), n)]
        return x1, flow.base.sample(base_params, rng, n), rng.uniform(0.0, 1.0, n)
    return sampler


def _checked(batch, dim):
    """batch = (x1, x0, t) with shapes (N, D), (N, D), (N,), or an error saying what was expected."""
    if not isinstance(batch, (tuple, list)) or len(batch) != 3:
        raise TypeError("batch must be a tuple (x1, x0, t): data (N, D), base draws (N, D), times (N,), "
                        f"as flow_matching_batches draws it; got {type(batch).__name__}")
    x1, x0 = check_points(batch[0], dim, "x1"), check_points(batch[1], dim, "x0")
    t = onp.asarray(batch[2], dtype=float)
    if t.shape == (len(x1), 1):                     # a column, as fit's tuple data keeps arrays 2D
        t = t[:, 0]
    if x0.shape != x1.shape or t.shape != (len(x1),):
        raise ValueError(f"x1, x0 and t must have shapes (N, {dim}), (N, {dim}) and (N,) (or (N, 1)), got "
                         f"{onp.shape(x1)}, {onp.shape(x0)} and {t.shape}")
    return x1, x0, t
