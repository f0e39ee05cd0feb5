"""Input checks shared by every public entry point.

Each check raises a ValueError or TypeError that names what was expected, so a
student who passes a (D,) vector, a list of ints with a NaN, or a 3-column
array to a 2D flow learns what went wrong from the message alone.

Under `autograd.grad` the arrays are wrapped in tracer boxes; `getval` unwraps
them so the checks look at the numbers without being differentiated.
"""
import numpy as onp
from autograd.tracer import getval, isbox


class NonFiniteError(ValueError):
    """A layer turned finite points into NaN or inf: an overflow inside it, not bad input.
    fit counts a training step that meets one as skipped, like a non-finite loss."""


def check_points(x, dim=None, name="x"):
    """Return `x` as a float64 array of shape (N, D), or raise a clear error.

    dim: the expected D, or None to accept any D >= 1.
    A plain list or an integer array is converted to float64; a traced array
    (inside autograd) is returned unchanged after its shape and values are checked.
    """
    value = getval(x)
    if not isbox(x):
        if isinstance(value, (str, bytes)) or value is None:
            raise TypeError(f"{name} must be an array of shape (N, D), got {type(value).__name__}")
        value = onp.asarray(value)
        if value.dtype.kind not in "iuf":
            raise TypeError(f"{name} must hold real numbers (float64), got dtype {value.dtype}")
        x = value = value.astype(onp.float64, copy=False)
    if value.ndim != 2:
        raise ValueError(f"{name} must be 2D with shape (N, D), got shape {value.shape}")
    if value.shape[0] < 1 or value.shape[1] < 1:
        raise ValueError(f"{name} must have at least one row and one column, got shape {value.shape}")
    if dim is not None and value.shape[1] != dim:
        raise ValueError(f"{name} must have {dim} columns (shape (N, {dim})), got shape {value.shape}")
    if not onp.isfinite(value).all():                  # one pass on the hot path; count only on failure
        raise ValueError(f"{name} must be finite, got {int((~onp.isfinite(value)).sum())} NaN/inf entries")
    return x


def check_int(value, name, minimum=1):
    """Return `value` as an int >= minimum (numpy integers too; not a bool, a float or a string), or raise."""
    if isinstance(value, bool) or not isinstance(value, (int, onp.integer)):
        raise TypeError(f"{name} must be an int >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_dim(dim, name="dim"):
    """A dimension: an int >= 1."""
    return check_int(dim, name)


def check_hidden(hidden):
    """Return hidden-layer sizes as a tuple of positive ints, or raise."""
    if isinstance(hidden, (int, onp.integer)):
        hidden = (hidden,)
    hidden = tuple(hidden)
    if len(hidden) == 0 or any(isinstance(h, bool) or not isinstance(h, (int, onp.integer)) or h < 1
                               for h in hidden):
        raise ValueError(f"hidden must be a non-empty sequence of positive ints, got {hidden}")
    return tuple(int(h) for h in hidden)


def check_positive(value, name):
    """Return `value` as a positive finite float, or raise."""
    if isinstance(value, bool) or not isinstance(value, (int, float, onp.integer, onp.floating)):
        raise TypeError(f"{name} must be a positive number, got {type(value).__name__}")
    if not (onp.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be positive and finite, got {value}")
    return float(value)


def check_non_negative(value, name):
    """Return `value` as a finite float >= 0, or raise."""
    if isinstance(value, bool) or not isinstance(value, (int, float, onp.integer, onp.floating)):
        raise TypeError(f"{name} must be a number >= 0, got {type(value).__name__}")
    if not (onp.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be finite and >= 0, got {value}")
    return float(value)


def check_rng(rng):
    """Every random draw takes an explicit numpy.random.Generator."""
    if not isinstance(rng, onp.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
                        f"got {type(rng).__name__}")
    return rng


def check_count(n, name="n"):
    """A count (of samples, steps, bins): an int >= 1."""
    return check_int(n, name)


def check_context_dim(context_dim):
    """Return a layer's context size C as an int >= 0; 0 (the default) is an unconditional layer."""
    return check_int(context_dim, "context_dim", minimum=0)


def check_mask(mask):
    """Return a coupling mask as a 1D int array of 0s (changed) and 1s (kept) with at least one of
    each (all 1s would be the identity, all 0s not invertible), or raise."""
    mask = onp.asarray(mask)
    if mask.ndim != 1 or not onp.all((mask == 0) | (mask == 1)) or mask.all() or not mask.any():
        raise ValueError(f"mask must be a 1D sequence of 0s (changed) and 1s (kept) with at least one of "
                         f"each, got {mask.tolist()}")
    return mask.astype(int)


def check_activation(activation):
    if activation not in ("tanh", "relu"):
        raise ValueError(f"activation must be 'tanh' or 'relu', got {activation!r}")
    return activation


def check_context(context, context_dim, n, layer):
    """The context a layer was called with, as an (n, C) float64 array ((n,) is read as (n, 1) when
    C = 1), None for an unconditional layer, or an error saying which of the three mistakes it is: a context the layer has no use
    for, a missing context, or a context of the wrong shape."""
    name = type(layer).__name__
    if context_dim == 0:
        if context is not None:
            raise ValueError(f"this {name} takes no context: build it with context_dim=C to condition it on one")
        return None
    if context is None:
        raise ValueError(f"this {name} was built with context_dim={context_dim}: pass a context of shape "
                         f"(N, {context_dim}), one row per point")
    if context_dim == 1 and onp.ndim(getval(context)) == 1:
        context = context[:, None] if isbox(context) else onp.asarray(context)[:, None]   # (N,): one value per point
    context = check_points(context, context_dim, "context")
    if getval(context).shape[0] != n:
        raise ValueError(f"context must have one row per point, shape ({n}, {context_dim}), "
                         f"got shape {getval(context).shape}")
    return context


def given(context):
    """The context as extra call arguments: () without one, so a conditioner written without a
    context (a subclass overriding mu_s(params, z), say) is still called as it expects."""
    return () if context is None else (context,)
