"""Stack: K layers of one kind as one layer, and one autograd node (chapter 9).

    forward:  x = f_K(... f_1(z)),         log_det = log_det_1 + ... + log_det_K
    inverse:  z = f_1^-1(... f_K^-1(x)),   log_det = the K inverses' log-dets, summed likewise

params: [params of layer 1, ..., params of layer K], as K separate layers of a Flow would hold
them, so fit's flat vector theta is laid out the same way and a Stack computes, digit for digit,
what the K layers compute one by one (tests/test_stack.py holds it to that).

Why. Chapter 9's planar and radial layers are one primitive each, yet a flow of 32 of them still
records six nodes per layer on autograd's tape: three parameter reads, the layer, and one per
output. At a thousand 2-D points that bookkeeping, not the arithmetic, sets a step's cost
(chapter 8). A Stack reads all K layers' parameters as one slice of theta and runs each layer's
own forward and backward functions (its primitive's NumPy body and its VJP) in a plain loop:
a handful of nodes for the whole stack, whatever K is.

A layer can be stacked this way when its forward is one primitive of (z, *arrays) returning
(x, log_det), with a VJP written for defvjp_argnums. It says so with three class attributes:
`primitive`, `vjp`, and `names`, the keys of its params in the order the primitive takes them
(Planar and Radial have them). Any other layer, or a subclass that overrides forward (chapter 9's
ReadablePlanar), runs layer by layer through its own forward. The inverse always runs layer by
layer: it is not on the training path.

Saved, not recomputed: the forward pass writes each layer's input z_k into one buffer and returns
[x | log_det] as a view of it; the backward pass reads the z_k back through the view's .base, as
coupling_backprop.py does.

Shapes: z, x (N, D); log_det (N,).
The stacked layer's own files come too (for Planar: planar.py, planar_backprop.py).
Copy with: stack.py, columns.py, leaves.py, validate.py (and an empty __init__.py).
"""
from typing import NamedTuple

import autograd.numpy as np
import numpy as onp
from autograd.extend import defvjp_argnums, primitive

from .columns import take_columns
from .leaves import flat_params, shapes
from .validate import NonFiniteError, check_int, check_points


class Plan(NamedTuple):
    """Where each layer's arrays sit in the stack's slice of theta."""
    num_layers: int
    size: int                 # numbers per layer
    pieces: tuple             # (start, stop, shape) of each array within a layer's numbers, in the primitive's order

    def arrays(self, theta, k):
        """Layer k's arrays, as views of theta."""
        at = k * self.size
        return [theta[at + start:at + stop].reshape(shape) for start, stop, shape in self.pieces]


