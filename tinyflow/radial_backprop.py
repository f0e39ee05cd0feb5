"""A radial layer's forward map (radial.py) as one autograd primitive, with its backprop written out.

    radial(z, z0, alpha_raw, beta_raw) -> (x, log_det)

computes exactly what radial.radial_plain computes (the readable expression, and the reference
the tests hold this one to): one autograd node (and one read of each of its two outputs) where
the readable version records about thirty. A reverse-KL step of chapter 9's 32-layer radial flow
records 244 nodes instead of 1204. Reverse-KL training runs only this direction; the inverse
stays in radial.py.

With alpha = softplus(alpha_raw), alpha + beta = softplus(beta_raw) (call it A), d = z - z0,
r = |d|, P = r + A, Q = alpha + r, M = r (2 alpha + r) + alpha A and q = P / Q (radial.py):

    x = z0 + q d,     L = log_det = (D - 1)(log P - log Q) + log M - 2 log Q

Backprop, given gx = dL/dx (N, D) and gl = dL/dlog_det (N,), with gq = gx . d per point:

    dq/dr = (alpha - A) / Q^2,   dq/dalpha = -q / Q,   dq/dA = 1 / Q
    dL/dr = (D - 1)(alpha - A) / (P Q) + 2 alpha (alpha - A) / (M Q)
    dL/dalpha = -(D - 1) / Q + (2 r + A) / M - 2 / Q,    dL/dA = (D - 1) / P + alpha / M
    gr  = gq dq/dr + gl dL/dr
    dz  = q gx + (gr / r) d      (the second term 0 at r = 0: radial.py's norm has gradient 0 there)
    dz0 = sum_n (gx - dz)
    d alpha_raw = sigmoid(alpha_raw) sum_n (gq dq/dalpha + gl dL/dalpha)
    d beta_raw  = sigmoid(beta_raw) sum_n (gq dq/dA + gl dL/dA)          (softplus' is the sigmoid)

dL/dr is (D - 1)(1/P - 1/Q) + 2 (alpha + r) / M - 2 / Q brought onto common denominators: the
terms of that sum are ~1/alpha near z0 and cancel where beta = A - alpha is small (a layer near
the identity with a tiny alpha), the form above has nothing left to cancel.

The backward pass recomputes d, r and the ratios rather than keeping them: a few operations
on N numbers, as in planar_backprop.py. log M - 2 log Q is computed as radial.py computes it,
without squaring r, so the map stays finite and exact for |z - z0| up to 1e308; where M or Q^2
overflows (r > 1e154) the backprop's terms 1 / M and 1 / Q^2 become 0, as they nearly are.

Copy with: radial_backprop.py (and an empty __init__.py).
"""
import numpy as np
from autograd.extend import defvjp_argnums, primitive

TINY = np.finfo(float).tiny      # the smallest normal float64, 2.2e-308


def sigmoid(s):
    """1 / (1 + e^-s) = e^(s - softplus(s)), the derivative of softplus: no overflow, and its
    digits kept for s << 0 (where 0.5 (1 + tanh(s / 2)) keeps none)."""
    return np.exp(s - np.logaddexp(0.0, s))


def terms(z, z0, alpha_raw, beta_raw):
    """d, r, alpha, A = alpha + beta, P, Q, M as above (alpha, A > 0 also where softplus underflows)."""
    alpha, A = np.logaddexp(0.0, alpha_raw) + TINY, np.logaddexp(0.0, beta_raw) + TINY
    d = z - z0
    with np.errstate(over="ignore"):           # |d| > 1e154: d^2 overflows, so those rows are redone
        r = np.sqrt(np.sum(d ** 2, axis=1))
        big = ~np.isfinite(r)
        if big.any():                          # divided by their largest entry before squaring
            scale = np.max(np.abs(d[big]), axis=1)
            r[big] = scale * np.sqrt(np.sum((d[big] / scale[:, None]) ** 2, axis=1))
        M = r * (2 * alpha + r) + alpha * A    # inf for r > 1e154: only the backprop reads it (as 1 / M)
    return d, r, alpha, A, r + A, alpha + r, M


@primitive
def radial(z, z0, alpha_raw, beta_raw):
    """(x, log_det) of a radial layer at z (N, D); z0 (D,), alpha_raw, beta_raw ()."""
    d, r, alpha, A, P, Q, M = terms(z, z0, alpha_raw, beta_raw)
    log_M_over_Q2 = np.log(r * ((2 * alpha + r) / Q) + A * (alpha / Q)) - np.log(Q)   # M may overflow, this cannot
    log_det = (z.shape[1] - 1) * (np.log(P) - np.log(Q)) + log_M_over_Q2
    return z0 + d * (P / Q)[:, None], log_det


def radial_vjp(argnums, x_and_log_det, args, kwargs):
    """The gradients autograd asked for (of z, z0, alpha_raw, beta_raw), given (gx, gl): the equations above."""
    z, z0, alpha_raw, beta_raw = args
    d, r, alpha, A, P, Q, M = terms(z, z0, alpha_raw, beta_raw)
    q, dim = P / Q, z.shape[1]

    def vjp(g):
        gx, gl = g
        gq = np.einsum("nd,nd->n", gx, d)
        with np.errstate(over="ignore"):       # r > 1e154: Q^2, P Q, M Q are inf and their terms 0
            gr = (alpha - A) * (gq / Q ** 2 + gl * ((dim - 1) / (P * Q) + 2 * alpha / (M * Q)))
        gz = gx * q[:, None] + d * np.where(r > 0, gr / np.where(r > 0, r, 1.0), 0.0)[:, None]
        grads = {0: lambda: gz,
                 1: lambda: np.sum(gx - gz, axis=0),
                 2: lambda: sigmoid(alpha_raw) * np.sum(-gq * q / Q + gl * (-(dim - 1) / Q + (2 * r + A) / M - 2 / Q)),
                 3: lambda: sigmoid(beta_raw) * np.sum(gq / Q + gl * ((dim - 1) / P + alpha / M))}
        return [grads[i]() for i in argnums]
    return vjp


defvjp_argnums(radial, radial_vjp)
