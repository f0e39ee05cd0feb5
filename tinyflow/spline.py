"""Monotone rational-quadratic spline (Durkan, Bekasov, Murray & Papamakarios 2019, "Neural
spline flows"): K bins on [-B, B], the identity outside.

Knots (x_k, y_k), k = 0..K, and derivatives d_k at the knots come from unconstrained theta:

    widths   = m_bin + (1 - K m_bin) softmax(theta_w),   x_k = -B + 2B cumsum(widths)   (x_0 = -B, x_K = B)
    heights  = m_bin + (1 - K m_bin) softmax(theta_h),   y_k likewise
    d_k      = m_d + softplus(theta_d + c),  c = log(e^(1 - m_d) - 1)    for the K-1 interior knots
    d_0 = d_K = 1                                        so the tails join with a continuous slope

In bin k, with w = x_{k+1} - x_k, h = y_{k+1} - y_k, s = h / w, xi = (x - x_k) / w in [0, 1]:

    y     = y_k + h (s xi^2 + d_k xi (1 - xi)) / (s + delta xi (1 - xi)),  delta = d_{k+1} + d_k - 2s
    dy/dx = s^2 (d_{k+1} xi^2 + 2 s xi (1 - xi) + d_k (1 - xi)^2) / (s + delta xi (1 - xi))^2

and the inverse solves a quadratic a xi^2 + b xi + c = 0 for xi in [0, 1], in bin k of the y-knots:

    a = h (s - d_k) + (y - y_k) delta,   b = h d_k - (y - y_k) delta,   c = -s (y - y_k)
    xi = 2c / (-b - sqrt(b^2 - 4ac))     (the root in [0, 1], written so nothing cancels)

Minimums m_bin = m_d = 1e-3: a bin of width 0 would make s = h / w infinite, and a derivative of
0 would make the map flat at a knot (not invertible, log-det -inf); these floors keep every slope
in about [1e-3, 1e3] without restricting what a trained spline can reach in practice.
The shift c makes theta = 0 the identity map (equal bins, every d_k = 1), so a conditioner whose
last layer starts at zero starts the flow at the identity, as the affine layers do.

Autograd: np.where differentiates the branch it does not take, so points in the tails are
replaced by 0 before the spline maths (a sqrt or log of a tail value would give a NaN gradient);
the bin is picked with a one-hot sum, which has a gradient (np.take_along_axis has none).

Shapes: x, y (N, D); theta_w, theta_h (N, D, K) or (D, K); theta_d (N, D, K-1) or (D, K-1).

Copy with: spline.py, validate.py (and an empty __init__.py).
"""
import math

import autograd.numpy as np
from autograd.tracer import getval

from .validate import check_dim, check_points, check_positive

MIN_BIN = 1e-3
MIN_DERIVATIVE = 1e-3
SHIFT = math.log(math.expm1(1 - MIN_DERIVATIVE))      # softplus(SHIFT) + MIN_DERIVATIVE = 1


def softplus(a):
    return np.logaddexp(0.0, a)                         # log(1 + e^a) without overflow


def knot_positions(theta, bound):
    """-B, ..., B: the K + 1 knot positions from K unconstrained bin sizes (..., K) -> (..., K + 1)."""
    num_bins = theta.shape[-1]
    e = np.exp(theta - np.max(theta, axis=-1, keepdims=True))
    sizes = MIN_BIN + (1 - num_bins * MIN_BIN) * e / np.sum(e, axis=-1, keepdims=True)
    inner = -bound + 2 * bound * np.cumsum(sizes[..., :-1], axis=-1)
    ends = np.ones(inner.shape[:-1] + (1,))             # pin both ends exactly: no rounding at +-B
    return np.concatenate([-bound * ends, inner, bound * ends], axis=-1)


