"""Fixed points of contractions, x = y - g(x), with gradients by the implicit function theorem:
the inverse of an invertible residual layer y = x + g(x) (Behrmann et al. 2019).

Banach: if g is a contraction in x, |g(x) - g(x')| <= c |x - x'| with c < 1, then for each y the
map x -> y - g(x) is one too, so it has exactly one fixed point x*, and x_0 = y,
x_(k+1) = y - g(x_k) reaches it, point by point, with

    |x_k - x*| <= c^k / (1 - c) |x_1 - x_0|          a priori: the most steps it can need
    |x_k - x*| <= c / (1 - c) |x_k - x_(k-1)|        a posteriori: the stopping test

The iteration stops when the second bound is below TOL max(1, |y|) for every point, or once the
first one is (rounding can stall the steps just above the second). c is the bound, not the
contraction actually met: the steps shrink at the actual rate, often well below c.

Gradients: the iterations are not differentiated (that would record every step on autograd's
tape). x* = y - g(x*, theta) gives (I + J) dx* = dy - (dg/dtheta) dtheta, J = dg/dx at x*, so
for a cotangent x_bar the vector a = x_bar (I + J)^-1 solves a = x_bar - a J, a contraction with
the same c (|a J| <= c |a|), iterated the same way; then y_bar = a and theta_bar = -a dg/dtheta,
one backward pass through g.

g(x, theta): row-wise, x (N, D) -> (N, D), theta a tuple of arrays, written with autograd.numpy.

Copy with: fixed_point.py (and an empty __init__.py).
"""
import numpy as np
from autograd import make_vjp
from autograd.extend import defvjp_argnums, primitive

TOL = 1e-12             # the error bound the iteration stops at, relative to max(1, |y|)
MAX_STEPS = 100_000     # the a priori bound is the real limit: ~1,000 steps at c = 0.97


def banach_iterate(step, start, c, tol=TOL):
    """The fixed point of the contraction `step` (constant c), from start (N, D): (point, steps taken)."""
    scale = tol * np.maximum(1.0, np.sqrt(np.sum(start ** 2, axis=1)))
    x, limit = start, MAX_STEPS
    for k in range(1, MAX_STEPS + 1):
        x_next = step(x)
        moved = np.sqrt(np.sum((x_next - x) ** 2, axis=1))
        x = x_next
        if k == 1 and moved.max() > 0:          # c^k / (1 - c) |x_1 - x_0| <= scale from k = limit on
            limit = int(np.ceil(np.max(np.log(scale * (1 - c) / np.maximum(moved, 1e-300)) / np.log(c))))
        if np.all(c / (1 - c) * moved <= scale) or k >= limit:
            return x, k
    return x, MAX_STEPS


@primitive
def fixed_point(g, y, c, *theta):
    """x (N, D) with x = y - g(x, theta) in every row, for a g with Lip <= c < 1 in x."""
    return banach_iterate(lambda x: y - g(x, theta), y, c)[0]


def fixed_point_vjp(argnums, x, args, kwargs):
    """y_bar = a and theta_bar = -a dg/dtheta, where a = x_bar (I + J)^-1 (see the module docstring)."""
    g, y, c, *theta = args
    a_J = make_vjp(lambda x: g(x, tuple(theta)))(x)[0]             # a -> a J, recorded once, run per step

    def vjp(x_bar):
        a = banach_iterate(lambda a: x_bar - a_J(a), x_bar, c)[0]
        grads = {1: a}
        if any(i >= 3 for i in argnums):
            theta_bar = make_vjp(lambda theta: g(x, tuple(theta)))(list(theta))[0](-a)
            grads.update({3 + i: value for i, value in enumerate(theta_bar)})
        return [grads[i] for i in argnums]
    return vjp


defvjp_argnums(fixed_point, fixed_point_vjp)
