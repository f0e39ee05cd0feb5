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

Saved, not recomputed: autograd calls a primitive's vjp maker (planar_rows_vjp) when it records
the node, right after the forward pass, so whatever the maker recomputes is computed twice per
step (a third of a planar step's cost, measured). The forward pass therefore returns y and
log_det as views of one buffer that also keeps u, w, u_hat and the per-point numbers of the
lines above (planar_rows_kept); the backward pass reads them back through y.base (kept), as
coupling_backprop.py does. An evaluation, with nothing to differentiate, keeps nothing
(planar_rows_lean).

The layers call two larger primitives built on it, each one node with its params as one vector
(the heads' W and bias raveled in the order of the layer's init):

    amortised_planar(z, h, h, h, weights) = planar_rows(z, h W_u + u, h W_w + w, h W_b + b)
    amortised_gaussian(eps, h, weights, s_max) = (mu + exp(s) * eps, sum_i s_i),
        mu = h W_mu + mu_0,  s = s_max tanh((h W_s + s_0) / s_max)

Their backprop is planar_rows' (or affine.py's and soft_clamp's lines), then each head's as a
dense layer: dW = h^T d(head), d(bias) = sum over points of d(head), dh = d(head) W^T.

Copy with: amortised_backprop.py, planar_backprop.py (and an empty __init__.py).
"""
import numpy as np
from autograd.extend import defvjp_argnums, primitive

from .planar_backprop import TINY, sech2, sigmoid


def reparameterised_rows(u, w):
    """(u_hat, 1 + c, k, |w|^2, w^T u) for each row: planar_backprop.reparameterised, one row per point."""
    wu = np.sum(w * u, axis=1)
    norm2 = np.maximum(np.sum(w * w, axis=1), TINY)      # w = 0 has no u_hat: stay finite
    k = np.logaddexp(0.0, -wu) - 1
    return u + (k / norm2)[:, None] * w, np.logaddexp(0.0, wu) + TINY, k, norm2, wu


@primitive
def planar_rows(z, u, w, b):
    """(y, log_det) of an amortised planar step at z (N, D); u, w (N, D), b (N,)."""
    return planar_rows_kept(z, u, w, b)


def planar_rows_kept(z, u, w, b):
    """planar_rows' forward pass, (y, log_det) returned as views of one buffer that also keeps what
    the backward pass needs, read back by kept(y): u, w, u_hat and, per point, 1 + c, k, |w|^2,
    w^T u, t = tanh(a), s = sech^2(a) and the slope S (coupling_backprop.py's save_for_backward)."""
    n, d = z.shape
    buffer = np.empty((4 * d + 8) * n)
    y, u_kept, w_kept, u_hat = buffer[:4 * n * d].reshape(4, n, d)
    log_det, one_plus_c, k, norm2, wu, t, s, slope = buffer[4 * n * d:].reshape(8, n)
    u_kept[...], w_kept[...] = u, w
    u_hat[...], one_plus_c[...], k[...], norm2[...], wu[...] = reparameterised_rows(u, w)
    a = np.sum(w * z, axis=1) + b
    t[...], s[...] = np.tanh(a), sech2(a)
    slope[...] = t ** 2 + one_plus_c * s
    y[...] = z + u_hat * t[:, None]
    log_det[...] = np.log(slope)                                      # log(1 + c sech^2(a))
    return y, log_det


def planar_rows_lean(z, u, w, b):
    """planar_rows' forward pass keeping nothing: for evaluations, which have no backward pass."""
    u_hat, one_plus_c = reparameterised_rows(u, w)[:2]
    a = np.sum(w * z, axis=1) + b
    t, s = np.tanh(a), sech2(a)
    return z + u_hat * t[:, None], np.log(t ** 2 + one_plus_c * s)


def kept(y):
    """What planar_rows_kept keeps, from its y: u, w, u_hat (N, D) and 1 + c, k, |w|^2, w^T u, t, s,
    S (N,)."""
    n, d = y.shape
    return (*y.base[n * d:4 * n * d].reshape(3, n, d), *y.base[4 * n * d + n:].reshape(7, n))


def planar_rows_vjp(argnums, y_and_log_det, args, kwargs):
    """The gradients autograd asked for (of z, u, w, b), given (gy, gl): the equations above."""
    z = args[0]
    u, w, u_hat, one_plus_c, k, norm2, wu, t, s, slope = kept(y_and_log_det[0])

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


# The whole layer, heads included: one node per step in a training step, where the heads alone
# would add six reads of their arrays and three products.

def planar_heads(h, weights):
    """Each point's raw planar parameters u, w (N, D) and b (N,) from the heads' weights."""
    W_u, u, W_w, w, W_b, b = unpack_planar(weights, h.shape[1])
    heads = [np.dot(h, W_u), np.dot(h, W_w), np.dot(h, W_b) + b]
    heads[0] += u                                       # in place, as linear.dense
    heads[1] += w
    return heads


def two_heads(weights, C, D):
    """W_1 (C, D), b_1 (D,), W_2 (C, D), b_2 (D,): two heads' weights and biases, views of the
    start of one vector holding them raveled in that order."""
    return [weights[i * (C + 1) * D:(i * (C + 1) + C) * D].reshape(C, D) if j == 0 else
            weights[(i * (C + 1) + C) * D:(i + 1) * (C + 1) * D] for i in (0, 1) for j in (0, 1)]


def unpack_planar(weights, C):
    """W_u (C, D), u (D,), W_w (C, D), w (D,), W_b (C,), b () as views of one vector holding them
    raveled in that order (AmortisedPlanar.init's)."""
    D = (len(weights) - C - 1) // (2 * C + 2)
    return (*two_heads(weights, C, D), weights[2 * (C + 1) * D:-1], weights[-1])


@primitive
def amortised_planar(z, h_b, h_w, h_u, weights):
    """(y, log_det) of an AmortisedPlanar step: u(h) = h W_u + u, w(h) = h W_w + w, b(h) = h W_b + b,
    then planar_rows. The context h comes three times, h_b = h_w = h_u = h, once per head: autograd
    adds a node's gradients on its arguments into their running totals one argument at a time, so
    h's total collects the three heads' parts in turn, just as when the heads were three nodes of
    their own. (Summed first, the three would round differently: floating-point addition is not
    associative, and the total over the layers would move in its last bits.)"""
    return planar_rows_kept(z, *planar_heads(h_u, weights))


def amortised_planar_vjp(argnums, y_and_log_det, args, kwargs):
    """planar_rows' backprop, then the heads' (linear.dense_backprop's lines; b's head is a dot with
    a vector): dW = h^T du, du_0 = sum du, dh = du W^T for each head."""
    z, h, _, _, weights = args
    W_u, _, W_w, _, W_b, _ = unpack_planar(weights, h.shape[1])
    to_rows = planar_rows_vjp((0, 1, 2, 3), y_and_log_det, (z,), {})

    def vjp(g):
        dz, du, dw, db = to_rows(g)
        # b's head, h W_b with W_b a vector: dh = db W_b^T, dW_b = h^T db, as the (N, 1) x (1, C) and
        # (1, N) x (N, C) products that autograd's dot takes (through np.tensordot), so the same sums
        grads = {0: lambda: dz, 1: lambda: np.dot(db.reshape(-1, 1), W_b.reshape(1, -1)), 2: lambda: np.dot(dw, W_w.T),
                 3: lambda: np.dot(du, W_u.T),
                 4: lambda: np.concatenate([np.dot(h.T, du).ravel(), np.sum(du, axis=0), np.dot(h.T, dw).ravel(),
                                            np.sum(dw, axis=0), np.dot(db.reshape(1, -1), h).ravel(),
                                            [np.sum(db, axis=0)]])}
        return [grads[i]() for i in argnums]
    return vjp


defvjp_argnums(amortised_planar, amortised_planar_vjp)


def gaussian_heads(h, weights, s_max):
    """AmortisedAffine's weights out of one vector (W_mu, mu, W_s, s raveled, the order of its init)
    and each point's shift mu and bounded log-scale s (N, D), as AmortisedAffine.mu_s computes them."""
    C = h.shape[1]
    W_mu, mu, W_s, s = two_heads(weights, C, len(weights) // (2 * C + 2))
    s_raw = np.dot(h, W_s)
    s_raw += s
    mu_h = np.dot(h, W_mu)
    mu_h += mu
    return (W_mu, W_s), mu_h, s_max * np.tanh(s_raw / s_max)


@primitive
def amortised_gaussian(eps, h, weights, s_max):
    """(z, log_det) of an AmortisedAffine layer: z = mu(h) + exp(s(h)) * eps, log_det = sum_i s_i(h),
    with mu(h) = h W_mu + mu and s(h) = s_max tanh((h W_s + s) / s_max); eps (N, D), h (N, C)."""
    _, mu_h, s_h = gaussian_heads(h, weights, s_max)
    return eps * np.exp(s_h) + mu_h, np.sum(s_h, axis=1)


def amortised_gaussian_vjp(argnums, z_and_log_det, args, kwargs):
    """Given (gz, gl): d eps = gz exp(s), dmu = gz, ds = gz eps exp(s) + gl (affine.py's lines, and
    log_det's sum), ds_raw = ds (1 - (s / s_max)^2) (soft_clamp's), then each head as a dense layer:
    dW = h^T d(head), d(bias) = sum d(head), dh = d(head) W^T, the two heads' dh added."""
    eps, h, weights, s_max = args
    (W_mu, W_s), _, s_h = gaussian_heads(h, weights, s_max)
    exp_s = np.exp(s_h)

    def vjp(g):
        gz, gl = g
        ds_raw = (gz * eps * exp_s + gl[:, None]) * (1 - (s_h / s_max) ** 2)
        grads = {0: lambda: gz * exp_s, 1: lambda: np.dot(ds_raw, W_s.T) + np.dot(gz, W_mu.T),
                 2: lambda: np.concatenate([np.dot(h.T, gz).ravel(), np.sum(gz, axis=0),
                                            np.dot(h.T, ds_raw).ravel(), np.sum(ds_raw, axis=0)])}
        return [grads[i]() for i in argnums]
    return vjp


defvjp_argnums(amortised_gaussian, amortised_gaussian_vjp)
