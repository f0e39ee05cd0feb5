"""A continuous flow's velocity and divergence as one autograd primitive, with its backprop written out.

    velocity_and_divergence(weights, x, t, eps=None) -> v (N, D), div (N,)

computes what continuous.py's readable _network and divergence_plain compute (the reference the
tests hold this one to): v = MLP([x, t]) with tanh hidden layers, and div v = trace(dv/dx) exactly,
or Hutchinson's eps^T (dv/dx) eps given probes eps (N, D). Written with autograd.numpy one
evaluation records about twenty nodes, and an RK4 solve evaluates the field four times a step; as a
primitive it records one (plus two column takes), which is most of the speed of maximum-likelihood
training through the solver (chapter 8 explains why nodes cost more than arithmetic at these sizes).

The network, with s_l = 1 - h_l^2 (tanh' read off h_l) and W_1x the first D rows of W_1 (t's row
does not move with x):

    h_0 = [x, t],   h_l = tanh(h_l-1 W_l + b_l)  (l = 1 .. L),   v = h_L W_o + b_o

**The divergence in closed form** (exact, one or two hidden layers, the usual fields): the chain
rule gives dv_i/dx_i = sum_j,k W_1x[i, j] s_1j W_2[j, k] s_2k W_o[k, i], so summed over i

    L = 1:  div = s_1 . c,              c_j = sum_i W_1x[i, j] W_o[j, i]
    L = 2:  div = sum_k (s_1 C)_k s_2k,  C = W_2 * M,  M = W_1x^T W_o^T   (H_1, H_2), * elementwise

one matrix product per point batch, whatever D: no Jacobian is formed.

**Otherwise tangents** (three or more hidden layers, or Hutchinson's probes): with directions
E (N, K, D) (the D basis vectors, K = D; or K = 1, E = eps) the Jacobian-vector products are carried
forward, P_1 = E W_1x, P_l = T_l-1 W_l, T_l = P_l * s_l, O = T_L W_o (O[k] = (dv/dx) E[k]), and
div = sum_k E[k] . O[k].

Backprop, given gv = dL/dv and gq = dL/d div. The divergence depends on the weights directly and on
each h_l through s_l (ds_l/dh_l = -2 h_l), so its backprop leaves gradients g_l on the h_l:

    closed form, L = 2:  u = s_1 C,  ds_2 = gq u,  du = gq s_2,  ds_1 = du C^T,  dC = s_1^T du,
                         dW_2 += dC * M,  dM = dC * W_2,  dW_1x += (dM W_o)^T,  dW_o += (W_1x dM)^T
    closed form, L = 1:  ds_1 = gq c,  dc = s_1^T gq,  dW_1x[i, j] += dc_j W_o[j, i],  dW_o[j, i] += dc_j W_1x[i, j]
    tangents:            dO = gq E,  dW_o += T_L^T dO,  dT_L = dO W_o^T,  for l = L .. 1:
                         dP_l = dT_l * s_l,  ds_l = sum_k dT_l * P_l,  dW_l += T_l-1^T dP_l (l = 1: W_1x's rows),
                         dT_l-1 = dP_l W_l^T
    then g_l = -2 h_l ds_l, and the network's own backprop takes them in on the way down:
    dW_o += h_L^T gv,  db_o = sum gv,  dh_L = gv W_o^T + g_L,  for l = L .. 1:  da_l = dh_l * s_l,
    dW_l += h_l-1^T da_l,  db_l = sum da_l,  dh_l-1 = da_l W_l^T + g_l-1;   dx = dh_0's first D columns.

The forward pass keeps what the backward one needs (the h_l, and u or the tangents) in extra
columns of the primitive's one output array, the role of PyTorch's ctx.save_for_backward, as
spline_backprop.py does: the backward pass then does no forward arithmetic again. t and eps are
constants: no gradient flows to them. With nothing to differentiate (a density on a grid, a
sample: most of a chapter's evaluations) velocity_and_divergence computes the same v and div
without the primitive and without those columns, whose copy into one array is a fifth of a
4096-point evaluation. Every product is taken on 2D arrays, (N K, H) @ (H, H'):
numpy runs a 3D @ 2D as N small products.

Copy with: field_backprop.py, columns.py (and an empty __init__.py).
"""
import numpy as np
from autograd.extend import defvjp_argnums, primitive
from autograd.tracer import isbox

from .columns import take_columns


def velocity_and_divergence(weights, x, t, eps=None):
    """weights [(W_1, b_1), ..., (W_o, b_o)]; x (N, D); t a number or (N,); eps None or (N, D)."""
    dim = x.shape[1]
    arrays = [array for layer in weights for array in layer]
    if not any(isbox(a) for a in [x, *arrays]):           # nothing to differentiate (a density, a sample):
        v, div = _field_blocks(x, t, eps, *arrays)[:2]    # no columns kept for a backward pass that never comes
        return v, div[:, 0]
    out = _field(x, t, eps, *arrays)
    v_and_div = take_columns(out, slice(0, dim + 1))      # one gradient as wide as out, not two
    return take_columns(v_and_div, slice(0, dim)), take_columns(v_and_div, dim)


def closed_form(num_hidden, eps):
    """Whether the divergence is taken in closed form: exact, with one or two hidden layers."""
    return eps is None and num_hidden in (1, 2)


def _directions(x, eps):
    """E as rows (N K, D): the D basis vectors for each point, or its one probe."""
    n, dim = x.shape
    return np.broadcast_to(np.eye(dim), (n, dim, dim)).reshape(n * dim, dim) if eps is None else eps


