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
mlp_step goes one step further: the whole network as one node, the same numbers, for layers
that read their params as one vector (as_one_node): spline_coupling.py, made.py.
"""
import numpy as np
from autograd.extend import defvjp_argnums, primitive
from autograd.tracer import isbox

from .leaves import flat_params, read_leaves, shapes
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


def as_one_node(readable, params, x, activation, masks=None):
    """readable(params, x), a chain of dense layers (mlp, or made with its masks), computed as one
    node on autograd's tape by mlp_step: the same numbers, bit for bit. Used when autograd is
    differentiating and each layer's params are laid out {"W", "b"}, as init lays them out, so that
    they are one slice of fit's flat vector; otherwise (nothing to differentiate, or dicts built
    as {"b", "W"}) the readable chain runs as written."""
    params = read_leaves(params)              # a container autograd is differentiating: as leaves
    weights = flat_params(params)             # W_1, b_1, W_2, ...: one node
    if not (isbox(weights) or isbox(x)) or any(list(layer) != ["W", "b"] for layer in params):
        return readable(params, x)
    return mlp_step(x, weights, shapes(params)[::2], activation, masks)


def unpack(weights, sizes):
    """[(W_1, b_1), ...]: views of the vector weights = W_1, b_1, W_2, ... raveled (or of its gradient)."""
    layers, start = [], 0
    for n_in, n_out in sizes:
        layers.append((weights[start:start + n_in * n_out].reshape(n_in, n_out),
                       weights[start + n_in * n_out:start + (n_in + 1) * n_out]))
        start += (n_in + 1) * n_out
    return layers


def activations(buffer, n, sizes):
    """mlp_step's buffer as views: the output (N, n_out) first, then each hidden layer's h_j (N, n_j)."""
    views, start = [], 0
    for width in [sizes[-1][1]] + [n_out for _, n_out in sizes[:-1]]:
        views.append(buffer[start:start + n * width].reshape(n, width))
        start += n * width
    return views


@primitive
def mlp_step(x, weights, sizes, activation, masks):
    """The MLP with its params as one vector W_1, b_1, ..., W_k, b_k raveled, sizes [(n_in, n_out)]
    per layer: h_j = a(h_{j-1} W_j + b_j), out = h_{k-1} W_k + b_k (W_j * M_j for W_j if masks), each
    layer the same numpy calls as dense_tanh / dense_relu / dense, so the same bits. Backprop, given
    dout, from the last layer to the first (h_0 = x):
        da_k = dout;   W_j' = h_{j-1}^T da_j (times M_j),   b_j' = sum over the batch of da_j,
        h_{j-1}' = da_j W_j^T,   da_{j-1} = h_{j-1}' (1 - h_{j-1}^2) for tanh, h_{j-1}' (h_{j-1} > 0) for relu
    Saved, not recomputed: the output is a view of one buffer that also holds every h_j, and the
    backward pass reads them back through the view's .base (as coupling_backprop.py does)."""
    n = len(x)
    out, *hidden = activations(np.empty(n * sum(n_out for _, n_out in sizes)), n, sizes)
    h = x
    for j, ((W, b), h_next) in enumerate(zip(unpack(weights, sizes), [*hidden, out])):
        a = np.dot(h, W if masks is None else W * masks[j], out=h_next)
        a += b                                  # in place, as in dense_tanh
        if h_next is not out:
            h = np.tanh(a, out=a) if activation == "tanh" else np.maximum(a, 0.0, out=a)
    return out


def mlp_step_vjp(argnums, out, args, kwargs):
    x, weights, sizes, activation, masks = args

    def vjp(g):
        _, *hidden = activations(out.base, len(x), sizes)
        inputs, layers = [x, *hidden], unpack(weights, sizes)
        g_weights = np.empty(len(weights))
        g_layers = unpack(g_weights, sizes)                   # views: each gradient written into g_weights
        da = g
        for j in reversed(range(len(sizes))):
            (W, _), (g_W, g_b) = layers[j], g_layers[j]
            if masks is None:
                np.dot(inputs[j].T, da, out=g_W)
            else:                                             # through W * M: times M
                np.multiply(np.dot(inputs[j].T, da), masks[j], out=g_W)
            g_b[:] = np.sum(da, axis=0)
            if j or 0 in argnums:
                g_h = np.dot(da, (W if masks is None else W * masks[j]).T)
            if j:                                             # through the activation, read off the saved h
                h = inputs[j]
                da = g_h * (1 - h ** 2) if activation == "tanh" else g_h * (h > 0)
        return [g_h if argnum == 0 else g_weights for argnum in argnums]
    return vjp


defvjp_argnums(mlp_step, mlp_step_vjp)
