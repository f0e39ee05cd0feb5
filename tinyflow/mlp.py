"""A multilayer perceptron as a plain pytree: the conditioner inside a coupling layer.

params = [{"W": (n_in, n_1), "b": (n_1,)}, ..., {"W": (n_k, n_out), "b": (n_out,)}]
mlp(params, x) = W_k^T tanh(... tanh(W_1^T x + b_1) ...) + b_k, batched: x (N, n_in) -> (N, n_out).

tanh keeps the network smooth, so finite-difference checks of the flow's Jacobian are exact
to rounding (a ReLU kink can sit between x - h and x + h).
"""
import autograd.numpy as np


def mlp_init(rng, sizes, zero_last=True):
    """Weights ~ N(0, 1/n_in) (variance-preserving); the last layer starts at zero when
    zero_last, so a layer built on this MLP starts as the identity map."""
    params = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        params.append({"W": rng.standard_normal((n_in, n_out)) / np.sqrt(n_in),
                       "b": np.zeros(n_out)})
    if zero_last:
        params[-1] = {"W": np.zeros_like(params[-1]["W"]), "b": np.zeros_like(params[-1]["b"])}
    return params


def mlp(params, x):
    for layer in params[:-1]:
        x = np.tanh(np.dot(x, layer["W"]) + layer["b"])
    return np.dot(x, params[-1]["W"]) + params[-1]["b"]
