"""An invertible residual layer's map and exact log-det (residual.py) as one autograd primitive,
with its backprop written out; and the map with Jacobian-vector products, for the estimators.

    residual(x, c, activation, saved, shapes, *leaves) -> (y, log_det),   y = x + g(x),
    log_det = log det(I + J_g(x)),   leaves = W_1, b_1[, beta_raw_1], ..., W_L, b_L  (the raw params)
    residual_jvp(x, V, c, activation, saved, shapes, *leaves) -> (y, J_g(x) v for each of K directions V[k])

shapes None: leaves are those arrays. shapes their shapes: leaves is one vector holding them all,
raveled in that order, as fit's flat parameters (leaves.py) hold a layer's params; then the block
reads one node off the tape, not eight, and its gradient goes back as one vector.

computes exactly what InvertibleResidual.forward_plain computes (the readable version: the
weights normalised by lipschitz.normalise, the network, D Jacobian columns by jvp, slogdet),
and the tests hold it to that. Written with autograd.numpy a 2-hidden-layer block records about
75 nodes; as a primitive it records one (chapter 8 explains why nodes cost more than arithmetic
at these sizes). An 8-block maximum-likelihood step in 2D, hidden (64, 64), batch 512, fell from
55 to 33 ms of CPU: what is left is arithmetic, the network and D tangents forward, twice that
backward (an affine coupling step of the same widths took 8 ms).

The forward pass (row convention, h_0 = x, l = 1 .. L, the last layer linear):

    W_hat_l = W_l / m_l,  m_l = max(1, sigma_l / c_l),  sigma_l = u_l^T W_l v_l,  c_l = c^(1/L)
    a_l = h_l-1 W_hat_l + b_l,   h_l = phi(a_l),   s_l = phi'(a_l)                 (l < L)
    g = h_L-1 W_hat_L + b_L
    tangents, one per direction v:  U_1 = v W_hat_1,  T_l = U_l * s_l,  U_l+1 = T_l W_hat_l+1,  U_L = (J_g v)^T
    for log_det the directions are e_1 .. e_D, so M = U_L has M[j] = dg/dx_j (J_g transposed),
    A = I + M,  log_det = log det A

Backprop, given gy = dL/dy (N, D) and gl = dL/dlog_det (N,) (or dU_L itself, for residual_jvp).
The tangents first (T_0 = v, the direction; directions are constants, with no gradient):

    dU_L = gl A^-T                                         (d log det A = tr(A^-1 dA))
    for l = L .. 1:  dW_hat_l += T_l-1^T dU_l,  and for l > 1:  dT = dU_l W_hat_l^T,
                     ds_l-1 = sum over directions of dT * U_l-1,  dU_l-1 = dT * s_l-1

then the network, which takes in ds_l through phi'' (the log-det depends on x and on beta
through the slopes s_l = phi'(a_l; beta)):

    dW_hat_L += h_L-1^T gy,  db_L = sum gy,  dh = gy W_hat_L^T,  for l = L-1 .. 1:
    da = dh * phi'(a_l) + ds_l * phi''(a_l),  dbeta_l = sum(dh * dphi/dbeta + ds_l * dphi'/dbeta),
    dW_hat_l += h_l-1^T da,  db_l = sum da,  dh = da W_hat_l^T;      dx = gy + dh

and last through the normalisation (lipschitz.py: d sigma/dW = u v^T) and beta = softplus(beta_raw):

    dW_l = dW_hat_l / m_l - [sigma_l > c_l] <dW_hat_l, W_l> / (m_l^2 c_l) u_l v_l^T
    dbeta_raw_l = dbeta_l sigmoid(beta_raw_l)

LipSwish's derivatives, with t = beta a and s = sigmoid(t) (q is d phi'/dt):

    phi = a s / 1.1,  phi' = s (1 + t (1 - s)) / 1.1,  q = s (1 - s) (2 + t (1 - 2 s)) / 1.1,
    phi'' = beta q,   dphi/dbeta = a^2 s (1 - s) / 1.1,   dphi'/dbeta = a q

Sharing work between the passes: a primitive's VJP sees only the primitive's inputs and its
output, so `saved`, a dict the caller makes fresh for every call and passes in, is where the
forward pass leaves the slopes, tangents, singular vectors and A^-1 for the backward pass (the
role of PyTorch's ctx.save_for_backward): nothing is computed twice and nothing is copied.
The tangents are stacked (K, N, n) and multiplied as one (K N, n) @ (n, n') product per layer.

Copy with: residual_backprop.py, lipschitz.py (and an empty __init__.py).
"""
import math

