"""Planar flow (Rezende & Mohamed 2015, "Variational inference with normalizing flows"), with an
exact inverse.

    x = f(z) = z + u_hat tanh(w^T z + b)                          a = w^T z + b
    log|det dx/dz| = log|1 + u_hat^T psi|,  psi = (1 - tanh^2(a)) w,  so u_hat^T psi = c sech^2(a)

Invertibility (the paper's appendix): f is a bijection iff c = w^T u_hat >= -1. The free u is
mapped to u_hat = u + (m(w^T u) - w^T u) w / ||w||^2 with m(s) = -1 + softplus(s), so that
c = m(w^T u) > -1 for every u, w. The code keeps 1 + c = softplus(w^T u) rather than forming
c and adding 1: near the limit (w^T u very negative, 1 + c = 1e-8) that sum would lose half the
digits. For the same reason the log-det is written as a sum of non-negative terms,

    1 + c sech^2(a) = tanh^2(a) + (1 + c) sech^2(a),   sech^2(a) = 4 e^-2|a| / (1 + e^-2|a|)^2,

with no cancellation for any c > -1 or any a (1 - tanh^2(a) would round to 0 for |a| > 19).

Inverse. Write alpha = w^T z. Projecting x = f(z) on w gives one scalar equation per point,

    g(alpha) = alpha + c tanh(alpha + b) - w^T x = 0,   g' = 1 + c sech^2(alpha + b) > 0,

monotone, with its root in [w^T x - |c|, w^T x + |c|]. Plain Newton can cycle here (tanh's
inflection), so the solver keeps the bracket and takes a Newton step only if it lands inside and
at most halves the step before last, else it bisects (Numerical Recipes' rtsafe), vectorised
over the batch; it stops when g is within its own rounding error. Then z = x - u_hat tanh(alpha + b).

Accuracy, measured over 1000 draws per row (D = 3, ||w|| in [0.1, 3], b in [-3, 3], 16 points in
[-5, 5]^3; "at a = 0": z beside the hyperplane a = 0, |a| ~ 0.01 sqrt(1 + c) ||w||^2, g' ~ 1 + c):

    1 + c    max |f(f^-1(x)) - x|    max |f^-1(f(z)) - z|: random z    z at a = 0    steps
    1e-2     2.2e-15                 3.0e-13                           6.2e-13       <= 8
    1e-4     4.4e-15                 1.0e-11                           6.7e-11       <= 10
    1e-6     1.1e-14                 3.3e-10                           4.4e-09       <= 11
    1e-8     9.8e-15                 4.7e-10                           4.9e-07       <= 9
    1e-12    8.9e-15                 4.8e-10                           4.7e-05       <= 14

|g(alpha)| stays within 10 ulp of |w^T x| + |c|: x -> z -> x is exact to rounding for every c,
and z -> x -> z loses what f's conditioning takes, eps |x| / (1 + c) near a = 0 (or about
(eps |x|)^(1/3) once 1 + c is below that, where g is cubic); no solver can do better in float64.
Over 3000 wilder draws (1 + c from 1e-17 to 1e4, ||w|| from 0.01 to 10, |b| <= 10) at most 30
steps were taken; the cap is MAX_ITER = 100.

alpha is an autograd primitive: the solver runs on plain numbers and the gradient comes from the
implicit function theorem, d alpha = (d(w^T x) - tanh(alpha + b) dc - c sech^2 db) / g'.

planar_plain is the forward map written with autograd.numpy, to be read. The layer calls
planar_backprop.planar, the same map as one autograd primitive with its backprop written out
(tested against this one): one node where planar_plain records about thirty, which is what a
deep planar flow's training step pays for (chapter 9).

Parameters {"u": (D,), "w": (D,), "b": ()}; z, x (N, D); log_det (N,). Any D >= 1.
Init: u, w ~ U(-1/sqrt(D), 1/sqrt(D)), b ~ U(-1, 1): w^T z is O(1) for z ~ N(0, I),
so tanh is neither saturated nor linear, and random directions make stacked layers differ. The
line w^T z + b = 0 lies |b| / ||w|| from the origin, so the bands of stacked layers spread over
where the base puts its mass; with b = 0 they all cross at the origin, and a flow that has to
bend the plane far from it (chapter 9's wave U2) more often stalls half-formed. A tiny w (e.g.
N(0, 0.01^2)) would not give a near-identity layer: u_hat's correction has size
|m(w^T u) - w^T u| / ||w|| ~ 0.31 / ||w||.

Copy with: planar.py, planar_backprop.py, validate.py (and an empty __init__.py).
"""
import autograd.numpy as np
import numpy as onp
from autograd.extend import defvjp, defvjp_argnums, primitive

from .planar_backprop import TINY, planar, planar_vjp
from .validate import check_dim, check_points

MAX_ITER = 100


def softplus(s):
    """log(1 + e^s), written so that it cannot overflow (softplus(1e4) = 1e4)."""
    return np.logaddexp(0.0, s)


def sech2(a):
    """sech^2(a) = 1 - tanh^2(a), accurate for large |a| (1 - tanh^2 rounds to 0 there)."""
    e = np.exp(-2 * np.abs(a))
    return 4 * e / (1 + e) ** 2


@primitive
def tanh(a):
    """tanh, differentiated as sech^2(a): autograd's 1 / cosh^2(a) overflows (and warns) for |a| > 710."""
    return onp.tanh(a)


defvjp(tanh, lambda t, a: lambda g: g * sech2(a))