def knot_derivatives(theta_d):
    """(..., K - 1) unconstrained -> (..., K + 1) positive derivatives, 1 at both ends."""
    ones = np.ones(theta_d.shape[:-1] + (1,))
    return np.concatenate([ones, MIN_DERIVATIVE + softplus(theta_d + SHIFT), ones], axis=-1)


def in_bin(knots, v):
    """One-hot (N, D, K) of the bin of the knots (N, D, K + 1) that holds v (N, D)."""
    knots, v = getval(knots), getval(v)
    k = np.sum(v[..., None] >= knots[..., 1:-1], axis=-1)        # interior knots at or below v: 0..K-1
    return (k[..., None] == np.arange(knots.shape[-1] - 1)).astype(float)


def pick(one_hot, a):
    """a's value at the chosen bin: (N, D, K [+1]) -> (N, D); with K + 1 columns, the bin's left end."""
    return np.sum(one_hot * a[..., :one_hot.shape[-1]], axis=-1)


def rational_quadratic(x, theta_w, theta_h, theta_d, bound, inverse=False):
    """y = g(x) and log|dy/dx| elementwise, both (N, D); with inverse=True, x = g^-1(y) and log|dx/dy|."""
    xk, yk, d = knot_positions(theta_w, bound), knot_positions(theta_h, bound), knot_derivatives(theta_d)
    inside = (getval(x) >= -bound) & (getval(x) <= bound)
    v = np.where(inside, x, 0.0)                        # tails sanitised: see the module docstring
    one_hot = in_bin(yk if inverse else xk, v)
    x_k, y_k, d_k = pick(one_hot, xk), pick(one_hot, yk), pick(one_hot, d)
    w, h, d_k1 = pick(one_hot, xk[..., 1:]) - x_k, pick(one_hot, yk[..., 1:]) - y_k, pick(one_hot, d[..., 1:])
    s = h / w
    delta = d_k1 + d_k - 2 * s
    if inverse:
        dy = v - y_k
        a, b, c = h * (s - d_k) + dy * delta, h * d_k - dy * delta, -s * dy
        xi = np.clip(2 * c / (-b - np.sqrt(np.maximum(b ** 2 - 4 * a * c, 0.0))), 0.0, 1.0)
    else:
        xi = (v - x_k) / w
    xi1 = xi * (1 - xi)
    denominator = s + delta * xi1
    log_slope = (2 * np.log(s) + np.log(d_k1 * xi ** 2 + 2 * s * xi1 + d_k * (1 - xi) ** 2)
                 - 2 * np.log(denominator))
    if inverse:
        out, log_det = x_k + xi * w, -log_slope
    else:
        out, log_det = y_k + h * (s * xi ** 2 + d_k * xi1) / denominator, log_slope
    return np.where(inside, out, x), np.where(inside, log_det, 0.0)


class RationalQuadraticSpline:
    """An elementwise spline with its own knots per dimension.
    params: {"theta_w": (D, K), "theta_h": (D, K), "theta_d": (D, K - 1)}; zeros = the identity."""

    def __init__(self, num_bins=8, bound=3.0):
        if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 1:
            raise ValueError(f"num_bins must be a positive integer, got {num_bins!r}")
        self.num_bins, self.bound = num_bins, check_positive(bound, "bound")

    def init(self, rng, dim):
        dim, k = check_dim(dim), self.num_bins
        return {"theta_w": np.zeros((dim, k)), "theta_h": np.zeros((dim, k)), "theta_d": np.zeros((dim, k - 1))}

    def forward(self, params, x):
        x = check_points(x, params["theta_w"].shape[0])
        y, log_det = rational_quadratic(x, params["theta_w"], params["theta_h"], params["theta_d"], self.bound)
        return y, np.sum(log_det, axis=1)

    def inverse(self, params, y):
        y = check_points(y, params["theta_w"].shape[0], "y")
        x, log_det = rational_quadratic(y, params["theta_w"], params["theta_h"], params["theta_d"], self.bound,
                                        inverse=True)
        return x, np.sum(log_det, axis=1)