import numpy as np
from autograd.extend import defvjp_argnums, primitive

from .lipschitz import singular_vectors


def sigmoid(t):
    """lipschitz.sigmoid on plain numbers (autograd.numpy's wrappers cost more than the arithmetic here)."""
    return 0.5 * (np.tanh(0.5 * t) + 1)


def softplus(s):
    return np.logaddexp(0.0, s)


def lipswish(a, beta):
    """(phi(a), phi'(a), what lipswish_backward needs) of LipSwish, elementwise. Each array is
    built in place (x += 1 rounds as x + 1 does): the same numbers without a fresh array per
    operation, 15% (here) to 25% (backward) less time."""
    t = beta * a
    s = np.tanh(0.5 * t)
    s += 1
    s *= 0.5                                               # s = sigmoid(t) = (1 + tanh(t / 2)) / 2
    h = a * s
    h /= 1.1                                               # phi = a s / 1.1
    one_minus_s = 1 - s
    slope = t * one_minus_s
    slope += 1
    slope *= s
    slope /= 1.1                                           # phi' = s (1 + t (1 - s)) / 1.1
    return h, slope, (a, t, s, one_minus_s, beta)


def lipswish_backward(dh, ds, slope, kept):
    """(dL/da, dL/dbeta) from dh = dL/dphi and ds = dL/dphi' (the equations above), in place as in lipswish."""
    a, t, s, one_minus_s, beta = kept
    r = s * one_minus_s
    r /= 1.1                                               # r = s (1 - s) / 1.1
    q = 2 * s
    np.subtract(1, q, out=q)
    q *= t
    q += 2
    q *= r                                                 # q = r (2 + t (1 - 2 s))
    da = beta * q
    da *= ds
    da += dh * slope                                       # dL/da = dh phi' + ds beta q
    dbeta = a * r
    dbeta *= dh
    dbeta += ds * q
    dbeta *= a                                             # summed: dL/dbeta = sum a (dh a r + ds q)
    return da, np.sum(dbeta)


def tanh(a, beta=None):
    h = np.tanh(a)
    slope = 1 - h * h
    return h, slope, h


def tanh_backward(dh, ds, slope, h):
    return slope * (dh - 2 * h * ds), None                 # phi'' = -2 tanh(a) phi'


def elu(a, beta=None):
    below = np.where(a > 0, 0.0, a)                        # never expm1 of a large a
    slope = np.where(a > 0, 1.0, np.exp(below))
    return np.where(a > 0, a, np.expm1(below)), slope, a


def elu_backward(dh, ds, slope, a):
    return dh * slope + ds * np.where(a > 0, 0.0, slope), None      # phi'' = e^a below 0, 0 above


ACTIVATIONS = {"lipswish": (lipswish, lipswish_backward), "tanh": (tanh, tanh_backward), "elu": (elu, elu_backward)}


