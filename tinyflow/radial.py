"""Radial flow (Rezende & Mohamed 2015, "Variational inference with normalizing flows"), with a
closed-form inverse.

    x = f(z) = z + beta h(alpha, r) (z - z0),   r = ||z - z0||,   h = 1 / (alpha + r)
    log|det dx/dz| = (D - 1) log(1 + beta h) + log(1 + beta h + beta h'(r) r),   h' = -1 / (alpha + r)^2

Invertibility (the paper's appendix): f is a bijection iff beta >= -alpha. With alpha > 0 the
parameters are alpha = softplus(alpha_raw) and alpha + beta = softplus(beta_raw) > 0, so any
real alpha_raw, beta_raw are valid; softplus(s) = log(1 + e^s) is written so it cannot overflow,
and the smallest normal float is added so that its underflow (s < -745) cannot make either 0.
In terms of alpha + beta both factors are ratios of non-negative terms, with no cancellation
however close beta comes to -alpha:

    1 + beta h                = (r + alpha + beta) / (alpha + r)
    1 + beta h + beta h' r    = (r (2 alpha + r) + alpha (alpha + beta)) / (alpha + r)^2
                              = (r (2 alpha + r) / (alpha + r) + (alpha + beta) alpha / (alpha + r)) / (alpha + r)

the last form computed, so that no square of r appears: the layer, its inverse and log-det stay
exact for |z - z0| up to 1e308 (r (2 alpha + r) overflows past 1e154; so does the plain norm,
hence norm() below divides each row by its largest entry first).

and f is computed as x = z0 + (1 + beta h) (z - z0): the literal z + beta h (z - z0) cancels
where beta h is near -1 (a contracting layer near z0) and loses all digits of x - z0 there.

Inverse. f moves z along the ray from z0: x - z0 = (z - z0) (r + alpha + beta) / (alpha + r), so
r' = ||x - z0|| = r (r + alpha + beta) / (alpha + r), and r is the non-negative root of

    r^2 + (alpha + beta - r') r - alpha r' = 0.

With B = alpha + beta - r' and sqrt_disc = sqrt(B^2 + 4 alpha r') (computed as s sqrt((B / s)^2 +
4 alpha (r' / s) / s) with s = max(|B|, r'), so that B^2 cannot overflow), the root is sqrt_disc / 2 - B / 2 for B < 0 and 2 alpha r' / (B + sqrt_disc)
for B >= 0: each form adds two non-negative terms (the textbook formula subtracts nearly equal
ones when alpha r' << B^2). Then
z = z0 + (x - z0) (alpha + r) / (r + alpha + beta), which needs no division by r' (x = z0 works).
Measured with z0 = 0, alpha_raw and beta_raw on a grid over [-30, 30] (contractions and expansions
by up to 1e13 at z0) and r from 1e-12 to 1e4: both round trips within 2 eps max(|z|, |x|).

r = ||z - z0|| has no derivative at z = z0, and autograd's sqrt'(0) is inf, so the norm is taken
of a sanitised argument there; its gradient is 0 at that point, the symmetric subgradient (f and
the inverse are differentiable there; only the log-det has a kink, a cone in r).

radial_plain is the forward map written with autograd.numpy, to be read. The layer calls
radial_backprop.radial, the same map as one autograd primitive with its backprop written out
(tested against this one): one node where radial_plain records about thirty.

Parameters {"z0": (D,), "alpha_raw": (), "beta_raw": ()}; z, x (N, D); log_det (N,). Any D >= 1.
Init: z0 ~ N(0, I), so the centre sits where a standard normal base puts its mass;
alpha_raw, beta_raw ~ U(-0.1, 0.1), so alpha ~ log 2 and beta = O(0.05): close to the identity,
yet not exactly, so stacked layers differ.

Copy with: radial.py, radial_backprop.py, validate.py (and an empty __init__.py).
"""
import autograd.numpy as np

