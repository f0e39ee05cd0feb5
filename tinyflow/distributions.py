"""Base distributions: the simple density a flow starts from.

    StandardNormal(dim):  z ~ N(0, I),                  no parameters
    DiagNormal(dim):      z ~ N(loc, diag(exp(log_scale))^2), trainable loc, log_scale

log N(z; mu, sigma^2) = -0.5 * ((z - mu) / sigma)^2 - log sigma - 0.5 * log(2 pi), summed over D.
Written out by hand: autograd.scipy would pull in scipy.

Copy with: distributions.py, validate.py (and an empty __init__.py).
"""
import autograd.numpy as np

from .validate import check_count, check_dim, check_points, check_rng

LOG_2PI = np.log(2 * np.pi)


class StandardNormal:
    """z ~ N(0, I_D). Shapes: z (N, D) -> log_prob (N,)."""

    def __init__(self, dim):
        self.dim = check_dim(dim)

    def init(self, rng):
        return {}

    def log_prob(self, params, z):
        z = check_points(z, self.dim, "z")
        return -0.5 * np.sum(z ** 2, axis=1) - 0.5 * self.dim * LOG_2PI

    def from_noise(self, params, eps):
        """z as a function of standard-normal noise eps (the reparameterisation)."""
        return eps

    def sample(self, params, rng, n):
        noise = check_rng(rng).standard_normal((check_count(n), self.dim))
        return self.from_noise(params, noise)


class DiagNormal:
    """z = loc + exp(log_scale) * eps, eps ~ N(0, I_D). params: {"loc": (D,), "log_scale": (D,)}."""

    def __init__(self, dim):
        self.dim = check_dim(dim)

    def init(self, rng):
        return {"loc": np.zeros(self.dim), "log_scale": np.zeros(self.dim)}

    def log_prob(self, params, z):
        z = check_points(z, self.dim, "z")
        u = (z - params["loc"]) * np.exp(-params["log_scale"])
        return (-0.5 * np.sum(u ** 2, axis=1) - np.sum(params["log_scale"])
                - 0.5 * self.dim * LOG_2PI)

    def from_noise(self, params, eps):
        return params["loc"] + np.exp(params["log_scale"]) * eps

    def sample(self, params, rng, n):
        noise = check_rng(rng).standard_normal((check_count(n), self.dim))
        return self.from_noise(params, noise)
