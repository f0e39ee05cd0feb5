"""A planar layer's forward map (planar.py) as one autograd primitive, with its backprop written out.

    planar(z, u, w, b) -> (x, log_det),   x = z + u_hat tanh(a),  log_det = log(1 + c sech^2(a)),  a = z w + b

computes exactly what planar.planar_plain computes (the readable expression, and the reference
the tests hold this one to). Written with autograd.numpy a layer records about thirty nodes;
as a primitive it records one (and one read of each of its two outputs). A reverse-KL step of
chapter 9's 32-layer flow records 244 nodes instead of 1044 and costs under a third of the time
(chapter 8 explains why nodes, not arithmetic, set the cost at these sizes). Reverse-KL
training runs only this direction; the inverse stays in planar.py.

Backprop, given gx = dL/dx (N, D) and gl = dL/dlog_det (N,), with t = tanh(a), s = sech^2(a)
and the slope S = 1 + c s = t^2 + (1 + c) s (so dt/da = s and dS/da = -2 c t s):

    ga      = (gx u_hat) s - gl 2 c t s / S        dL/da, one number per point
    dz      = gx + ga w^T,    db = sum_n ga,    d(u_hat) = t^T gx,    d(1 + c) = sum_n gl s / S

then through the reparameterisation u_hat = u + k w / |w|^2, k = softplus(-w^T u) - 1, and
1 + c = softplus(w^T u) (softplus' is the sigmoid):

    d(w^T u) = -sigmoid(-w^T u) (d(u_hat) . w) / |w|^2 + sigmoid(w^T u) d(1 + c)
    du       = d(u_hat) + d(w^T u) w
    dw       = z^T ga + k d(u_hat) / |w|^2 - 2 k (d(u_hat) . w) w / |w|^4 + d(w^T u) u

The backward pass recomputes t, s and u_hat rather than keeping them: they cost one product
z w, a tanh and an exp over N numbers. Keeping them would take three more outputs (a primitive
hands its VJP only its inputs and its output), and on chapter 9's 32-layer step that measured
only 3-5% faster, not worth a five-part output.

Copy with: planar_backprop.py (and an empty __init__.py).
"""
import numpy as np
from autograd.extend import defvjp_argnums, primitive

TINY = np.finfo(float).tiny      # the smallest normal float64, 2.2e-308


def sech2(a):
    """sech^2(a) = 1 - tanh^2(a), accurate for large |a| (1 - tanh^2 rounds to 0 there)."""
    e = np.exp(-2 * np.abs(a))
    return 4 * e / (1 + e) ** 2


def sigmoid(s):
    """1 / (1 + e^-s) = e^(s - softplus(s)), the derivative of softplus: no overflow, and its
    digits kept for s << 0 (where 0.5 (1 + tanh(s / 2)) keeps none)."""
    return np.exp(s - np.logaddexp(0.0, s))


def reparameterised(u, w):
    """(u_hat, 1 + c, k, |w|^2): u_hat = u + k w / |w|^2 with k = softplus(-w^T u) - 1, so that
    1 + c = 1 + w^T u_hat = softplus(w^T u) > 0 (planar.py says why 1 + c is kept, not c)."""
    wu = np.dot(w, u)
    norm2 = max(np.dot(w, w), TINY)                  # w = 0 (never drawn) has no u_hat: stay finite
    k = np.logaddexp(0.0, -wu) - 1
    return u + k * w / norm2, np.logaddexp(0.0, wu) + TINY, k, norm2


@primitive
def planar(z, u, w, b):
    """(x, log_det) of a planar layer at z (N, D); u, w (D,), b ()."""
    u_hat, one_plus_c, _, _ = reparameterised(u, w)
    a = np.dot(z, w) + b
    t, s = np.tanh(a), sech2(a)
    return z + np.outer(t, u_hat), np.log(t ** 2 + one_plus_c * s)        # log(1 + c sech^2(a))


def planar_vjp(argnums, x_and_log_det, args, kwargs):
    """The gradients autograd asked for (of z, u, w, b), given (gx, gl): the equations above."""
    z, u, w, b = args
    u_hat, one_plus_c, k, norm2 = reparameterised(u, w)
    a = np.dot(z, w) + b
    t, s = np.tanh(a), sech2(a)
    slope = t ** 2 + one_plus_c * s

    def vjp(g):
        gx, gl = g
        ga = np.dot(gx, u_hat) * s - gl * 2 * (one_plus_c - 1) * t * s / slope
        g_u_hat = np.dot(t, gx)
        wu = np.dot(w, u)
        g_wu = -sigmoid(-wu) * np.dot(g_u_hat, w) / norm2 + sigmoid(wu) * np.sum(gl * s / slope)
        grads = {0: lambda: gx + np.outer(ga, w),
                 1: lambda: g_u_hat + g_wu * w,
                 2: lambda: (np.dot(ga, z) + k * g_u_hat / norm2 - 2 * k * np.dot(g_u_hat, w) * w / norm2 ** 2
                             + g_wu * u),
                 3: lambda: np.sum(ga)}
        return [grads[i]() for i in argnums]
    return vjp


defvjp_argnums(planar, planar_vjp)
