"""Linear maps as autograd primitives, each with its backprop written out.

    dense(x, W, b)          = x W + b                 a layer of an MLP; x (N, n_in), W (n_in, n_out), b (n_out,)
    dense_inverse(y, W, b)  = (y - b) W^-1            its inverse (W square and invertible)
    lu_weight(LU)           = L U                     LULinear's matrix, from its packed (D, D) parameter
    lu_linear(v, LU, b, order, inverse)               LULinear's whole map: v W^T + b, or (v - b) W^-T
    lu_log_det(LU, n, sign) = sign trace(LU), n times LULinear's log-det, the same at every point
    add_all(x_1, ..., x_k)  = x_1 + ... + x_k         a flow's log-dets, one per layer (all the same shape)

One node on autograd's tape each, instead of two to seven for the same expression written
with autograd.numpy: autograd spends tens of microseconds on every node, more than the
arithmetic costs on a batch of a few hundred points. The bodies use plain numpy, because a
primitive always sees plain arrays.
"""
from functools import lru_cache

import numpy as np
from autograd.extend import defvjp, defvjp_argnums, primitive


def _only(argnums, grads):
    """The gradients autograd asked for: grads maps argument number -> a function computing it."""
    return [grads[i]() for i in argnums]


@primitive
def dense(x, W, b):
    """h = x W + b. Backprop, given dh: dx = dh W^T, dW = x^T dh, db = sum over the batch of dh."""
    h = np.dot(x, W)
    h += b                                  # in place: one (N, n_out) buffer, not two
    return h


def dense_backprop(argnums, x, W, da):
    """The gradients of a = x W + b that autograd asked for, given da = dL/da:
    dx = da W^T, dW = x^T da, db = sum over the batch of da. Shared by every dense layer."""
    return _only(argnums, {0: lambda: np.dot(da, W.T), 1: lambda: np.dot(x.T, da),
                           2: lambda: np.sum(da, axis=0)})


def dense_vjp(argnums, h, args, kwargs):
    x, W, b = args
    return lambda dh: dense_backprop(argnums, x, W, dh)


defvjp_argnums(dense, dense_vjp)


@primitive
def dense_inverse(y, W, b):
    """x = (y - b) W^-1, the x with dense(x, W, b) = y. Backprop, given dx: with g = dx W^-T,
    dy = g, db = -sum over the batch of g, dW = -x^T g (from d(W^-1) = -W^-1 dW W^-1)."""
    return np.linalg.solve(W.T, (y - b).T).T


def dense_inverse_vjp(argnums, x, args, kwargs):
    y, W, b = args

    def vjp(dx):
        g = np.linalg.solve(W, dx.T).T                        # dx W^-T, without forming W^-1
        return _only(argnums, {0: lambda: g, 1: lambda: -np.dot(x.T, g), 2: lambda: -np.sum(g, axis=0)})
    return vjp


defvjp_argnums(dense_inverse, dense_inverse_vjp)


@lru_cache(maxsize=None)
def strictly_lower(dim):
    """The (dim, dim) 0/1 mask of the entries below the diagonal, built once per dim (np.tri costs
    more than the masking itself at chapter 5's 2 x 2); read-only, since every call shares it."""
    below = np.tri(dim, k=-1)
    below.flags.writeable = False
    return below


def lu_factors(LU):
    """L = I + (strictly lower part of LU),  U = diag(exp(diagonal of LU)) + (strictly upper part of LU),
    and the strictly lower 0/1 mask that splits LU."""
    below = strictly_lower(len(LU))
    L, U = below * LU, below.T * LU
    np.fill_diagonal(L, 1.0)
    np.fill_diagonal(U, np.exp(np.diagonal(LU)))
    return L, U, below


@primitive
def lu_weight(LU):
    """W = L U from the packed (D, D) parameter LU (see lu_factors). Backprop, given dW: as
    W = L U, dL = dW U^T and dU = L^T dW; LU's strictly lower part reaches only L's, its strictly
    upper part only U's, and its diagonal (through exp) only U's diagonal."""
    L, U, _ = lu_factors(LU)
    return np.dot(L, U)


def lu_weight_vjp(W, LU):
    def vjp(dW):
        L, U, below = lu_factors(LU)          # rebuilt here, in the backward pass, not kept from the forward
        dU = np.dot(L.T, dW)
        dLU = below * np.dot(dW, U.T) + below.T * dU
        np.fill_diagonal(dLU, np.diagonal(dU) * np.diagonal(U))
        return dLU
    return vjp


defvjp(lu_weight, lu_weight_vjp)


def lu_matrix(LU, order):
    """W = P L U: L U with its rows taken in `order` (None: the identity permutation)."""
    L, U, _ = lu_factors(LU)
    W = np.dot(L, U)
    return W if order is None else W[order]


@primitive
def lu_linear(v, LU, b, order, inverse):
    """LULinear's map as one node: y = v W^T + b, or with inverse=True x = (v - b) W^-T, W = P L U.
    The chain lu_weight -> (row order) -> transpose -> dense (or dense_inverse) in one step;
    backprop composes theirs: see lu_linear_vjp. The inverse multiplies by W^-1, formed once per
    call: for N points and a small D that is one D x D inversion and one product, where
    np.linalg.solve would pay its own setup on every call (four times the cost at D = 2); W is
    invertible by construction (L unit-triangular, U's diagonal exp(.) > 0)."""
    W = lu_matrix(LU, order)
    return np.dot(v - b, np.linalg.inv(W).T) if inverse else np.dot(v, W.T) + b


def lu_linear_vjp(argnums, out, args, kwargs):
    """Forward, y = v W^T + b:      v' = y' W,   W' = y'^T v,   b' = sum y'.
    Inverse, x = (v - b) W^-T:     with g = x' W^-1,  v' = g,  b' = -sum g,  W' = -g^T x.
    Then W = P L U back to the packed LU as in lu_weight_vjp (the row order undone first)."""
    v, LU, b, order, inverse = args

    def vjp(g_out):
        W = lu_matrix(LU, order)
        if inverse:
            g_v = np.dot(g_out, np.linalg.inv(W))
            g_W, g_b = -np.dot(g_v.T, out), -g_v.sum(axis=0)
        else:
            g_v, g_W, g_b = np.dot(g_out, W), np.dot(g_out.T, v), g_out.sum(axis=0)
        grads = {0: lambda: g_v, 2: lambda: g_b}
        if 1 in argnums:
            g_LU_W = g_W if order is None else g_W[np.argsort(order)]     # the gradient on L U, rows unpermuted
            grads[1] = lambda: lu_weight_vjp(None, LU)(g_LU_W)
        return [grads[i]() for i in argnums]
    return vjp


defvjp_argnums(lu_linear, lu_linear_vjp)


@primitive
def lu_log_det(LU, n, sign):
    """sign trace(LU) = sign sum(log d), as an (n,) array: one node, not trace, full and a sign.
    Backprop: the sum of the n gradients, times sign, on LU's diagonal."""
    return np.full(n, sign * np.trace(LU))


defvjp(lu_log_det, lambda log_det, LU, n, sign: lambda g: sign * np.sum(g) * np.eye(len(LU)))


@primitive
def add_all(*terms):
    """terms[0] + terms[1] + ...: one node instead of one addition per term. Backprop: each term
    gets the whole incoming gradient."""
    return sum(terms[1:], terms[0])


defvjp_argnums(add_all, lambda argnums, total, terms, kwargs: lambda g: [g] * len(argnums))