def log_det_and_inverse(A):
    """log det A (N,) and A^-1 (N, D, D), for a stack of matrices with det > 0. D = 2 written out:
    numpy's stacked LAPACK calls cost ten times the arithmetic of a 2 x 2 determinant."""
    if A.shape[1] != 2:
        return np.linalg.slogdet(A)[1], np.linalg.inv(A)
    det = A[:, 0, 0] * A[:, 1, 1] - A[:, 0, 1] * A[:, 1, 0]
    inverse = np.stack([A[:, 1, 1], -A[:, 0, 1], -A[:, 1, 0], A[:, 0, 0]], axis=1).reshape(-1, 2, 2)
    inverse /= det[:, None, None]
    return np.log(det), inverse


def split_leaves(leaves, shapes, activation):
    """[(W, b, beta_raw or None)] per layer from W_1, b_1[, beta_raw_1], ..., W_L, b_L, given as
    separate arrays (shapes None) or as one vector holding them in that order (views of it)."""
    if shapes is not None:
        theta, leaves, start = leaves[0], [], 0
        for shape in shapes:
            leaves.append(theta[start:start + math.prod(shape)].reshape(shape))
            start += math.prod(shape)
    layers, i = [], 0
    while i < len(leaves):
        hidden = i + 2 < len(leaves)
        has_beta = hidden and activation == "lipswish"
        layers.append((leaves[i], leaves[i + 1], leaves[i + 2] if has_beta else None))
        i += 3 if has_beta else 2
    return layers


def _forward(x, V, c, activation, shapes, leaves, saved):
    """y = x + g(x) and the tangents U_L = V J_g^T (K, N, D) for directions V (K, N, D); what the
    backward pass needs goes into saved."""
    layers = split_leaves(leaves, shapes, activation)
    c_layer = c ** (1 / len(layers))
    norms = []                                             # (u, v, sigma, m) per weight
    for W, _, _ in layers:
        u, v = singular_vectors(W)
        sigma = u @ W @ v
        norms.append((u, v, sigma, max(1.0, sigma / c_layer)))
    W_hats = [W / m for (W, _, _), (_, _, _, m) in zip(layers, norms)]
    betas = [None if beta_raw is None else softplus(beta_raw) for _, _, beta_raw in layers[:-1]]
    phi = ACTIVATIONS[activation][0]
    hs, slopes, kept = [x], [], []
    for W_hat, (_, b, _), beta in zip(W_hats[:-1], layers[:-1], betas):
        a = hs[-1] @ W_hat
        a += b                                             # in place, here and below: the same sums, no new array
        h, slope, keep = phi(a, beta)
        hs.append(h), slopes.append(slope), kept.append(keep)
    g = hs[-1] @ W_hats[-1]
    g += layers[-1][1]
    if callable(V):                                        # directions built from this pass's weights and slopes
        V = V([(W_hat, b) for W_hat, (_, b, _) in zip(W_hats, layers)], slopes)
    K, n, dim = V.shape
    Us, Ts = [(V.reshape(K * n, dim) @ W_hats[0]).reshape(K, n, W_hats[0].shape[1])], [V]
    for W_hat, slope in zip(W_hats[1:], slopes):
        Ts.append(Us[-1] * slope)
        Us.append((Ts[-1].reshape(K * n, W_hat.shape[0]) @ W_hat).reshape(K, n, W_hat.shape[1]))
    saved.update(layers=layers, c_layer=c_layer, norms=norms, W_hats=W_hats, hs=hs, slopes=slopes, kept=kept,
                 Us=Us, Ts=Ts, activation=activation, flat=shapes is not None)
    g += x
    return g, Us[-1]                                       # y = x + g


