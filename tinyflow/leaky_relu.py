"""Leaky ReLU as a bijection (the piecewise-linear layer of the banana tutorial).

    y = x            if x >= 0
    y = alpha * x    if x <  0          (alpha > 0, so the map is strictly increasing)

    log|det dy/dx| = sum over coordinates with x_i < 0 of log(alpha)

The sign of y equals the sign of x, so the inverse picks the branch from y.
With learnable=True each coordinate learns its own slope, stored as
log_alpha so that any real parameter gives a positive slope.

Caution when training: the density of a flow containing this layer jumps (by a factor
alpha) where the layer's input crosses zero. If trainable layers after it move that kink
across the data, the loss jumps too, and the pointwise gradient autograd computes misses
that part of the change (chapter 2 measures it).

Copy with: leaky_relu.py, validate.py (and an empty __init__.py).
"""
import autograd.numpy as np

from .validate import check_points, check_positive


class LeakyReLU:
    """params: {} or, if learnable, {"log_alpha": (D,)}; x, y: (N, D); log_det: (N,)."""

    def __init__(self, alpha=0.1, learnable=False):
        self.alpha = check_positive(alpha, "alpha (the negative-side slope)")
        self.learnable = bool(learnable)

    def init(self, rng, dim):
        return {"log_alpha": np.full(dim, np.log(self.alpha))} if self.learnable else {}

    def _log_alpha(self, params, dim):
        return params["log_alpha"] if self.learnable else np.full(dim, np.log(self.alpha))

    def _dim(self, params):
        return len(params["log_alpha"]) if self.learnable else None   # a fixed slope fits any D

    def forward(self, params, x):
        x = check_points(x, self._dim(params))
        log_alpha = self._log_alpha(params, x.shape[1])
        negative = x < 0
        y = np.where(negative, np.exp(log_alpha) * x, x)
        return y, np.sum(negative * log_alpha, axis=1)

    def inverse(self, params, y):
        y = check_points(y, self._dim(params), "y")
        log_alpha = self._log_alpha(params, y.shape[1])
        negative = y < 0
        x = np.where(negative, np.exp(-log_alpha) * y, y)
        return x, -np.sum(negative * log_alpha, axis=1)
