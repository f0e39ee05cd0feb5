"""The elementwise affine map inside every coupling and autoregressive layer, with its backprop
written out.

    soft_clamp(s_raw, s_max) = s_max * tanh(s_raw / s_max)    the bounded log-scale s
    affine(x, s, t)          = x * exp(s) + t                  y, from x
    affine_inverse(y, s, t)  = (y - t) * exp(-s)               x, from y

Each is one autograd primitive: one node on autograd's tape instead of three to five (a
multiply, an exp, an add, ...). Autograd spends tens of microseconds on every node, more
than the arithmetic on a batch of 512, so in a 16-layer flow this is a good part of a step.
Shapes: x, y, s, t all the same, (N, n). (The backward passes return gradients of that
shape; unlike autograd's own multiply they do not undo broadcasting.)
"""
import numpy as np
from autograd.extend import defvjp, defvjp_argnums, primitive

from .linear import _only


@primitive
def soft_clamp(s_raw, s_max):
    """s = s_max * tanh(s_raw / s_max): the identity near 0, never beyond +-s_max, a gradient
    that fades but never drops to 0 (unlike a hard clip). Backprop: ds_raw = ds (1 - (s / s_max)^2)."""
    return s_max * np.tanh(s_raw / s_max)


defvjp(soft_clamp, lambda s, s_raw, s_max: lambda ds: ds * (1 - (s / s_max) ** 2))


@primitive
def affine(x, s, t):
    """y = x * exp(s) + t. Backprop, given dy: dx = dy exp(s), ds = dy x exp(s), dt = dy."""
    return x * np.exp(s) + t


def affine_vjp(argnums, y, args, kwargs):
    x, s, t = args

    def vjp(dy):
        exp_s = np.exp(s)                     # here, in the backward pass: the forward pass has no use for it
        return _only(argnums, {0: lambda: dy * exp_s, 1: lambda: dy * x * exp_s, 2: lambda: dy})
    return vjp


defvjp_argnums(affine, affine_vjp)


@primitive
def affine_inverse(y, s, t):
    """x = (y - t) * exp(-s). Backprop, given dx: dy = dx exp(-s), ds = -dx x, dt = -dx exp(-s)."""
    return (y - t) * np.exp(-s)


def affine_inverse_vjp(argnums, x, args, kwargs):
    y, s, t = args

    def vjp(dx):
        dy = dx * np.exp(-s)
        return _only(argnums, {0: lambda: dy, 1: lambda: -dx * x, 2: lambda: -dy})
    return vjp


defvjp_argnums(affine_inverse, affine_inverse_vjp)
