"""A continuous flow's velocity and divergence as one autograd primitive, with its backprop written out.

    velocity_and_divergence(weights, x, t, eps=None) -> v (N, D), div (N,)

computes what continuous.py's readable _network and _divergence compute (the reference the tests
hold this one to): v = MLP([x, t]) with tanh hidden layers, and div v = trace(dv/dx) exactly, or
Hutchinson's eps^T (dv/dx) eps given probes eps (N, D). Written with autograd.numpy one evaluation
records about twenty nodes, and an RK4 solve evaluates the field four times a step; as a primitive
it records one (plus two column takes), which is most of the speed of maximum-likelihood training
through the solver (chapter 8 explains why nodes cost more than arithmetic at these sizes).

Both cases are one computation: with directions E (N, K, D) (the D basis vectors, K = D, for the
exact divergence; K = 1, E = eps, for Hutchinson's), tangents are carried forward through the layers,

    h_0 = [x, t],   h_l = tanh(h_l-1 W_l + b_l),   s_l = 1 - h_l^2,   v = h_L W_o + b_o
    P_1 = E W_1x (W_1's first D rows: t does not move),   P_l = T_l-1 W_l,   T_l = P_l * s_l,   O = T_L W_o
    q = sum_k sum_i E[k, i] O[k, i]   (O[k] = (dv/dx) E[k], so q = sum_k E[k]^T (dv/dx) E[k])

Backprop, given gv = dL/dv and gq = dL/dq, from the top:

    dO = gq E,   dW_o = T_L^T dO + h_L^T gv,   db_o = sum gv,   dT_L = dO W_o^T,   dh_L = gv W_o^T
    for l = L .. 1:   dP_l = dT_l * s_l,   ds_l = sum_k dT_l * P_l,   dh_l += -2 h_l ds_l (s = 1 - h^2),
                      da_l = dh_l * s_l (tanh' = s),   dW_l = h_l-1^T da_l + T_l-1^T dP_l,   db_l = sum da_l,
                      dh_l-1 = da_l W_l^T,   dT_l-1 = dP_l W_l^T   (for l = 1, T_0 = E and only W_1x's rows)
    dx = dh_0's first D columns.

The backward pass recomputes the forward one instead of keeping its arrays in the output (one more
forward's arithmetic, no autograd bookkeeping). t and eps are constants: no gradient flows to them.
Every product is taken on 2D arrays, (N K, H) @ (H, H'): numpy runs a 3D @ 2D as N small products.

Copy with: field_backprop.py, columns.py (and an empty __init__.py).
"""
import numpy as np
from autograd.extend import defvjp_argnums, primitive

from .columns import take_columns


def velocity_and_divergence(weights, x, t, eps=None):
    """weights [(W_1, b_1), ..., (W_o, b_o)]; x (N, D); t a number or (N,); eps None or (N, D)."""
    dim = x.shape[1]
    out = _field(x, t, eps, *[array for layer in weights for array in layer])
    return take_columns(out, slice(0, dim)), take_columns(out, dim)


def _forward(x, t, eps, Ws, bs):
    """The forward pass, keeping h_0..h_L, s_1..s_L, P_1..P_L, T_0..T_L (each T, P as (N K, width))."""
    n, dim = x.shape
    E = np.broadcast_to(np.eye(dim), (n, dim, dim)) if eps is None else eps[:, None, :]
    K = E.shape[1]
    h0 = np.empty((n, dim + 1))
    h0[:, :dim], h0[:, dim] = x, t
    hs, ss, Ps, Ts = [h0], [], [], [E.reshape(n * K, dim)]
    for layer, (W, b) in enumerate(zip(Ws[:-1], bs[:-1])):
        a = hs[-1] @ W
        a += b
        h = np.tanh(a, out=a)
        s = 1 - h * h
        P = Ts[-1] @ (W[:dim] if layer == 0 else W)
        hs.append(h)
        ss.append(s)
        Ps.append(P)
        Ts.append((P.reshape(n, K, -1) * s[:, None, :]).reshape(n * K, -1))
    v = hs[-1] @ Ws[-1] + bs[-1]
    O = Ts[-1] @ Ws[-1]                                      # (N K, D): the Jacobian-vector products
    q = np.sum((O * Ts[0]).reshape(n, K * dim), axis=1)
    return hs, ss, Ps, Ts, v, q


@primitive
def _field(x, t, eps, *weights):
    """[v, q] as one (N, D + 1) array; weights flat: W_1, b_1, ..., W_o, b_o."""
    hs, ss, Ps, Ts, v, q = _forward(x, t, eps, weights[0::2], weights[1::2])
    return np.concatenate([v, q[:, None]], axis=1)


def _field_vjp(argnums, out, args, kwargs):
    x, t, eps, *weights = args
    if any(i in (1, 2) for i in argnums):
        raise NotImplementedError("velocity_and_divergence has no gradient with respect to t or eps")
    Ws, bs = weights[0::2], weights[1::2]
    n, dim = x.shape

    def vjp(g):
        hs, ss, Ps, Ts, _, _ = _forward(x, t, eps, Ws, bs)
        K = len(Ts[0]) // n
        gv, gq = g[:, :dim], g[:, dim]
        dO = (gq[:, None, None] * Ts[0].reshape(n, K, dim)).reshape(n * K, dim)
        dWs, dbs = [None] * len(Ws), [None] * len(bs)
        dWs[-1], dbs[-1] = Ts[-1].T @ dO + hs[-1].T @ gv, gv.sum(axis=0)
        dT, dh = dO @ Ws[-1].T, gv @ Ws[-1].T
        for layer in reversed(range(len(Ws) - 1)):
            h, s, P, W = hs[layer + 1], ss[layer], Ps[layer], Ws[layer]
            dT3 = dT.reshape(n, K, -1)
            dP = (dT3 * s[:, None, :]).reshape(n * K, -1)
            ds = np.sum(dT3 * P.reshape(n, K, -1), axis=1)
            da = (dh - 2 * h * ds) * s
            dW = hs[layer].T @ da
            if layer == 0:
                dW[:dim] += Ts[0].T @ dP                     # T_0 = E moves only x's rows of W_1
            else:
                dW += Ts[layer].T @ dP
                dT = dP @ W.T
            dWs[layer], dbs[layer] = dW, da.sum(axis=0)
            dh = da @ W.T
        grads = {0: dh[:, :dim]}
        for layer in range(len(Ws)):
            grads[3 + 2 * layer], grads[4 + 2 * layer] = dWs[layer], dbs[layer]
        return [grads[i] for i in argnums]
    return vjp


defvjp_argnums(_field, _field_vjp)
