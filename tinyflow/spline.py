"""Monotone rational-quadratic spline (Durkan, Bekasov, Murray & Papamakarios 2019, "Neural
spline flows"): K bins on [-B, B], the identity outside.

One coordinate's spline has 3K - 1 unconstrained parameters theta = [theta_w, theta_h, theta_d]
(K, K and K - 1 of them, in that order), which give the knots (x_k, y_k), k = 0..K, and the
derivatives d_k at the knots:

    widths   = m_bin + (1 - K m_bin) softmax(theta_w),   x_k = -B + 2B (w_0 + ... + w_{k-1})
    heights  = m_bin + (1 - K m_bin) softmax(theta_h),   y_k likewise        (x_0 = y_0 = -B, x_K = y_K = B)
    d_k      = m_d + softplus(theta_d + c),  c = log(e^(1 - m_d) - 1)    at the K - 1 interior knots
    d_0 = d_K = 1                                        so the tails join with a continuous slope

In bin k, with w = x_{k+1} - x_k, h = y_{k+1} - y_k, s = h / w, xi = (x - x_k) / w in [0, 1]:

    y     = y_k + h (s xi^2 + d_k xi (1 - xi)) / (s + delta xi (1 - xi)),  delta = d_{k+1} + d_k - 2s
    dy/dx = s^2 (d_{k+1} xi^2 + 2 s xi (1 - xi) + d_k (1 - xi)^2) / (s + delta xi (1 - xi))^2

and the inverse solves a quadratic a xi^2 + b xi + c = 0 for xi in [0, 1], in bin k of the y-knots:

    a = h (s - d_k) + (y - y_k) delta,   b = h d_k - (y - y_k) delta,   c = -s (y - y_k)

Its textbook root 2c / (-b - sqrt(b^2 - 4ac)) loses every digit when y sits a hair from a knot
whose derivative is far below s (both -b - sqrt(...) and b^2 - 4ac cancel: nflows and zuko, which
use it, are off by up to 7e-4 in the log-det there). Multiplied out with dy = y - y_k,
dy1 = y_{k+1} - y and e = d_k dy1 - d_k1 dy, the same root is

    b^2 - 4ac = e^2 + 4 s^2 dy dy1,   q = e + sqrt(b^2 - 4ac)   (= 4 s^2 dy dy1 / (sqrt(...) - e) if e < 0)
    xi = 2 s dy / (q + 2 s dy),       1 - xi = q / (q + 2 s dy)

where every sum adds terms of one sign: xi and 1 - xi are each accurate to a few ulps relative.
The log-det is then computed from xi and 1 - xi, never from 1 - xi formed by subtraction, with
delta's terms regrouped so that they too add up: s + delta t = s (xi^2 + (1 - xi)^2) + (d_k + d_k1) t.

Minimums m_bin = m_d = 1e-3: a bin of width 0 would make s = h / w infinite, and a derivative of
0 would make the map flat at a knot (not invertible, log-det -inf). The floors hold at the knots
only: between two knots the slope of a spline with extreme logits falls much lower (5.5e-8 has
been measured), which is why the inverse is written so that nothing cancels.
The shift c makes theta = 0 the identity map (equal bins, every d_k = 1), so a conditioner whose
last layer starts at zero starts the flow at the identity, as the affine layers do.

rational_quadratic_plain is the whole map written with autograd.numpy, to be read. The layers
call spline_backprop.rational_quadratic, the same map as one autograd primitive with its
backprop written out (tested against this one): about 90 autograd nodes fewer per call.
Autograd traps the plain version avoids: np.where differentiates the branch it does not take, so
points in the tails are replaced by 0 before the spline maths (a sqrt or log of a tail value
would give a NaN gradient); the bin is picked with a one-hot sum (np.take_along_axis has no
gradient); the end knots are pinned with concatenate (no in-place assignment under autograd).

Shapes: x, y (N, D); theta (N, D, 3K - 1), or (D, 3K - 1) for one spline per dimension.

Copy with: spline.py, spline_backprop.py, validate.py (and an empty __init__.py).
"""
import autograd.numpy as np
from autograd.tracer import getval

from .spline_backprop import MIN_BIN, MIN_DERIVATIVE, SHIFT, rational_quadratic
from .validate import check_count, check_dim, check_points, check_positive


