"""The rational-quadratic spline of spline.py as one autograd primitive, with its backprop written out.

    rational_quadratic(v, theta, bound, inverse) -> (out, log_det), both (N, D)

computes what spline.rational_quadratic_plain computes (the readable expression, and the reference
the tests hold this one to): out = g(v) and log_det = log g'(v), or with inverse=True
out = g^-1(v) and log_det = -log g'(out); the identity (log_det 0) outside [-B, B]. theta
(N, D, 3K - 1), or (D, 3K - 1) for every point. Written with autograd.numpy the map records
about a hundred nodes per call; as a primitive it records one, which keeps a spline coupling's
training step near an affine one's (chapter 8 explains why that matters).

In bin k (spline.py gives the map), with xi = (x - x_k) / w, xi1 = 1 - xi, t = xi xi1, s = h / w:

    y = y_k + h numer / denom,        numer = s xi^2 + d_k t
    log g' = 2 log s + log slope_numer - 2 log denom,
                                      slope_numer = d_k1 xi^2 + 2 s t + d_k xi1^2
                                      denom = s (xi^2 + xi1^2) + (d_k + d_k1) t

Backprop. y and log g' are functions of (xi, s, d_k, d_k1, h); `partials` gives their derivatives.
    forward:  xi = (x - x_k) / w, so dxi/dx = 1/w, dxi/dx_k = -1/w, dxi/dw = -xi/w.
    inverse:  xi solves y_k + h numer / denom = y; by the implicit function theorem
              dxi = (dy - dy_k - y_h dh - y_s ds - y_dk dd_k - y_dk1 dd_k1) / y_xi,
              with y_xi = dy/dxi = h s slope_numer / denom^2, and x = x_k + w xi.
Then s = h / w, w = x_{k+1} - x_k, h = y_{k+1} - y_k put each bin's gradient on its two knots; the
knots are p @ C + offset (C = 2B (1 - K m_bin) T, T[i, j] = 1 for i < j: a cumulative sum as one
matrix product), so the softmax outputs p get (gradient @ C^T); then the softmax
(dtheta = p (g - sum p g)) and the softplus (whose derivative is the sigmoid). Every array is
flattened to rows, one row per (point, coordinate), and the matrix products are taken on 2D
arrays: numpy runs a 3D (M, 2, K) @ (K, K + 1) as M small products, one BLAS call as 2D.

Saved, not recomputed: the backward pass reads the bin's values (the Bin rows below) from the
forward pass instead of finding the bin and solving the quadratic again, because that search and
solve are about a third of a spline layer's training cost and the rows are small (14 per value).
They sit in one buffer after out and log_det, and the primitive returns only the view of its first
two rows: the backward pass reads the rest through the view's .base (numpy's reference to the
buffer), and autograd, which builds a zero array the shape of the output to route the gradients
of out and log_det, builds one 2 rows tall instead of 2 + 14 + 2K.
"""
import math
import warnings
from functools import lru_cache
from typing import NamedTuple

import numpy as np
from autograd.extend import defvjp_argnums, primitive
from autograd.tracer import getval, isbox

MIN_BIN = 1e-3
MIN_DERIVATIVE = 1e-3
SHIFT = math.log(math.expm1(1 - MIN_DERIVATIVE))      # softplus(SHIFT) + MIN_DERIVATIVE = 1


@lru_cache(maxsize=None)
def cumulative_matrix(num_bins, bound):
    """C (K, K + 1) with knots = p @ C + offset: C[i, j] = 2B (1 - K m_bin) for i < j, else 0.
    Built once per (K, B) and shared, so read-only."""
    C = 2 * bound * (1 - num_bins * MIN_BIN) * (np.arange(num_bins)[:, None] < np.arange(num_bins + 1))
    C.flags.writeable = False
    return C


