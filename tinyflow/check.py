"""Check any layer against the contract: is it a bijection, and is its log-det right?

    round trip       max |f^-1(f(x)) - x| and max |f(f^-1(y)) - y|
    log-det          |log_det - log|det J||, J from autograd and from central differences
    antisymmetry     |inverse log_det at y + forward log_det at x|, y = f(x)

Central differences: J[:, i, j] ~ (f(x + h e_j) - f(x - h e_j))_i / 2h with error O(h^2) from
the third derivative plus O(eps/h) from rounding; h = 1e-5 balances the two for O(1) inputs,
leaving errors near 1e-10, so a 1e-6 tolerance is tight yet never flaky for smooth layers.
Where the map is only once differentiable (a spline's knots and its ends at +-B, where the slope
is continuous but its derivative jumps) the error is O(h) instead, and where its curvature is
large O(h^2) is not small either: so the differences are also taken at h / 2, and points where
the two disagree by more than tol (the difference has not converged there) are left out of that
comparison; the autograd Jacobian still checks every point.
Errors are measured relative to max(1, |reference|).

Copy with: check.py, validate.py (and an empty __init__.py).
"""
import warnings

import numpy as onp
from autograd import jacobian

from .validate import check_points


def numerical_jacobian(f, x, h=1e-5):
    """Per-point Jacobian of a row-wise map f: (N, D) -> (N, D), as an (N, D, D) array."""
    x = check_points(x)
    columns = []
    for j in range(x.shape[1]):
        step = onp.zeros(x.shape[1])
        step[j] = h
        columns.append((onp.asarray(f(x + step)) - onp.asarray(f(x - step))) / (2 * h))
    return onp.stack(columns, axis=2)


def autograd_jacobian(f, x):
    """Per-point Jacobian of a row-wise map f by autograd, one point at a time: (N, D, D)."""
    x = check_points(x)
    one_point = jacobian(lambda row: f(row[None, :])[0])
    with warnings.catch_warnings():          # a permutation's Jacobian is constant: not a problem
        warnings.simplefilter("ignore", UserWarning)
        return onp.stack([one_point(row) for row in x])


def _relative(a, b):
    return onp.max(onp.abs(a - b) / onp.maximum(1.0, onp.abs(b)))


def _finite_difference_error(f, x, log_det, h, tol):
    """Relative error of log_det against central differences, at the points where the differences
    at h and h / 2 agree within tol (0 if they agree nowhere)."""
    coarse, fine = (onp.linalg.slogdet(numerical_jacobian(f, x, step))[1] for step in (h, h / 2))
    converged = onp.abs(coarse - fine) <= tol * onp.maximum(1.0, onp.abs(fine))
    return _relative(log_det[converged], fine[converged]) if converged.any() else 0.0


def check_layer(layer, params, x, tol=1e-6, h=1e-5, context=None):
    """Check `layer` at the points x (N, D); return a dict of errors, raise AssertionError if any
    exceeds tol. Choose x so that every branch of a piecewise layer is visited.
    context: for a conditional layer, one context row (C,), given to every point: the layer is
    checked as the bijection in x it is at that context (call once per context to check several)."""
    x = check_points(x)
    if context is not None:
        if onp.ndim(context) > 2 or (onp.ndim(context) == 2 and onp.shape(context)[0] != 1):
            raise ValueError(f"check_layer takes one context row, (C,) or (1, C), and checks the layer as the "
                             f"bijection in x it is at that context; got shape {onp.shape(context)}: call it "
                             f"once per row to check several contexts")
        row = check_points(onp.reshape(context, (1, -1)), name="context")
        given = lambda points: (onp.repeat(row, len(points), axis=0),)
    else:
        given = lambda points: ()
    y, log_det = layer.forward(params, x, *given(x))
    x_back, log_det_inverse = layer.inverse(params, y, *given(y))
    y_back = layer.forward(params, x_back, *given(x_back))[0]
    forward = lambda points: layer.forward(params, points, *given(points))[0]
    errors = {
        "round trip x -> y -> x": _relative(x_back, x),
        "round trip y -> x -> y": _relative(y_back, y),
        "log_det vs autograd Jacobian": _relative(log_det, onp.linalg.slogdet(autograd_jacobian(forward, x))[1]),
        "log_det vs finite differences": _finite_difference_error(forward, x, log_det, h, tol),
        "inverse log_det + forward log_det": _relative(log_det_inverse, -log_det),
    }
    failed = {name: err for name, err in errors.items() if not err <= tol}   # NaN fails too
    if failed:
        lines = "\n".join(f"  {name}: {err:.3g} > {tol:g}" for name, err in failed.items())
        raise AssertionError(f"{type(layer).__name__} fails check_layer:\n{lines}")
    return errors