def knots(theta, bound):
    """theta (..., 3K - 1) -> knot positions x_k, y_k and derivatives d_k, each (..., K + 1)."""
    num_bins = (theta.shape[-1] + 1) // 3

    def positions(logits):
        e = np.exp(logits - np.max(logits, axis=-1, keepdims=True))
        sizes = MIN_BIN + (1 - num_bins * MIN_BIN) * e / np.sum(e, axis=-1, keepdims=True)
        ends = np.ones(sizes.shape[:-1] + (1,))                  # pinned: no rounding at +-B
        return np.concatenate([-bound * ends, -bound + 2 * bound * np.cumsum(sizes[..., :-1], axis=-1),
                               bound * ends], axis=-1)
    ones = np.ones(theta.shape[:-1] + (1,))
    d = MIN_DERIVATIVE + np.logaddexp(0.0, theta[..., 2 * num_bins:] + SHIFT)   # softplus, no overflow
    return (positions(theta[..., :num_bins]), positions(theta[..., num_bins:2 * num_bins]),
            np.concatenate([ones, d, ones], axis=-1))


def pick(one_hot, a):
    """a's value in the chosen bin: (N, D, K) one-hot, a (..., K [+1]) -> (N, D); with K + 1
    columns, the bin's left end."""
    return np.sum(one_hot * a[..., :one_hot.shape[-1]], axis=-1)


def rational_quadratic_plain(v, theta, bound, inverse=False):
    """(y = g(x), log g'(x)) for v = x, or with inverse=True (x = g^-1(y), -log g'(x)) for v = y:
    both (N, D). What spline_backprop.rational_quadratic computes, written out with autograd.numpy."""
    xk, yk, d = knots(theta, bound)
    inside = (getval(v) >= -bound) & (getval(v) <= bound)
    v_in = np.where(inside, v, 0.0)                     # tails sanitised: see the module docstring
    search = getval(yk if inverse else xk)
    k = np.sum(getval(v_in)[..., None] >= search[..., 1:-1], axis=-1)        # bin: 0..K-1
    one_hot = (k[..., None] == np.arange(search.shape[-1] - 1)).astype(float)
    x_k, y_k, d_k = pick(one_hot, xk), pick(one_hot, yk), pick(one_hot, d)
    x_k1, y_k1, d_k1 = pick(one_hot, xk[..., 1:]), pick(one_hot, yk[..., 1:]), pick(one_hot, d[..., 1:])
    w, h = x_k1 - x_k, y_k1 - y_k
    s = h / w
    if inverse:
        dy, dy1 = v_in - y_k, y_k1 - v_in
        e = d_k * dy1 - d_k1 * dy
        r = np.sqrt(e ** 2 + 4 * s ** 2 * dy * dy1)
        positive = getval(e) >= 0           # the other branch's denominator made safe: where's trap
        q = np.where(positive, e + r, 4 * s ** 2 * dy * dy1 / np.where(positive, 1.0, r - e))
        xi, xi1 = 2 * s * dy / (q + 2 * s * dy), q / (q + 2 * s * dy)
    else:
        xi, xi1 = (v_in - x_k) / w, (x_k1 - v_in) / w
    t = xi * xi1
    denominator = s * (xi ** 2 + xi1 ** 2) + (d_k + d_k1) * t              # s + delta t, regrouped
    log_slope = 2 * np.log(s) + np.log(d_k1 * xi ** 2 + 2 * s * t + d_k * xi1 ** 2) - 2 * np.log(denominator)
    if inverse:         # x from the nearer end of the bin
        out, log_det = np.where(getval(xi) <= 0.5, x_k + w * xi, x_k1 - w * xi1), -log_slope
    else:
        out, log_det = y_k + h * (s * xi ** 2 + d_k * t) / denominator, log_slope
    return np.where(inside, out, v), np.where(inside, log_det, 0.0)


def check_num_bins(num_bins):
    return check_count(num_bins, "num_bins")


class RationalQuadraticSpline:
    """An elementwise spline with its own knots in each dimension.
    params: {"theta": (D, 3K - 1)}, zeros at init (the identity); x, y (N, D)."""

    def __init__(self, num_bins=8, bound=3.0):
        self.num_bins, self.bound = check_num_bins(num_bins), check_positive(bound, "bound")

    def init(self, rng, dim):
        return {"theta": np.zeros((check_dim(dim), 3 * self.num_bins - 1))}

    def forward(self, params, x):
        x = check_points(x, params["theta"].shape[0])
        y, log_det = rational_quadratic(x, params["theta"], self.bound, False)
        return y, np.sum(log_det, axis=1)

    def inverse(self, params, y):
        y = check_points(y, params["theta"].shape[0], "y")
        x, log_det = rational_quadratic(y, params["theta"], self.bound, True)
        return x, np.sum(log_det, axis=1)
