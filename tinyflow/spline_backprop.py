"""The rational-quadratic spline of spline.py as one autograd primitive, with its backprop written out.

    rational_quadratic(v, theta, bound, inverse) -> (out, log_det), both (N, D)

computes exactly what spline.rational_quadratic_plain computes (the readable expression, and the
reference the tests hold this one to): out = g(v) and log_det = log g'(v), or with inverse=True
out = g^-1(v) and log_det = -log g'(out); the identity (log_det 0) outside [-B, B]. theta
(N, D, 3K - 1), or (D, 3K - 1) broadcast over the batch. Written with autograd.numpy the map
records about a hundred nodes per call; as a primitive it records one, which keeps a spline
coupling's training step near an affine one's (chapter 10 measures both; chapter 8 explains why).

Backprop, in bin k, with xi = (x - x_k)/w, s = h/w, t = xi (1 - xi), delta = d_k + d_k1 - 2s:

    y = y_k + h N / D,           N = s xi^2 + d_k t,                   D = s + delta t
    L = log g' = 2 log s + log M - 2 log D,   M = d_k1 xi^2 + 2 s t + d_k (1 - xi)^2

are functions of (xi, s, d_k, d_k1) (and h, y_k for y); `partials` holds their derivatives.
    forward:  xi = (x - x_k)/w, so dxi/dx = 1/w, dxi/dx_k = -1/w, dxi/dw = -xi/w.
    inverse:  xi solves y_k + h N/D = y; by the implicit function theorem
              dxi = (dy - dy_k - (N/D) dh - y_s ds - y_dk dd_k - y_dk1 dd_k1) / y_xi,  and x = x_k + w xi.
Then s = h/w, w = x_{k+1} - x_k, h = y_{k+1} - y_k put each bin's gradient on its two knots; the
knots are p @ C + offset (C = 2B (1 - K m_bin) T, T[i, j] = 1 for i < j: a cumulative sum as one
matrix product), so the softmax outputs p get (gradient @ C^T); then the softmax
(dtheta = p (g - sum p g)) and the softplus (whose derivative is the sigmoid). Every array is
flattened to rows, one row per (point, coordinate), and the matrix products are taken on 2D
arrays: numpy runs a 3D (M, 2, K) @ (K, K + 1) as M small products, one BLAS call as 2D.
"""
import math

import numpy as np
from autograd.extend import defvjp_argnums, primitive

MIN_BIN = 1e-3
MIN_DERIVATIVE = 1e-3
SHIFT = math.log(math.expm1(1 - MIN_DERIVATIVE))      # softplus(SHIFT) + MIN_DERIVATIVE = 1


def cumulative_matrix(num_bins, bound):
    """C (K, K + 1) with knots = p @ C + offset: C[i, j] = 2B (1 - K m_bin) for i < j, else 0."""
    return 2 * bound * (1 - num_bins * MIN_BIN) * (np.arange(num_bins)[:, None] < np.arange(num_bins + 1))


def knot_rows(theta, bound):
    """theta rows (M, 3K - 1) -> knots (M, 2, K + 1) (x_k then y_k), derivatives d (M, K + 1), the
    two softmaxes p (M, 2, K), and C, the matrix with knots = p @ C + offset."""
    num_bins = (theta.shape[1] + 1) // 3
    logits = theta[:, :2 * num_bins].reshape(-1, 2, num_bins)
    top = logits[:, :, 0].copy()                  # the max of each softmax's logits, so no exp overflows;
    for j in range(1, num_bins):                  # a loop over the K columns, because numpy's max along
        np.maximum(top, logits[:, :, j], out=top)  # a short last axis is several times slower here
    e = np.exp(logits - top[:, :, None])
    p = e / (e.reshape(-1, num_bins) @ np.ones(num_bins)).reshape(-1, 2, 1)   # softmax
    # knot j = -B + 2B (j m_bin + (1 - K m_bin) (p_0 + ... + p_{j-1})): a cumulative sum as p @ C
    C = cumulative_matrix(num_bins, bound)
    knots = (p.reshape(-1, num_bins) @ C).reshape(-1, 2, num_bins + 1) + (-bound + 2 * bound * MIN_BIN
                                                                          * np.arange(num_bins + 1))
    knots[:, :, -1] = bound                       # pinned: no rounding at +-B
    a = theta[:, 2 * num_bins:] + SHIFT
    d = np.ones((len(theta), num_bins + 1))
    d[:, 1:-1] = MIN_DERIVATIVE + np.maximum(a, 0.0) + np.log1p(np.exp(-np.abs(a)))   # softplus(a), no overflow
    return knots, d, p, C


