"""A multilayer perceptron as a plain pytree: the conditioner inside a coupling layer.

params = [{"W": (n_in, n_1), "b": (n_1,)}, ..., {"W": (n_k, n_out), "b": (n_out,)}]
mlp(params, x) = W_k^T tanh(... tanh(W_1^T x + b_1) ...) + b_k, batched: x (N, n_in) -> (N, n_out).

tanh keeps the network smooth, so finite-difference checks of the flow's Jacobian are exact
to rounding (a ReLU kink can sit between x - h and x + h).

Each hidden layer is one autograd primitive, dense_tanh, with its backprop written out: one
node on autograd's tape instead of five (two lookups, dot, add, tanh), which is most of the
speed of a training step at these sizes.
"""
import autograd.numpy as np
from autograd.extend import defvjp_argnums, primitive


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


@primitive
def dense_tanh(x, W, b):
    """h = tanh(x W + b): x (N, n_in), W (n_in, n_out), b (n_out,) -> h (N, n_out).

    Backprop, given dh = dL/dh (N, n_out):
        da = dh * (1 - h^2)         tanh' = 1 - tanh^2, read off the saved output h
        dx = da W^T,   dW = x^T da,   db = sum over the batch of da
    """
    return np.tanh(np.dot(x, W) + b)


def dense_tanh_vjp(argnums, h, args, kwargs):
    x, W, b = args

    def vjp(dh):
        da = dh * (1 - h ** 2)
        grads = {0: lambda: np.dot(da, W.T), 1: lambda: np.dot(x.T, da), 2: lambda: np.sum(da, axis=0)}
        return [grads[i]() for i in argnums]          # only for the arguments being differentiated
    return vjp


defvjp_argnums(dense_tanh, dense_tanh_vjp)


def mlp(params, x):
    for layer in params[:-1]:
        x = dense_tanh(x, layer["W"], layer["b"])
    return np.dot(x, params[-1]["W"]) + params[-1]["b"]