class Stack:
    """layer: the layer to repeat (its hyperparameters are shared, its params are not);
    num_layers: K >= 1."""

    def __init__(self, layer, num_layers):
        if not all(callable(getattr(layer, name, None)) for name in ("init", "forward", "inverse")):
            raise TypeError(f"layer must have init/forward/inverse, got {type(layer).__name__}")
        self.layer, self.num_layers = layer, check_int(num_layers, "num_layers")
        owner = next((cls for cls in type(layer).__mro__ if "primitive" in vars(cls)), None)
        # fused unless the layer has no single primitive, or a subclass replaced the forward that calls it
        self.fused = owner is not None and type(layer).forward is owner.forward
        self.plans = {}                               # dim -> Plan

    def init(self, rng, dim):
        return [self.layer.init(rng, dim) for _ in range(self.num_layers)]

    def forward(self, params, z):
        z = check_points(z, name="z")
        plan = self.plan(params, z)
        if plan is None:                              # layer by layer, each through its own forward
            log_det = np.zeros(len(z))
            for k in range(self.num_layers):
                z, log_det_k = self.layer.forward(params[k], z)
                log_det = log_det + log_det_k
            return z, log_det
        out = stacked(z, flat_params(params), type(self.layer), plan)
        dim = z.shape[1]
        return take_columns(out, slice(0, dim)), take_columns(out, dim)

    def inverse(self, params, x):
        x = check_points(x)
        self.check_length(params)                     # each layer checks its own params and x
        log_det = np.zeros(len(x))
        for k in reversed(range(self.num_layers)):
            x, log_det_k = self.layer.inverse(params[k], x)
            log_det = log_det + log_det_k
        return x, log_det

    def check_length(self, params):
        if not isinstance(params, (list, tuple)) or len(params) != self.num_layers:
            raise ValueError(f"a Stack of {self.num_layers} layers takes a list of {self.num_layers} params, "
                             f"one per layer; got {type(params).__name__}"
                             + (f" of {len(params)}" if isinstance(params, (list, tuple)) else ""))

    def plan(self, params, z):
        """Check params against the stack and z; the Plan for the fused forward, or None to go layer by layer."""
        self.check_length(params)
        if not self.fused:
            return None
        dim = z.shape[1]
        if dim not in self.plans:
            one = self.layer.init(onp.random.default_rng(0), dim)
            stops = onp.cumsum([onp.size(a) for a in one.values()])
            where = {name: (int(stop) - onp.size(a), int(stop), onp.shape(a)) for (name, a), stop in zip(one.items(), stops)}
            self.plans[dim] = (list(one), [onp.shape(a) for a in one.values()] * self.num_layers,
                               Plan(self.num_layers, int(stops[-1]), tuple(where[name] for name in self.layer.names)))
        keys, expected, plan = self.plans[dim]
        if not all(isinstance(p, dict) and list(p) == keys for p in params):
            return None               # theta's order is each dict's own: another order runs layer by layer
        if shapes(params) != expected:
            self.layer.forward(params[0], z)          # the layer's own message, as K separate layers give
            raise ValueError(f"params must hold {self.num_layers} x {dict(zip(keys, expected))}, "
                             f"got shapes {shapes(params)}")
        return plan


@primitive
def stacked(z, theta, layer_type, plan):
    """[x | log_det] (N, D + 1) after the plan's K layers, as a view of a buffer that also holds
    each layer's input z_k: the forward of each layer's primitive, in turn, on plain arrays."""
    n, dim = z.shape
    buffer = onp.empty(plan.num_layers * n * dim + n * (dim + 1))
    inputs = buffer[:plan.num_layers * n * dim].reshape(plan.num_layers, n, dim)
    out = buffer[plan.num_layers * n * dim:].reshape(n, dim + 1)
    log_det = onp.zeros(n)
    for k in range(plan.num_layers):
        inputs[k] = z
        z, log_det_k = layer_type.primitive.fun(z, *plan.arrays(theta, k))     # the primitive's own body
        if not (onp.isfinite(z).all() and onp.isfinite(log_det_k).all()):
            raise NonFiniteError(f"layer {k} of the stack ({layer_type.__name__}) gave NaN or inf from finite "
                                 f"points: an overflow inside the layer (points or parameters too large for it)")
        log_det = log_det + log_det_k
    out[:, :dim], out[:, dim] = z, log_det
    return out


def stacked_vjp(argnums, out, args, kwargs):
    """Back through the layers, last first: each layer's own VJP, handed the gradient of its output
    and (the same for every layer, as for any sum) the gradient of the total log-det."""
    z, theta, layer_type, plan = args
    n, dim = z.shape

    def vjp(g):
        inputs = out.base[:plan.num_layers * n * dim].reshape(plan.num_layers, n, dim)
        g_x, g_log_det = g[:, :dim], g[:, dim]
        g_theta = onp.empty(len(theta))
        for k in reversed(range(plan.num_layers)):
            arrays = plan.arrays(theta, k)
            g_x, *g_arrays = layer_type.vjp(range(1 + len(arrays)), None, (inputs[k], *arrays), {})((g_x, g_log_det))
            for target, g_array in zip(plan.arrays(g_theta, k), g_arrays):
                target[...] = g_array
        return [{0: g_x, 1: g_theta}[i] for i in argnums]
    return vjp


defvjp_argnums(stacked, stacked_vjp)
