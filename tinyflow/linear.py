"""Linear maps as autograd primitives, each with its backprop written out.

    dense(x, W, b)          = x W + b                 a layer of an MLP; x (N, n_in), W (n_in, n_out), b (n_out,)
    dense_inverse(y, W, b)  = (y - b) W^-1            its inverse (W square and invertible)
    lu_weight(L, U, log_d)  = L' U'                   the LU-parameterised matrix of LULinear (D, D)

One node on autograd's tape each, instead of two to seven for the same expression written
with autograd.numpy: autograd spends tens of microseconds on every node, more than the
arithmetic costs on a batch of a few hundred points. The bodies use plain numpy, because a
primitive always sees plain arrays.
"""
import numpy as np
from autograd.extend import defvjp_argnums, primitive


def _only(argnums, grads):
    """The gradients autograd asked for: grads maps argument number -> a function computing it."""
    return [grads[i]() for i in argnums]


@primitive
def dense(x, W, b):
    """h = x W + b. Backprop, given dh: dx = dh W^T, dW = x^T dh, db = sum over the batch of dh."""
    h = np.dot(x, W)
    h += b                                  # in place: one (N, n_out) buffer, not two
    return h


def dense_vjp(argnums, h, args, kwargs):
    x, W, b = args
    return lambda dh: _only(argnums, {0: lambda: np.dot(dh, W.T), 1: lambda: np.dot(x.T, dh),
                                      2: lambda: np.sum(dh, axis=0)})


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


def _triangles(L, U, log_d):
    """L' = I + (strictly lower part of L), U' = diag(exp(log_d)) + (strictly upper part of U)."""
    return np.tril(L, -1) + np.eye(len(log_d)), np.triu(U, 1) + np.diag(np.exp(log_d))


@primitive
def lu_weight(L, U, log_d):
    """W = L' U' (see _triangles). Backprop, given dW: as W = L' U', dL' = dW U'^T and
    dU' = L'^T dW; the parameters reach only the strictly lower part of dL', the strictly upper
    part of dU', and (through exp) its diagonal times exp(log_d)."""
    lower, upper = _triangles(L, U, log_d)
    return np.dot(lower, upper)


def lu_weight_vjp(argnums, W, args, kwargs):
    lower, upper = _triangles(*args)

    def vjp(dW):
        d_upper = np.dot(lower.T, dW)
        return _only(argnums, {0: lambda: np.tril(np.dot(dW, upper.T), -1), 1: lambda: np.triu(d_upper, 1),
                               2: lambda: np.diag(d_upper) * np.exp(args[2])})
    return vjp


defvjp_argnums(lu_weight, lu_weight_vjp)
