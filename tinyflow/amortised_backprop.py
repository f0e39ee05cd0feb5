"""An amortised planar step's forward map (amortised.py) as one autograd primitive, with its
backprop written out: planar_backprop.py with one (u, w, b) per point instead of one for all.

    planar_rows(z, u, w, b) -> (y, log_det),   y_n = z_n + u_hat_n tanh(a_n),   a_n = w_n^T z_n + b_n
                                               log_det_n = log(1 + c_n sech^2(a_n))

computes exactly what amortised.planar_rows_plain computes (the readable expression, and the
reference the tests hold this one to); z, u, w (N, D), b (N,). Written with autograd.numpy a step
records about twenty-five nodes; as a primitive it records one (and one read of each output).

Backprop, row by row, given gy = dL/dy (N, D) and gl = dL/dlog_det (N,), with t = tanh(a),
s = sech^2(a) and the slope S = t^2 + (1 + c) s (planar_backprop.py derives each line):

    ga      = (gy . u_hat) s - gl 2 c t s / S          dL/da, one number per point
    dz      = gy + ga w,    db = ga,    d(u_hat) = t gy,    d(1 + c) = gl s / S

then through u_hat = u + k w / |w|^2, k = softplus(-w^T u) - 1, and 1 + c = softplus(w^T u):

    d(w^T u) = -sigmoid(-w^T u) (d(u_hat) . w) / |w|^2 + sigmoid(w^T u) d(1 + c)
    du       = d(u_hat) + d(w^T u) w
    dw       = ga z + k d(u_hat) / |w|^2 - 2 k (d(u_hat) . w) w / |w|^4 + d(w^T u) u

The same lines as planar_backprop.py's without its sums over the batch: there every point shares
one u, w, b, so their gradients add up over points; here each point's stay its own, and the
heads (amortised.py) sum them into the weights.

Copy with: amortised_backprop.py, planar_backprop.py (and an empty __init__.py).
"""
import numpy as np
from autograd.extend import defvjp_argnums, primitive

from .planar_backprop import TINY, sech2, sigmoid


def reparameterised_rows(u, w):
    """(u_hat, 1 + c, k, |w|^2) for each row: planar_backprop.reparameterised, one row per point."""
    wu = np.sum(w * u, axis=1)
    norm2 = np.maximum(np.sum(w * w, axis=1), TINY)      # w = 0 has no u_hat: stay finite
    k = np.logaddexp(0.0, -wu) - 1
    return u + (k / norm2)[:, None] * w, np.logaddexp(0.0, wu) + TINY, k, norm2


@primitive
def planar_rows(z, u, w, b):
    """(y, log_det) of an amortised planar step at z (N, D); u, w (N, D), b (N,)."""
    u_hat, one_plus_c, _, _ = reparameterised_rows(u, w)
    a = np.sum(w * z, axis=1) + b
    t, s = np.tanh(a), sech2(a)
    return z + u_hat * t[:, None], np.log(t ** 2 + one_plus_c * s)       # log(1 + c sech^2(a))


def planar_rows_vjp(argnums, y_and_log_det, args, kwargs):
    """The gradients autograd asked for (of z, u, w, b), given (gy, gl): the equations above."""
    z, u, w, b = args
    u_hat, one_plus_c, k, norm2 = reparameterised_rows(u, w)
    a = np.sum(w * z, axis=1) + b
    t, s = np.tanh(a), sech2(a)
    slope = t ** 2 + one_plus_c * s
    wu = np.sum(w * u, axis=1)

    def vjp(g):
        gy, gl = g
        ga = np.sum(gy * u_hat, axis=1) * s - gl * 2 * (one_plus_c - 1) * t * s / slope
        g_u_hat = t[:, None] * gy
        g_u_hat_w = np.sum(g_u_hat * w, axis=1)
        g_wu = -sigmoid(-wu) * g_u_hat_w / norm2 + sigmoid(wu) * gl * s / slope
        grads = {0: lambda: gy + ga[:, None] * w,
                 1: lambda: g_u_hat + g_wu[:, None] * w,
                 2: lambda: (ga[:, None] * z + (k / norm2)[:, None] * g_u_hat
                             - (2 * k * g_u_hat_w / norm2 ** 2)[:, None] * w + g_wu[:, None] * u),
                 3: lambda: ga}
        return [grads[i]() for i in argnums]
    return vjp


defvjp_argnums(planar_rows, planar_rows_vjp)