def _inputs(x, t):
    h0 = np.empty((len(x), x.shape[1] + 1))
    h0[:, :-1], h0[:, -1] = x, t
    return h0


@primitive
def _field(x, t, eps, *weights):
    """One (N, D + 1 + S) array: v, div, then S columns kept for the backward pass (the h_l, then u
    for the closed form or the P_l and T_l for tangents, each tangent array as (N, K H))."""
    return np.concatenate(_field_blocks(x, t, eps, *weights), axis=1)


def _field_blocks(x, t, eps, *weights):
    """_field's columns as a list of blocks: v (N, D), div (N, 1), then the kept ones."""
    Ws, bs = weights[0::2], weights[1::2]
    n, dim = x.shape
    hs = [_inputs(x, t)]
    for W, b in zip(Ws[:-1], bs[:-1]):
        a = hs[-1] @ W
        a += b
        hs.append(np.tanh(a, out=a))
    v = hs[-1] @ Ws[-1] + bs[-1]
    ss = [1 - h * h for h in hs[1:]]
    W_1x, W_o = Ws[0][:dim], Ws[-1]
    if closed_form(len(ss), eps) and len(ss) == 1:
        return [v, (ss[0] @ np.sum(W_1x * W_o.T, axis=0))[:, None], hs[1]]
    if closed_form(len(ss), eps):
        u = ss[0] @ (Ws[1] * (W_1x.T @ W_o.T))
        return [v, np.sum(u * ss[1], axis=1)[:, None], hs[1], hs[2], u]
    E = _directions(x, eps)
    Ps, Ts = [], [E]
    for layer, (W, s) in enumerate(zip(Ws[:-1], ss)):
        Ps.append(Ts[-1] @ (W_1x if layer == 0 else W))
        Ts.append((Ps[-1].reshape(n, -1, s.shape[1]) * s[:, None, :]).reshape(len(E), -1))
    q = np.sum((Ts[-1] @ W_o * E).reshape(n, -1), axis=1)
    kept = [P.reshape(n, -1) for P in Ps] + [T.reshape(n, -1) for T in Ts[1:]]
    return [v, q[:, None], *hs[1:], *kept]


def _field_vjp(argnums, out, args, kwargs):
    x, t, eps, *weights = args
    if any(i in (1, 2) for i in argnums):
        raise NotImplementedError("velocity_and_divergence has no gradient with respect to t or eps")
    Ws, bs = weights[0::2], weights[1::2]
    n, dim = x.shape
    widths = [W.shape[1] for W in Ws[:-1]]
    L = len(widths)
    W_1x, W_o = Ws[0][:dim], Ws[-1]
    saved = np.split(out[:, dim + 1:], np.cumsum(widths)[:-1].tolist() + [sum(widths)], axis=1)
    hs, rest = [_inputs(x, t)] + saved[:L], out[:, dim + 1 + sum(widths):]
    ss = [1 - h * h for h in hs[1:]]

    def vjp(g):
        gv, gq = g[:, :dim], g[:, dim]
        dWs = [np.zeros(W.shape) for W in Ws]
        ds = [None] * L                                        # dL/ds_l through the divergence
        if closed_form(L, eps) and L == 1:
            c = np.sum(W_1x * W_o.T, axis=0)
            ds[0], dc = gq[:, None] * c, ss[0].T @ gq
            dWs[0][:dim] += dc * W_o.T
            dWs[-1] += dc[:, None] * W_1x.T
        elif closed_form(L, eps):
            M = W_1x.T @ W_o.T
            C, u = Ws[1] * M, rest
            ds[1], du = gq[:, None] * u, gq[:, None] * ss[1]
            ds[0], dC = du @ C.T, ss[0].T @ du
            dWs[1] += dC * M
            dM = dC * Ws[1]
            dWs[0][:dim] += (dM @ W_o).T
            dWs[-1] += (W_1x @ dM).T
        else:
            E = _directions(x, eps)
            K = len(E) // n
            blocks = np.split(rest, np.cumsum([K * w for w in widths * 2])[:-1].tolist(), axis=1)
            Ps = [P.reshape(n * K, -1) for P in blocks[:L]]
            Ts = [E] + [T.reshape(n * K, -1) for T in blocks[L:]]
            dO = gq.repeat(K)[:, None] * E
            dWs[-1] += Ts[-1].T @ dO
            dT = dO @ W_o.T
            for layer in reversed(range(L)):
                dT3, s = dT.reshape(n, K, -1), ss[layer]
                dP = (dT3 * s[:, None, :]).reshape(n * K, -1)
                ds[layer] = np.sum(dT3 * Ps[layer].reshape(n, K, -1), axis=1)
                if layer == 0:
                    dWs[0][:dim] += Ts[0].T @ dP                 # E moves only x's rows of W_1
                else:
                    dWs[layer] += Ts[layer].T @ dP
                    dT = dP @ Ws[layer].T
        dbs = [None] * len(Ws)
        dWs[-1] += hs[-1].T @ gv
        dbs[-1] = gv.sum(axis=0)
        dh = gv @ W_o.T
        for layer in reversed(range(L)):
            da = (dh - 2 * hs[layer + 1] * ds[layer]) * ss[layer]
            dWs[layer] += hs[layer].T @ da
            dbs[layer] = da.sum(axis=0)
            dh = da @ Ws[layer].T
        grads = {0: dh[:, :dim]}
        for layer in range(len(Ws)):
            grads[3 + 2 * layer], grads[4 + 2 * layer] = dWs[layer], dbs[layer]
        return [grads[i] for i in argnums]
    return vjp


defvjp_argnums(_field, _field_vjp)