@lru_cache(maxsize=None)
def knot_offset(num_bins, bound):
    """offset_j = -B + 2B j m_bin (K + 1,), the part of knot j that does not depend on p; read-only."""
    offset = -bound + 2 * bound * MIN_BIN * np.arange(num_bins + 1)
    offset.flags.writeable = False
    return offset


def knot_rows(theta, bound):
    """theta rows (M, 3K - 1) -> knots (M, 2, K + 1) (x_k then y_k), derivatives d (M, K + 1), and
    the two softmaxes p (M, 2, K), from which knots = p @ C + offset."""
    num_bins = (theta.shape[1] + 1) // 3
    logits = theta[:, :2 * num_bins].reshape(-1, num_bins)    # one row per softmax (2 per theta row)
    top = logits[:, 0].copy()                     # the max of each softmax's logits, so no exp overflows;
    for j in range(1, num_bins):                  # a loop over the K columns, because numpy's max along
        np.maximum(top, logits[:, j], out=top)    # a short last axis is several times slower here
    e = np.exp(logits - top[:, None])
    p = (e / (e @ np.ones(num_bins))[:, None]).reshape(-1, 2, num_bins)   # softmax
    # knot j = -B + 2B (j m_bin + (1 - K m_bin) (p_0 + ... + p_{j-1})): a cumulative sum as p @ C
    knots = (p.reshape(-1, num_bins) @ cumulative_matrix(num_bins, bound)).reshape(-1, 2, num_bins + 1)
    knots += knot_offset(num_bins, bound)
    knots[:, :, -1] = bound                       # pinned: no rounding at +-B
    d = np.ones((len(theta), num_bins + 1))
    a = theta[:, 2 * num_bins:] + SHIFT           # softplus(a) = max(a, 0) + log1p(exp(-|a|)), no overflow,
    tail = np.abs(a)                              # computed in place (out=): each new buffer costs time
    np.negative(tail, out=tail)
    np.log1p(np.exp(tail, out=tail), out=tail)
    softplus = np.maximum(a, 0.0, out=d[:, 1:-1])
    softplus += MIN_DERIVATIVE
    softplus += tail
    return knots, d, p


def theta_rows(theta, shape):
    """theta (N, D, 3K - 1), or (D, 3K - 1) for every point, as rows (N D, 3K - 1)."""
    if theta.shape[:-1] != shape:
        theta = np.broadcast_to(theta, shape + theta.shape[-1:])
    return theta.reshape(-1, theta.shape[-1])


class Bin(NamedTuple):
    """The spline around each value, one entry per (point, coordinate): all (M,) arrays, M = N D.
    These are the rows the forward pass saves for the backward pass."""
    k: np.ndarray             # the bin the value falls in, 0..K-1 (stored as float in the saved rows)
    inside: np.ndarray        # |v| <= B; outside the map is the identity
    x_k: np.ndarray           # the bin's left knot (x_k, y_k) ...
    y_k: np.ndarray
    w: np.ndarray             # ... its width and height, and s = h / w
    h: np.ndarray
    s: np.ndarray
    d_k: np.ndarray           # the derivatives at its left and right knots
    d_k1: np.ndarray
    xi: np.ndarray            # the position in the bin, (x - x_k) / w, and 1 - xi, each without cancellation
    xi1: np.ndarray
    numer: np.ndarray         # s xi^2 + d_k t:                  y = y_k + h numer / denom
    denom: np.ndarray         # s (xi^2 + xi1^2) + (d_k + d_k1) t
    slope_numer: np.ndarray   # d_k1 xi^2 + 2 s t + d_k xi1^2:   g' = s^2 slope_numer / denom^2


