"""MADE: Masked Autoencoder for Distribution Estimation (Germain et al. 2015).

An MLP whose weight matrices are multiplied by fixed 0/1 masks so that output i depends
only on inputs 1..i-1 (natural order). Degrees:

    input j          degree j                 (1..D)
    hidden unit k    degree 1 + (k mod max(D-1, 1))       (1..D-1)
    output (i, c)    degree i                 (one copy of 1..D per output channel c)

    hidden mask M[j, k] = deg_hidden[k] >= deg_in[j]      (a unit sees inputs up to its degree)
    output mask M[k, i] = deg_out[i] >  deg_hidden[k]      (strict: output i never sees input i)

so every path from input j to output i has j <= deg <= ... < i. For D = 1 the output masks
are all zero and the outputs are just biases: a valid, input-independent conditioner.

A conditional MADE (made_masks(..., context_dim=C)) takes [x, context] as its input: the context
columns have degree 0, so every first-layer unit sees them, and the hidden degrees run over
0..D-1 (k mod D) instead: units of degree 0 see the context and no x, and carry it to output 1,
which must depend on the context too (p(x_1 | c)). The first layer then computes
x (W_x * M) + context W_c + b, the conditional MADE of Papamakarios et al. 2017.

params: list of {"W": (n_in, n_out), "b": (n_out,)}; masks: matching list of 0/1 float arrays.
made(params, masks, x): (N, D [+ C]) -> (N, channels * D), channel c in columns [c*D, (c+1)*D).

made reads as the chain of layers; made_fused computes the same numbers, bit for bit, as one
autograd node (mlp.mlp_step), which is what the autoregressive layers' single-pass direction runs.
"""
import autograd.numpy as np

from .linear import dense
from .mlp import as_one_node, dense_tanh


def made_degrees(dim, hidden, context_dim=0):
    """Degrees of the input layer (x, then any context) and each hidden layer: int arrays."""
    degrees = [np.concatenate([np.arange(1, dim + 1), np.zeros(context_dim, int)])]
    for width in hidden:
        degrees.append(np.arange(width) % dim if context_dim else 1 + np.arange(width) % max(dim - 1, 1))
    return degrees


def made_masks(dim, hidden, channels=2, context_dim=0):
    degrees = made_degrees(dim, hidden, context_dim)
    masks = [(d_out[None, :] >= d_in[:, None]).astype(float)
             for d_in, d_out in zip(degrees[:-1], degrees[1:])]
    out_degrees = np.tile(np.arange(1, dim + 1), channels)
    masks.append((out_degrees[None, :] > degrees[-1][:, None]).astype(float))
    return masks


def made(params, masks, x):
    for layer, mask in zip(params[:-1], masks[:-1]):
        x = dense_tanh(x, layer["W"] * mask, layer["b"])
    return dense(x, params[-1]["W"] * masks[-1], params[-1]["b"])


def made_fused(params, masks, x):
    """made(params, masks, x), bit for bit, as one node on autograd's tape (mlp.as_one_node, whose
    mlp_step takes the masks) instead of four per layer (W * M, the dense layer, the lookups of W and b)."""
    return as_one_node(lambda params, x: made(params, masks, x), params, x, "tanh", masks)
