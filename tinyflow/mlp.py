"""A multilayer perceptron as a plain pytree: the conditioner inside a coupling layer.

params = [{"W": (n_in, n_1), "b": (n_1,)}, ..., {"W": (n_k, n_out), "b": (n_out,)}]
mlp(params, x) = W_k^T a(... a(W_1^T x + b_1) ...) + b_k, batched: x (N, n_in) -> (N, n_out),

with the hidden activation a = tanh (default) or relu. tanh keeps the network smooth, so
finite-difference checks of a flow's Jacobian are exact to rounding (a ReLU kink can sit
between x - h and x + h). relu is what the normflows and FlowTorch tutorials use, and it is
cheaper per element: how much depends on the CPU, because NumPy vectorises float64 tanh only
in its AVX-512 kernels (chapter 8 measures 3-5 us per 1024 values with them, 13-19 without).

Each layer is one autograd primitive with its backprop written out (the hidden ones here, the
linear output layer in linear.py): one node on autograd's tape instead of three to five (dot,
add, activation, lookups), which is most of the speed of a training step at these sizes.
"""
import numpy as np
from autograd.extend import defvjp_argnums, primitive

from .linear import dense, dense_backprop


def mlp_init(rng, sizes, zero_last=True):
    """Weights and biases ~ U(-1/sqrt(n_in), 1/sqrt(n_in)), PyTorch's default for a linear layer
    (so the normflows/FlowTorch tutorials' models start where theirs do); the last layer
    starts at zero when zero_last, so a layer built on this MLP starts as the identity map.

    Random biases matter when n_in is small: with b = 0 every unit of a 1-input layer would
    switch (tanh's bend, relu's kink) at the same input value 0, so all 64 units would offer
    the conditioner a single feature; random b spreads their switch points -b/w over the input.
    (Measured on chapter 5's model, 1000 steps: KL 0.095 with b = 0, 0.036 with this init.)"""
    params = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        bound = 1 / np.sqrt(n_in)
        params.append({"W": rng.uniform(-bound, bound, (n_in, n_out)),
                       "b": rng.uniform(-bound, bound, n_out)})
    if zero_last:
        params[-1] = {"W": np.zeros_like(params[-1]["W"]), "b": np.zeros_like(params[-1]["b"])}
    return params


@primitive
def dense_tanh(x, W, b):
    """h = tanh(x W + b): x (N, n_in), W (n_in, n_out), b (n_out,) -> h (N, n_out).

    Backprop, given dh = dL/dh (N, n_out):
        da = dh * (1 - h^2)         tanh' = 1 - tanh^2, read off the saved output h
        dx = da W^T,   dW = x^T da,   db = sum over the batch of da     (linear.dense_backprop)
    """
    a = np.dot(x, W)
    a += b                                  # in place: one (N, n_out) buffer instead of three,
    return np.tanh(a, out=a)                # and each new buffer costs page faults as well as time


def dense_tanh_vjp(argnums, h, args, kwargs):
    x, W, b = args

    return lambda dh: dense_backprop(argnums, x, W, dh * (1 - h ** 2))


defvjp_argnums(dense_tanh, dense_tanh_vjp)


@primitive
def dense_relu(x, W, b):
    """h = max(x W + b, 0), shapes as dense_tanh. Backprop: da = dh * (h > 0), then as dense_tanh."""
    a = np.dot(x, W)
    a += b                                  # in place, as in dense_tanh
    return np.maximum(a, 0.0, out=a)


def dense_relu_vjp(argnums, h, args, kwargs):
    x, W, b = args

    return lambda dh: dense_backprop(argnums, x, W, dh * (h > 0))


defvjp_argnums(dense_relu, dense_relu_vjp)


HIDDEN = {"tanh": dense_tanh, "relu": dense_relu}


def mlp(params, x, activation="tanh"):
    hidden = HIDDEN[activation]
    for layer in params[:-1]:
        x = hidden(x, layer["W"], layer["b"])
    return dense(x, params[-1]["W"], params[-1]["b"])