from .radial_backprop import TINY, radial, radial_vjp
from .validate import check_dim, check_points


def softplus(s):
    """log(1 + e^s), written so that it cannot overflow (softplus(1e4) = 1e4)."""
    return np.logaddexp(0.0, s)


def norm(d):
    """Row norms of d (N, D), each row divided by its largest |entry| before squaring (so that
    |d| up to 1e308 cannot overflow to inf), with a finite gradient (0) where a row is 0."""
    scale = np.max(np.abs(d), axis=1)
    positive = scale > 0
    safe = np.where(positive, scale, 1.0)
    squared = np.sum((d / safe[:, None]) ** 2, axis=1)                         # in [1, D] where positive
    return np.where(positive, safe * np.sqrt(np.where(positive, squared, 1.0)), 0.0)


def log_det(r, alpha, alpha_plus_beta, dim):
    """log|det dx/dz| at distance r from z0 (N,)."""
    Q = alpha + r
    log_first = np.log(r + alpha_plus_beta) - np.log(Q)                        # log(1 + beta h)
    log_second = np.log(r * ((2 * alpha + r) / Q) + alpha_plus_beta * (alpha / Q)) - np.log(Q)   # M / Q^2
    return (dim - 1) * log_first + log_second


def radial_plain(z, z0, alpha_raw, beta_raw):
    """(x, log_det) written with autograd.numpy, to be read: what radial_backprop.radial computes
    as one autograd node, and the reference the tests hold it to."""
    alpha, alpha_plus_beta = softplus(alpha_raw) + TINY, softplus(beta_raw) + TINY
    d = z - z0
    r = norm(d)
    x = z0 + d * ((r + alpha_plus_beta) / (alpha + r))[:, None]                 # z0 + (1 + beta h) (z - z0)
    return x, log_det(r, alpha, alpha_plus_beta, z.shape[1])


class Radial:
    """x = z + beta (z - z0) / (alpha + ||z - z0||); params {"z0": (D,), "alpha_raw": (), "beta_raw": ()}."""
    # the forward as one primitive of (z, *arrays), for stack.Stack to run K layers as one node
    primitive, vjp, names = staticmethod(radial), staticmethod(radial_vjp), ("z0", "alpha_raw", "beta_raw")

    def init(self, rng, dim):
        dim = check_dim(dim)
        return {"z0": rng.standard_normal(dim), "alpha_raw": np.array(rng.uniform(-0.1, 0.1)),
                "beta_raw": np.array(rng.uniform(-0.1, 0.1))}

    def alpha_beta(self, params):
        """(alpha, alpha + beta), both > 0, also where softplus underflows to 0 (raw < -745)."""
        return softplus(params["alpha_raw"]) + TINY, softplus(params["beta_raw"]) + TINY

    def forward(self, params, z):
        z = check_points(z, len(params["z0"]), "z")
        return radial(z, params["z0"], params["alpha_raw"], params["beta_raw"])   # = radial_plain(...), one node

    def inverse(self, params, x):
        x = check_points(x, len(params["z0"]), "x")
        alpha, alpha_plus_beta = self.alpha_beta(params)
        d = x - params["z0"]
        r_x = norm(d)                                                           # r'
        B = alpha_plus_beta - r_x
        scale = np.maximum(np.abs(B), r_x)                     # > 0: B = alpha + beta > 0 where r' = 0
        sqrt_disc = scale * np.sqrt((B / scale) ** 2 + 4 * alpha * (r_x / scale) / scale)   # no B^2 to overflow
        large = B >= 0
        r = np.where(large, 2 * alpha * r_x / np.where(large, B + sqrt_disc, 1.0), sqrt_disc / 2 - B / 2)
        z = params["z0"] + d * ((alpha + r) / (r + alpha_plus_beta))[:, None]
        return z, -log_det(r, alpha, alpha_plus_beta, x.shape[1])
