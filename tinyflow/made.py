"""MADE: Masked Autoencoder for Distribution Estimation (Germain et al. 2015).

An MLP whose weight matrices are multiplied by fixed 0/1 masks so that output i depends
only on inputs 1..i-1 (natural order). Degrees:

    input j          degree j                 (1..D)
    hidden unit k    degree 1 + (k mod max(D-1, 1))
    output (i, c)    degree i                 (one copy of 1..D per output channel c)

    hidden mask M[j, k] = deg_hidden[k] >= deg_in[j]      (a unit sees inputs up to its degree)
    output mask M[k, i] = deg_out[i] >  deg_hidden[k]      (strict: output i never sees input i)

so every path from input j to output i has j <= deg <= ... < i. For D = 1 the output masks
are all zero and the outputs are just biases: a valid, input-independent conditioner.

params: list of {"W": (n_in, n_out), "b": (n_out,)}; masks: matching list of 0/1 float arrays.
made(params, masks, x): (N, D) -> (N, channels * D), channel c in columns [c*D, (c+1)*D).
"""
import autograd.numpy as np

from .linear import dense
from .mlp import dense_tanh


def made_degrees(dim, hidden):
    """Degrees of the input layer and each hidden layer: a list of int arrays."""
    degrees = [np.arange(1, dim + 1)]
    for width in hidden:
        degrees.append(1 + np.arange(width) % max(dim - 1, 1))
    return degrees


def made_masks(dim, hidden, channels=2):
    degrees = made_degrees(dim, hidden)
    masks = [(d_out[None, :] >= d_in[:, None]).astype(float)
             for d_in, d_out in zip(degrees[:-1], degrees[1:])]
    out_degrees = np.tile(np.arange(1, dim + 1), channels)
    masks.append((out_degrees[None, :] > degrees[-1][:, None]).astype(float))
    return masks


def made(params, masks, x):
    for layer, mask in zip(params[:-1], masks[:-1]):
        x = dense_tanh(x, layer["W"] * mask, layer["b"])
    return dense(x, params[-1]["W"] * masks[-1], params[-1]["b"])
