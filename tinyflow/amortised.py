"""Amortised posteriors q(z | x) for a variational autoencoder: flow layers whose parameters come
from the encoder (Rezende & Mohamed 2015, "Variational inference with normalizing flows", sec. 4
and Table 2; Kingma et al. 2016, IAF).

Here z is the latent and x the data the encoder read; h = encoder(x), of shape (N, C), is the
context every layer sees:

    z_0 = mu(h) + exp(s(h)) * eps,  eps ~ N(0, I)          AmortisedAffine(C): N(mu(x), diag sigma(x)^2)
    z_k = z_{k-1} + u_hat_k(h) tanh(w_k(h)^T z_{k-1} + b_k(h))    AmortisedPlanar(C), k = 1..K
    log q(z_K | x) = log N(eps; 0, I) - sum_i s_i(h) - sum_k log|1 + c_k(h) sech^2(a_k)|

    q = Flow(StandardNormal(D), [AmortisedAffine(C)] + [AmortisedPlanar(C) for _ in range(K)])
    z, log_q = q.sample_from_noise(params, eps, context=h)      # (N, D), (N,): one pass, no inverse

Design. (1) The diagonal Gaussian is the flow's first layer, not a conditional base: Flow gives its
context to layers only, and log N(eps; 0, I) - sum_i s_i is exactly log N(z_0; mu, diag e^2s), so
nothing in Flow changes (a base taking the context would need a context argument on every base's
log_prob and from_noise, for one use). (2) R&M's encoder outputs mu, sigma and every (u_k, w_k, b_k) through one
linear map of its last hidden layer h. That map is split here into one linear head per layer,
held by the layer: u_k(h) = u_k + h W_u,k, and so on. So every layer of q reads the same h, as
Flow requires (one context_dim), and AffineAutoregressive(context_dim=C) IAF steps (Kingma et
al. 2016) mix in freely. The heads start at W = 0: the Gaussian layer as the identity (q_0 is the
prior N(0, I)), each planar step as chapter 9's Planar with params u, w, b. (3) Invertibility
per point: u_hat(h) is planar.py's reparameterisation applied row by row, so c = w(h)^T u_hat(h)
> -1 for every h, whatever the heads. (4) Direction: forward (eps -> z) is the fast one, and
the only one a VAE needs, since it draws z and needs log q(z | x) at that same z. The inverse
(z -> eps) is there for densities on a grid: Gaussian in closed form, planar by planar.py's
bracketed Newton solve, now with one (1 + c, b) per point.

planar_rows_plain is the planar step written with autograd.numpy, to be read, and u_w_b and mu_s
the heads. The layers' forward passes (what a VAE trains through) call amortised_backprop's
primitives instead: amortised_planar, heads and planar step as one node, and amortised_gaussian,
heads, clamp and affine map as one, each with its backprop written out and tested against the
readable chain (same numbers, bit for bit). Their params arrive as one vector (layer_vector), one
node however many arrays. A planar step records 4 nodes instead of about 25 (13 with the step
alone a primitive), and a gradient step through 32 of them costs about half as much again
(measured at batch 128, D = 2, C = 64: 32-36 ms with every op a node, 17-21 with the step a
primitive, 13-14 with the heads inside it, 10 with the forward pass's values kept for the
backward pass; what remains is mostly numpy's own per-call cost).

Shapes: eps, z (N, D); context h (N, C), one row per point; log_det (N,).
AmortisedAffine params {"W_mu": (C, D), "mu": (D,), "W_s": (C, D), "s": (D,)}.
AmortisedPlanar params {"W_u": (C, D), "u": (D,), "W_w": (C, D), "w": (D,), "W_b": (C,), "b": ()}.

Copy with: amortised.py, affine.py, amortised_backprop.py, leaves.py, linear.py, planar.py, planar_backprop.py, validate.py (and an empty __init__.py).
"""
import autograd.numpy as np
from autograd.extend import defvjp_argnums, primitive

from .affine import affine_inverse, soft_clamp
from .amortised_backprop import amortised_gaussian, amortised_planar, planar_heads, planar_rows_lean
from .leaves import flat_params, read_leaves
from .linear import dense
from .planar import TINY, Planar, sech2, softplus, solve_alpha, tanh
from .validate import check_context, check_dim, check_points, check_positive, isbox


GAUSSIAN_KEYS = ["W_mu", "mu", "W_s", "s"]                     # each layer's params, in its init's order
PLANAR_KEYS = ["W_u", "u", "W_w", "w", "W_b", "b"]


def layer_vector(params, keys):
    """A layer's params as one vector, its arrays raveled in the order of keys: in a training step
    one node (leaves.flat_params, when they are laid out in that order, as init lays them out)."""
    params = read_leaves(params)
    if list(params) == keys:
        return flat_params(params)
    return np.concatenate([np.ravel(params[key]) for key in keys])