def theta_rows(theta, shape):
    """theta (N, D, 3K - 1), or (D, 3K - 1) for every point, as rows (N D, 3K - 1)."""
    if theta.shape[:-1] != shape:
        theta = np.broadcast_to(theta, shape + theta.shape[-1:])
    return theta.reshape(-1, theta.shape[-1])


def bins(v, theta, bound, inverse):
    """Everything the map and its backprop need, as a dict of (M,) rows, M = N D."""
    knots, d, p, C = knot_rows(theta_rows(theta, v.shape), bound)
    v = v.ravel()
    inside = (v >= -bound) & (v <= bound)
    v = np.where(inside, v, 0.0)
    k = np.zeros(len(v), dtype=int)                                            # bin: 0..K-1,
    for j in range(1, knots.shape[2] - 1):                                     # the interior knots <= v
        k += v >= knots[:, int(inverse), j]
    rows = np.arange(len(v))
    left, right = knots[rows, :, k], knots[rows, :, k + 1]                     # (M, 2): x, y
    b = {"v": v, "k": k, "rows": rows, "inside": inside, "theta": theta, "p": p, "C": C,
         "x_k": left[:, 0], "y_k": left[:, 1], "w": right[:, 0] - left[:, 0], "h": right[:, 1] - left[:, 1],
         "d_k": d[rows, k], "d_k1": d[rows, k + 1]}
    s = b["s"] = b["h"] / b["w"]
    delta = b["delta"] = b["d_k1"] + b["d_k"] - 2 * s
    if inverse:
        dy = v - b["y_k"]
        qa, qb, qc = b["h"] * (s - b["d_k"]) + dy * delta, b["h"] * b["d_k"] - dy * delta, -s * dy
        xi = np.clip(2 * qc / (-qb - np.sqrt(np.maximum(qb ** 2 - 4 * qa * qc, 0.0))), 0.0, 1.0)
    else:
        xi = (v - b["x_k"]) / b["w"]
    t = xi * (1 - xi)
    b["xi"], b["t"], b["N"], b["D"] = xi, t, s * xi ** 2 + b["d_k"] * t, s + delta * t
    b["M"] = b["d_k1"] * xi ** 2 + 2 * s * t + b["d_k"] * (1 - xi) ** 2
    b["L"] = 2 * np.log(s) + np.log(b["M"]) - 2 * np.log(b["D"])
    return b


# What the backward pass needs from the forward one, kept in rows of the primitive's output:
# an autograd primitive returns one array, and this spares the backward pass the whole forward
# computation again (about a third of a spline layer's training cost). The role of PyTorch's
# ctx.save_for_backward.
SAVED = ("k", "inside", "w", "h", "s", "xi", "t", "N", "D", "M", "delta", "d_k", "d_k1")


@primitive
def rq_stacked(v, theta, bound, inverse):
    """(2 + len(SAVED) + 2K, N, D): out, log_det, then the SAVED rows and the softmaxes p."""
    b = bins(v, theta, bound, inverse)
    if inverse:
        out, log_det = b["x_k"] + b["w"] * b["xi"], -b["L"]
    else:
        out, log_det = b["y_k"] + b["h"] * b["N"] / b["D"], b["L"]
    inside = b["inside"]
    rows = [np.where(inside, out, v.ravel()), np.where(inside, log_det, 0.0)] + [b[name] for name in SAVED]
    p = b["p"].reshape(len(inside), -1).T
    return np.concatenate([np.stack(rows), p]).reshape((-1,) + v.shape)


def saved(ans, theta, bound):
    """The dict bins() returned, read back from the rows of the primitive's output."""
    rows = ans.reshape(len(ans), -1)
    b = dict(zip(SAVED, rows[2:2 + len(SAVED)]))
    b["k"], b["inside"] = b["k"].astype(int), b["inside"].astype(bool)
    num_bins = (theta.shape[-1] + 1) // 3
    b["p"] = rows[2 + len(SAVED):].T.reshape(-1, 2, num_bins)
    b["C"] = cumulative_matrix(num_bins, bound)
    b["rows"] = np.arange(rows.shape[1])
    b["theta"] = theta_rows(theta, ans.shape[1:])
    return b


def rational_quadratic(v, theta, bound, inverse):
    out_log_det_and_saved = rq_stacked(v, theta, bound, inverse)
    return out_log_det_and_saved[0], out_log_det_and_saved[1]


