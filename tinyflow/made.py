"""MADE: Masked Autoencoder for Distribution Estimation (Germain et al. 2015).

An MLP whose weight matrices are multiplied by fixed 0/1 masks so that output i depends
only on inputs 1..i-1 (natural order). Degrees:

    input j          degree j                 (1..D)
    context c        degree 0                 (a conditional MADE: every hidden unit may see it)
    hidden unit k    degree (k mod max(D-1, 1)) + min(1, D-1)    (1..D-1; 0 when D = 1)
    output (i, c)    degree i                 (one copy of 1..D per output channel c)

    hidden mask M[j, k] = deg_hidden[k] >= deg_in[j]      (a unit sees inputs up to its degree)
    output mask M[k, i] = deg_out[i] >  deg_hidden[k]      (strict: output i never sees input i)

so every path from input j to output i has j <= deg <= ... < i, and the context, of degree 0,
reaches every output without breaking that. For D = 1 the hidden units have degree 0: they see
no input, only the context (if any), and feed the one output; unconditioned, that output is a
learned constant, a valid, input-independent conditioner.

The context enters as extra input columns: made(params, masks, [x, context]), the first mask
having one all-ones row per context column (made_masks(..., context_dim=C)); the first layer
then computes x (W_x * M) + context W_c + b, the conditional MADE of Papamakarios et al. 2017.

params: list of {"W": (n_in, n_out), "b": (n_out,)}; masks: matching list of 0/1 float arrays.
made(params, masks, x): (N, D [+ C]) -> (N, channels * D), channel c in columns [c*D, (c+1)*D).
"""
import autograd.numpy as np

from .linear import dense
from .mlp import dense_tanh


def made_degrees(dim, hidden):
    """Degrees of the input layer and each hidden layer: a list of int arrays."""
    degrees = [np.arange(1, dim + 1)]
    for width in hidden:
        degrees.append(np.arange(width) % max(dim - 1, 1) + min(1, dim - 1))
    return degrees


def made_masks(dim, hidden, channels=2, context_dim=0):
    degrees = made_degrees(dim, hidden)
    degrees[0] = np.concatenate([degrees[0], np.zeros(context_dim, int)])    # context: degree 0
    masks = [(d_out[None, :] >= d_in[:, None]).astype(float)
             for d_in, d_out in zip(degrees[:-1], degrees[1:])]
    out_degrees = np.tile(np.arange(1, dim + 1), channels)
    masks.append((out_degrees[None, :] > degrees[-1][:, None]).astype(float))
    return masks


def made(params, masks, x):
    for layer, mask in zip(params[:-1], masks[:-1]):
        x = dense_tanh(x, layer["W"] * mask, layer["b"])
    return dense(x, params[-1]["W"] * masks[-1], params[-1]["b"])