def reparameterise(u, w):
    """(u_hat, 1 + c) with c = w^T u_hat = m(w^T u) > -1; m(s) - s = softplus(-s) - 1."""
    wu = np.dot(w, u)
    norm2 = np.maximum(np.dot(w, w), TINY)              # w = 0 (never drawn) has no u_hat: stay finite
    one_plus_c = softplus(wu) + TINY                    # > 0 also where e^(w^T u) underflows (< -745)
    return u + (softplus(-wu) - 1) * w / norm2, one_plus_c


def planar_plain(z, u, w, b):
    """(x, log_det) written with autograd.numpy, to be read: what planar_backprop.planar computes
    as one autograd node, and the reference the tests hold it to."""
    u_hat, one_plus_c = reparameterise(u, w)
    a = np.dot(z, w) + b
    t = tanh(a)
    return z + u_hat * t[:, None], np.log(t ** 2 + one_plus_c * sech2(a))     # log(1 + c sech^2(a))


def solve_alpha(wx, one_plus_c, b):
    """The root of alpha + c tanh(alpha + b) = wx for each entry of wx (N,), plain numpy: Newton,
    kept inside the bracket [wx - |c|, wx + |c|] and made to progress by bisection (Numerical
    Recipes' rtsafe). Returns (alpha, steps taken)."""
    c, eps = one_plus_c - 1, onp.finfo(float).eps
    lo, hi = wx - abs(c), wx + abs(c)
    alpha = wx - c * onp.tanh(wx + b)             # exact already wherever tanh is saturated
    dx = dx_old = hi - lo
    active = onp.ones(len(wx), bool)
    for steps in range(MAX_ITER + 1):
        t = onp.tanh(alpha + b)
        g, slope = alpha + c * t - wx, t ** 2 + one_plus_c * sech2(alpha + b)
        # done once g is within its rounding error (the sums, and alpha + b's rounding times g'),
        # or the bracket is a few ulps wide
        noise = eps * (onp.abs(alpha) + onp.abs(c * t) + onp.abs(wx) + slope * (onp.abs(alpha) + abs(b)))
        active &= (onp.abs(g) > noise) & (hi - lo > 4 * eps * onp.abs(hi))
        if not active.any() or steps == MAX_ITER:
            return alpha, steps
        lo, hi = onp.where(g < 0, alpha, lo), onp.where(g > 0, alpha, hi)   # the root stays in [lo, hi]
        step = g / slope
        # Newton only if it lands inside the bracket and at most halves the step before last:
        # otherwise it may cycle (tanh's inflection) or creep; NaN compares False and bisects
        newton = (alpha - step > lo) & (alpha - step < hi) & (onp.abs(step) <= onp.abs(dx_old) / 2)
        dx_old, dx = dx, onp.where(newton, step, (hi - lo) / 2)
        alpha = onp.where(active, onp.where(newton, alpha - step, lo + dx), alpha)


@primitive
def planar_alpha(wx, one_plus_c, b):
    """alpha = w^T z, given w^T x, 1 + c and b (the inverse's scalar equation, solved)."""
    return solve_alpha(wx, one_plus_c, b)[0]


def _implicit(alpha, one_plus_c, b):
    """tanh, sech^2 at alpha + b and the slope g' = 1 + c sech^2, for the implicit-function VJP."""
    t, s = tanh(alpha + b), sech2(alpha + b)
    return t, s, t ** 2 + one_plus_c * s


def planar_alpha_vjp(argnums, alpha, args, kwargs):
    """The gradients of alpha autograd asked for (of w^T x, 1 + c, b), by the implicit function
    theorem on g(alpha) = alpha + c tanh(alpha + b) - w^T x = 0:
    d alpha = (d(w^T x) - tanh(alpha + b) dc - c sech^2(alpha + b) db) / g'."""
    wx, one_plus_c, b = args
    t, s, slope = _implicit(alpha, one_plus_c, b)

    def vjp(g):
        g = g / slope
        grads = {0: lambda: g, 1: lambda: -np.sum(g * t), 2: lambda: -np.sum(g * (one_plus_c - 1) * s)}
        return [grads[i]() for i in argnums]
    return vjp


defvjp_argnums(planar_alpha, planar_alpha_vjp)


class Planar:
    """x = z + u_hat tanh(w^T z + b); params {"u": (D,), "w": (D,), "b": ()}."""
    # the forward as one primitive of (z, *arrays), for stack.Stack to run K layers as one node
    primitive, vjp, names = staticmethod(planar), staticmethod(planar_vjp), ("u", "w", "b")

    def init(self, rng, dim):
        limit = 1 / np.sqrt(check_dim(dim))
        return {"u": rng.uniform(-limit, limit, dim), "w": rng.uniform(-limit, limit, dim),
                "b": np.array(rng.uniform(-1.0, 1.0))}

    def u_hat(self, params):
        """(u_hat, 1 + c) with c = w^T u_hat > -1 (see reparameterise)."""
        return reparameterise(params["u"], params["w"])

    def forward(self, params, z):
        z = check_points(z, len(params["w"]), "z")
        return planar(z, params["u"], params["w"], params["b"])     # = planar_plain(z, u, w, b), one node

    def inverse(self, params, x):
        x = check_points(x, len(params["w"]), "x")
        u_hat, one_plus_c = self.u_hat(params)
        alpha = planar_alpha(np.dot(x, params["w"]), one_plus_c, params["b"])
        t, s, slope = _implicit(alpha, one_plus_c, params["b"])
        return x - u_hat * t[:, None], -np.log(slope)