class AmortisedAffine:
    """z = mu(h) + exp(s(h)) * eps, with mu(h) = h W_mu + mu and s(h) = s_max tanh((h W_s + s) / s_max);
    log|det dz/d eps| = sum_i s_i(h). The log-scale is soft-bounded as in coupling.py, so one bad
    step cannot make sigma overflow or vanish; s_max = 5 allows sigma in [0.0067, 148]."""

    def __init__(self, context_dim, s_max=5.0):
        self.context_dim = check_dim(context_dim, "context_dim")
        self.s_max = check_positive(s_max, "s_max")

    def init(self, rng, dim):
        dim = check_dim(dim)
        zeros = lambda *shape: np.zeros(shape)
        return {"W_mu": zeros(self.context_dim, dim), "mu": zeros(dim),
                "W_s": zeros(self.context_dim, dim), "s": zeros(dim)}

    def mu_s(self, params, context):
        """Per-point shift mu (N, D) and bounded log-scale s (N, D), from the context (N, C)."""
        s_raw = dense(context, params["W_s"], params["s"])
        return dense(context, params["W_mu"], params["mu"]), soft_clamp(s_raw, self.s_max)

    def _check(self, params, points, context, name):
        points = check_points(points, len(params["mu"]), name)
        return points, check_context(context, self.context_dim, len(points), self)

    def forward(self, params, eps, context=None):
        eps, context = self._check(params, eps, context, "eps")
        # with mu, s = self.mu_s(params, context): affine(eps, s, mu), np.sum(s, axis=1), as one node
        return amortised_gaussian(eps, context, layer_vector(params, GAUSSIAN_KEYS), self.s_max)

    def inverse(self, params, z, context=None):
        z, context = self._check(params, z, context, "z")
        mu, s = self.mu_s(params, context)
        return affine_inverse(z, s, mu), -np.sum(s, axis=1)       # eps = (z - mu) * exp(-s)


def reparameterise_rows(u, w):
    """planar.reparameterise, one row per point: u, w (N, D) -> u_hat (N, D) and 1 + c (N,), with
    c = w^T u_hat = -1 + softplus(w^T u) > -1 in every row (planar.py says why 1 + c is kept)."""
    wu = np.sum(w * u, axis=1)
    norm2 = np.maximum(np.sum(w * w, axis=1), TINY)     # w = 0 has no u_hat: stay finite
    return u + ((softplus(-wu) - 1) / norm2)[:, None] * w, softplus(wu) + TINY


def planar_rows_plain(z, u, w, b):
    """(y, log_det) written with autograd.numpy, to be read: what amortised_backprop.planar_rows
    computes as one autograd node; z, u, w (N, D), b (N,)."""
    u_hat, one_plus_c = reparameterise_rows(u, w)
    a = np.sum(w * z, axis=1) + b
    t = tanh(a)
    return z + u_hat * t[:, None], np.log(t ** 2 + one_plus_c * sech2(a))    # log(1 + c sech^2(a))


@primitive
def alpha_rows(wy, one_plus_c, b):
    """alpha = w^T z for each point, the root of alpha + c tanh(alpha + b) = w^T y: planar.py's
    solver, which is elementwise, given (N,) arrays of w^T y, 1 + c and b."""
    return solve_alpha(wy, one_plus_c, b)[0]


def alpha_rows_vjp(argnums, alpha, args, kwargs):
    """Implicit function theorem, point by point (planar.py's VJP, without its sums over points):
    d alpha = (d(w^T y) - tanh(alpha + b) dc - c sech^2(alpha + b) db) / g'."""
    wy, one_plus_c, b = args
    t, s = tanh(alpha + b), sech2(alpha + b)
    slope = t ** 2 + one_plus_c * s                   # g' = 1 + c sech^2 > 0

    def vjp(g):
        g = g / slope
        grads = {0: lambda: g, 1: lambda: -g * t, 2: lambda: -g * (one_plus_c - 1) * s}
        return [grads[i]() for i in argnums]
    return vjp


defvjp_argnums(alpha_rows, alpha_rows_vjp)


class AmortisedPlanar:
    """y = z + u_hat(h) tanh(w(h)^T z + b(h)) with u(h) = h W_u + u, w(h) = h W_w + w,
    b(h) = h W_b + b; log|det dy/dz| = log|1 + c(h) sech^2(a)|, a = w(h)^T z + b(h)."""

    def __init__(self, context_dim):
        self.context_dim = check_dim(context_dim, "context_dim")

    def init(self, rng, dim):
        params = Planar().init(rng, check_dim(dim))     # u, w ~ U(-1/sqrt(D), 1/sqrt(D)), b = 0
        C = self.context_dim
        return {"W_u": np.zeros((C, dim)), "u": params["u"], "W_w": np.zeros((C, dim)), "w": params["w"],
                "W_b": np.zeros(C), "b": params["b"]}

    def u_w_b(self, params, context):
        """Each point's raw planar parameters: u, w (N, D) and b (N,), from the context (N, C)."""
        return (dense(context, params["W_u"], params["u"]), dense(context, params["W_w"], params["w"]),
                np.dot(context, params["W_b"]) + params["b"])

    def u_hat(self, params, context):
        """(u_hat (N, D), 1 + c (N,)) with c = w^T u_hat > -1 for every point."""
        u, w, _ = self.u_w_b(params, context)
        return reparameterise_rows(u, w)

    def _check(self, params, points, context, name):
        points = check_points(points, len(params["u"]), name)
        return points, check_context(context, self.context_dim, len(points), self)

    def forward(self, params, z, context=None):
        z, context = self._check(params, z, context, "z")
        # = planar_rows_plain(z, *self.u_w_b(params, context)), heads and step as one node
        weights = layer_vector(params, PLANAR_KEYS)
        if not any(isbox(a) for a in (z, context, weights)):           # nothing to differentiate: keep nothing
            return planar_rows_lean(z, *planar_heads(context, weights))
        return amortised_planar(z, context, context, context, weights)

    def inverse(self, params, y, context=None):
        y, context = self._check(params, y, context, "y")
        u, w, b = self.u_w_b(params, context)
        u_hat, one_plus_c = reparameterise_rows(u, w)
        alpha = alpha_rows(np.sum(w * y, axis=1), one_plus_c, b)
        t = tanh(alpha + b)
        return y - u_hat * t[:, None], -np.log(t ** 2 + one_plus_c * sech2(alpha + b))