def _backward(saved, gy, dU, argnums, first):
    """The gradients of x and of the leaves (numbered from `first`) that autograd asked for, given
    gy = dL/dy and dU = dL/dU_L: the equations above."""
    layers, W_hats, hs, slopes, kept, Us, Ts = (saved[key] for key in
                                                ("layers", "W_hats", "hs", "slopes", "kept", "Us", "Ts"))
    L, (K, n, _) = len(layers), dU.shape
    dW_hats = [np.zeros(W.shape) for W in W_hats]
    ds = [None] * (L - 1)
    for l in reversed(range(L)):
        dW_hats[l] += Ts[l].reshape(K * n, -1).T @ dU.reshape(K * n, -1)
        if l > 0:
            dT = (dU.reshape(K * n, -1) @ W_hats[l].T).reshape(K, n, -1)
            ds[l - 1] = np.sum(dT * Us[l - 1], axis=0)
            dT *= slopes[l - 1]
            dU = dT
    dbs, dbetas = [None] * L, [None] * (L - 1)
    dW_hats[-1] += hs[-1].T @ gy
    dbs[-1] = np.sum(gy, axis=0)
    dh = gy @ W_hats[-1].T
    phi_backward = ACTIVATIONS[saved["activation"]][1]
    for l in reversed(range(L - 1)):
        da, dbetas[l] = phi_backward(dh, ds[l], slopes[l], kept[l])
        dW_hats[l] += hs[l].T @ da
        dbs[l] = np.sum(da, axis=0)
        dh = da @ W_hats[l].T
    grads, k, c_layer = {0: gy + dh}, first, saved["c_layer"]
    for l, ((W, _, beta_raw), (u, v, sigma, m)) in enumerate(zip(layers, saved["norms"])):
        dW = dW_hats[l] / m
        if sigma > c_layer:
            dW = dW - np.sum(dW_hats[l] * W) / (m * m * c_layer) * np.outer(u, v)
        grads[k], grads[k + 1] = dW, dbs[l]
        if beta_raw is not None:
            grads[k + 2] = dbetas[l] * sigmoid(beta_raw)
        k += 2 if beta_raw is None else 3
    if saved["flat"]:                                      # the leaves came as one vector: so does their gradient
        grads = {0: grads[0], first: np.concatenate([np.ravel(grads[i]) for i in range(first, k)])}
    return [grads[i] for i in argnums]


def basis(n, dim):
    """The D unit directions for each of n points, (D, n, D): their tangents are the Jacobian."""
    return np.broadcast_to(np.eye(dim)[:, None, :], (dim, n, dim))


@primitive
def residual(x, c, activation, saved, shapes, *leaves):
    """(y, log_det) of the block at x (N, D); c the bound on Lip(g); saved a fresh dict."""
    y, M = _forward(x, basis(*x.shape), c, activation, shapes, leaves, saved)
    A = np.eye(x.shape[1]) + M.transpose(1, 0, 2)          # A[n, j, i] = delta_ji + dg_i/dx_j
    log_det, saved["A_inverse"] = log_det_and_inverse(A)    # det > 0: |eigenvalues of J_g| <= c < 1
    return y, log_det


def residual_vjp(argnums, y_and_log_det, args, kwargs):
    saved = args[3]

    def vjp(cotangent):
        gy, gl = cotangent
        dU = gl[None, :, None] * saved["A_inverse"].transpose(2, 0, 1)     # [j, n, i] = gl (A^-T)[n, j, i]
        return _backward(saved, gy, dU, argnums, first=5)
    return vjp


@primitive
def residual_jvp(x, V, c, activation, saved, shapes, *leaves):
    """(y, J_g(x) v for each direction v): x (N, D), V (K, N, D) -> (N, D), (K, N, D). V is held
    constant (no gradient). V may also be a function (weights [(W_hat, b)], slopes [s_l]) -> V,
    called once this pass has them (plain numbers), so that directions built from products
    J^k v, the estimators' in residual_estimators.py, reuse them instead of computing them again."""
    return _forward(x, V, c, activation, shapes, leaves, saved)


def residual_jvp_vjp(argnums, y_and_JV, args, kwargs):
    if 1 in argnums:
        raise NotImplementedError("residual_jvp has no gradient with respect to the directions V")
    return lambda cotangent: _backward(args[4], cotangent[0], cotangent[1], argnums, first=6)


defvjp_argnums(residual, residual_vjp)
defvjp_argnums(residual_jvp, residual_jvp_vjp)
