"""The affine coupling layer of coupling.py as one autograd primitive, with its backprop written out.

    coupling_step(v, context, weights, plan) -> (N, D + 1): [out, log_det]

weights is the layer's params as one vector, W_1, b_1, ..., W_k, b_k raveled in that order
(leaves.flat_params: one node in a training step, however many arrays the MLP has).

computes what AffineCoupling's readable methods compute (s_t, affine, merge_columns; the tests
hold the two to each other), for v = x (out = y) or, with plan.inverse, v = y (out = x):

    h_0 = [v_a, c],   h_j = a(h_{j-1} W_j + b_j) for the hidden layers,   [s_raw, t] = h_{k-1} W_k + b_k
    s = s_max tanh(s_raw / s_max)
    forward:  y_b = x_b exp(s) + t,       log_det =  sum_b s
    inverse:  x_b = (y_b - t) exp(-s),    log_det = -sum_b s
    out_a = v_a                           (the kept coordinates pass through)

Backprop, given g_out (N, D) and g_log_det (N,), with ' for a gradient:
    forward:  x_b' = y_b' exp(s),   t' = y_b',   s' = y_b' x_b exp(s) + log_det'
    inverse:  y_b' = x_b' exp(-s),  t' = -y_b',  s' = -x_b' x_b - log_det'
    s_raw' = s' (1 - (s / s_max)^2)                       tanh' = 1 - tanh^2
then back through the MLP as in linear.py and mlp.py (W_j' = h_{j-1}^T a_j', b_j' = sum a_j',
h_{j-1}' = a_j' W_j^T, a' = h' (h > 0) for relu, h' (1 - h^2) for tanh), and v_a' = out_a' + its
part of h_0', c' = the rest of h_0'.

One node on autograd's tape instead of twelve (four column picks, the MLP's three layers, the
clamp, the affine map, the merge, the sum and a sign): chapter 8's lesson taken one step further,
to a whole layer, which is what lets a 16-block coupling + LU step beat PyTorch (the benchmark).

Two layouts make it fast, and neither changes the maths:
  * Biases ride in the matrix products. params are raveled W_1, b_1, W_2, ..., so each pair is
    already, in memory, the (n_in + 1, n_out) matrix [W_j; b_j]; with a row of ones under every
    input, one product gives x W_j + b_j (no separate pass to add b_j) and, backwards, one product
    gives [W_j'; b_j'] (no separate sum for b_j'), written straight into the gradient's vector.
  * Activations are stored transposed, one row per unit and one column per point: H_j (n_j + 1, N),
    its last row the ones. A product then writes a layer's output into the first n_j rows of the
    next H in place; in the usual (N, n_j) layout those would not be one contiguous block.

Saved, not recomputed: the forward pass writes its output, s and every H (the input's too) into
one buffer and returns the output as a view of it; the backward pass reads the rest back through
the view's .base, numpy's reference to that buffer. That is PyTorch's save_for_backward without
a copy: the hidden activations are the largest arrays of the step (64 x N each here), and
recomputing them would cost a third more matrix products.
"""
from typing import NamedTuple

import numpy as np
from autograd.extend import defvjp_argnums, primitive


class Plan(NamedTuple):
    """The layer's hyperparameters, as coupling_step needs them."""
    index_a: np.ndarray       # kept coordinates
    index_b: np.ndarray       # changed coordinates
    sizes: tuple              # the MLP's widths, [n_a (+ C), *hidden, 2 n_b]
    s_max: float              # the bound of the log-scale
    activation: str           # "tanh" or "relu"
    inverse: bool             # False: x -> y; True: y -> x


def unpack(weights, sizes):
    """[Wb_1, ..., Wb_k]: layer j's W_j (n_in, n_out) and b_j (n_out,) as one (n_in + 1, n_out)
    view [W_j; b_j] of the vector weights (or of its gradient): W_j raveled, then b_j, row-major."""
    arrays, start = [], 0
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        arrays.append(weights[start:start + (n_in + 1) * n_out].reshape(n_in + 1, n_out))
        start += (n_in + 1) * n_out
    return arrays