def find_bins(v, knots, d, bound, inverse):
    """The Bin of each value v (M,) given the knots and derivatives of its row."""
    inside = (v >= -bound) & (v <= bound)
    v = np.where(inside, v, 0.0)                                               # tails: any bin will do
    k = (v[:, None] >= knots[:, int(inverse), 1:-1]).sum(axis=1)               # bin: the number of interior knots <= v
    x_k, y_k, x_k1, y_k1 = knot_values(knots, k)
    w, h, d_k, d_k1 = x_k1 - x_k, y_k1 - y_k, *knot_values(d, k)
    s = h / w
    if inverse:
        xi, xi1 = solve_xi(v - y_k, y_k1 - v, s, d_k, d_k1)
    else:
        xi, xi1 = (v - x_k) / w, (x_k1 - v) / w
    t, xi_2, xi1_2 = xi * xi1, xi ** 2, xi1 ** 2
    return Bin(k, inside, x_k, y_k, w, h, s, d_k, d_k1, xi, xi1, numer=s * xi_2 + d_k * t,
               denom=s * (xi_2 + xi1_2) + (d_k + d_k1) * t, slope_numer=d_k1 * xi_2 + 2 * s * t + d_k * xi1_2)


def flat_index(a, k):
    """The position in a.ravel() of a[m, 0, k_m] (or a[m, k_m]) for each row m of a C-contiguous a:
    indexing the flat array with it is several times faster than a[rows, :, k]."""
    return np.arange(len(k)) * (a.size // len(a)) + k


def knot_values(a, k):
    """a (M, 2, K + 1) -> x_k, y_k, x_k1, y_k1 of each row's bin k; a (M, K + 1) -> a_k, a_k1."""
    flat, i = a.ravel(), flat_index(a, k)
    if a.ndim == 2:
        return flat[i], flat[i + 1]
    return flat[i], flat[i + a.shape[2]], flat[i + 1], flat[i + a.shape[2] + 1]


def solve_xi(dy, dy1, s, d_k, d_k1):
    """(xi, 1 - xi) with y_k + h numer / denom = y, given dy = y - y_k >= 0 and dy1 = y_k1 - y >= 0.

    Multiplied out, the bin's equation is the quadratic a xi^2 + b xi + c = 0 of spline.py, whose
    coefficients and discriminant, in terms of e = d_k dy1 - d_k1 dy, are
        b = e + 2 s dy,   c = -s dy,   b^2 - 4ac = e^2 + 4 s^2 dy dy1.
    With r = sqrt(b^2 - 4ac) and q = e + r the root in [0, 1] is
        xi = 2 s dy / (q + 2 s dy),   1 - xi = q / (q + 2 s dy),
    and q = e + r is a sum of non-negative terms when e >= 0 and equals 4 s^2 dy dy1 / (r - e)
    when e < 0: nothing cancels anywhere, so xi and 1 - xi are each accurate to a few ulps
    relative, even a hair from a knot whose derivative is far below the bin's slope s (where the
    textbook -b - r loses every digit)."""
    e = d_k * dy1 - d_k1 * dy
    r = np.sqrt(e ** 2 + 4 * s ** 2 * dy * dy1)
    q = np.where(e >= 0, e + r, 4 * s ** 2 * dy * dy1 / np.where(e >= 0, 1.0, r - e))
    total = q + 2 * s * dy                          # > 0: dy and dy1 are never both 0 (h > 0)
    return 2 * s * dy / total, q / total


def log_slope(b):
    """log g' in the bin: 2 log s + log slope_numer - 2 log denom."""
    return 2 * np.log(b.s) + np.log(b.slope_numer) - 2 * np.log(b.denom)


@primitive
def rq_stacked(v, theta, bound, inverse):
    """(2, N, D): out and log_det, a view of a (2 + 14 + 2K, N D) buffer whose other rows are the Bin
    rows and the softmaxes p, saved for the backward pass (an autograd primitive returns one array;
    its .base plays the role of PyTorch's save_for_backward)."""
    knots, d, p = knot_rows(theta_rows(theta, v.shape), bound)
    b = find_bins(v.ravel(), knots, d, bound, inverse)
    if inverse:         # x from the nearer end of the bin: x_k + w xi or x_k1 - w (1 - xi)
        out, log_det = np.where(b.xi <= 0.5, b.x_k + b.w * b.xi, (b.x_k + b.w) - b.w * b.xi1), -log_slope(b)
    else:
        out, log_det = b.y_k + b.h * b.numer / b.denom, log_slope(b)
    rows = [np.where(b.inside, out, v.ravel()), np.where(b.inside, log_det, 0.0), *b]
    stacked = np.empty((len(rows) + p[0].size, len(b.k)))
    np.stack(rows, out=stacked[:len(rows)])          # written in place: one copy of the rows, not two
    stacked[len(rows):] = p.reshape(len(b.k), -1).T
    return stacked[:2].reshape((2,) + v.shape)


def rational_quadratic(v, theta, bound, inverse):
    if isbox(theta):                # training: the spline cannot shape what lies outside its bound
        outside = share_outside(getval(v), bound)
        if outside > 0.01:
            warnings.warn(f"more than 1% of a training batch lies outside a spline's bound [-{bound:g}, "
                          f"{bound:g}], where the spline is the identity: choose bound= to cover the data "
                          f"(or standardise the data)", UserWarning, stacklevel=3)
    stacked = rq_stacked(v, theta, bound, inverse)
    return stacked[0], stacked[1]


def share_outside(v, bound):
    """The share of entries of v outside [-bound, bound]."""
    return np.count_nonzero(np.abs(v) > bound) / v.size


def saved_bins(out_log_det, num_bins):
    """The Bin and the softmaxes p (M, 2, K) back from the buffer behind the primitive's output."""
    rows = out_log_det.base
    fields = list(rows[2:2 + len(Bin._fields)])
    fields[0], fields[1] = fields[0].astype(int), fields[1].astype(bool)
    return Bin(*fields), rows[2 + len(Bin._fields):].T.reshape(-1, 2, num_bins)


def partials(b):
    """dy/d(xi, s, d_k, d_k1, h) and d(log g')/d(xi, s, d_k, d_k1), in bin coordinates."""
    xi, xi1, s, t, numer, denom, slope_numer = b.xi, b.xi1, b.s, b.xi * b.xi1, b.numer, b.denom, b.slope_numer
    delta = b.d_k + b.d_k1 - 2 * s                   # denom = s + delta t, differentiated
    denom_2, one_2t, two_t_denom = denom ** 2, 1 - 2 * t, 2 * t / denom     # each used twice or more
    y = {"xi": b.h * s * slope_numer / denom_2,
         "s": b.h * (xi ** 2 * denom - numer * one_2t) / denom_2,
         "d_k": b.h * t * (denom - numer) / denom_2, "d_k1": -b.h * numer * t / denom_2, "h": numer / denom}
    log_g = {"xi": 2 * (b.d_k1 * xi + s * (xi1 - xi) - b.d_k * xi1) / slope_numer - 2 * delta * (xi1 - xi) / denom,
             "s": 2 / s + 2 * t / slope_numer - 2 * one_2t / denom,
             "d_k": xi1 ** 2 / slope_numer - two_t_denom, "d_k1": xi ** 2 / slope_numer - two_t_denom}
    return y, log_g


def forward_bin_vjp(b, g_y, g_log_det):
    """Gradients of y = g(x) and log g'(x) on (x, and the bin's x_k, w, y_k, h, s, d_k, d_k1)."""
    y, log_g = partials(b)
    g_xi = g_y * y["xi"] + g_log_det * log_g["xi"]
    return {"v": g_xi / b.w, "x_k": -g_xi / b.w, "w": -g_xi * b.xi / b.w, "y_k": g_y, "h": g_y * y["h"],
            "s": g_y * y["s"] + g_log_det * log_g["s"],
            "d_k": g_y * y["d_k"] + g_log_det * log_g["d_k"], "d_k1": g_y * y["d_k1"] + g_log_det * log_g["d_k1"]}


def inverse_bin_vjp(b, g_x, g_log_det):
    """Gradients of x = x_k + w xi and -log g'(x), xi implicit in y = g(x), on (y, and the bin's ...)."""
    y, log_g = partials(b)
    g_v = (g_x * b.w - g_log_det * log_g["xi"]) / y["xi"]             # dxi/dy = 1 / y_xi
    return {"v": g_v, "x_k": g_x, "w": g_x * b.xi, "y_k": -g_v, "h": -g_v * y["h"],
            "s": -g_v * y["s"] - g_log_det * log_g["s"],
            "d_k": -g_v * y["d_k"] - g_log_det * log_g["d_k"], "d_k1": -g_v * y["d_k1"] - g_log_det * log_g["d_k1"]}


def theta_vjp(b, p, g, theta, bound):
    """From the gradients on each row's bin (a dict from the two functions above) to theta's rows
    (M, 3K - 1): s = h / w, then w = x_k1 - x_k and h = y_k1 - y_k onto the two knots, then the
    cumulative sum, the softmax and the softplus."""
    num_bins, m = p.shape[2], len(b.k)
    g_h, g_w = g["h"] + g["s"] / b.w, g["w"] - g["s"] * b.s / b.w            # s = h / w
    g_knots = np.zeros((m, 2, num_bins + 1))                                 # (x, y) of every knot
    flat, x_k = g_knots.ravel(), flat_index(g_knots, b.k)                    # flat indices: see knot_values
    y_k = x_k + num_bins + 1
    flat[x_k], flat[y_k] = g["x_k"] - g_w, g["y_k"] - g_h
    flat[x_k + 1] += g_w                                                     # distinct rows: no repeated index
    flat[y_k + 1] += g_h
    g_knots[:, :, -1] = 0.0                                                  # the pinned end is a constant
    g_p = (g_knots.reshape(-1, num_bins + 1) @ cumulative_matrix(num_bins, bound).T).reshape(p.shape)
    g_p -= ((p * g_p).reshape(-1, num_bins) @ np.ones(num_bins)).reshape(-1, 2, 1)   # the softmax:
    g_logits = np.multiply(p, g_p, out=g_p)                                  # p (g_p - sum p g_p), in place
    g_theta = np.empty((m, theta.shape[1]))
    g_theta[:, :2 * num_bins] = g_logits.reshape(m, -1)
    g_d = np.zeros((m, num_bins + 1))
    flat, d_k = g_d.ravel(), flat_index(g_d, b.k)
    flat[d_k] = g["d_k"]
    flat[d_k + 1] += g["d_k1"]
    sigmoid = theta[:, 2 * num_bins:] + SHIFT                                # softplus' = sigmoid =
    sigmoid /= 2                                                             # 0.5 (1 + tanh(a / 2)),
    np.tanh(sigmoid, out=sigmoid)                                            # no overflow; in place
    sigmoid += 1
    sigmoid *= 0.5
    np.multiply(g_d[:, 1:-1], sigmoid, out=g_theta[:, 2 * num_bins:])
    return g_theta


def rq_vjp(argnums, stacked, args, kwargs):
    v, theta, bound, inverse = args
    num_bins = (theta.shape[-1] + 1) // 3

    def vjp(g):
        b, p = saved_bins(stacked, num_bins)
        g_out, g_log_det = g[0].ravel() * b.inside, g[1].ravel() * b.inside
        bin_vjp = inverse_bin_vjp if inverse else forward_bin_vjp
        g_bin = bin_vjp(b, g_out, g_log_det)
        grads = []
        for argnum in argnums:
            if argnum == 0:                                                  # outside [-B, B]: the identity
                grads.append((g_bin["v"] + g[0].ravel() * ~b.inside).reshape(v.shape))
            else:                                                            # summed where theta was broadcast
                g_rows = theta_vjp(b, p, g_bin, theta_rows(theta, v.shape), bound)
                grads.append(g_rows.reshape(v.shape + theta.shape[-1:]).reshape((-1,) + theta.shape).sum(axis=0))
        return grads
    return vjp


defvjp_argnums(rq_stacked, rq_vjp)