def partials(b):
    """dy/d(xi, s, d_k, d_k1, h) and dL/d(xi, s, d_k, d_k1), in bin coordinates."""
    xi, s, t, N, D, M, h, delta = b["xi"], b["s"], b["t"], b["N"], b["D"], b["M"], b["h"], b["delta"]
    y = {"xi": h * ((2 * s * xi + b["d_k"] * (1 - 2 * xi)) * D - N * delta * (1 - 2 * xi)) / D ** 2,
         "s": h * (xi ** 2 * D - N * (1 - 2 * t)) / D ** 2,
         "d_k": h * t * (D - N) / D ** 2, "d_k1": -h * N * t / D ** 2, "h": N / D}
    L = {"xi": 2 * (b["d_k1"] * xi + s * (1 - 2 * xi) - b["d_k"] * (1 - xi)) / M - 2 * delta * (1 - 2 * xi) / D,
         "s": 2 / s + 2 * t / M - 2 * (1 - 2 * t) / D,
         "d_k": (1 - xi) ** 2 / M - 2 * t / D, "d_k1": xi ** 2 / M - 2 * t / D}
    return y, L


def theta_gradient(b, g_x_k, g_x_k1, g_y_k, g_y_k1, g_d_k, g_d_k1):
    """From the gradients on each row's bin ends back to theta's rows (M, 3K - 1)."""
    rows, k, p, C = b["rows"], b["k"], b["p"], b["C"]
    num_bins = p.shape[2]
    g_knots = np.zeros((len(rows), 2, num_bins + 1))                # x_k, y_k
    g_knots[rows, :, k] = np.stack([g_x_k, g_y_k], axis=1)
    g_knots[rows, :, k + 1] += np.stack([g_x_k1, g_y_k1], axis=1)  # distinct rows: no repeated index
    g_knots[:, :, -1] = 0.0                                         # the pinned end is a constant
    g_p = (g_knots.reshape(-1, num_bins + 1) @ C.T).reshape(p.shape)
    g_logits = p * (g_p - ((p * g_p).reshape(-1, num_bins) @ np.ones(num_bins)).reshape(-1, 2, 1))   # softmax
    g_d = np.zeros((len(rows), num_bins + 1))
    g_d[rows, k] = g_d_k
    g_d[rows, k + 1] += g_d_k1
    sigmoid = 0.5 * (1 + np.tanh((b["theta"][:, 2 * num_bins:] + SHIFT) / 2))   # softplus', no overflow
    return np.concatenate([g_logits.reshape(len(rows), -1), g_d[:, 1:-1] * sigmoid], axis=1)


def rq_vjp(argnums, ans, args, kwargs):
    v, theta, bound, inverse = args

    def vjp(g):
        b = saved(ans, theta, bound)
        y, L = partials(b)
        inside = b["inside"]
        g_out, g_log_det = g[0].ravel() * inside, g[1].ravel() * inside
        if inverse:                  # x = x_k + w xi, log_det = -L, xi implicit in y = g(x)
            g_v = (g_out * b["w"] - g_log_det * L["xi"]) / y["xi"]          # dxi/dy = 1 / y_xi
            g_s, g_h, g_yk = -g_v * y["s"] - g_log_det * L["s"], -g_v * y["h"], -g_v
            g_dk, g_dk1 = -g_v * y["d_k"] - g_log_det * L["d_k"], -g_v * y["d_k1"] - g_log_det * L["d_k1"]
            g_w, g_xk = g_out * b["xi"], g_out
        else:                        # y = y_k + h N/D, log_det = L, xi = (x - x_k)/w
            g_xi = g_out * y["xi"] + g_log_det * L["xi"]
            g_v = g_xi / b["w"]
            g_s, g_h, g_yk = g_out * y["s"] + g_log_det * L["s"], g_out * y["h"], g_out
            g_dk, g_dk1 = g_out * y["d_k"] + g_log_det * L["d_k"], g_out * y["d_k1"] + g_log_det * L["d_k1"]
            g_w, g_xk = -g_xi * b["xi"] / b["w"], -g_xi / b["w"]
        grads = {0: lambda: (g_v + g[0].ravel() * ~inside).reshape(v.shape)}    # tails: the identity
        if 1 in argnums:
            g_h = g_h + g_s / b["w"]                               # s = h / w
            g_w = g_w - g_s * b["s"] / b["w"]
            g_rows = theta_gradient(b, g_xk - g_w, g_w, g_yk - g_h, g_h, g_dk, g_dk1)
            # w = x_{k+1} - x_k, h = y_{k+1} - y_k; then sum over the batch where theta was broadcast
            grads[1] = lambda: g_rows.reshape(v.shape + theta.shape[-1:]).reshape((-1,) + theta.shape).sum(axis=0)
        return [grads[i]() for i in argnums]
    return vjp


defvjp_argnums(rq_stacked, rq_vjp)
