"""Elementwise bijections: the 1D change of variables, one coordinate at a time.

If y = f(x) with f monotone, p_Y(y) = p_X(x) / |f'(x)|, so log|det J| = sum_i log|f'(x_i)|.

    Affine():  y = exp(log_scale) * x + shift     log_det = sum(log_scale)
    Exp():     y = exp(x)                          log_det = sum(x)      (x real -> y > 0)

Scales are stored as logs so any real parameter gives a valid (positive) scale.

Copy with: elementwise.py, validate.py (and an empty __init__.py).
"""
import autograd.numpy as np

from .validate import check_dim, check_points


class Affine:
    """Elementwise scale and shift. params: {"log_scale": (D,), "shift": (D,)}; x, y: (N, D)."""

    def init(self, rng, dim):
        dim = check_dim(dim)
        return {"log_scale": np.zeros(dim), "shift": np.zeros(dim)}

    def forward(self, params, x):
        x = check_points(x, len(params["shift"]))
        y = np.exp(params["log_scale"]) * x + params["shift"]
        log_det = np.sum(params["log_scale"]) * np.ones(len(x))   # the same at every point
        return y, log_det

    def inverse(self, params, y):
        y = check_points(y, len(params["shift"]), "y")
        x = (y - params["shift"]) * np.exp(-params["log_scale"])
        log_det = -np.sum(params["log_scale"]) * np.ones(len(y))
        return x, log_det


class Exp:
    """y = exp(x) elementwise: maps R^D onto (0, inf)^D (a Gaussian becomes a log-normal). No params."""

    def init(self, rng, dim):
        return {}

    def forward(self, params, x):
        x = check_points(x)
        return np.exp(x), np.sum(x, axis=1)            # log|dy/dx| = log exp(x) = x

    def inverse(self, params, y):
        y = check_points(y, name="y")
        if np.any(y <= 0):
            raise ValueError("Exp.inverse needs y > 0 (exp only reaches positive values)")
        x = np.log(y)
        return x, -np.sum(x, axis=1)