def blocks(buffer, n, plan):
    """The views of coupling_step's buffer: out (N, D + 1), s^T (n_b, N), then H_0 = [v_a^T; c^T; 1]
    and the hidden layers' H_j = [h_j^T; 1], each (width + 1, N)."""
    n_b = len(plan.index_b)
    shapes = [(n, len(plan.index_a) + n_b + 1), (n_b, n)] + [(width + 1, n) for width in plan.sizes[:-1]]
    views, start = [], 0
    for rows, columns in shapes:
        views.append(buffer[start:start + rows * columns].reshape(rows, columns))
        start += rows * columns
    return views


@primitive
def coupling_step(v, context, flat_weights, plan):
    n, weights, n_a, n_b = len(v), unpack(flat_weights, plan.sizes), len(plan.index_a), len(plan.index_b)
    size = n * (n_a + n_b + 1 + n_b + sum(width + 1 for width in plan.sizes[:-1]))
    out, s_T, *inputs = blocks(np.empty(size), n, plan)
    inputs[0][:n_a] = v[:, plan.index_a].T                    # H_0 = [v_a^T; c^T; 1]
    if context is not None:
        inputs[0][n_a:-1] = context.T
    for H in inputs:
        H[-1] = 1.0
    for Wb, H, H_next in zip(weights, inputs, inputs[1:]):   # hidden layers, each written in place
        a = np.dot(Wb.T, H, out=H_next[:-1])                  # (h W + b)^T: one product
        if plan.activation == "relu":
            np.maximum(a, 0.0, out=a)
        else:
            np.tanh(a, out=a)
    s_raw_t = np.dot(weights[-1].T, inputs[-1])               # (2 n_b, N): rows s_raw, then t
    np.tanh(s_raw_t[:n_b] / plan.s_max, out=s_T)
    s_T *= plan.s_max
    s, t, v_b = s_T.T, s_raw_t[n_b:].T, v[:, plan.index_b]   # back to one row per point
    out[:, plan.index_a] = v[:, plan.index_a]
    if plan.inverse:
        out[:, plan.index_b] = (v_b - t) * np.exp(-s)
        out[:, -1] = -s.sum(axis=1)
    else:
        out[:, plan.index_b] = v_b * np.exp(s) + t
        out[:, -1] = s.sum(axis=1)
    return out                                                # a view of buffer: see the docstring


def coupling_step_vjp(argnums, out, args, kwargs):
    v, context, flat_weights, plan = args
    weights = unpack(flat_weights, plan.sizes)

    def vjp(g):
        _, s_T, *inputs = blocks(out.base, len(v), plan)
        s = s_T.T
        g_out, g_log_det = g[:, :-1], g[:, -1:]
        g_out_b = g_out[:, plan.index_b]
        if plan.inverse:
            g_v_b = g_out_b * np.exp(-s)
            g_t, g_s = -g_v_b, -g_out_b * out[:, plan.index_b] - g_log_det
        else:
            g_v_b = g_out_b * np.exp(s)
            g_t, g_s = g_out_b, g_v_b * v[:, plan.index_b] + g_log_det
        g_a = np.concatenate([g_s * (1 - (s / plan.s_max) ** 2), g_t], axis=1).T   # at [s_raw, t], (2 n_b, N)
        g_flat = np.empty(len(flat_weights))
        g_weights = unpack(g_flat, plan.sizes)                # views: the products write into g_flat
        for j in reversed(range(len(inputs))):                # back through the MLP, last layer first
            np.dot(inputs[j], g_a.T, out=g_weights[j])        # [W_j'; b_j'] = H_j g_a^T: one product
            g_h = np.dot(weights[j][:-1], g_a)                # h_j'^T = W_j g_a, (n_j, N)
            if j:                                             # through the activation, in place
                h = inputs[j][:-1]
                g_a = np.multiply(g_h, h > 0 if plan.activation == "relu" else 1 - h ** 2, out=g_h)
        n_a = len(plan.index_a)
        grads = {0: lambda: merged(g_out[:, plan.index_a] + g_h[:n_a].T, g_v_b, plan),
                 1: lambda: g_h[n_a:].T, 2: lambda: g_flat}
        return [grads[i]() for i in argnums]
    return vjp


def merged(g_a, g_b, plan):
    """The gradient on v: g_a in the kept columns, g_b in the changed ones."""
    g = np.empty((len(g_a), len(plan.index_a) + len(plan.index_b)))
    g[:, plan.index_a], g[:, plan.index_b] = g_a, g_b
    return g


defvjp_argnums(coupling_step, coupling_step_vjp)
